#!/bin/bash
# VM tier, host side: build cprx.ko for KERNEL (bookworm|sid|research) without
# warnings, boot that kernel once, and run in it the module selftests and
# the host-tier update tests with libcprx's kmod backend
# (tests/vm/kmod-tests.sh).  Prints TAP; run from the source root:
#
#   tests/vm/kmod.sh bookworm|sid|research BUILD_DIR
#
# research is the debug kernel (KASAN, lockdep, kmemleak; tests/vm/research):
# it is not built here (a cold build takes a quarter of an hour or more);
# .ci/run builds it first, and without it this SKIPs saying how to build it.
# Its guest is about three times slower, hence the longer timeout.
set -uo pipefail

kernel=${1:?usage: $0 bookworm|sid|research BUILD_DIR}
build=${2:?usage: $0 bookworm|sid|research BUILD_DIR}
out=$build/kmod-$kernel
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# test_guardian's 200 restarts take about 9 of the guest's minutes
cached=() timeout=1800
if [ "$kernel" = research ]; then
	cached=(--cached) timeout=2400
fi
if ! tests/vm/kernels.sh "${cached[@]}" "$kernel" >"$log" 2>&1; then
	echo "1..0 # SKIP $kernel kernel unavailable: $(tail -n 1 "$log")"
	exit 0
fi
if ! tests/vm/kbuild.sh --werror "$kernel" . "$out" >"$log" 2>&1; then
	echo "TAP version 13"
	echo "1..1"
	sed 's/^/# /' "$log" | tail -n 40
	echo "not ok 1 build cprx.ko for $kernel without warnings"
	exit 1
fi
# What runs with the kmod backend besides the module selftests.  sid's stock
# 7.2 and the research kernel are the same source: sid (AppArmor on, Debian's
# config) runs the update tests, the research kernel all of them under its
# checkers, but test_vmm's 200-update growth run, which takes a quarter of
# an hour there and whose leaks kmemleak finds in the other updates (it
# runs in full on bookworm).
# test_guardian: cprx-guardian restarting VMMs SIGKILLed mid-update, with
# cprx.ko keeping their sessions; 200 kills on bookworm, fewer elsewhere.
updates=("$build"/tests/exec_{update,rollback,refused,preflight,api}
	"$build"/tests/faults/fault_{state,handover} "$build/tests/test_vmm"
	"$build/tests/test_guardian")
export CPRX_GUARDIAN=${CPRX_GUARDIAN:-$build/tools/cprx-guardian}
export CPRX_GUARDIAN_CRASHES=${CPRX_GUARDIAN_CRASHES:-200}
case $kernel in
sid)
	updates=("$build"/tests/exec_{update,rollback,refused}
		"$build/tests/test_guardian")
	export CPRX_GUARDIAN_CRASHES=${CPRX_GUARDIAN_CRASHES_SID:-50} ;;
research)
	export CPRX_TEST_EXCLUDE=no_growth_200_updates
	export CPRX_GUARDIAN_CRASHES=20 ;;
esac
# Sessions live in kmalloc-cg-4k: poisoned on free there, a use after free
# (a work item run on a freed session, say) faults at once instead of
# passing unseen on a stock kernel.
exec tests/vm/run.sh --kernel "$kernel" --timeout "$timeout" \
	--append "slub_debug=FZP,kmalloc-cg-4k" -- \
	tests/vm/kmod-tests.sh "$out/cprx.ko" \
	"$build"/tests/kmod_{abi,uapi,exec,who,limits,lifetime,race,trace,fuzz,batch,perf,attack,guardian} \
	"${updates[@]}"
