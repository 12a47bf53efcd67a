#!/bin/bash
# Runs the cprx.ko selftests inside a VM-tier guest, as root:
#
#   tests/vm/run.sh -- tests/vm/kmod-tests.sh CPRX_KO TEST [TEST...]
#
# Each TEST is a KTAP test binary (the module selftests tests/kmod/kmod_*,
# then e.g. the update tests tests/exec/exec_* and test_vmm, which then run
# with libcprx's kmod backend: CPRX_BACKEND=kmod).
# Prints one flat TAP 13 stream, for meson's 'tap' protocol:
#
#   ok 1 insmod                 the module loads (else "Bail out!")
#   ok 2..N+1                   the binaries' own tests, renumbered
#   ok N+2 no-sessions-left     /proc/cprx/sessions is empty and the module's
#                               refcnt is 0 once the tests are done
#   ok N+3 rmmod                the module unloads
#   ok N+4 dmesg-clean          since a marker written to /dev/kmsg before the
#                               insmod, no kernel log line matches BUG,
#                               WARNING, Oops, leak, kmemleak, general
#                               protection or refcount_t, and no taint flag
#                               beyond the out-of-tree/unsigned module ones
#                               appeared (see BAD_TAINT); kmemleak is asked to
#                               scan first when the kernel has it
#
# The checks run after the binary, not inside it: unloading in the middle
# would break the tests that follow, and the log check must also cover the
# unload.  Exit status: 0 if every test point is ok (or skip), 1 otherwise.
set -uo pipefail

[ $# -ge 2 ] || { echo "usage: $0 CPRX_KO TEST [TEST...]" >&2; exit 2; }
ko=$1
shift
bins=("$@")
export CPRX_BACKEND=kmod
# under TCG a test takes ~20x longer than on the host
export CPRX_TEST_TIMEOUT=${CPRX_TEST_TIMEOUT:-1200}

. "$(dirname "$0")/kernel-log.sh"

fail=0
ok() { echo "ok $1 $2${3:+ # $3}"; }
not_ok() { echo "not ok $1 $2"; fail=1; }
diag() { sed 's/^/# /'; }

ntests=0
for bin in "${bins[@]}"; do
	list=$("$bin" -l) || { echo "Bail out! $bin -l failed"; exit 1; }
	ntests=$((ntests + $(printf '%s\n' "$list" | grep -c .)))
done
echo "TAP version 13"
echo "1..$((ntests + 4))"
echo "# kernel $(uname -r), module $ko"

klog_mark cprx-kmod-tests

if [ -d /sys/module/cprx ]; then
	echo "Bail out! cprx is loaded already"
	exit 1
fi
if ! out=$(insmod "$ko" 2>&1); then
	echo "$out" | diag
	echo "Bail out! insmod $ko failed"
	exit 1
fi
ok 1 insmod

# Each binary's TAP, renumbered after ours; its plan and header are ours now.
off=1
for bin in "${bins[@]}"; do
	t0=$(date +%s)
	"$bin" 2>&1 | awk -v off=$off '
		/^TAP version/ || /^1\.\.[0-9]+$/ { next }
		/^(not )?ok [0-9]+/ {
			n = $0; sub(/^(not )?ok /, "", n); num = n + 0
			sub(/^[0-9]+/, "", n)
			pre = ($0 ~ /^not /) ? "not ok " : "ok "
			print pre (num + off) n; fflush(); next
		}
		/^#/ { print; fflush(); next }
		{ print "# " $0; fflush() }'
	status=${PIPESTATUS[0]}
	echo "# $(basename "$bin") exited $status after $(( $(date +%s) - t0 )) s"
	[ "$status" = 0 ] || fail=1
	off=$((off + $("$bin" -l | grep -c .)))
done

n=$((ntests + 2))
sessions=$(tail -n +2 /proc/cprx/sessions 2>/dev/null)
refcnt=$(cat /sys/module/cprx/refcnt 2>/dev/null)
if [ -z "$sessions" ] && [ "$refcnt" = 0 ]; then
	ok $n no-sessions-left
else
	echo "refcnt $refcnt; sessions:" | diag
	echo "$sessions" | diag
	not_ok $n no-sessions-left
fi

n=$((n + 1))
if out=$(rmmod cprx 2>&1) && [ ! -d /sys/module/cprx ]; then
	ok $n rmmod
else
	echo "$out" | diag
	not_ok $n rmmod
fi

n=$((n + 1))
if trouble=$(klog_trouble); then
	ok $n dmesg-clean
else
	printf '%s\n' "$trouble" | diag
	not_ok $n dmesg-clean
fi
exit $fail
