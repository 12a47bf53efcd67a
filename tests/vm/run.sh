#!/bin/bash
# Runs one command in a throwaway VM: a stock Debian kernel under
# qemu-system-x86_64 -accel tcg, the host's / as the guest's root (read-only
# 9p), writable tmpfs on /tmp /var/tmp /run /root.
#
#   tests/vm/run.sh [options] -- CMD [ARGS...]
#   tests/vm/run.sh [options] --kexec [--kexec-kernel K] -- STAGE1... ::: STAGE2...
#
#   --kernel bookworm|sid|research
#                          which kernel (tests/vm/kernels.sh); default
#                          $CPRX_VM_KERNEL or bookworm
#   --mem SIZE             guest RAM (1G)
#   --cpus N               vCPUs (2)
#   --timeout SEC          whole run, boot included (600); then exit 124
#   --share DIR            DIR read-write at the same path in the guest, over
#                          whatever tmpfs is there (repeatable): results, build
#                          dirs under /tmp, ...
#   --ro-share DIR         the same, read-only
#   --tmpfs DIR            an extra empty writable tmpfs at DIR (repeatable);
#                          DIR must exist on the host or be under /tmp etc.
#   --env NAME[=VALUE]     pass NAME (from the host, or set to VALUE) into the
#                          guest (repeatable); CPRX_* are always passed
#   --dmesg                print the guest's dmesg to stderr after CMD
#   --dmesg-out FILE       save the guest's dmesg to FILE on the host
#   --fail-on-warn         exit 126 if CMD succeeded but the kernel logged a
#                          WARNING/BUG/Oops
#   --append ARGS          more kernel command line
#   --verbose              stream the kernel console (ttyS0) to stderr
#   --kexec                two stages: STAGE1 (the words before a lone :::)
#                          runs; if it exits 0, the harness kexecs
#                          (kexec_file_load, then reboot(LINUX_REBOOT_CMD_KEXEC),
#                          so live update state is serialised) into the
#                          --kexec-kernel with the same shares, and STAGE2 runs
#                          there. Processes STAGE1 leaves running (a daemon
#                          holding live update fds) are still running at the
#                          kexec. See "kexec stages" in tests/vm/README.md.
#   --kexec-kernel K       the kernel to kexec into: bookworm|sid|research, or
#                          a directory laid out as kernels.sh's (another
#                          build of the research kernel, say); default: the
#                          --kernel
#   --kexec-append ARGS    more kernel command line for the kexec'd kernel only
#   --systemd              the command (STAGE1 with --kexec) runs under systemd
#                          as PID 1 (the host's /lib/systemd/systemd), booted
#                          on a writable root: an overlay of a tmpfs on the
#                          read-only 9p root; with --kexec the harness's kexec
#                          is then `systemctl kexec` (the next kernel loaded
#                          first), and STAGE2 runs as usual, without systemd.
#                          See "systemd" in tests/vm/README.md.
#   --systemd-root DIR     with --systemd: DIR's tree copied onto the guest's
#                          root before systemd starts (units in
#                          DIR/etc/systemd/system, enablement links, binaries)
#   --stage-report FILE    with --kexec: KEY=VALUE lines on the stages
#                          (STAGE1_STATUS, KEXEC=ok|failed|skipped,
#                          STAGE2_STATUS, STAGE{1,2}_UPTIME: kernel seconds at
#                          the stage's start, KEXEC_SECONDS: host seconds from
#                          stage 1's end to stage 2's start, KVER2, ...)
#
# CMD runs as root in the host's working directory path (when that lies under
# /tmp, /var/tmp, /run or /root, which the guest covers with tmpfs, its top
# entry there, e.g. /tmp/ci-1234, is shared read-only automatically), with PATH, HOME=/root, LANG
# and CPRX_IN_VM=1, CPRX_VM_KERNEL=<suite>, CPRX_VM_KVER=<uname -r>; stdin is
# /dev/null, stdout+stderr come to run.sh's stdout through the guest's ttyS1,
# which carries nothing else. The kernel console is ttyS0, logged in full to a
# file: run.sh prints its tail when the guest panics, hangs or fails to boot,
# and --verbose streams it to stderr. After CMD, the guest's dmesg is scanned
# for WARNING/BUG/Oops, which are reported on stderr.
#
# Exit status: CMD's; 124 on timeout; 125 when the VM failed (could not boot,
# kernel panic, init failure) before CMD finished, or on a usage error; 126
# with --fail-on-warn. With --kexec: STAGE1's when it fails (no kexec then),
# 123 when the kexec itself failed (the load, or the reboot refused), 125
# when the kexec'd kernel never started STAGE2 (124 on a timeout), else
# STAGE2's; both statuses are logged on stderr. --dmesg-out FILE then saves
# the kexec'd kernel's log to FILE and the first one's to FILE.stage1.
#
# Run several tests in one boot by making CMD a script: a boot costs seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Our own failures (usage, setup) are 125, never a status CMD could return.
vm_die() { vm_log "error: $*"; exit 125; }

kernel=${CPRX_VM_KERNEL:-bookworm}
mem=1G cpus=2 timeout=600 dmesg=0 dmesg_out='' fail_on_warn=0 verbose=0
append=
kexec=0 kernel2='' append2='' stage_report=''
systemd=0 sdroot=''
shares=() roshares=() tmpfs=() envs=()
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift ;;
	--kernel=*) kernel=${1#*=} ;;
	--mem) mem=$2; shift ;;
	--mem=*) mem=${1#*=} ;;
	--cpus) cpus=$2; shift ;;
	--cpus=*) cpus=${1#*=} ;;
	--timeout) timeout=$2; shift ;;
	--timeout=*) timeout=${1#*=} ;;
	--share) shares+=("$2"); shift ;;
	--share=*) shares+=("${1#*=}") ;;
	--ro-share) roshares+=("$2"); shift ;;
	--ro-share=*) roshares+=("${1#*=}") ;;
	--tmpfs) tmpfs+=("$2"); shift ;;
	--tmpfs=*) tmpfs+=("${1#*=}") ;;
	--env) envs+=("$2"); shift ;;
	--env=*) envs+=("${1#*=}") ;;
	--dmesg) dmesg=1 ;;
	--dmesg-out) dmesg_out=$2; shift ;;
	--dmesg-out=*) dmesg_out=${1#*=} ;;
	--fail-on-warn) fail_on_warn=1 ;;
	--append) append="$append $2"; shift ;;
	--append=*) append="$append ${1#*=}" ;;
	--verbose|-v) verbose=1 ;;
	--kexec) kexec=1 ;;
	--kexec-kernel) kernel2=$2; shift ;;
	--kexec-kernel=*) kernel2=${1#*=} ;;
	--kexec-append) append2="$append2 $2"; shift ;;
	--kexec-append=*) append2="$append2 ${1#*=}" ;;
	--systemd) systemd=1 ;;
	--systemd-root) sdroot=$2; shift ;;
	--systemd-root=*) sdroot=${1#*=} ;;
	--stage-report) stage_report=$2; shift ;;
	--stage-report=*) stage_report=${1#*=} ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	*) vm_die "unknown option '$1' (the command goes after --)" ;;
	esac
	shift
done
[ $# -gt 0 ] || vm_die "usage: $0 [options] -- CMD [ARGS...] (see --help)"
# --kexec: the command line splits at a lone ::: into the two stages.
stage1=() stage2=()
if [ $kexec = 1 ]; then
	while [ $# -gt 0 ] && [ "$1" != ::: ]; do stage1+=("$1"); shift; done
	[ $# -gt 0 ] || vm_die "--kexec wants -- STAGE1... ::: STAGE2..."
	shift
	stage2=("$@")
	[ ${#stage1[@]} -gt 0 ] && [ ${#stage2[@]} -gt 0 ] ||
		vm_die "--kexec: an empty stage (-- STAGE1... ::: STAGE2...)"
	: "${kernel2:=$kernel}"
else
	stage1=("$@")
	[ -z "$kernel2$append2$stage_report" ] ||
		vm_die "--kexec-kernel, --kexec-append and --stage-report go with --kexec"
fi
[[ $timeout =~ ^[0-9]+$ ]] || vm_die "--timeout wants seconds"
if [ $systemd = 1 ]; then
	[ -x /lib/systemd/systemd ] || vm_die "--systemd: no /lib/systemd/systemd on the host (the guest's root)"
	[ -z "$sdroot" ] || [ -d "$sdroot" ] || vm_die "--systemd-root $sdroot: not a directory"
else
	[ -z "$sdroot" ] || vm_die "--systemd-root goes with --systemd"
fi
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing (tools/deps.sh)"
[ -x /bin/busybox ] || vm_die "/bin/busybox missing: install busybox-static (tools/deps.sh)"
! ldd /bin/busybox >/dev/null 2>&1 || vm_die "/bin/busybox is dynamic: install busybox-static"

kdir=$("$VM_DIR/kernels.sh" "$kernel") || { vm_log "error: no $kernel kernel"; exit 125; }
kver=$(vm_info "$kdir/info" KVER)
if [ $kexec = 1 ]; then
	if [ -f "$kernel2/info" ]; then
		kdir2=$(readlink -f "$kernel2")
	else
		kdir2=$("$VM_DIR/kernels.sh" "$kernel2") ||
			{ vm_log "error: no $kernel2 kernel to kexec into"; exit 125; }
	fi
	kver2=$(vm_info "$kdir2/info" KVER)
fi
# The uncompressed PVH-bootable vmlinux when kernels.sh found one (no
# decompression under TCG); CPRX_VM_PVH=0 boots the bzImage instead.
image=$kdir/vmlinuz
[ "${CPRX_VM_PVH:-1}" = 0 ] || [ ! -f "$kdir/vmlinux" ] || image=$kdir/vmlinux

# --- initramfs, cached per kernel and per content ----------------------------
# busybox (busybox-static), init.sh, stage2.sh and the modules the 9p root
# needs, decompressed (busybox insmod cannot read .ko.xz/.ko.zst); sd_mods
# (modules/order.systemd): what --systemd's overlay root needs, loaded only
# then.
want_mods="9p 9pnet_virtio virtio_pci"
opt_mods="virtio_rng"
sd_mods="overlay"
initramfs() {	# KDIR KVER
	local kdir=$1 kver=$2 key out st m line path name order
	key=$(cat "$VM_DIR/init.sh" "$VM_DIR/stage2.sh" /bin/busybox <(echo "$want_mods $opt_mods $sd_mods") |
		sha256sum | cut -c1-16)
	out="$kdir/initramfs-$key.cpio.gz"
	[ -f "$out" ] && { touch "$out"; echo "$out"; return; }
	vm_lock "initramfs"
	[ -f "$out" ] && { echo "$out"; return; }
	st=$(mktemp -d)
	mkdir -p "$st/bin" "$st/dev" "$st/modules" "$st/proc" "$st/sys" "$st/newroot"
	cp /bin/busybox "$st/bin/busybox"
	install -m 755 "$VM_DIR/init.sh" "$st/init"
	cp "$VM_DIR/stage2.sh" "$st/stage2.sh"
	mknod -m 600 "$st/dev/console" c 5 1
	mknod -m 666 "$st/dev/null" c 1 3
	: >"$st/modules/order"
	: >"$st/modules/order.systemd"
	for m in $want_mods $opt_mods $sd_mods; do
		order=$st/modules/order
		case " $sd_mods " in *" $m "*) order=$st/modules/order.systemd ;; esac
		if ! line=$(modprobe -d "$kdir/modroot" -S "$kver" --show-depends "$m" 2>&1); then
			case " $opt_mods $sd_mods " in *" $m "*) continue ;; esac
			rm -rf "$st"; vm_die "module $m for $kver: $line"
		fi
		while read -r kind path _; do
			[ "$kind" = insmod ] || continue
			name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
			cat "$st"/modules/order* | grep -qxF "$name" && continue
			case $path in
			*.xz) xz -dc "$path" >"$st/modules/$name" ;;
			*.zst) zstd -q -dc "$path" >"$st/modules/$name" ;;
			*.gz) gzip -dc "$path" >"$st/modules/$name" ;;
			*) cp "$path" "$st/modules/$name" ;;
			esac
			echo "$name" >>"$order"
		done <<<"$line"
	done
	(cd "$st" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$out.tmp"
	mv "$out.tmp" "$out"
	rm -rf "$st"
	# Drop images of other init/busybox versions unused for a week (another
	# checkout may be using one right now).
	find "$kdir" -maxdepth 1 -name 'initramfs-*.cpio.gz' -mtime +7 -delete
	echo "$out"
}
initrd=$(initramfs "$kdir" "$kver")

# --- the kexec step's tool, built once per source ---------------------------
kexec_tool() {
	local src="$VM_DIR/kexec-boot.c" out
	out="$CACHE/tools/kexec-boot-$(cat "$src" | sha256sum | cut -c1-16)"
	[ -x "$out" ] && { echo "$out"; return; }
	vm_lock tools
	[ -x "$out" ] && { echo "$out"; return; }
	mkdir -p "$CACHE/tools"
	cc -O2 -Wall -static -o "$out.tmp" "$src" >&2 ||
		vm_die "cannot build $src (cc and a static libc: tools/deps.sh)"
	mv "$out.tmp" "$out"
	echo "$out"
}

# --- the job, through a per-run I/O directory shared read-write -------------
run=$(mktemp -d "${TMPDIR:-/tmp}/cprx-vm.XXXXXX")
io=$run/io
mkdir "$io"
klog=$run/kernel.log
: >"$klog"
tailpid=
cleanup() {
	[ -z "$tailpid" ] || kill "$tailpid" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
nonce=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')

q() { printf '%q' "$1"; }
# The guest kernel's modules for /lib/modules/<kver>: bound from the 9p root,
# or through a 9p device of their own (tag TAG) when the cache lies under a
# directory that the guest hides with a tmpfs; kmodtag: that tag, or empty.
qemu_fs=()
kmod_share() {	# MODDIR TAG
	case $1/ in
	/tmp/*|/var/tmp/*|/run/*|/root/*)
		qemu_fs+=(-fsdev "local,id=fs$2,path=$1,security_model=none,readonly=on"
			-device "virtio-9p-pci,fsdev=fs$2,mount_tag=$2")
		kmodtag=$2 ;;
	*) kmodtag= ;;
	esac
}
kmoddir=$(readlink -f "$kdir/modules")
kmod_share "$kmoddir" kmods
{
	echo "CPRX_VM_NONCE=$nonce"
	echo "CPRX_VM_DMESG=$dmesg"
	echo "CPRX_VM_KVER=$(q "$kver")"
	echo "CPRX_VM_KMODDIR=$(q "$kmoddir")"
	echo "CPRX_VM_KMODTAG=$kmodtag"
	echo "CPRX_VM_TMPFS=$(q "${tmpfs[*]}")"
} >"$io/job.sh"

# Shares: "rw DIR" for --share, "ro DIR" for --ro-share; and when the
# working directory lies under a directory the guest covers with tmpfs (a
# checkout in /tmp/ci-1234/...), its top entry there (/tmp/ci-1234) read-only,
# unless a --share covers it already.
all=()
for s in "${shares[@]}"; do all+=("rw $s"); done
for s in "${roshares[@]}"; do all+=("ro $s"); done
for p in /tmp /var/tmp /run /root; do
	case $PWD/ in "$p"/?*)
		rest=${PWD#"$p"/}
		top=$p/${rest%%/*}
		covered=0
		for s in "${shares[@]}" "${roshares[@]}"; do
			case $PWD/ in "$(readlink -f "$s")"/*) covered=1 ;; esac
		done
		[ $covered = 1 ] || all+=("ro $top")
	esac
done
n=0
: >"$io/shares"
# Outer directories first, so that nested shares land on top.
while read -r mode s; do
	[ -n "$s" ] || continue
	[ -d "$s" ] || vm_die "--share $s: not a directory"
	s=$(readlink -f "$s")
	[[ $s != *[[:space:]]* ]] || vm_die "--share $s: no spaces, please"
	ro=
	[ "$mode" = rw ] || ro=,readonly=on
	echo "share$n $s $mode" >>"$io/shares"
	qemu_fs+=(-fsdev "local,id=fs$n,path=$s,security_model=none,multidevs=remap$ro"
		-device "virtio-9p-pci,fsdev=fs$n,mount_tag=share$n")
	n=$((n + 1))
done < <(for a in "${all[@]}"; do echo "$a"; done |
	awk '{ print gsub("/", "/", $2), $0 }' | sort -n -s -k1,1 | cut -d' ' -f2-)
for d in "${tmpfs[@]}"; do
	[[ $d = /* && $d != *[[:space:]]* ]] || vm_die "--tmpfs $d: absolute path without spaces"
	# The guest's root is read-only: the mount point must exist there already,
	# or lie in one of the tmpfs.
	case $d/ in
	/tmp/?*|/var/tmp/?*|/run/?*|/root/?*) ;;
	*) [ -d "$d" ] || vm_die "--tmpfs $d: no such directory on the host (the guest's / is read-only; use a path under /tmp, /run, /var/tmp or /root)" ;;
	esac
done

# cmd.sh (cmd2.sh: stage 2's): the environment, the cd, the command.
write_cmd() {	# KERNEL KVER STAGE CMD...
	local k=$1 kv=$2 stage=$3 name e a
	shift 3
	echo "export HOME=/root LANG=$(q "${LANG:-C.UTF-8}") TERM=dumb"
	echo "export CPRX_IN_VM=1 CPRX_VM_KERNEL=$(q "$k") CPRX_VM_KVER=$(q "$kv")"
	if [ $kexec = 1 ]; then
		echo "export CPRX_VM_STAGE=$stage CPRX_VM_KEXEC_KERNEL=$(q "$kernel2")"
	fi
	while IFS='=' read -r name _; do
		case $name in CPRX_CACHE|CPRX_VM_*|CPRX_IN_VM) continue ;; esac
		echo "export $name=$(q "${!name}")"
	done < <(env | grep -E '^CPRX_[A-Za-z0-9_]*=' || true)
	for e in "${envs[@]}"; do
		if [[ $e == *=* ]]; then
			echo "export ${e%%=*}=$(q "${e#*=}")"
		elif [ -n "${!e+x}" ]; then
			echo "export $e=$(q "${!e}")"
		fi
	done
	printf 'cd -- %s || { echo %s >&2; exit 125; }\n' "$(q "$PWD")" \
		"$(q "cprx-vm: cannot cd to $PWD in the guest (under /tmp? --share it)")"
	printf 'exec'
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
}
write_cmd "$kernel" "$kver" 1 "${stage1[@]}" >"$io/cmd.sh"

cmdline="console=ttyS0 panic=-1 rdinit=/init"
cmdline="$cmdline 8250.nr_uarts=2 i8042.noaux i8042.nopnp"
cmdline="$cmdline random.trust_cpu=on$append"
# 4-level paging (QEMU's max CPU has LA57): with 5-level, the research
# kernel's KASAN now and then reports a wild access at boot (an interrupt
# while identify_cpu() resets the feature bits; kernel boot code, not
# ours).  On the boot command line, which the decompressor reads when it
# picks the paging mode; the copy built into the research kernel
# (harness.config) is merged in too late for that.
cmdline="$cmdline no5lvl"

# --kexec: what stage 2 needs, in the I/O share: the kernel (the bzImage:
# kexec_file_load takes no ELF vmlinux), its initramfs, the kexec tool, the
# command line (marked cprx_vm.stage=2, which init.sh and stage2.sh read),
# the kernel's modules.
if [ $kexec = 1 ]; then
	write_cmd "$kernel2" "$kver2" 2 "${stage2[@]}" >"$io/cmd2.sh"
	initrd2=$(initramfs "$kdir2" "$kver2")
	tool=$(kexec_tool)
	cp "$kdir2/vmlinuz" "$io/kexec-kernel"
	cp "$initrd2" "$io/kexec-initrd"
	cp "$tool" "$io/kexec-boot"
	kmoddir2=$(readlink -f "$kdir2/modules")
	kmod_share "$kmoddir2" kmods2
	{
		echo "CPRX_VM_KEXEC=1"
		echo "CPRX_VM_KEXEC_CMDLINE=$(q "$cmdline$append2 cprx_vm.stage=2")"
		echo "CPRX_VM_KVER2=$(q "$kver2")"
		echo "CPRX_VM_KMODDIR2=$(q "$kmoddir2")"
		echo "CPRX_VM_KMODTAG2=$kmodtag"
	} >>"$io/job.sh"
fi

# --systemd: the first kernel's command line says so (init.sh, stage2.sh;
# a kexec'd kernel's does not), and io/sdroot is the tree init.sh copies
# onto the overlay root: the harness's target and unit, the masks
# (systemd/masked), an fstab of no entries (not the host's), then
# --systemd-root's tree.
if [ $systemd = 1 ]; then
	cmdline="$cmdline cprx_vm.systemd"
	sd=$io/sdroot
	mkdir -p "$sd/etc/systemd/system"
	cp "$VM_DIR/systemd/cprx-vm.target" "$VM_DIR/systemd/cprx-vm-stage.service" \
		"$sd/etc/systemd/system/"
	while read -r m; do
		case $m in ''|'#'*) continue ;; esac
		mkdir -p "$(dirname "$sd/etc/systemd/$m")"
		ln -s /dev/null "$sd/etc/systemd/$m"
	done <"$VM_DIR/systemd/masked"
	echo "# cprx VM harness (run.sh --systemd): no file systems of the host's" >"$sd/etc/fstab"
	[ -z "$sdroot" ] || cp -a "$sdroot/." "$sd/" ||
		vm_die "--systemd-root $sdroot: cannot copy it"
fi

qemu=(qemu-system-x86_64 -accel tcg -machine "${CPRX_VM_MACHINE:-pc}" -cpu "${CPRX_VM_CPU:-max}" -smp "$cpus" -m "$mem"
	-nodefaults -no-user-config -display none -monitor none -no-reboot -nic none
	-kernel "$image" -initrd "$initrd" -append "$cmdline"
	-serial "file:$klog" -chardev stdio,id=out,signal=off -serial chardev:out
	-fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
	-device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot
	-fsdev "local,id=fsio,path=$io,security_model=none"
	-device virtio-9p-pci,fsdev=fsio,mount_tag=cprxio
	-device virtio-rng-pci
	"${qemu_fs[@]}")

# --- run, streaming ttyS1 ------------------------------------------------------
# Lines between the start and the exit marker are CMD's output; the dmesg
# block goes to stderr; everything is kept in out.log. With --kexec, stage 1's
# exit marker and stage 2's start marker bracket what comes between (the kexec
# tool's complaint, a stage-1 daemon's chatter), which goes to stderr; the
# host's time at each is noted for the stage report.
filter() {
	local state=boot line dk="$kernel $kver"
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$run/out.log"
		case $state in
		boot)
			if [[ $line == *"CPRX-VM-START-$nonce"* ]]; then
				state=cmd
			else
				printf '%s\n' "$line"
			fi ;;
		cmd)
			if [[ $line == *"CPRX-VM-EXIT-$nonce="* ]]; then
				[ -z "${line%%CPRX-VM-EXIT-*}" ] || printf '%s\n' "${line%%CPRX-VM-EXIT-*}"
				echo "${line##*CPRX-VM-EXIT-$nonce=}" >"$io/exit.marker"
				state=finished
			elif [[ $line == *"CPRX-VM-STAGE1-EXIT-$nonce="* ]]; then
				[ -z "${line%%CPRX-VM-STAGE1-EXIT-*}" ] || printf '%s\n' "${line%%CPRX-VM-STAGE1-EXIT-*}"
				date +%s.%N >"$run/t-stage1-end"
				state=between
			elif [[ $line == *"CPRX-VM-DMESG-BEGIN"* && $dmesg = 1 ]]; then
				[ -z "${line%%CPRX-VM-DMESG-BEGIN*}" ] || printf '%s\n' "${line%%CPRX-VM-DMESG-BEGIN*}"
				echo "----- guest dmesg ($dk) -----" >&2
				state=dmesg
			else
				printf '%s\n' "$line"
			fi ;;
		between)
			if [[ $line == *"CPRX-VM-STAGE2-START-$nonce"* ]]; then
				date +%s.%N >"$run/t-stage2-start"
				dk="$kernel2 $kver2"
				state=cmd
			elif [[ $line == *"CPRX-VM-EXIT-$nonce="* ]]; then
				echo "${line##*CPRX-VM-EXIT-$nonce=}" >"$io/exit.marker"
				state=finished
			elif [ -n "$line" ]; then
				printf 'cprx-vm: (between the stages) %s\n' "$line" >&2
			fi ;;
		dmesg)
			if [[ $line == *"CPRX-VM-DMESG-END"* ]]; then
				echo "----- end of guest dmesg -----" >&2
				state=cmd
			else
				printf '%s\n' "$line" >&2
			fi ;;
		finished) ;;
		esac
	done
}

tail_klog() {
	echo "----- last lines of the guest kernel console ($kernel $kver) -----" >&2
	grep -v '^\s*$' "$klog" | tail -n "${1:-40}" >&2 || true
	echo "----- end of the guest kernel console -----" >&2
}

t0=$(date +%s.%N)
if [ $verbose = 1 ]; then
	tail -n +1 -F "$klog" >&2 2>/dev/null &
	tailpid=$!
fi
# A kernel that panics before it runs /init ran none of the project's code.
# Under multi-threaded TCG that happens now and then (an int3 left by
# boot-time text patching is hit on the other vCPU: x86 cross-modifying code
# is not coherent in TCG), so such a boot is tried once more, and said so.
boot_panicked() {
	grep -q 'Kernel panic' "$klog" && ! grep -q 'Run /init as init process' "$klog"
}
for attempt in 1 2; do
	set +e
	timeout -k 10 "$timeout" "${qemu[@]}" </dev/null | filter
	st=("${PIPESTATUS[@]}")
	set -e
	[ $attempt = 1 ] && [ ! -s "$io/exit" ] && [ ! -s "$io/exit.marker" ] &&
		boot_panicked || break
	vm_log "warning: the $kernel guest kernel panicked while booting, before /init; booting it once more"
	[ $verbose = 1 ] || tail_klog 12
	cp "$klog" "$run/kernel.log.boot1"
	: >"$klog"
	: >"$run/out.log"
done
secs=$(echo "$(date +%s.%N) - $t0" | bc)
[ -z "${CPRX_VM_TIME:-}" ] || vm_log "$kernel: VM run took ${secs}s"

# --kexec: how far it got. kx: "" (stage 1 unfinished), skipped (stage 1
# failed), failed (the kexec tool came back), ok (the kexec was made).
kx= rc1= early=
if [ $kexec = 1 ] && [ -s "$io/exit1" ]; then
	rc1=$(cat "$io/exit1")
	if [ "$rc1" != 0 ]; then
		kx=skipped
	elif [ -s "$io/kexec.err" ]; then
		kx=failed
	else
		kx=ok
	fi
fi
# What the messages below call the command that did not finish.
what="the command" where="the $kernel guest" marker="CPRX-VM-START-$nonce"
if [ "$kx" = ok ]; then
	what="stage 2" where="the kexec'd $kernel2 kernel ($kver2)" marker="CPRX-VM-STAGE2-START-$nonce"
elif [ $kexec = 1 ]; then
	what="stage 1"
fi
started=0
grep -q "$marker" "$run/out.log" 2>/dev/null && started=1

if [ "$kx" = failed ]; then
	vm_log "error: the kexec into $kernel2 ($kver2) failed: $(head -c 2000 "$io/kexec.err")"
	rc=123
elif [ -s "$io/exit" ]; then
	rc=$(cat "$io/exit")
elif [ -s "$io/exit.marker" ]; then
	rc=$(cat "$io/exit.marker")
elif [ "${st[0]}" = 124 ] || [ "${st[0]}" = 137 ]; then
	if [ $started = 1 ]; then
		vm_log "error: timeout: $what did not finish within ${timeout}s ($where)"
	else
		vm_log "error: timeout: $where did not even start $what within ${timeout}s"
	fi
	[ $verbose = 1 ] || tail_klog
	rc=124 early=1
else
	why="the VM stopped before $what finished"
	if [ "$kx" = ok ]; then
		# Only the kexec'd kernel's part of the console counts now.
		sed -n '/CPRX-VM-KEXEC-NOW/,$p' "$klog" >"$run/kernel2.log"
		ev=finished
		[ $started = 1 ] || ev=started
		why="$where stopped before stage 2 $ev"
		grep -q 'CPRX-VM-INIT-FAILED' "$run/kernel2.log" && why="the guest init failed in $where"
		grep -q 'Kernel panic' "$run/kernel2.log" && why="$where panicked before stage 2 $ev"
	else
		grep -q 'CPRX-VM-INIT-FAILED' "$klog" && why="the guest init failed"
		grep -q 'Kernel panic' "$klog" && why="the guest kernel panicked"
	fi
	vm_log "error: $why (qemu exit status ${st[0]})"
	[ $verbose = 1 ] || tail_klog 60
	rc=125 early=1
fi
[[ $rc =~ ^[0-9]+$ ]] || rc=125

# --kexec: both statuses, on stderr and in --stage-report.
stage_summary() {
	local up1 up2 ks=
	up1=$(cat "$io/uptime1" 2>/dev/null) || up1=?
	up2=$(cat "$io/uptime2" 2>/dev/null) || up2=?
	[ ! -s "$run/t-stage2-start" ] || [ ! -s "$run/t-stage1-end" ] ||
		ks=$(printf '%.1f' "$(echo "$(cat "$run/t-stage2-start") - $(cat "$run/t-stage1-end")" | bc)")
	local s1="stage 1 ($kernel $kver) " s2
	case $kx in
	'') s1+="did not finish (status $rc)" ;;
	*) s1+="exited $rc1 (started ${up1}s into the boot)" ;;
	esac
	case $kx in
	ok) if [ -s "$io/exit" ]; then
		s2="; kexec into $kernel2 ($kver2): stage 2 exited $(cat "$io/exit") (started ${up2}s into the new kernel's boot, ${ks:-?}s after stage 1 ended)"
	else
		s2="; kexec into $kernel2 ($kver2): stage 2 did not finish"
	fi ;;
	failed) s2="; the kexec into $kernel2 failed" ;;
	skipped) s2="; no kexec" ;;
	*) s2= ;;
	esac
	vm_log "$s1$s2"
	[ -z "$stage_report" ] || {
		echo "KERNEL1=$kernel"
		echo "KVER1=$kver"
		echo "KERNEL2=$kernel2"
		echo "KVER2=$kver2"
		echo "STAGE1_STATUS=$rc1"
		echo "STAGE1_UPTIME=$up1"
		echo "KEXEC=${kx:-not-reached}"
		echo "STAGE2_STATUS=$([ "$kx" != ok ] || cat "$io/exit" 2>/dev/null)"
		echo "STAGE2_UPTIME=$up2"
		echo "KEXEC_SECONDS=$ks"
		echo "STATUS=$rc"
	} >"$stage_report"
}
finish() {
	[ $kexec = 0 ] || stage_summary
	exit "$rc"
}
# A VM that failed left no log to scan, unless stage 1 ran before the kexec.
[ -z "$early" ] || [ "$kx" = ok ] || finish

# The kernel logs: one per boot (dmesg1: the first kernel's under --kexec).
logs=()
[ $kexec = 0 ] || logs+=("$io/dmesg1:$kernel")
[ "$kx" != ok ] && [ $kexec = 1 ] || logs+=("$io/dmesg:${kernel2:-$kernel}")
if [ -n "$dmesg_out" ]; then
	if [ $kexec = 1 ]; then
		cp "$io/dmesg1" "$dmesg_out.stage1" 2>/dev/null ||
			vm_log "warning: no stage 1 dmesg to save"
	fi
	if [ $kexec = 0 ] || [ "$kx" = ok ]; then
		cp "$io/dmesg" "$dmesg_out" 2>/dev/null || vm_log "warning: no dmesg to save"
	fi
fi
for l in "${logs[@]}"; do
	f=${l%%:*}
	if grep -qE 'WARNING:|BUG:|Oops|general protection fault|Call Trace:|Kernel panic' "$f" 2>/dev/null; then
		vm_log "warning: the ${l#*:} guest kernel logged a WARNING/BUG/Oops:"
		grep -E -A3 'WARNING:|BUG:|Oops|general protection fault|Kernel panic' "$f" | head -n 20 >&2
		[ -n "$dmesg_out$dmesg" ] || vm_log "(rerun with --dmesg or --dmesg-out FILE for all of it)"
		if [ $fail_on_warn = 1 ] && [ "$rc" = 0 ]; then
			rc=126
		fi
	fi
done
finish
