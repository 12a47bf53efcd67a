#!/bin/bash
# What the guard adds per ioctl and per exec, as a ratio against the same
# loop without the guard, in the same boot (tests/guard/oploop.c):
#
#   tests/guard/ratio.sh BUILD_DIR [IOCTLS] [EXECS] [ROUNDS] [-- LOAD_OPTS...]
#
# Each round runs both loops with no guard loaded, then loads a guard
# (pinned under /sys/fs/bpf/cprx-guard-ratio-PID, status in a temporary
# file) guarding a fresh cgroup v2 directory and allowing only oploop, and
# runs them again outside the cgroup (unguarded processes) and inside it (a
# guarded process running an allowed binary: a VMM), then detaches.  The
# medians over ROUNDS (3) rounds, one line per operation:
#   ioctl: none B ns; unguarded U ns (+D ns, xR); guarded-vmm G ns (+D ns, xR)
#   exec: ...
# Then, from kernel.bpf_stats_enabled (on while the loops run), how often
# the guard's programs ran during each loop under a guard, and their time
# per op:
#   ioctl programs (every task's runs in the loop): unguarded R runs in N
#   ops (T ns per op); guarded-vmm ...
# the guard's own cost, free of the machine's timing noise: what any task
# ran meanwhile counts, the few execs and forks that start the loop and
# read the counters included.
# LOAD_OPTS go to `cprx-guard load` (--fallback-trace measures the
# trace-only fallback where the LSM is refused).  Needs root; exit 0 when
# every loop ran.
set -u
B=$(cd "${1:?usage: $0 BUILD_DIR [IOCTLS] [EXECS] [ROUNDS] [-- LOAD_OPTS]}" && pwd)
shift
NI=${1:-200000} NE=${2:-200} R=${3:-3}
while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
[ "${1:-}" = -- ] && shift
G=$B/bpf/cprx-guard L=$B/tests/guard_oploop
T=$(mktemp -d /tmp/cprx-guard-ratio.XXXXXX)
PIN=/sys/fs/bpf/cprx-guard-ratio-$$	# bpffs refuses dots in names
export CPRX_GUARD_STATUS=$T/status
mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$mnt" ] || { echo "ratio.sh: no cgroup2 mount" >&2; exit 1; }
CG=$mnt/cprx-guard-ratio-$$
stats0=$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null)
cleanup() {
	"$G" detach --quiet --pin-dir "$PIN" >/dev/null 2>&1
	rmdir "$CG" 2>/dev/null
	rm -rf "$T"
	[ -z "$stats0" ] || echo "$stats0" >/proc/sys/kernel/bpf_stats_enabled
}
trap cleanup EXIT
mkdir "$CG" || exit 1
echo 1 >/proc/sys/kernel/bpf_stats_enabled ||
	{ echo "ratio.sh: cannot enable kernel.bpf_stats_enabled" >&2; exit 1; }

# The loaded guard's programs: "RUNS NS", summed over all of them.
prog_runs() {
	"$G" status --json | python3 -c '
import json, sys
p = json.load(sys.stdin)["programs"]
print(sum(x["run_cnt"] for x in p), sum(x["run_time_ns"] for x in p))'
}

# run MODE OP N: one loop's ns per op, appended to $T/MODE.OP; under a
# guard, its programs' runs and ns in the loop ("RUNS NS N") to MODE.OP.runs
run() {
	local mode=$1 op=$2 n=$3 out p0= p1
	[ "$mode" = none ] || p0=$(prog_runs) || return 1
	if [ "$mode" = guarded ]; then
		out=$(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$L" "$op" "$n") || return 1
	else
		out=$("$L" "$op" "$n") || return 1
	fi
	echo "${out##* }" >>"$T/$mode.$op"
	[ -z "$p0" ] && return 0
	p1=$(prog_runs) || return 1
	echo "$p0 $p1 $n" | awk '{ print $3 - $1, $4 - $2, $5 }' >>"$T/$mode.$op.runs"
}

for ((r = 0; r < R; r++)); do
	run none ioctl "$NI" && run none exec "$NE" || { echo "ratio.sh: the loops fail without a guard" >&2; exit 1; }
	"$G" load --pin --pin-dir "$PIN" "$@" --guard-cgroup "$CG" --allow "$L" >"$T/load.out" 2>&1 ||
		{ echo "ratio.sh: cprx-guard load failed:" >&2; cat "$T/load.out" >&2; exit 1; }
	run unguarded ioctl "$NI" && run unguarded exec "$NE" &&
	run guarded ioctl "$NI" && run guarded exec "$NE" ||
		{ echo "ratio.sh: a loop failed under the guard" >&2; exit 1; }
	"$G" detach --pin-dir "$PIN" >/dev/null 2>&1 || { echo "ratio.sh: detach failed" >&2; exit 1; }
done
grep -m1 '; policy ' "$T/load.out" | sed 's/^/# /'
python3 - "$T" <<'PY'
import statistics, sys
t = sys.argv[1]
def med(mode, op):
    return statistics.median(float(x) for x in open(f"{t}/{mode}.{op}"))
for op in ("ioctl", "exec"):
    base = med("none", op)
    parts = [f"none {base:.1f} ns"]
    for mode, name in (("unguarded", "unguarded"), ("guarded", "guarded-vmm")):
        v = med(mode, op)
        parts.append(f"{name} {v:.1f} ns ({v - base:+.1f} ns, x{v / base:.3f})")
    print(f"{op}: " + "; ".join(parts))
for op in ("ioctl", "exec"):
    parts = []
    for mode, name in (("unguarded", "unguarded"), ("guarded", "guarded-vmm")):
        rows = [[int(v) for v in l.split()] for l in open(f"{t}/{mode}.{op}.runs")]
        runs, ns, n = (sum(r[i] for r in rows) for i in range(3))
        parts.append(f"{name} {runs} runs in {n} ops ({ns / n:.1f} ns per op)")
    print(f"{op} programs (every task's runs in the loop): " + "; ".join(parts))
PY
