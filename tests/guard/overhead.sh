#!/bin/bash
# Per-exec cost of the guard, from the kernel's BPF run-time statistics
# (kernel.bpf_stats_enabled): run time of the exec check and of the commit
# tracepoint, per exec, for unguarded and for guarded processes.
#
#   tests/guard/overhead.sh [--bench] BUILD_DIR [EXECS]
#
# Loads its own guard (pinned under /sys/fs/bpf/cprx-guard-bench-PID, so two
# runs on one machine do not meet (bpffs refuses dots in names); status in
# a temporary file) guarding a fresh cgroup v2 directory and allowing
# /usr/bin/true, runs EXECS (2000) execs of /usr/bin/true outside the cgroup,
# then as many inside, and prints one line each:
#   unguarded: N ns per exec (...)
#   guarded: N ns per exec (...)
# --bench: the check from tp_btf/sched_prepare_exec (kernel >= 6.10) instead
# of the LSM hook, for kernels that refuse LSM programs: same code, native.
# Needs root.  Exit 0 when both were measured.
set -u
bench=()
[ "${1:-}" = --bench ] && { bench=(--bench); shift; }
B=$(cd "${1:?usage: $0 [--bench] BUILD_DIR [EXECS]}" && pwd)
N=${2:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
G=$B/bpf/cprx-guard
T=$(mktemp -d /tmp/cprx-guard-overhead.XXXXXX)
PIN=/sys/fs/bpf/cprx-guard-bench-$$
export CPRX_GUARD_STATUS=$T/status

mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$mnt" ] || { echo "no cgroup2 mount" >&2; exit 1; }
CG=$mnt/cprx-guard-bench.$$
old_stats=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
	sysctl -qw kernel.bpf_stats_enabled="$old_stats"
	"$G" detach --quiet --pin-dir "$PIN" >/dev/null 2>&1
	rmdir "$CG" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
mkdir "$CG" || exit 1

"$G" load --pin --fallback-trace --pin-dir "$PIN" "${bench[@]}" --guard-cgroup "$CG" \
	--allow /usr/bin/true >"$T/load.out" 2>&1 || { cat "$T/load.out" >&2; exit 1; }
"$G" status | head -n1
sysctl -qw kernel.bpf_stats_enabled=1
"$G" status --json >"$T/s0"
for ((i = 0; i < N; i++)); do /usr/bin/true; done
"$G" status --json >"$T/s1"
# the loop's shell joins the cgroup itself: it need not be allow-listed
bash -c "echo \$\$ >$CG/cgroup.procs; for ((i = 0; i < $N; i++)); do /usr/bin/true; done"
"$G" status --json >"$T/s2"
echo "counters at the end: $(grep -o '"counters":{[^}]*}' "$T/s2")"
rc=0
printf 'unguarded: '; python3 "$HERE/guardtest.py" overhead "$T/s0" "$T/s1" | head -n1 || rc=1
printf 'guarded: '; python3 "$HERE/guardtest.py" overhead "$T/s1" "$T/s2" | head -n1 || rc=1
exit $rc
