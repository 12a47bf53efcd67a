#!/bin/bash
# The guard's VM tier (meson test --suite vm): TAP on stdout.
#
#   tests/guard/vm.sh BUILD_DIR
#
# For each kernel (bookworm, sid; CPRX_VM_KERNELS="..." overrides): build
# cprx.ko against its headers (tests/vm/kbuild.sh), boot it once
# (tests/vm/run.sh) and run tests/guard/vm-guard.sh there, which loads the
# guard with the BPF LSM enforcing.  Its checks are relayed, numbered; a
# kernel or module that cannot be had makes that kernel's run a SKIP.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM=$REPO/tests/vm
B=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
read -r -a kernels <<<"${CPRX_VM_KERNELS:-bookworm sid}"
n=0
emit() { n=$((n + 1)); echo "$1 $n${2#"$1"}"; }
diag() { sed 's/^/#   /' "$@"; }

if [ ! -x "$B/bpf/cprx-guard" ]; then
	echo "1..0 # SKIP cprx-guard was not built (see meson's bpf/ message)"
	exit 0
fi
scratch=$(mktemp -d /tmp/cprx-vm-guard.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
shares=(--share "$scratch")
# a checkout under a path the guest covers with tmpfs must be shared in
case $REPO/ in /tmp/*|/var/tmp/*|/run/*|/root/*) shares+=(--ro-share "$REPO") ;; esac
case $B/ in /tmp/*|/var/tmp/*|/run/*|/root/*) shares+=(--share "$B") ;; esac

for k in "${kernels[@]}"; do
	if ! "$VM/kernels.sh" "$k" >/dev/null 2>"$scratch/$k-fetch.log"; then
		emit ok "ok - $k: guard tests # SKIP no $k kernel: $(tail -n1 "$scratch/$k-fetch.log")"
		continue
	fi
	if ! "$VM/kbuild.sh" --jobs 1 "$k" "$REPO" "$scratch/kmod-$k" \
		>"$scratch/$k-kbuild.log" 2>&1 || [ ! -f "$scratch/kmod-$k/cprx.ko" ]; then
		emit ok "ok - $k: guard tests # SKIP cprx.ko does not build for $k"
		diag <(tail -n 20 "$scratch/$k-kbuild.log")
		continue
	fi
	t0=$(date +%s)
	"$VM/run.sh" --kernel "$k" "${shares[@]}" --timeout 1800 \
		--dmesg-out "$scratch/$k-dmesg" -- \
		bash "$HERE/vm-guard.sh" "$B" "$scratch/kmod-$k/cprx.ko" \
		>"$scratch/$k.out" 2>"$scratch/$k.err"
	rc=$?
	while IFS= read -r line; do
		case $line in
		"ok - "*) emit ok "$line" ;;
		"not ok - "*) emit "not ok" "$line" ;;
		*) echo "#   $line" ;;
		esac
	done <"$scratch/$k.out"
	if [ $rc = 0 ]; then
		emit ok "ok - $k: guest run finished ($(( $(date +%s) - t0 ))s)"
	else
		emit "not ok" "not ok - $k: guest run failed (run.sh exit $rc)"
		diag "$scratch/$k.err"
	fi
done
echo "1..$n"
