#!/bin/bash
# Runs one command in a throwaway VM: a stock Debian kernel under
# qemu-system-x86_64 -accel tcg, the host's / as the guest's root (read-only
# 9p), writable tmpfs on /tmp /var/tmp /run /root.
#
#   tests/vm/run.sh [options] -- CMD [ARGS...]
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
# with --fail-on-warn.
#
# Run several tests in one boot by making CMD a script: a boot costs seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Our own failures (usage, setup) are 125, never a status CMD could return.
vm_die() { vm_log "error: $*"; exit 125; }

kernel=${CPRX_VM_KERNEL:-bookworm}
mem=1G cpus=2 timeout=600 dmesg=0 dmesg_out='' fail_on_warn=0 verbose=0
append=
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
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	*) vm_die "unknown option '$1' (the command goes after --)" ;;
	esac
	shift
done
[ $# -gt 0 ] || vm_die "usage: $0 [options] -- CMD [ARGS...] (see --help)"
[[ $timeout =~ ^[0-9]+$ ]] || vm_die "--timeout wants seconds"
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing (tools/deps.sh)"
[ -x /bin/busybox ] || vm_die "/bin/busybox missing: install busybox-static (tools/deps.sh)"
! ldd /bin/busybox >/dev/null 2>&1 || vm_die "/bin/busybox is dynamic: install busybox-static"

kdir=$("$VM_DIR/kernels.sh" "$kernel") || { vm_log "error: no $kernel kernel"; exit 125; }
kver=$(vm_info "$kdir/info" KVER)
# The uncompressed PVH-bootable vmlinux when kernels.sh found one (no
# decompression under TCG); CPRX_VM_PVH=0 boots the bzImage instead.
image=$kdir/vmlinuz
[ "${CPRX_VM_PVH:-1}" = 0 ] || [ ! -f "$kdir/vmlinux" ] || image=$kdir/vmlinux

# --- initramfs, cached per kernel and per content ----------------------------
# busybox (busybox-static), init.sh, stage2.sh and the modules the 9p root
# needs, decompressed (busybox insmod cannot read .ko.xz/.ko.zst).
want_mods="9p 9pnet_virtio virtio_pci"
opt_mods="virtio_rng"
initramfs() {
	local key out st m line path name
	key=$(cat "$VM_DIR/init.sh" "$VM_DIR/stage2.sh" /bin/busybox <(echo "$want_mods $opt_mods") |
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
	for m in $want_mods $opt_mods; do
		if ! line=$(modprobe -d "$kdir/modroot" -S "$kver" --show-depends "$m" 2>&1); then
			case " $opt_mods " in *" $m "*) continue ;; esac
			rm -rf "$st"; vm_die "module $m for $kver: $line"
		fi
		while read -r kind path _; do
			[ "$kind" = insmod ] || continue
			name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
			grep -qxF "$name" "$st/modules/order" && continue
			case $path in
			*.xz) xz -dc "$path" >"$st/modules/$name" ;;
			*.zst) zstd -q -dc "$path" >"$st/modules/$name" ;;
			*.gz) gzip -dc "$path" >"$st/modules/$name" ;;
			*) cp "$path" "$st/modules/$name" ;;
			esac
			echo "$name" >>"$st/modules/order"
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
initrd=$(initramfs)

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
# or through a 9p device of their own when the cache lies under a directory
# that the guest hides with a tmpfs.
kmoddir=$(readlink -f "$kdir/modules")
kmodtag=
qemu_fs=()
case $kmoddir/ in
/tmp/*|/var/tmp/*|/run/*|/root/*)
	kmodtag=kmods
	qemu_fs+=(-fsdev "local,id=fskmods,path=$kmoddir,security_model=none,readonly=on"
		-device virtio-9p-pci,fsdev=fskmods,mount_tag=kmods) ;;
esac
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

{
	echo "export HOME=/root LANG=$(q "${LANG:-C.UTF-8}") TERM=dumb"
	echo "export CPRX_IN_VM=1 CPRX_VM_KERNEL=$(q "$kernel") CPRX_VM_KVER=$(q "$kver")"
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
} >"$io/cmd.sh"

cmdline="console=ttyS0 panic=-1 rdinit=/init"
cmdline="$cmdline 8250.nr_uarts=2 i8042.noaux i8042.nopnp"
cmdline="$cmdline random.trust_cpu=on$append"

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
# block goes to stderr; everything is kept in out.log.
filter() {
	local state=boot line
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
			elif [[ $line == *"CPRX-VM-DMESG-BEGIN"* && $dmesg = 1 ]]; then
				[ -z "${line%%CPRX-VM-DMESG-BEGIN*}" ] || printf '%s\n' "${line%%CPRX-VM-DMESG-BEGIN*}"
				echo "----- guest dmesg ($kernel $kver) -----" >&2
				state=dmesg
			else
				printf '%s\n' "$line"
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

started=0
grep -q "CPRX-VM-START-$nonce" "$run/out.log" 2>/dev/null && started=1

if [ -s "$io/exit" ]; then
	rc=$(cat "$io/exit")
elif [ -s "$io/exit.marker" ]; then
	rc=$(cat "$io/exit.marker")
elif [ "${st[0]}" = 124 ] || [ "${st[0]}" = 137 ]; then
	if [ $started = 1 ]; then
		vm_log "error: timeout: the command did not finish within ${timeout}s ($kernel guest)"
	else
		vm_log "error: timeout: the $kernel guest did not even start the command within ${timeout}s"
	fi
	[ $verbose = 1 ] || tail_klog
	exit 124
else
	why="the VM stopped before the command finished"
	grep -q 'CPRX-VM-INIT-FAILED' "$klog" && why="the guest init failed"
	grep -q 'Kernel panic' "$klog" && why="the guest kernel panicked"
	vm_log "error: $why (qemu exit status ${st[0]})"
	[ $verbose = 1 ] || tail_klog 60
	exit 125
fi
[[ $rc =~ ^[0-9]+$ ]] || rc=125

if [ -n "$dmesg_out" ]; then
	cp "$io/dmesg" "$dmesg_out" 2>/dev/null || vm_log "warning: no dmesg to save"
fi
if grep -qE 'WARNING:|BUG:|Oops|general protection fault|Call Trace:|Kernel panic' "$io/dmesg" 2>/dev/null; then
	vm_log "warning: the $kernel guest kernel logged a WARNING/BUG/Oops:"
	grep -E -A3 'WARNING:|BUG:|Oops|general protection fault|Kernel panic' "$io/dmesg" | head -n 20 >&2
	[ -n "$dmesg_out$dmesg" ] || vm_log "(rerun with --dmesg or --dmesg-out FILE for all of it)"
	if [ $fail_on_warn = 1 ] && [ "$rc" = 0 ]; then
		rc=126
	fi
fi
exit "$rc"
