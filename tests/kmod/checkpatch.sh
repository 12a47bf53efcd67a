#!/bin/bash
# cprx.ko under the kernel's own style checker, TAP on stdout: checkpatch.pl
# --strict from Debian sid's kernel source (linux-source-7.2), one test per
# file of kernel/ (the uAPI header included), each clean or "not ok" with
# what checkpatch said.
#
# checkpatch.pl and the data it reads (spelling.txt, const_structs.checkpatch)
# are taken from the research kernel's source tree when it is cached
# (tests/vm/research), else out of the source package once and cached in
# ${CPRX_CACHE:-/var/cache/cprx}/checkpatch/<version>/; the package comes
# through the private sid apt config (tests/vm/lib.sh), never the host's apt.
# Offline, the newest cached copy is used; with none, every test SKIPs.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/tests/vm/lib.sh"
pkg=${CPRX_CHECKPATCH_SOURCE:-linux-source-7.2}
croot="$CACHE/checkpatch"

newest_cached() {
	local f
	f=$(ls -1dt "$croot"/*/checkpatch.pl 2>/dev/null | head -n1) || true
	[ -n "$f" ] && dirname "$f"
}

# The directory holding checkpatch.pl, fetched if need be; empty: none.
checkpatch_dir() {
	local ver deb dir tmp
	vm_lock checkpatch
	vm_apt_refresh sid
	ver=$(vm_pkg_version "$pkg")
	[ -n "$ver" ] || { newest_cached; return; }
	# the research kernel's source tree (tests/vm/research), when it is there
	dir="$CACHE/research-build/$ver/scripts"
	[ -f "$dir/checkpatch.pl" ] && { echo "$dir"; return; }
	dir="$croot/$ver"
	[ -f "$dir/checkpatch.pl" ] && { echo "$dir"; return; }
	deb=$(vm_fetch_deb "$pkg" "$ver") || { newest_cached; return; }
	tmp=$(mktemp -d "$croot.XXXXXX")
	# the package holds one tarball of the tree: three files of it are wanted
	dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$tmp" --strip-components=2 --wildcards \
			'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
			'*/scripts/const_structs.checkpatch' >&2 &&
		[ -f "$tmp/checkpatch.pl" ] && mkdir -p "$croot" && mv "$tmp" "$dir" ||
		{ rm -rf "$tmp"; newest_cached; return; }
	echo "$dir"
}

cd "$repo/kernel" || exit 1
files=(*.c *.h include/uapi/linux/cprx.h)
echo "1..${#files[@]}"
dir=$(checkpatch_dir 2>"${TMPDIR:-/tmp}/cprx-checkpatch.$$.log")
if [ -z "$dir" ]; then
	sed 's/^/# /' "${TMPDIR:-/tmp}/cprx-checkpatch.$$.log"
	rm -f "${TMPDIR:-/tmp}/cprx-checkpatch.$$.log"
	for i in "${!files[@]}"; do
		echo "ok $((i + 1)) # SKIP no $pkg: the sid registry cannot be reached and nothing is cached"
	done
	exit 0
fi
rm -f "${TMPDIR:-/tmp}/cprx-checkpatch.$$.log"
echo "# checkpatch.pl from $pkg: $dir"
n=0
for f in "${files[@]}"; do
	n=$((n + 1))
	# run from kernel/, so the uAPI header is seen as include/uapi/...
	# spelling.txt and const_structs.checkpatch are read from beside it
	out=$(perl "$dir/checkpatch.pl" --strict --no-tree --terse --show-types \
		-f "$f" 2>&1)
	if [ $? = 0 ] && ! grep -qE ': (ERROR|WARNING|CHECK):' <<<"$out"; then
		echo "ok $n - checkpatch --strict: kernel/$f clean"
	else
		echo "not ok $n - checkpatch --strict: kernel/$f"
		grep -E ': (ERROR|WARNING|CHECK):' <<<"$out" | sed 's/^/#   /'
	fi
done
