#!/bin/bash
# Runs QEMU (or another program) from the cached sid chroot
# (qemu-chroot.sh), in the caller's PID and with the host's files it needs.
#
#   qemu-integration/qemu-run.sh [--bind DIR]... [--prog PATH] [--] ARGS...
#
# --prog PATH  program inside the chroot (default /usr/bin/qemu-system-x86_64)
# --bind DIR   also bind DIR at the same path (repeatable; CPRX_QEMU_BINDS
#              adds a colon-separated list)
#
# In a private mount namespace (unshare -m: every mount vanishes with the
# process) the chroot gets /proc, /sys, /dev (with /dev/pts, /dev/shm), /tmp,
# this repository, the cache (${CPRX_CACHE:-/var/cache/cprx}) and the
# current directory, each at its host path, so file names mean the same
# inside and outside. The program is exec'd: the PID the caller sees is
# QEMU's, and a cpr-exec re-exec (same PID) stays in the chroot, so its
# cpr-exec-command names the binary by its path inside the chroot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

prog=/usr/bin/qemu-system-x86_64
binds=("$(cd "$here/.." && pwd)" "$CACHE" /tmp)
while [ $# -gt 0 ]; do
	case $1 in
	--prog) prog=$2; shift ;;
	--bind) binds+=("$(realpath "$2")"); shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	*) break ;;
	esac
	shift
done
IFS=: read -r -a extra <<<"${CPRX_QEMU_BINDS:-}"
binds+=("${extra[@]}" "$PWD")

croot=$("$here/qemu-chroot.sh" --check) ||
	vm_die "no QEMU chroot cached: run $here/qemu-chroot.sh first"

exec unshare --mount --propagation private bash -euo pipefail -c '
	r=$1 prog=$2 n=$3; shift 3
	mount -t proc proc "$r/proc"
	mount --rbind /sys "$r/sys"
	mount --rbind /dev "$r/dev"
	for ((i = 0; i < n; i++)); do
		d=$1; shift
		[ -d "$d" ] && [ "$d" != / ] || continue
		mkdir -p "$r$d"
		mount --bind "$d" "$r$d"
	done
	# chroot(8) changes the directory to /: go back to the old one.
	exec chroot "$r" /bin/sh -c '"'"'cd "$1" 2>/dev/null || cd /; shift; exec "$@"'"'"' \
		sh "$PWD" "$prog" "$@"
' qemu-run "$croot" "$prog" "${#binds[@]}" "${binds[@]}" "$@"
