#!/bin/bash
# The guard on the host kernel (meson test --suite host): TAP on stdout.
#
#   tests/guard/host-trace.sh BUILD_DIR
#
# Where the BPF LSM is unavailable (this project's host kernel refuses LSM
# programs with EPERM) cprx-guard must fall back to trace-only and say so at
# load, in its status file and in `status`; the tp_btf tracepoints must
# still record a cprx-vmm update's timeline, phases in order, with the
# verdict the policy would have given.  Runs in trace mode on a kernel that
# does have the BPF LSM, so it never refuses anything either way.  Needs
# root; SKIPs without it, or when BPF is unavailable altogether.
set -u
B=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
G=$B/bpf/cprx-guard
GT="python3 $HERE/guardtest.py"
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/#   /' "$@"; }
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name${out:+: $(echo "$out" | tail -n1 | cut -c1-200)}"
	else
		notok "$name"; echo "$out" | diag
	fi
}

[ -x "$G" ] || { echo "1..0 # SKIP cprx-guard was not built (see meson's bpf/ message)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root to load BPF programs"; exit 0; }

T=$(mktemp -d /tmp/cprx-guard-host.XXXXXX)
export CPRX_GUARD_STATUS=$T/status
PIN=/sys/fs/bpf/cprx-guard-host.$$	# never created: no --pin here
GPID=
cleanup() {
	[ -z "$GPID" ] || { kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null; }
	rm -rf "$T"
}
trap cleanup EXIT
# A copy of cprx-vmm of our own: only our processes are guarded.
cp "$B/tools/cprx-vmm" "$T/vmm"
cp "$B/tools/cprx-vmm" "$T/vmm-other"
VMM_OPTS=(--ram 32M --run-ms 30 --json --backend cloexec)

"$G" load --trace-only --pin-dir "$PIN" --guard-exe "$T/vmm" --allow "$T/vmm" \
	--trace --json >"$T/trace.jsonl" 2>"$T/load.err" &
GPID=$!
for i in $(seq 100); do
	grep -q 'cprx-guard: tracing' "$T/load.err" 2>/dev/null && break
	kill -0 "$GPID" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q 'cprx-guard: tracing' "$T/load.err"; then
	if grep -q 'BPF is unavailable' "$T/load.err"; then
		echo "1..0 # SKIP BPF is unavailable here: $(grep 'BPF is unavailable' "$T/load.err" | head -c 300)"
		exit 0
	fi
	notok "cprx-guard load --trace"; diag "$T/load.err"
	echo "1..$n"
	exit 0
fi
"$G" status --json >"$T/status.json"
fallback=0
grep -q '"enforcing":false' "$T/status.json" && ! grep -q "policy's mode is trace" "$T/status.json" && fallback=1
if [ $fallback = 1 ]; then
	why=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["why"])' "$T/status.json")
	ok "fallback detected: trace-only because $why"
	check "load says it loudly: NOT ENFORCED and why" \
		bash -c "grep 'NOT ENFORCED' '$T/load.err' && grep 'why: ' '$T/load.err'"
	check "status says it: NOT ENFORCED: trace-only: <why>" \
		bash -c "'$G' status | grep 'NOT ENFORCED: trace-only: .'"
	check "tp_btf programs attached instead of the LSM hooks" \
		bash -c "grep -q 'cg_sys_enter attached' '$T/load.err' '$T/trace.jsonl' || '$G' status | grep -q cg_sys_enter"
else
	skip "fallback detected" "this kernel runs BPF LSM programs (loaded in trace mode)"
	skip "load says it loudly" "no fallback here"
	skip "status says it" "no fallback here"
	skip "tp_btf programs attached" "no fallback here"
fi
check "status file world-readable, state trace-only with a reason" \
	bash -c "[ \$(stat -c %a '$CPRX_GUARD_STATUS') = 644 ] && grep -qx 'state trace-only' '$CPRX_GUARD_STATUS' && grep -q '^why .' '$CPRX_GUARD_STATUS'"

"$T/vmm" "${VMM_OPTS[@]}" --updates 2 >"$T/u1.json" 2>"$T/u1.err"
rc=$?
[ $rc = 0 ] && ok "cprx-vmm: 2 updates under the trace (exit 0)" ||
	{ notok "cprx-vmm: 2 updates under the trace (exit $rc)"; diag "$T/u1.err"; }
pid=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{") and "\"pid\"" in l:
        print(json.loads(l)["pid"]); break' "$T/u1.json")
check "timeline recorded: armed, checked, committed, retrieved, in order; allowed" \
	$GT timeline "$T/trace.jsonl" --pid "${pid:-0}" --outcome updated \
	--phases armed,checked,committed,retrieved --verdict allow

"$T/vmm" "${VMM_OPTS[@]}" --exec "$T/vmm-other" >"$T/u2.json" 2>"$T/u2.err"
rc=$?
pid=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{") and "\"pid\"" in l:
        print(json.loads(l)["pid"]); break' "$T/u2.json")
[ $rc = 0 ] && ok "not enforced: an update to a non-listed binary goes through" ||
	{ notok "not enforced: an update to a non-listed binary goes through (exit $rc)"; diag "$T/u2.json"; }
check "its timeline: would-deny, not on the allow-list" \
	$GT timeline "$T/trace.jsonl" --pid "${pid:-0}" --outcome updated \
	--phases armed,checked,committed,retrieved --verdict would-deny \
	--reason "not on the allow-list"
check "libcprx's view of the real status file: would refuse, NOT enforced" \
	bash -c "'$G' check '$T/vmm-other' | grep -q ': unguarded: cprx-guard (trace-only'"

kill "$GPID"; wait "$GPID"; GPID=
check "foreground guard detaches and removes its status" test ! -e "$CPRX_GUARD_STATUS"
bench=()
# the check from sched_prepare_exec (>= 6.10) measures it natively here
grep -qa btf_trace_sched_prepare_exec /sys/kernel/btf/vmlinux 2>/dev/null && bench=(--bench)
if out=$("$HERE/overhead.sh" "${bench[@]}" "$B" "${CPRX_GUARD_EXECS:-1000}" 2>&1); then
	echo "$out" | diag
	ok "per-exec cost measured (kernel.bpf_stats_enabled${bench:+, --bench: the check from sched_prepare_exec}): $(echo "$out" | grep -E '^(un)?guarded' | cut -d'(' -f1 | paste -sd';')"
else
	notok "per-exec cost measured"; echo "$out" | diag
fi
echo "1..$n"
