#!/bin/bash
# QEMU tier (TAP): cprx-qmp update --all, the host-wide rollout after a QEMU
# package upgrade. Three patched QEMU 10.2.2 guests, each with its QMP
# socket under this test's directory (--under keeps other QEMUs of the host
# out of it):
#   - good: runs a copy of the binary that is then replaced on disk, as a
#     package upgrade does; found as replaced, and updated;
#   - shared: its RAM is not shared, so the preflight refuses it;
#   - fails: its new QEMU fails the load (the series' test hook), so it
#     rolls back to the previous binary.
# --jobs 1: the refusal and the rollback must not stop the others. Checks
# each VM's result in the JSON and the table, the exit status (3, the worst:
# rolled back), and that all three guests still run with their RAM intact.
#
#   tests/qemu/rollout.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: rollout.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup rollout

px=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
[ -x "$croot$px" ] || skip_all "no patched QEMU 10.2.2 (qemu-integration/qemu-build.sh --cprx)"

# The good guest's binary: a copy in this directory (qemu-run.sh binds /tmp
# into the chroot at the same path), replaced below as a package would be.
mkdir -p "$W/bin"
cp "$croot$px" "$W/bin/qemu-system-x86_64"
"$GUEST" start "$W/good" --prog "$W/bin/qemu-system-x86_64" >/dev/null 2>"$W/good.start" &
"$GUEST" start "$W/shared" --prog "$px" --share off >/dev/null 2>"$W/shared.start" &
QEMU_CPRX_TEST_FAIL_LOAD=1 "$GUEST" start "$W/fails" --prog "$px" >/dev/null 2>"$W/fails.start" &
wait
echo "1..9"
for g in good shared fails; do
	wait_tick "$W/$g" 3 || { cat "$W/$g.start" "$W/$g/qemu.log" 2>/dev/null | diag; }
done

# NAME KEY: KEY of the VM whose QMP socket is NAME's, from the --all JSON.
vm() {
	python3 - "$W/all.json" "$W/$1/qmp.sock" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
v = [v for v in d["vms"] if v["qmp"] == sys.argv[2]]
print(v[0].get(sys.argv[3], "") if len(v) == 1 else "not found once")
EOF
}

# Nothing replaced yet: --replaced finds nothing.
"$QMP" update --all --under "$W" --replaced --json >"$W/none.json" 2>"$W/none.err"
rc=$?
check "before the upgrade, --replaced finds no QEMU to update (exit $rc)" \
	sh -c "[ $rc = 0 ] && [ \"\$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[\"vms\"]))' '$W/none.json')\" = 0 ]"

# The upgrade: a new file at the path, the running image is now "(deleted)".
cp "$croot$px" "$W/bin/qemu-system-x86_64.new"
mv "$W/bin/qemu-system-x86_64.new" "$W/bin/qemu-system-x86_64"
"$QMP" update --all --under "$W" --replaced --preflight-only --json >"$W/all.json" 2>"$W/pre.err"
rc=$?
check "after it, --replaced finds the good guest alone, its preflight passes (exit $rc)" \
	sh -c "[ $rc = 0 ] && [ \"\$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[\"vms\"]))' '$W/all.json')\" = 1 ] &&
		[ '$(vm good binary_replaced)' = True ] && [ '$(vm good result)' = 'preflight ok' ]"

pids=()
for g in good shared fails; do pids+=("$(cat "$W/$g/pid")"); done
"$QMP" update --all --under "$W" --jobs 1 --json >"$W/all.json" 2>"$W/all.err"
rc=$?
diag <"$W/all.err"
check "update --all ran all three and exits 3, its worst outcome (exit $rc)" \
	[ $rc = 3 ]
check "good: updated in the same PID to the new binary" \
	sh -c "[ \"\$1\" = updated ] && [ \"\$2\" = 0 ]" _ "$(vm good result)" "$(vm good exit_status)"
check "shared: refused by the preflight, naming the RAM" \
	sh -c "[ \"\$1\" = refused ] && echo \"\$2\" | grep -q '^ram:'" _ \
	"$(vm shared result)" "$(vm shared detail)"
check "fails: rolled back, with libcprx's reason" \
	sh -c "[ \"\$1\" = 'rolled back' ] && echo \"\$2\" | grep -q 'rolled back'" _ \
	"$(vm fails result)" "$(vm fails detail)"

# DIR PID: the same PID, running, ticks on and RAM intact.
runs_on() {
	local t
	t=$(last_tick "$1")
	[ "$(cat "$1/pid")" = "$2" ] && [ -d "/proc/$2" ] &&
		wait_tick "$1" "$((${t:-0} + 10))" ram && ! grep -q '^ram BAD' "$1/serial.log"
}
all_run_on() {
	runs_on "$W/good" "${pids[0]}" && runs_on "$W/shared" "${pids[1]}" &&
		runs_on "$W/fails" "${pids[2]}"
}
check "all three guests run on in their PIDs, RAM intact" all_run_on
check "the good guest now runs the new file (not a deleted image)" \
	sh -c "! readlink /proc/${pids[0]}/exe | grep -q deleted"

# The table: a line per VM with its result, a progress line per update.
"$QMP" update --all --under "$W" --preflight-only >"$W/table.out" 2>"$W/table.err"
rc=$?
diag <"$W/table.out"
check "the table lists each VM with its result, progress on stderr (exit $rc)" \
	sh -c "[ $rc = 2 ] && grep -q '^${pids[0]} .*preflight ok' '$W/table.out' &&
		grep -q '^${pids[1]} .*refused' '$W/table.out' &&
		grep -q '^${pids[2]} .*preflight ok' '$W/table.out' &&
		[ \$(grep -c '\\[[0-9]/3\\] pid' '$W/table.err') = 6 ]"
exit $((failed > 0))
