#!/bin/bash
# cprx-bench --kexec, inside the VM tier's guest, once in each stage of
# tests/vm/run.sh --kexec:
#   kexec-guest.sh 1|2 BENCH VMM LUOD SHARE SIZE
# SHARE (read-write, on the host) gets every stage's output; the host side
# (bench/kexec.c) reads it after the run.
#
# Stage 1: the clock record (the TSC rate, the kernel's log lines); the
# baseline VMM writes its RAM to SHARE (fsync'd) and exits; then the LUO
# VMM (cprx-luod left running to hold its session at the jump) prepares
# and exits, the last thing before the harness's kexec.  Stage 2, the
# other way round, so that the LUO VMM's blackout holds none of the
# baseline's work: the LUO VMM resumes,
# then the baseline VMM reads its RAM back; then the clock record (the TSC
# against the new kernel's log clock), off every blackout.  Exits non-zero
# when a step failed: in stage 1, there is then no kexec.
set -u
stage=$1 bench=$2 vmm=$3 luod=$4 share=$5 size=$6
export CPRX_LUOD_SOCKET=/run/cprx-luod.sock

. "$(dirname "$0")/../tests/vm/luod.sh"
start_luod() { luod_start "$luod" "$share/luod-state" "$share/luod.$stage.log"; }
# PATH NAME [ARGS...]: one cprx-vmm, its JSON to SHARE/NAME.STAGE
vmm_run() {
	local name=$1
	shift
	"$vmm" --kexec --ram "$size" --json "$@" >"$share/$name.$stage" 2>&1 ||
		{ echo "$name (stage $stage) failed: $(tail -n 3 "$share/$name.$stage")"; return 1; }
}

base=(--baseline copy --state "$share/baseline-ram" --name bench-base)
if [ "$stage" = 1 ]; then
	"$bench" --kexec-clock >"$share/clock.1" || exit 1
	start_luod || exit 1
	vmm_run baseline "${base[@]}" || exit 1
	vmm_run luo --name bench-luo || exit 1
else
	cp /run/cprx-vm/io/kexec.tsc "$share/kexec.tsc" 2>/dev/null ||
		echo "no kexec.tsc from the harness"
	rc=0
	start_luod && vmm_run luo --name bench-luo || rc=1
	vmm_run baseline "${base[@]}" || rc=1
	"$bench" --kexec-clock >"$share/clock.2" || rc=1
	exit $rc
fi
