#!/bin/bash
# vm-qemu-kexec: the patched QEMU 10.2.2 (qemu-integration/qemu-build.sh
# --cprx) across a research -> research kexec, through run.sh --kexec: guest
# RAM and QEMU's cpr state in a LUO session held by cprx-luod (libcprx's luo
# backend, CPRX_BACKEND=luo), the devices' state in a migration file on a
# share.  The inner guest is qemu-integration/guest.sh's busybox guest
# (128 MiB, nested TCG); tests/vm/qemu-kexec-guest.sh has the checks.  TAP
# on stdout; run from the source root:
#
#   tests/vm/qemu-kexec.sh BUILD_DIR [QEMU]
#
# QEMU: the patched binary's path inside the QEMU chroot (default
# /opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64), or a build of it in
# this checkout (qemu-run.sh binds the checkout into the chroot).  SKIPs without root, when
# the harness has no kexec stages, cprx-luod is not built, or the research
# kernel, the bookworm kernel (the inner guest's), the QEMU chroot or the
# patched QEMU is not cached.
set -u
VM=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$VM/../.." && pwd)
build=$(readlink -f "${1:?usage: $0 BUILD_DIR [QEMU]}")
PX=${2:-/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64}
. "$VM/lib.sh"
scratch=$(mktemp -d /tmp/cprx-qemu-kexec.XXXXXX)
croot=
cleanup() {
	rm -rf "$scratch"
	# the bind point made for the share in the chroot
	[ -z "$croot" ] || rmdir "$croot$scratch" 2>/dev/null
}
trap cleanup EXIT

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (VM tier, chroot, mount namespaces)"
"$VM/run.sh" --help 2>&1 | grep -q -- --kexec-kernel ||
	skip "the VM harness has no kexec stages (run.sh --kexec)"
[ -x "$build/tools/cprx-luod" ] || skip "cprx-luod not built in $build"
for k in research bookworm; do
	kdir=$("$VM/kernels.sh" --cached "$k" 2>"$scratch/kernel.log") ||
		skip "$k kernel not cached: $(tail -n 1 "$scratch/kernel.log")"
done
croot=$("$src/qemu-integration/qemu-chroot.sh" --check) ||
	{ croot=; skip "no QEMU chroot cached (qemu-integration/qemu-chroot.sh)"; }
# a binary in this checkout is there too (qemu-run.sh binds the checkout)
[ -x "$croot$PX" ] || { [ "${PX#"$src"/}" != "$PX" ] && [ -x "$PX" ]; } ||
	skip "no patched QEMU 10.2.2 in the chroot (qemu-integration/qemu-build.sh --cprx)"
"$src/qemu-integration/guest.sh" initramfs >"$scratch/initramfs.log" 2>&1 ||
	skip "no busybox guest: $(tail -n 1 "$scratch/initramfs.log")"
# The guest's / is the host's, read only: qemu-run.sh's bind points in the
# chroot (this checkout, the cache, /tmp, the working directory, the share)
# must exist already.
mkdir -p "$croot$src" "$croot$CACHE" "$croot/tmp" "$croot$PWD" "$croot$scratch"

s1=(s1-stage s1-luod s1-booted s1-handed-over s1-status-held s1-dmesg)
s2=(s2-stage s2-luod s2-status-incoming s2-resumed s2-ticks-on s2-status-finished
    s2-qemu-log s2-quit s2-dmesg)
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"

guest=(bash "$VM/qemu-kexec-guest.sh")
# As vm-kexec: the kexec'd KASAN kernel must fit in KHO's scratch memory.
"$VM/run.sh" --kernel research --kexec --mem 1536M \
	--append "kho_scratch=32M,352M,32M" \
	--timeout 3400 --share "$scratch" --stage-report "$scratch/stages" \
	--dmesg-out "$scratch/dmesg" -- \
	"${guest[@]}" 1 "$build" "$scratch" "$PX" "$kdir" ::: \
	"${guest[@]}" 2 "$build" "$scratch" "$PX" "$kdir" >"$scratch/out" 2>"$scratch/err"
rc=$?
r() { sed -n "s/^$1=//p" "$scratch/stages" 2>/dev/null; }
echo "1..$((1 + ${#s1[@]} + ${#s2[@]}))"
if [ "$(r KEXEC)" = ok ]; then
	ok "research -> research kexec (run.sh: $rc, stage 2 $(r STAGE2_UPTIME)s into its boot)"
else
	notok "research -> research kexec (run.sh: $rc, kexec: $(r KEXEC))"
	diag "$scratch/err"
fi
check_points "$scratch/out" "" "${s1[@]}" "${s2[@]}"
if [ $rc != 0 ]; then
	for f in "$scratch"/qemu.*.log "$scratch"/luod.*.log "$scratch"/start.*; do
		[ -s "$f" ] && { echo "# $(basename "$f"):"; diag "$f" | tail -n 20; }
	done
	diag "$scratch/out" | tail -n 40
	# a kernel's report in full: the check's line holds only its start
	for f in "$scratch/dmesg.stage1" "$scratch/dmesg"; do
		grep -q 'BUG:\|WARNING:' "$f" 2>/dev/null &&
			{ echo "# $(basename "$f"):"; grep -A 30 -m 1 'BUG:\|WARNING:' "$f" | diag; }
	done
fi
