#!/bin/bash
# Builds an out-of-tree kernel module tree against a VM-tier kernel's headers.
#
#   tests/vm/kbuild.sh [--werror] [--btf] [--jobs N] bookworm|sid|research SRC_DIR OUT_DIR [MAKE_ARGS...]
#
# SRC_DIR holds a Kbuild (or Makefile) for `make -C <headers> M=...`; it is
# copied to OUT_DIR first (without .git, meson build dirs or OUT_DIR itself),
# so the source tree stays clean, and built there: the .ko files end up in
# OUT_DIR at their relative paths. OUT_DIR is wiped and refilled on every
# run (refused when it is a non-empty directory kbuild.sh did not make).
#
# bookworm: the headers package matching the cached bookworm kernel
#   (tests/vm/kernels.sh) is installed on the host with apt-get, and the
#   host's gcc-12 builds.
# sid: sid's headers need sid's compiler (gcc-16 for 7.2), so the build runs
#   in a cached `debootstrap --variant=minbase sid` chroot
#   ($CACHE/sid-chroot) with the matching linux-headers installed; it runs in
#   a private mount namespace (unshare -m), so its /proc, /dev and OUT_DIR
#   binds vanish with it, whatever happens.
# research: in the same sid chroot, whose gcc built that kernel
#   (tests/vm/research/build.sh), against the kernel's own headers/ tree in
#   its cache directory; module BTF included.
#
# Module BTF (.BTF in the .ko, for BPF programs that reference the module's
# types or tracepoints): sid's headers ship a BTF-only vmlinux, so sid builds
# get it. Bookworm's headers have neither vmlinux nor resolve_btfids, so they
# print "Skipping BTF generation"; --btf builds bookworm modules against a
# cached copy of the headers plus the kernel's own vmlinux (needs pahole from
# dwarves) with RESOLVE_BTFIDS=true, i.e. .BTF_ids sets (kfunc id lists) stay
# unresolved: do not use --btf for a module that registers kfuncs.
#
# The build log is printed and saved as OUT_DIR/kbuild.log. Exit status:
# make's; with --werror also 1 when the log has compiler or kbuild warnings
# ("warning:"), which are listed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

werror=0 btf=0 jobs=$(nproc)
while [ $# -gt 0 ]; do
	case $1 in
	--werror) werror=1 ;;
	--btf) btf=1 ;;
	--jobs|-j) jobs=$2; shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) vm_die "unknown option $1" ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 3 ] || vm_die "usage: $0 [--werror] bookworm|sid|research SRC_DIR OUT_DIR [MAKE_ARGS...]"
suite=$1 src=$2 out=$3
shift 3
[ -d "$src" ] || vm_die "$src: no such directory"
[ -f "$src/Kbuild" ] || [ -f "$src/Makefile" ] || vm_die "$src has no Kbuild or Makefile"
src=$(readlink -f "$src")
mkdir -p "$out"
out=$(readlink -f "$out")
[ "$out" != "$src" ] || vm_die "OUT_DIR must differ from SRC_DIR"
case "$src/" in "$out/"*) vm_die "OUT_DIR must not contain SRC_DIR" ;; esac

kdir=$("$VM_DIR/kernels.sh" "$suite")
kver=$(vm_info "$kdir/info" KVER)
hdrpkg=$(vm_info "$kdir/info" HEADERS)

# --- fresh copy of the source --------------------------------------------------
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.cprx-kbuild" ]; then
	vm_die "$out is not empty and was not made by kbuild.sh; refusing to wipe it"
fi
find "$out" -mindepth 1 -delete
excl=(--exclude=./.git)
case "$out/" in "$src/"*) excl+=("--exclude=./${out#"$src"/}") ;; esac
while IFS= read -r m; do
	excl+=("--exclude=./$(dirname "${m#"$src"/}")")
done < <(find "$src" -maxdepth 3 -type d -name meson-private 2>/dev/null)
tar -C "$src" "${excl[@]}" -cf - . | tar -C "$out" -xf -
touch "$out/.cprx-kbuild"
log="$out/kbuild.log"

check_log() {
	local rc=$1
	if [ "$rc" != 0 ]; then
		vm_log "error: module build for $suite $kver failed (make exit $rc); log: $log"
		exit "$rc"
	fi
	if grep -qE '(^|[[:space:]])[Ww]arning:' "$log"; then
		vm_log "the $suite build logged warnings:"
		grep -E '(^|[[:space:]])[Ww]arning:' "$log" >&2
		[ $werror = 0 ] || { vm_log "error: --werror: warnings in the $suite build"; exit 1; }
	fi
	vm_log "built for $suite $kver: $(cd "$out" && find . -name '*.ko' | sed 's,^\./,,' | tr '\n' ' ')"
}

# --- bookworm: the host's toolchain ------------------------------------------
if [ "$suite" = bookworm ]; then
	hdir=/usr/src/$hdrpkg
	if [ ! -f "$hdir/Makefile" ]; then
		vm_log "installing $hdrpkg"
		export DEBIAN_FRONTEND=noninteractive
		apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$hdrpkg" >&2 || {
			apt-get -o DPkg::Lock::Timeout=600 update -q >&2
			apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$hdrpkg" >&2
		} || vm_die "cannot install $hdrpkg"
	fi
	extra=()
	if [ $btf = 1 ]; then
		command -v pahole >/dev/null || vm_die "--btf needs pahole (dwarves)"
		[ -f "$kdir/vmlinux" ] || vm_die "--btf: no vmlinux in $kdir"
		hcopy="$CACHE/kbuild-headers/$kver"
		if [ ! -f "$hcopy/vmlinux" ]; then
			rm -rf "$hcopy.tmp"
			mkdir -p "$(dirname "$hcopy")"
			cp -a "$hdir" "$hcopy.tmp"
			for l in "$hcopy.tmp"/*; do
				[ -L "$l" ] && ln -sfn "$(readlink -f "$hdir/${l##*/}")" "$l"
			done
			ln -s "$kdir/vmlinux" "$hcopy.tmp/vmlinux"
			rm -rf "$hcopy"
			mv "$hcopy.tmp" "$hcopy"
		fi
		hdir=$hcopy
		extra=(RESOLVE_BTFIDS=true)
	fi
	set +e
	make -C "$hdir" M="$out" "${extra[@]}" -j"$jobs" "$@" modules 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	set -e
	check_log "$rc"
	exit 0
fi

# --- research: its own headers, with the sid chroot's gcc that built it -------
if [ "$suite" = research ]; then
	croot="$CACHE/sid-chroot"
	vm_lock sid-chroot
	[ -f "$croot/.complete" ] || vm_die "no sid chroot in $croot (kernels.sh research makes it)"
	set +e
	vm_chroot "$croot" "$hdrpkg:/usr/src/linux-research" "$out:/build" -- \
		make -C /usr/src/linux-research M=/build -j"$jobs" "$@" modules 2>&1 |
		sed -u "s|/build/|$out/|g" | tee "$log"
	rc=${PIPESTATUS[0]}
	set -e
	check_log "$rc"
	exit 0
fi

# --- sid (or trixie): a debootstrap chroot with the suite's toolchain ---------
croot="$CACHE/$suite-chroot"
vm_lock "$suite-chroot"

# Runs a script in the chroot; $BIND_OUT, if set, at /build.
in_chroot() { vm_chroot "$croot" ${BIND_OUT:+"$BIND_OUT:/build"} -- "$@"; }

vm_make_chroot "$suite" "$croot"
if [ ! -f "$croot/usr/src/$hdrpkg/Makefile" ]; then
	vm_log "installing $hdrpkg and the toolchain in the $suite chroot"
	t0=$(date +%s)
	cp /etc/resolv.conf "$croot/etc/resolv.conf"
	in_chroot sh -c "apt-get -q update && apt-get install -y -q --no-install-recommends \
		$hdrpkg make libc6-dev kmod" >&2 ||
		vm_die "cannot install $hdrpkg in the $suite chroot (is sid's kernel newer than its headers?)"
	in_chroot apt-get clean >&2
	vm_log "installing took $(( $(date +%s) - t0 ))s"
fi
# Drop headers of kernels no longer cached.
for h in "$croot"/usr/src/linux-headers-*-amd64; do
	[ -d "$h" ] || continue
	v=${h##*/linux-headers-}
	[ "$v" = "$kver" ] || [ -d "$CACHE/kernels/$suite/$v" ] || {
		vm_log "removing old headers $v from the chroot"
		in_chroot apt-get purge -y -q "linux-headers-$v" >&2 || true
	}
done

set +e
BIND_OUT=$out in_chroot make -C "/usr/src/$hdrpkg" M=/build -j"$jobs" "$@" modules 2>&1 |
	sed -u "s|/build/|$out/|g" | tee "$log"
rc=${PIPESTATUS[0]}
set -e
check_log "$rc"
