#!/bin/bash
# The demo guest of cprx-qmp and the QEMU tier: Debian's bookworm kernel and a
# busybox initramfs that writes a random pattern to guest RAM, then prints a
# tick counter on the serial console and re-checks the pattern every 10 ticks.
#
#   qemu-integration/guest.sh initramfs
#       build (cached) and print the initramfs path
#   qemu-integration/guest.sh start DIR [--mem SIZE] [--share on|off]
#       [--sandbox SPEC] [--dirty MiB] [--prog PATH] [--kernel-dir DIR]
#       [-- EXTRA QEMU ARGS]
#       boot it under the chroot's QEMU 11 (qemu-run.sh, -accel tcg) in the
#       background; prints QEMU's PID once DIR/qmp.sock exists
#
# DIR gets qmp.sock (QMP), serial.log (the console, opened with append=on so
# the QEMU exec'd by cpr-exec keeps adding to it), qemu.log (QEMU's stderr),
# pid. RAM is memory-backend-memfd share=on (as cpr-exec needs) unless
# --share off; --dirty fills that much more guest RAM with non-zero data
# (benchmarks); --prog runs another QEMU binary of the chroot (qemu-build.sh).
# The console prints:
#   CPRX-GUEST ready ram=16MiB md5=<sum>
#   tick N up=<guest uptime>
#   ram ok N | ram BAD N
#   CPRX-GUEST touched        (with --dirty: each pass over the dirtied RAM)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

initramfs() {
	local bb h out d
	bb=$(command -v busybox) || vm_die "busybox missing (tools/deps.sh: busybox-static)"
	file -L "$bb" 2>/dev/null | grep -q 'dynamically' && vm_die "$bb is not static"
	h=$( (init_script; sha256sum "$bb") | sha256sum | cut -c1-16)
	out="$CACHE/qemu-guest/initramfs-$h.cpio.gz"
	if [ ! -f "$out" ]; then
		mkdir -p "$CACHE/qemu-guest"
		d=$(mktemp -d)
		mkdir -p "$d/bin" "$d/proc" "$d/dev" "$d/tmp" "$d/sys"
		cp "$bb" "$d/bin/busybox"
		init_script >"$d/init"
		chmod +x "$d/init"
		(cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
		mv "$out.tmp" "$out"
		rm -rf "$d"
	fi
	echo "$out"
}

init_script() {
	cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=95% tmp /tmp
# The pattern lives in tmpfs pages: guest RAM that must survive the update.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
sum=$(md5sum </tmp/pattern | cut -d' ' -f1)
# cprx.dirty=MiB (benchmarks): that much more RAM filled with non-zero
# data, so a migration that copies RAM has it to copy.
dirty=$(sed -n 's/.*cprx\.dirty=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$dirty" ]; then
	n=0
	while [ $n -lt "$dirty" ]; do cat /tmp/pattern >>/tmp/dirty; n=$((n + 16)); done
	echo "CPRX-GUEST dirtied ${n} MiB"
	# Read it again and again: a QEMU that just exec'd has none of the
	# guest's RAM mapped until the guest touches it, and a benchmark of the
	# next update must find it mapped, as in a busy guest.
	# dd, not cat: busybox cat sendfile()s to /dev/null and reads nothing.
	(while :; do dd if=/tmp/dirty of=/dev/null bs=1M 2>/dev/null; echo "CPRX-GUEST touched"; sleep 1; done) &
fi
echo "CPRX-GUEST ready ram=16MiB md5=$sum"
i=0
while :; do
	i=$((i + 1))
	echo "tick $i up=$(cut -d' ' -f1 /proc/uptime)"
	if [ $((i % 10)) = 0 ]; then
		s=$(md5sum </tmp/pattern | cut -d' ' -f1)
		if [ "$s" = "$sum" ]; then echo "ram ok $i"; else echo "ram BAD $i $s"; fi
	fi
	usleep 200000
done
INIT
}

start() {
	local dir=$1 mem=256M share=on sandbox="" dirty="" prog=() kdir="" kernel rd
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--mem) mem=$2; shift ;;
		--share) share=$2; shift ;;
		--sandbox) sandbox=$2; shift ;;
		--dirty) dirty=" cprx.dirty=$2"; shift ;;
		--prog) prog=(--prog "$2"); shift ;;
		--kernel-dir) kdir=$2; shift ;;
		--) shift; break ;;
		*) vm_die "unknown start option $1" ;;
		esac
		shift
	done
	mkdir -p "$dir"
	dir=$(realpath "$dir")
	[ -n "$kdir" ] || kdir=$("$here/../tests/vm/kernels.sh" bookworm) ||
		vm_die "no bookworm kernel"
	kernel=$kdir/vmlinuz
	[ -f "$kdir/vmlinux" ] && kernel=$kdir/vmlinux	# PVH: no decompression under TCG
	rd=$(initramfs)
	rm -f "$dir/qmp.sock" "$dir/serial.log" "$dir/pid"
	local args=(-name cprx-demo -accel tcg -nodefaults -no-user-config -display none
		-machine "pc,memory-backend=ram0,aux-ram-share=on"
		-object "memory-backend-memfd,id=ram0,size=$mem,share=$share"
		-m "$mem" -smp 1 -no-reboot
		-kernel "$kernel" -initrd "$rd"
		-append "console=ttyS0 quiet panic=-1 random.trust_cpu=on$dirty"
		-chardev "file,id=ser0,path=$dir/serial.log,append=on" -serial chardev:ser0
		-qmp "unix:$dir/qmp.sock,server=on,wait=off")
	[ -n "$sandbox" ] && args+=(-sandbox "$sandbox")
	"$here/qemu-run.sh" "${prog[@]}" -- "${args[@]}" "$@" </dev/null >"$dir/qemu.log" 2>&1 &
	local pid=$! i
	echo "$pid" >"$dir/pid"
	for ((i = 0; i < 300; i++)); do
		[ -S "$dir/qmp.sock" ] && { echo "$pid"; return 0; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/qemu.log" >&2
	vm_die "QEMU did not come up (see $dir/qemu.log)"
}

case ${1:-} in
initramfs) initramfs ;;
start) shift; [ $# -ge 1 ] || vm_die "usage: $0 start DIR [options]"; start "$@" ;;
-h|--help|"") sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) vm_die "unknown command $1 (see --help)" ;;
esac
