#!/bin/bash
# QEMU tier (TAP): QEMU 10.2.2 patched to use libcprx, updated into new
# QEMUs that fail after the exec, with the checks that would have refused
# them bypassed (--no-trial):
#   - a load failure injected by the series' test hook, which no preflight
#     sees (QEMU_CPRX_TEST_FAIL_LOAD in the old QEMU's environment, read
#     only by the QEMU an update starts);
#   - a device missing from the new command line (its section is unknown);
#   - a device that fails to realize (error_fatal at start-up);
#   - a state refused for its machine type.
# Each must end rolled back: cprx-qmp exits 3 saying "rolled back" with
# libcprx's reason, the same PID runs the previous binary (CPRX_INCOMING
# with rb=1 in its environment), query-status says running, the guest's
# ticks go on with no gap and no reboot, its RAM pattern intact.  Then a
# good update of a rolled-back QEMU works.
#
#   tests/qemu/rollback.sh BUILD_DIR
#
# SKIPs as the QEMU tier does, and without the patched QEMU
# (qemu-integration/qemu-build.sh --cprx).
set -uo pipefail
build=${1:?usage: rollback.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup rollback

px=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
[ -x "$croot$px" ] || skip_all "no patched QEMU 10.2.2 (qemu-integration/qemu-build.sh --cprx)"

QEMU_CPRX_TEST_FAIL_LOAD=1 "$GUEST" start "$W/hook" --prog "$px" >/dev/null 2>"$W/hook.start" &
"$GUEST" start "$W/dev" --prog "$px" -- -device virtio-rng-pci,id=rng0 \
	>/dev/null 2>"$W/dev.start" &
"$GUEST" start "$W/bad" --prog "$px" >/dev/null 2>"$W/bad.start" &
wait
echo "1..14"
for g in hook dev bad; do
	wait_tick "$W/$g" 3 || { cat "$W/$g.start" "$W/$g/qemu.log" 2>/dev/null | diag; }
done

EXITED="new image exited with status 1 before commit"

# NAME DIR -- cprx-qmp args: the update was rolled back, and says so.
rolled_back() {
	local name=$1 dir=$2 rc
	shift 3
	"$QMP" update -s "$dir/qmp.sock" --json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	[ $rc = 3 ] || { echo "# cprx-qmp exit $rc, not 3"; return 1; }
	grep -qF "rolled back: the new QEMU failed ($EXITED)" "$W/$name.out" &&
		grep -q 'guest: running' "$W/$name.out" &&
		[ "$(json "$W/$name.json" rollback_reason 2>/dev/null)" = "$EXITED" ]
}

# DIR PID: the same PID runs the previous binary, the guest runs on intact.
intact() {
	local dir=$1 pid=$2 t
	t=$(last_tick "$dir")
	[ "$(cat "$dir/pid")" = "$pid" ] && [ -d "/proc/$pid" ] || { echo "# QEMU $pid is gone"; return 1; }
	tr '\0' '\n' <"/proc/$pid/environ" | grep -q '^CPRX_INCOMING=.*rb=1' ||
		{ echo "# pid $pid is not a rollback image"; return 1; }
	"$QMP" status -s "$dir/qmp.sock" --json >"$W/status.json" 2>&1 &&
		[ "$(json "$W/status.json" guest_status)" = running ] &&
		[ "$(json "$W/status.json" pid)" = "$pid" ] ||
		{ echo "# query-status:"; diag <"$W/status.json"; return 1; }
	wait_tick "$dir" "$((${t:-0} + 10))" ram && one_run "$dir" &&
		! grep -q '^ram BAD' "$dir/serial.log"
}

# DIR FROM TEXT: QEMU's log past byte FROM names TEXT (the failure was the
# one this case makes, not another that also rolls back).
log_says() {
	tail -c +"$(($2 + 1))" "$1/qemu.log" | tr -d '\0' | grep -qF -- "$3"
}

# NAME DIR WHAT CAUSE -- cprx-qmp args: three points, rolled back for CAUSE
# and intact.
case_rolls_back() {
	local name=$1 dir=$2 what=$3 cause=$4 pid from
	shift 4
	pid=$(cat "$dir/pid")
	from=$(stat -c %s "$dir/qemu.log" 2>/dev/null || echo 0)
	check "$what: cprx-qmp says rolled back ($EXITED), guest running" \
		rolled_back "$name" "$dir" "$@"
	check "$what: the new QEMU failed for that cause (\"$cause\")" \
		log_says "$dir" "$from" "$cause"
	check "$what: same PID $pid, query-status running, ticks without gap or reboot, RAM intact" \
		intact "$dir" "$pid"
}

# --- a load failure no preflight can see --------------------------------------
case_rolls_back hook "$W/hook" "load failure injected by QEMU_CPRX_TEST_FAIL_LOAD" \
	"load failure injected by the test hook" --
check "the previous QEMU said it took the guest back" \
	log_says "$W/hook" 0 "this QEMU takes the guest back"

# --- a device missing from the new command line -------------------------------
st=$W/dev.state
mapfile -d '' new < <(argv_without "$W/dev" -device virtio-rng-pci,id=rng0)
case_rolls_back dev "$W/dev" "new command line without rng0 (device check bypassed)" \
	"Unknown section or instance" -- \
	--no-trial --state "$st" -- "${new[@]}" -incoming "file:$st"

# --- a device that fails to realize, then a state refused ----------------------
st=$W/bad.state
mapfile -d '' new < <(argv_without "$W/bad")
case_rolls_back realize "$W/bad" "a device that fails to realize" "no-such-rng" -- \
	--no-trial --state "$st" -- "${new[@]}" -device virtio-rng-pci,rng=no-such-rng \
	-incoming "file:$st"
mapfile -d '' new < <(argv_without "$W/bad" -machine pc,memory-backend=ram0,aux-ram-share=on)
case_rolls_back machine "$W/bad" "another machine type: the state is refused" \
	"Machine type received is" -- \
	--no-trial --state "$st" -- "${new[@]}" \
	-machine pc-i440fx-10.0,memory-backend=ram0,aux-ram-share=on -incoming "file:$st"

# --- the QEMU rolled back to updates as any other ------------------------------
pid=$(cat "$W/bad/pid")
t=$(last_tick "$W/bad")
"$QMP" update -s "$W/bad/qmp.sock" --json-out "$W/good.json" >"$W/good.out" 2>&1
rc=$?
diag <"$W/good.out"
[ $rc = 0 ] && [ "$(json "$W/good.json" new_pid 2>/dev/null)" = "$pid" ] &&
	wait_tick "$W/bad" "$((${t:-0} + 10))" ram && one_run "$W/bad" &&
	! grep -q '^ram BAD' "$W/bad/serial.log"
check "then a good update of the rolled-back QEMU: ok, same PID, ticks and RAM intact (exit $rc)" \
	[ $? = 0 ]
exit $((failed > 0))
