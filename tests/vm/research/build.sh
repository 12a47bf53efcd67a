#!/bin/bash
# Builds and caches the VM tier's "research" kernel: Debian sid's kernel
# source (linux-source-7.2) configured from the fragments next to this script
# (harness, BPF, debug checkers, kexec handover / live update) on an
# allnoconfig base. Called by `tests/vm/kernels.sh research`.
#
#   tests/vm/research/build.sh [--info] [--refresh] [--cached]
#
# Prints the path of a directory with the layout kernels.sh gives the stock
# kernels (vmlinuz, config, modules/, modroot/, info; no vmlinux: a PVH entry
# does not survive KASAN, see harness.config), plus headers/ (the tree
# out-of-tree modules build against, with the kernel's vmlinux, stripped, for
# module BTF), System.map and build.log. info adds CONFIG_KEY,
# JOBS, BUILD_SECONDS and LOADAVG (the 1-minute load before and after).
#
# Cache: ${CPRX_CACHE:-/var/cache/cprx}/kernels/research/<pkgver>-<key>/,
# where key hashes the fragments' options and the compiler: editing an
# option (or a new gcc in the sid chroot) makes a new kernel. The source tree
# is kept in $CACHE/research-build/<pkgver>/, so such an edit rebuilds
# incrementally.
# The source .deb comes through the private sid apt config (apt-get download,
# dpkg-deb), never the host's apt; the compiler is the sid chroot's
# ($CACHE/sid-chroot, shared with kbuild.sh). When the registry cannot be
# reached, the cached source .deb is used, and failing that the newest cached
# build.
# --cached never builds and never goes to the registry: it prints the build
# for the current fragments and compiler, or fails saying how to make it.
#
# Every option set in a fragment must come out exactly so in the final
# .config (allnoconfig drops an option whose dependencies are missing): the
# build stops and lists the ones that did not.
#
# Environment: CPRX_VM_RESEARCH_SOURCE (linux-source-7.2),
# CPRX_VM_RESEARCH_JOBS (nproc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

info=0 refresh=0 cached=0
while [ $# -gt 0 ]; do
	case $1 in
	--info) info=1 ;;
	--refresh) refresh=1 ;;
	--cached) cached=1 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) vm_die "unknown argument $1" ;;
	esac
	shift
done
srcpkg=${CPRX_VM_RESEARCH_SOURCE:-linux-source-7.2}
jobs=${CPRX_VM_RESEARCH_JOBS:-$(nproc)}
# Bumped when the cached layout changes, so old builds are not reused.
layout=1
toolchain="gcc make libc6-dev bc bison flex perl python3 libelf-dev libssl-dev dwarves kmod xz-utils lz4 cpio"

vm_lock kernels-research
kroot="$CACHE/kernels/research"
broot="$CACHE/research-build"
debs="$CACHE/debs"
croot="$CACHE/sid-chroot"
mkdir -p "$kroot" "$broot" "$debs"

done_print() {
	if [ $info = 1 ]; then cat "$1/info"; else echo "$1"; fi
	exit 0
}
newest_cached() {
	local d
	d=$(ls -1dt "$kroot"/*/.complete 2>/dev/null | head -n1) || true
	[ -n "$d" ] && dirname "$d"
}
not_built() {
	vm_die "no research kernel is built for these fragments ($*); build it with tests/vm/kernels.sh research (a cold build: about 15 minutes on an idle 2-core machine, see tests/vm/README.md)"
}
fallback() {
	local d
	[ $cached = 0 ] || not_built "$*"
	d=$(newest_cached) || true
	[ -n "$d" ] || vm_die "$* and no research kernel is cached"
	vm_log "warning: $*; using the cached $(basename "$d")"
	done_print "$d"
}

# --- which source? ----------------------------------------------------------
if [ $cached = 1 ]; then
	vm_apt_opts sid
else
	vm_apt_refresh sid "$([ $refresh = 0 ] || echo force)"
fi
pkgver=$(vm_pkg_version "$srcpkg")
[ $cached = 0 ] || [ -n "$pkgver" ] || not_built "no $srcpkg in the cached sid index"
deb=
if [ -n "$pkgver" ] && [ $cached = 0 ]; then
	deb=$(vm_fetch_deb "$srcpkg" "$pkgver") || true
fi
if [ -z "$deb" ] && [ $cached = 0 ]; then
	deb=$(ls -1t "$debs/${srcpkg}"_*_all.deb 2>/dev/null | head -n1) || true
	[ -n "$deb" ] || fallback "cannot fetch $srcpkg"
	pkgver=$(dpkg-deb -f "$deb" Version)
	vm_log "warning: cannot fetch $srcpkg from the registry; using the cached $pkgver"
fi

# --- the compiler: the sid chroot's -----------------------------------------
in_chroot() { vm_chroot "$croot" "$@"; }
(
	vm_lock sid-chroot
	[ $cached = 0 ] || [ -f "$croot/.complete" ] || exit 1
	vm_make_chroot sid "$croot"
	if [ "$(cat "$croot/.cprx-research-toolchain" 2>/dev/null)" != "$toolchain" ]; then
		[ $cached = 0 ] || exit 1
		vm_log "installing the kernel build toolchain in the sid chroot"
		cp /etc/resolv.conf "$croot/etc/resolv.conf"
		in_chroot -- sh -c "apt-get -q update && apt-get install -y -q \
			--no-install-recommends $toolchain && apt-get clean" >&2 ||
			vm_die "cannot install the toolchain in the sid chroot"
		echo "$toolchain" >"$croot/.cprx-research-toolchain"
	fi
) || fallback "no sid chroot with a toolchain"
cc=$(in_chroot -- gcc --version | head -n1)

# The options, in order (a later setting wins); comments do not count.
key=$( { echo "layout=$layout cc=$cc"; grep -h '^CONFIG_\|^# CONFIG_.* is not set$' "$here"/*.config; } |
	sha256sum | cut -c1-8)
dir="$kroot/$pkgver-$key"
[ -f "$dir/.complete" ] && done_print "$dir"
[ $cached = 0 ] || not_built "$pkgver-$key"

# --- the source tree --------------------------------------------------------
src="$broot/$pkgver"
if [ ! -f "$src/.extracted" ]; then
	vm_log "extracting $(basename "$deb")"
	rm -rf "$src"
	mkdir -p "$src"
	tarball=$(dpkg-deb -c "$deb" | grep -o 'usr/src/linux-source-[^ ]*\.tar\.xz$' | head -n1)
	[ -n "$tarball" ] || vm_die "no source tarball in $deb"
	dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./$tarball" |
		tar -xJf - -C "$src" --strip-components=1
	touch "$src/.extracted"
fi

# --- configure: allnoconfig + the fragments, then check every option --------
tmp="$kroot/.tmp-$pkgver-$key.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
# The log outlives a failed build (the tmp dir does not).
log="$broot/build-$pkgver-$key.log"
: >"$log"
binds=("$src:/usr/src/linux" "$here:/usr/src/research-config" "$tmp:/out")
vm_log "configuring $srcpkg $pkgver ($key): allnoconfig + $(cd "$here" && echo *.config)"
in_chroot "${binds[@]}" -- sh -c 'cd /usr/src/linux &&
	scripts/kconfig/merge_config.sh -n /usr/src/research-config/*.config' >>"$log" 2>&1 ||
	{ cat "$log" >&2; vm_die "configuring failed"; }
missing=$(cat "$here"/*.config | sed -n \
	-e 's/^\(CONFIG_[A-Za-z0-9_]*=.*\)$/\1/p' \
	-e 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1=n/p' |
	while IFS= read -r want; do
		sym=${want%%=*}
		case $want in
		*=n) ! grep -q "^$sym=" "$src/.config" || echo "$want (got $(grep "^$sym=" "$src/.config"))" ;;
		*) grep -qxF "$want" "$src/.config" ||
			echo "$want (got $(grep -E "^$sym=|^# $sym is not set" "$src/.config" || echo nothing))" ;;
		esac
	done)
if [ -n "$missing" ]; then
	vm_log "error: these fragment options are not in the final .config (missing dependencies?):"
	echo "$missing" | sed 's/^/  /' >&2
	exit 1
fi

# --- build ------------------------------------------------------------------
load0=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s)
vm_log "building with $jobs jobs ($cc); log: $log"
in_chroot "${binds[@]}" -- sh -c "cd /usr/src/linux &&
	make -j$jobs all &&
	make -j$jobs INSTALL_MOD_PATH=/out/modroot INSTALL_MOD_STRIP=1 modules_install &&
	make run-command KBUILD_RUN_COMMAND='\$(srctree)/scripts/package/install-extmod-build /out/headers' &&
	cp arch/x86/boot/bzImage /out/vmlinuz && cp .config /out/config &&
	cp System.map /out/System.map &&
	objcopy -R .comment -S vmlinux /out/headers/vmlinux" >>"$log" 2>&1 ||
	{ tail -n 40 "$log" >&2; vm_die "the build failed; log: $log"; }
secs=$(( $(date +%s) - t0 ))
load1=$(cut -d' ' -f1 /proc/loadavg)

kver=$(cat "$src/include/config/kernel.release")
r="$tmp/modroot"
[ -d "$r/lib/modules/$kver" ] || vm_die "no lib/modules/$kver after modules_install"
rm -f "$r/lib/modules/$kver/build" "$r/lib/modules/$kver/source"
ln -s "modroot/lib/modules/$kver" "$tmp/modules"
cfg() { sed -n "s/^CONFIG_$1=//p" "$tmp/config" | tr -d '"'; }
{
	echo "KVER=$kver"
	echo "SUITE=research"
	echo "PKGVER=$pkgver"
	echo "PACKAGES=$srcpkg"
	echo "HEADERS=$dir/headers"
	echo "CC=$(cfg CC_VERSION_TEXT)"
	echo "MODULE_COMPRESS=none"
	echo "LSM=$(cfg LSM)"
	echo "CONFIG_KEY=$key"
	echo "JOBS=$jobs"
	echo "BUILD_SECONDS=$secs"
	echo "LOADAVG=$load0 $load1"
} >"$tmp/info"
mv "$log" "$tmp/build.log"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
vm_log "built research kernel $kver in ${secs}s (load $load0 -> $load1); $dir ($(du -sh "$dir" | cut -f1))"

# Keep the two newest builds, and the source trees they came from.
ls -1dt "$kroot"/*/ 2>/dev/null | tail -n +3 | while read -r old; do
	vm_log "pruning old research kernel $old"
	rm -rf "$old"
done
for s in "$broot"/*/; do
	v=$(basename "$s")
	ls -d "$kroot/$v"-* >/dev/null 2>&1 || { vm_log "pruning source tree $s"; rm -rf "$s"; }
done
done_print "$dir"
