#!/bin/bash
# Builds and caches a Debian sid chroot with QEMU 11.x (qemu-system-x86) for
# the QEMU tier and cprx-qmp's demo.
#
#   qemu-integration/qemu-chroot.sh [--check] [--rebuild]
#
# Prints the chroot's path on stdout:
#   ${CPRX_CACHE:-/var/cache/cprx}/qemu-chroot
# --check    exit 0 when the chroot is cached and complete, 1 otherwise
#            (builds nothing, needs no network)
# --rebuild  throw the cached chroot away and build it again
#
# `debootstrap --variant=minbase sid` (about 30 s) plus `apt-get install
# --no-install-recommends qemu-system-x86` (about 10 s), about 450 MB. The
# host's apt is never pointed at sid: only debootstrap and the chroot's own
# apt see it. Everything runs in a private mount namespace (unshare -m), so
# nothing stays mounted. Needs root, debootstrap and the network on the
# first run; later runs are offline and instant.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/../tests/vm/lib.sh"

check=0 rebuild=0
while [ $# -gt 0 ]; do
	case $1 in
	--check) check=1 ;;
	--rebuild) rebuild=1 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) vm_die "unknown argument $1 (see --help)" ;;
	esac
	shift
done

croot="$CACHE/qemu-chroot"
qemu_ok() { [ -f "$croot/.complete" ] && [ -x "$croot/usr/bin/qemu-system-x86_64" ]; }

if [ $check = 1 ]; then
	qemu_ok && { echo "$croot"; exit 0; }
	exit 1
fi
if [ $rebuild = 0 ] && qemu_ok; then
	echo "$croot"
	exit 0
fi
[ "$(id -u)" = 0 ] || vm_die "building the QEMU chroot needs root"
command -v debootstrap >/dev/null || vm_die "debootstrap missing (tools/deps.sh)"
vm_lock qemu-chroot
# Another run may have built it while we waited for the lock.
if [ $rebuild = 0 ] && qemu_ok; then
	echo "$croot"
	exit 0
fi

[ $rebuild = 0 ] || rm -rf "$croot"
vm_make_chroot sid "$croot"
t1=$(date +%s)
vm_log "installing qemu-system-x86 in the sid chroot"
cp /etc/resolv.conf "$croot/etc/resolv.conf"
vm_chroot "$croot" -- sh -c "apt-get -q update &&
	apt-get install -y -q --no-install-recommends qemu-system-x86 &&
	apt-get clean" >&2 || vm_die "cannot install qemu-system-x86 in the sid chroot"
ver=$(chroot "$croot" /usr/bin/qemu-system-x86_64 -version | head -n1) ||
	vm_die "the chroot's QEMU does not run"
echo "$ver" >"$croot/.qemu-version"
vm_log "installing took $(( $(date +%s) - t1 ))s; $ver; $(du -sh "$croot" | cut -f1)"
echo "$croot"
