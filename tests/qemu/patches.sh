#!/bin/bash
# QEMU tier (TAP): the patch series in qemu-integration/patches applies to
# QEMU 10.2.2's source (as qemu-build.sh fetched it into the chroot) in
# order, and QEMU's own scripts/checkpatch.pl finds no error or warning,
# a missing Signed-off-by included.
#
#   tests/qemu/patches.sh
#
# SKIPs when the source is not there (qemu-integration/qemu-build.sh).
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
croot=${CPRX_CACHE:-/var/cache/cprx}/qemu-chroot
tree=$croot/usr/src/qemu-10.2.2
[ -f "$tree/scripts/checkpatch.pl" ] ||
	{ echo "1..0 # SKIP no QEMU 10.2.2 source (qemu-integration/qemu-build.sh)"; exit 0; }
patches=("$src"/qemu-integration/patches/*.patch)
echo "1..$((${#patches[@]} * 2))"
n=0 failed=0
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# Only the files the series touches: a dry run against them in order
# (a file the series adds is not in the source).
for f in $(sed -n 's|^+++ b/||p' "${patches[@]}" | sort -u); do
	[ -e "$tree/$f" ] || continue
	mkdir -p "$W/$(dirname "$f")"
	cp "$tree/$f" "$W/$f"
done
for p in "${patches[@]}"; do
	name=$(basename "$p")
	n=$((n + 1))
	if out=$(patch -d "$W" -p1 --no-backup-if-mismatch <"$p" 2>&1); then
		echo "ok $n - $name applies"
	else
		failed=$((failed + 1))
		echo "not ok $n - $name applies"
		sed 's/^/# /' <<<"$out"
	fi
	n=$((n + 1))
	out=$(cd "$tree" && perl scripts/checkpatch.pl "$p" 2>&1)
	if grep -q '^total: 0 errors, 0 warnings' <<<"$out"; then
		echo "ok $n - $name: QEMU's checkpatch.pl is clean"
	else
		failed=$((failed + 1))
		echo "not ok $n - $name: QEMU's checkpatch.pl"
		sed 's/^/# /' <<<"$out" | tail -n 20
	fi
done
exit $((failed > 0))
