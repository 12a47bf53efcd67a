#!/bin/bash
# QEMU tier (TAP): the pause of the patched QEMU's update split by its trace
# events (qemu-integration/pause-breakdown.sh, three updates): every stage
# found in each update, none negative, and the stages add up to the pause
# QMP's STOP and RESUME events give.
#
#   tests/qemu/breakdown.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: breakdown.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup breakdown

px=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
[ -x "$croot$px" ] || skip_all "no patched QEMU 10.2.2 (qemu-integration/qemu-build.sh --cprx)"

echo "1..3"
"$src/qemu-integration/pause-breakdown.sh" --runs 3 --json "$build" >"$W/b.json" 2>"$W/b.err"
rc=$?
diag <"$W/b.err"
got=$(json "$W/b.json" updates 2>/dev/null)
check "pause-breakdown.sh found every stage's event in 3 updates (exit $rc, ${got:-no} updates)" \
	[ "$rc.$got" = 0.3 ]
check "no stage is negative" \
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(any(v < 0 for r in d["runs"] for v in r.values()))' "$W/b.json"
check "the stages add up to STOP -> RESUME" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["runs"]:
    t = r.pop("total (STOP -> RESUME)")
    if abs(sum(r.values()) - t) > 0.01:
        print("# %.3f != %.3f" % (sum(r.values()), t)); sys.exit(1)' "$W/b.json"
exit $((failed > 0))
