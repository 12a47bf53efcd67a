#!/bin/bash
# Fetches and caches a stock Debian kernel for the VM tier.
#
#   tests/vm/kernels.sh [--info] [--refresh] [--cached] bookworm|sid|research
#
# Prints the path of a directory holding:
#   vmlinuz   the kernel image
#   config    its .config
#   modules/  its /lib/modules/<version> tree (depmod'ed; sid's are .ko.xz)
#   vmlinux   the uncompressed kernel, when it has a PVH entry (faster boot)
#   modroot/  the extracted packages (modroot/lib/modules/<version> = modules)
#   info      KEY=VALUE: KVER (uname -r), SUITE, PKGVER, PACKAGES, HEADERS
#             (the linux-headers package matching it), CC (compiler the kernel
#             was built with), MODULE_COMPRESS, LSM (CONFIG_LSM)
# --info prints the info file instead of the path.
#
# bookworm: the ABI linux-image-amd64 depends on in the host's apt lists,
# package linux-image-<abi>-amd64-unsigned.
# sid: same through a private apt config under $CACHE/apt-sid (the host's apt
# is never pointed at sid); sid splits the kernel into linux-binary-*,
# linux-modules-* and linux-base-*, all three are taken.
#
# research: not a stock kernel but sid's kernel source built with the
# config fragments in tests/vm/research/ (BPF LSM, KASAN, lockdep, kmemleak,
# kexec handover), by tests/vm/research/build.sh: same layout, plus headers/
# (a cold build takes a while; see tests/vm/README.md). With --cached it is
# never built: the build for the current fragments is printed, or this fails
# saying how to build it (the VM tests use this; .ci/run builds it first).
#
# Cache: ${CPRX_CACHE:-/var/cache/cprx}/kernels/<suite>/<kver>/, .debs in
# $CACHE/debs. Keyed by version: a rerun is instant, and when the registry
# cannot be reached the newest cached kernel of that suite is used.
# The sid index is refreshed when older than $CPRX_VM_REFRESH_HOURS (12) or
# with --refresh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

info=0 refresh=0 cached=0
while [ $# -gt 0 ]; do
	case $1 in
	--info) info=1 ;;
	--refresh) refresh=1 ;;
	--cached) cached=1 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) vm_die "unknown option $1" ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 1 ] || vm_die "usage: $0 [--info] [--refresh] [--cached] bookworm|sid|research"
suite=$1
case $suite in
bookworm|sid|trixie) ;;
research)
	args=()
	[ $info = 0 ] || args+=(--info)
	[ $refresh = 0 ] || args+=(--refresh)
	[ $cached = 0 ] || args+=(--cached)
	exec "$VM_DIR/research/build.sh" "${args[@]}" ;;
*) vm_die "unknown suite '$suite' (bookworm, sid or research)" ;;
esac

vm_lock "kernels-$suite"
kroot="$CACHE/kernels/$suite"
debs="$CACHE/debs"
mkdir -p "$kroot" "$debs"

newest_cached() {
	local d
	d=$(ls -1dt "$kroot"/*/.complete 2>/dev/null | head -n1) || true
	[ -n "$d" ] && dirname "$d"
}

done_print() {
	if [ $info = 1 ]; then cat "$1/info"; else echo "$1"; fi
	exit 0
}

# --- which kernel does the suite ship now? ---------------------------------
APT_OPTS=()
[ "$suite" = bookworm ] || vm_apt_refresh "$suite" "$([ $refresh = 0 ] || echo force)"

meta=$(apt-cache "${APT_OPTS[@]}" depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1) || true
if [ -z "$meta" ]; then
	d=$(newest_cached) || true
	[ -n "$d" ] || vm_die "cannot resolve linux-image-amd64 in $suite and nothing is cached"
	vm_log "warning: cannot resolve linux-image-amd64 in $suite; using cached $(basename "$d")"
	done_print "$d"
fi
kver=${meta#linux-image-}
dir="$kroot/$kver"
[ -f "$dir/.complete" ] && done_print "$dir"

# --- download ----------------------------------------------------------------
# Prefer the unsigned image (no signature wrapper, same kernel); sid splits the
# image package into binary, modules and base.
pkgs=()
if apt-cache "${APT_OPTS[@]}" show "linux-image-$kver-unsigned" >/dev/null 2>&1; then
	pkgs=("linux-image-$kver-unsigned")
else
	for p in $(apt-cache "${APT_OPTS[@]}" depends "linux-image-$kver" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-\(binary\|modules\|base\)-[^ ]*\)$/\1/p'); do
		pkgs+=("$p")
	done
	[ ${#pkgs[@]} -gt 0 ] || pkgs=("linux-image-$kver")
fi
pkgver=$(vm_pkg_version "${pkgs[0]}")
vm_log "fetching $suite kernel $kver ($pkgver): ${pkgs[*]}"
t0=$(date +%s)
files=()
for p in "${pkgs[@]}"; do
	v=$(vm_pkg_version "$p")
	if ! f=$(vm_fetch_deb "$p" "$v"); then
		d=$(newest_cached) || true
		[ -n "$d" ] || vm_die "apt-get download $p=$v failed"
		vm_log "warning: using cached $(basename "$d")"
		done_print "$d"
	fi
	files+=("$f")
done

# --- extract and lay out ------------------------------------------------------
tmp="$kroot/.tmp-$kver.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/modroot"
for f in "${files[@]}"; do dpkg-deb -x "$f" "$tmp/modroot"; done
r="$tmp/modroot"
# merged-/usr packages (sid) put modules in usr/lib/modules: make lib/modules
# resolve either way, for depmod -b and for us.
if [ -d "$r/usr/lib/modules/$kver" ] && [ ! -e "$r/lib" ]; then
	ln -s usr/lib "$r/lib"
fi
mdir="lib/modules/$kver"
[ -d "$r/$mdir" ] || vm_die "no $mdir in ${pkgs[*]}"
for c in "boot/vmlinuz-$kver" "$mdir/vmlinuz"; do
	[ -f "$r/$c" ] && { ln -s "modroot/$c" "$tmp/vmlinuz"; break; }
done
for c in "boot/config-$kver" "$mdir/config"; do
	[ -f "$r/$c" ] && { ln -s "modroot/$c" "$tmp/config"; break; }
done
[ -e "$tmp/vmlinuz" ] || vm_die "no vmlinuz in ${pkgs[*]}"
[ -e "$tmp/config" ] || vm_die "no config in ${pkgs[*]}"
ln -s "modroot/$mdir" "$tmp/modules"

# An uncompressed ELF vmlinux with a PVH entry note boots straight into the
# kernel (QEMU's PVH loader): no decompression under TCG, about 2-3 s faster
# per boot. Found by scanning the bzImage for the compressor's magic.
extract_vmlinux() {
	local img=$1 out=$2 magic dec off
	for pair in $'\xfd7zXZ:xz -dc' $'\x28\xb5\x2f\xfd:zstd -qdc' \
		$'\x1f\x8b\x08:gzip -dc' $'\x02\x21\x4c\x18:lz4 -dc'; do
		magic=${pair%%:*} dec=${pair#*:}
		for off in $(LC_ALL=C grep -abo "$magic" "$img" 2>/dev/null | cut -d: -f1 | head -n 5); do
			tail -c +$((off + 1)) "$img" | $dec >"$out" 2>/dev/null
			# ELF with XEN_ELFNOTE_PHYS32_ENTRY (0x12)
			if [ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = 177ELF ] &&
			   LC_ALL=C readelf -n "$out" 2>/dev/null | grep -q '0x00000012'; then
				return 0
			fi
		done
	done
	rm -f "$out"
	return 1
}
if extract_vmlinux "$tmp/vmlinuz" "$tmp/vmlinux"; then
	vm_log "extracted a PVH-bootable vmlinux"
else
	vm_log "note: no PVH-bootable vmlinux in the image; booting the bzImage"
fi
depmod -b "$r" "$kver" || vm_die "depmod failed for $kver"

cfg() { sed -n "s/^CONFIG_$1=//p" "$tmp/config" | tr -d '"'; }
comp=none
for c in XZ ZSTD GZIP; do
	[ "$(cfg "MODULE_COMPRESS_$c")" = y ] && comp=${c,,}
done
{
	echo "KVER=$kver"
	echo "SUITE=$suite"
	echo "PKGVER=$pkgver"
	echo "PACKAGES=${pkgs[*]}"
	echo "HEADERS=linux-headers-$kver"
	echo "CC=$(cfg CC_VERSION_TEXT)"
	echo "MODULE_COMPRESS=$comp"
	echo "LSM=$(cfg LSM)"
	echo "FETCH_SECONDS=$(( $(date +%s) - t0 ))"
} >"$tmp/info"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT

# Keep the two newest kernels of a suite.
ls -1dt "$kroot"/*/ 2>/dev/null | tail -n +3 | while read -r old; do
	vm_log "pruning old kernel $old"
	rm -rf "$old"
	rm -f "$debs"/linux-*-"$(basename "$old")"{,-unsigned}_*.deb
done
vm_log "cached $suite kernel $kver in $dir ($(du -sh "$dir" | cut -f1))"
done_print "$dir"
