#!/bin/bash
# VM tier, host side: QEMU 10.2.2 patched to use libcprx, live-updated with
# its fds in a cprx.ko session.  Builds cprx.ko for bookworm without
# warnings (into BUILD_DIR/kmod-bookworm, like tests/vm/kmod.sh), boots the
# bookworm kernel once and runs tests/vm/qemu-kmod-guest.sh in it: the QEMU
# chroot's patched QEMU (qemu-integration/qemu-build.sh --cprx) started
# through qemu-integration/qemu-run.sh with CPRX_BACKEND=kmod, updated by
# cprx-qmp before and after the insmod.  Prints TAP; run from the source
# root:
#
#   tests/vm/qemu-kmod.sh BUILD_DIR
#
# SKIPs (1..0 # SKIP reason) without root, cprx-qmp, the QEMU chroot, the
# patched QEMU or the bookworm kernel.
set -uo pipefail

build=$(realpath "${1:?usage: $0 BUILD_DIR}")
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/vm/lib.sh"
QMP=$build/qemu-integration/cprx-qmp
PX=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
out=$build/kmod-bookworm
log=$(mktemp)
trap 'rm -f "$log"' EXIT

. "$src/tests/tap.sh"
[ "$(id -u)" = 0 ] || skip_all "needs root (VM tier, chroot, mount namespaces)"
[ -x "$QMP" ] || skip_all "cprx-qmp not built (needs gio-unix-2.0 and json-glib-1.0)"
croot=$("$src/qemu-integration/qemu-chroot.sh" --check) ||
	skip_all "no QEMU chroot cached (qemu-integration/qemu-chroot.sh)"
[ -x "$croot$PX" ] ||
	skip_all "no patched QEMU 10.2.2 in the chroot (qemu-integration/qemu-build.sh --cprx)"
tests/vm/kernels.sh bookworm >"$log" 2>&1 ||
	skip_all "bookworm kernel unavailable: $(tail -n 1 "$log")"
if ! tests/vm/kbuild.sh --werror bookworm . "$out" >"$log" 2>&1; then
	echo "TAP version 13"
	echo "1..1"
	sed 's/^/# /' "$log" | tail -n 40
	echo "not ok 1 build cprx.ko for bookworm without warnings"
	exit 1
fi

# The guest's / is the host's, read only: qemu-run.sh's bind mount points
# in the chroot (the repository, the cache, /tmp, the working directory)
# must exist already.  It makes them itself on the host; make them here, in
# case the host tier never ran from this checkout.
mkdir -p "$croot$src" "$croot$CACHE" "$croot/tmp" "$croot$PWD"

# run.sh does not pass CPRX_CACHE (a cache under /tmp is hidden by the
# guest's tmpfs): pass it, and share it, when it is not the default.
vmopts=()
if [ -n "${CPRX_CACHE:-}" ]; then
	vmopts+=(--env "CPRX_CACHE=$CACHE")
	case $(realpath "$CACHE")/ in
	/tmp/*|/var/tmp/*|/run/*|/root/*) vmopts+=(--ro-share "$CACHE") ;;
	esac
fi
exec tests/vm/run.sh --kernel bookworm --timeout 600 "${vmopts[@]}" -- \
	tests/vm/qemu-kmod-guest.sh "$out/cprx.ko" "$QMP"
