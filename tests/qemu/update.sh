#!/bin/bash
# QEMU tier (TAP): live updates of a real QEMU 11 (sid chroot, TCG) through
# cprx-qmp, with a Linux guest that counts ticks and re-checks a RAM pattern;
# then the same for QEMU 10.2.2 patched to use libcprx, and updates between
# stock and patched QEMUs (qemu-build.sh and qemu-build.sh --cprx, run by
# .ci/run, build them; their tests SKIP when they are not built).
#
#   tests/qemu/update.sh BUILD_DIR
#
# SKIPs (1..0 # SKIP reason) when cprx-qmp was not built, without root, or
# when the chroot or the kernel cannot be had (no network on a cold cache).
set -uo pipefail
build=${1:?usage: update.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup test

# Every cprx-qmp run records the ticks it spans and the host's seconds it
# took ("FROM TO SECONDS") in the guest's windows file.  Five TCG guests
# share two host CPUs, and the host may starve one for seconds at any
# moment: a clock step is an update's doing only inside such a window (its
# last tick included, and the one after).
qmp_real=$QMP
qmp_windowed() {
	local sock= prev= a dir from rc t0

	for a in "$@"; do [ "$prev" = -s ] && sock=$a; prev=$a; done
	dir=$(dirname "$sock")
	from=$(last_tick "$dir")
	t0=$(date +%s.%N)
	"$qmp_real" "$@"
	rc=$?
	echo "${from:-0} $(last_tick "$dir") $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
		>>"$dir/windows"
	return $rc
}
QMP=qmp_windowed

# Ticks consecutive, the guest clock never going back; inside a cprx-qmp
# window, guest clock steps below 2 s (no gap the guest could see) - or no
# larger than the host's own starving of this guest: the steps outside any
# window measure it in the same run, and a starved guest's clock cannot run
# ahead of the host's, so a step within the window's host seconds + 2 is
# starving too (a clock restored wrong jumps by its uptime, or back).
ticks_continuous() {
	awk 'FNR == NR { from[NR] = $1; to[NR] = $2 + 1; secs[NR] = $3 + 0; nw = NR; next }
		/^tick / { split($3, u, "="); n = $2 + 0; step = u[2] - up
		if (seen && n != last + 1) { print "# gap: tick " last " -> " n; bad = 1 }
		if (seen && step < 0) { print "# guest clock went back " up " -> " u[2]; bad = 1 }
		inw = 0
		for (i = 1; i <= nw; i++)
			if (last >= from[i] && n <= to[i]) { inw = 1; host = secs[i] }
		if (seen && step > 2 && inw) {
			jumps[++nj] = "guest clock jumped " up " -> " u[2] " during an update of " host " s"
			step_in[nj] = step; host_in[nj] = host
		} else if (seen && step > 2) {
			print "# host noise: guest clock stepped " up " -> " u[2] " outside any update"
			if (step > noise) noise = step
		}
		last = n; up = u[2]; seen = 1 }
		END {
			for (i = 1; i <= nj; i++)
				if (step_in[i] > noise && step_in[i] > host_in[i] + 2) {
					print "# " jumps[i]; bad = 1
				} else {
					print "# " jumps[i] ", no more than the host noise (" noise + 0 " s) or its host time + 2 s"
				}
			exit bad || !seen }' <(cat "$1/windows" 2>/dev/null; echo) <(console "$1")
}

# Three guests boot at once (TCG boots take a few seconds each).
"$GUEST" start "$W/ok" >/dev/null 2>"$W/ok.start" &
"$GUEST" start "$W/off" --share off >/dev/null 2>"$W/off.start" &
"$GUEST" start "$W/sb" --sandbox on,spawn=deny >/dev/null 2>"$W/sb.start" &
# QEMU 10.2.2, stock and patched, when qemu-build.sh has built them.
old=/opt/qemu-10.2.2/bin/qemu-system-x86_64
px=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
guests="ok off sb"
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
if [ -x "$croot$old" ]; then
	"$GUEST" start "$W/old" --prog "$old" >/dev/null 2>"$W/old.start" &
	guests="$guests old"
fi
if [ -x "$croot$px" ]; then
	"$GUEST" start "$W/px" --prog "$px" >/dev/null 2>"$W/px.start" &
	guests="$guests px"
	if [ -x "$croot$old" ]; then
		"$GUEST" start "$W/mix" --prog "$old" >/dev/null 2>"$W/mix.start" &
		guests="$guests mix"
	fi
fi
wait
echo "1..25"
for g in $guests; do
	wait_tick "$W/$g" 3 || { cat "$W/$g.start" "$W/$g/qemu.log" 2>/dev/null | diag; }
done
pid=$(cat "$W/ok/pid")

# --- a good update --------------------------------------------------------------
before=$(last_tick "$W/ok")
"$QMP" update -s "$W/ok/qmp.sock" --json-out "$W/u1.json" >"$W/u1.out" 2>&1
rc=$?
diag <"$W/u1.out"
after=$(last_tick "$W/ok")
check "update through cprx-qmp succeeds (exit $rc)" [ $rc = 0 ]
check "same PID after the update ($pid)" \
	[ "$(json "$W/u1.json" 'new_pid' 2>/dev/null)" = "$pid" -a -d /proc/"$pid" ]
grep -qz -- '-incoming' /proc/"$pid"/cmdline 2>/dev/null
check "the process runs the new image (its argv has -incoming)" [ $? = 0 ]
pause=$(json "$W/u1.json" 'pause_ms' 2>/dev/null)
echo "# pause ${pause:-?} ms (STOP->RESUME from QMP event timestamps), ticks $before -> $after"
check "pause reported: ${pause:-none} ms" \
	awk -v p="${pause:-x}" 'BEGIN { exit !(p + 0 > 0 && p + 0 < 10000) }'
wait_tick "$W/ok" "$((after + 10))" ram
rc=$?
check "guest ticks continue after the update, RAM re-checked (tick $(last_tick "$W/ok") > $after)" [ $rc = 0 ]
check "ticks without a gap across the update" ticks_continuous "$W/ok"
check "RAM pattern the guest wrote is intact after the update" \
	sh -c "grep -q '^ram ok' '$W/ok/serial.log' && ! grep -q '^ram BAD' '$W/ok/serial.log'"

# The updated QEMU can be updated again.
"$QMP" update -s "$W/ok/qmp.sock" --json-out "$W/u2.json" >"$W/u2.out" 2>&1
rc=$?
grep 'pause' "$W/u2.out" | diag
check "a second update of the updated QEMU (exit $rc, same PID)" \
	[ $rc = 0 -a "$(json "$W/u2.json" 'new_pid' 2>/dev/null)" = "$pid" ]

# --- refusals: the preflight stops them before the guest does ------------------
refused() {	# NAME PATTERN DIR -- cprx-qmp args
	local name=$1 pat=$2 dir=$3 t rc
	shift 4
	t=$(last_tick "$dir")
	"$QMP" update -s "$dir/qmp.sock" "$@" >"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	[ $rc = 2 ] && grep -q -- "$pat" "$W/$name.out" &&
		grep -q 'guest: running' "$W/$name.out" && wait_tick "$dir" "${t:-0}"
}
check "bad option in the new command line: refused in preflight, guest runs" \
	refused badopt 'invalid option' "$W/ok" -- -a -no-such-option
check "missing new binary: refused in preflight, guest runs" \
	refused nobin 'qemu-no-such-binary: No such file' "$W/ok" -- -b /usr/bin/qemu-no-such-binary
check "guest RAM share=off: refused in preflight, guest runs" \
	refused shareoff 'share=off' "$W/off" --
check "-sandbox on,spawn=deny: refused naming the sandbox, guest runs" \
	refused sandbox "exec refused by QEMU's sandbox" "$W/sb" --
all_good() { ticks_continuous "$1" && ! grep -q '^ram BAD' "$1/serial.log"; }
check "after the refusals the first guest still has no gap and intact RAM" all_good "$W/ok"

# --- another QEMU version: 10.2.2 -> 11.x -------------------------------------
if [[ " $guests " = *" old "* ]]; then
	check "10.2.2 -> 11.x with -machine pc: refused, the machine type would change" \
		refused oldalias 'machine type pc-i440fx-11' "$W/old" -- -b /usr/bin/qemu-system-x86_64
	t=$(last_tick "$W/old")
	"$QMP" update -s "$W/old/qmp.sock" -b /usr/bin/qemu-system-x86_64 --pin-machine \
		--json-out "$W/x.json" >"$W/x.out" 2>&1
	rc=$?
	grep -E 'update|pause|error|hint' "$W/x.out" | diag
	cross_ok() {	# each condition says so when it fails
		[ $rc = 0 ] || { echo "# cprx-qmp exit $rc"; return 1; }
		[ "$(json "$W/x.json" 'new_qemu_version')" != 10.2.2 ] ||
			{ echo "# still QEMU 10.2.2"; return 1; }
		[ "$(json "$W/x.json" 'new_pid')" = "$(cat "$W/old/pid")" ] ||
			{ echo "# a new PID"; return 1; }
		wait_tick "$W/old" "$((t + 10))" ram ||
			{ echo "# no tick and RAM check after tick $((t + 10))"; return 1; }
		all_good "$W/old"
	}
	check "10.2.2 -> 11.x with --pin-machine: same PID, ticks and RAM intact" cross_ok
else
	skip 2 "no QEMU 10.2.2 (qemu-integration/qemu-build.sh)"
fi

# --- QEMU 10.2.2 patched to use libcprx ---------------------------------------
# Children of QEMU: the old image's teardown helper (libcprx's keeper) until
# the new image has committed and reaped it.
children() { ps -o pid= --ppid "$1" | wc -l; }
if [[ " $guests " = *" px "* ]]; then
	pid=$(cat "$W/px/pid")
	t=$(last_tick "$W/px")
	"$QMP" update -s "$W/px/qmp.sock" --json-out "$W/p1.json" >"$W/p1.out" 2>&1
	rc=$?
	diag <"$W/p1.out"
	check "patched: update through cprx-qmp succeeds, same PID (exit $rc)" \
		[ $rc = 0 -a "$(json "$W/p1.json" 'new_pid' 2>/dev/null)" = "$pid" ]
	# The environment the new image was exec'd with stays in /proc.
	check "patched: the new QEMU was started by cprx_exec (CPRX_INCOMING, no QEMU_CPR_EXEC_STATE)" \
		sh -c "tr '\\0' '\\n' </proc/$pid/environ | grep -q '^CPRX_INCOMING=' &&
			! tr '\\0' '\\n' </proc/$pid/environ | grep -q '^QEMU_CPR_EXEC_STATE='"
	wait_tick "$W/px" "$((t + 10))" ram && all_good "$W/px"
	check "patched: ticks without a gap and RAM intact after the update" [ $? = 0 ]
	sleep 1
	check "patched: the old image's teardown helper was reaped ($(children "$pid") children left)" \
		[ "$(children "$pid")" = 0 ]
	"$QMP" update -s "$W/px/qmp.sock" --json-out "$W/p2.json" >"$W/p2.out" 2>&1
	rc=$?
	grep 'pause' "$W/p2.out" | diag
	check "patched: a second update (exit $rc, same PID)" \
		[ $rc = 0 -a "$(json "$W/p2.json" 'new_pid' 2>/dev/null)" = "$pid" ]
	# QEMU's own libcprx preflight, behind cprx-qmp's: a stock target would
	# boot without the VM's state.
	t=$(last_tick "$W/px")
	"$QMP" update -s "$W/px/qmp.sock" -b /usr/bin/qemu-system-x86_64 --pin-machine \
		--no-trial >"$W/p3.out" 2>&1
	rc=$?
	diag <"$W/p3.out"
	[ $rc = 3 ] && grep -q 'built without --enable-cprx' "$W/p3.out" &&
		grep -q 'before the guest stopped' "$W/p3.out" &&
		grep -q 'guest: running' "$W/p3.out" && wait_tick "$W/px" "${t:-0}" && all_good "$W/px"
	check "patched -> stock 11.x: refused by QEMU's libcprx preflight before the guest stopped" [ $? = 0 ]
else
	skip 6 "no patched QEMU 10.2.2 (qemu-integration/qemu-build.sh --cprx)"
fi
if [[ " $guests " = *" mix "* ]]; then
	pid=$(cat "$W/mix/pid")
	t=$(last_tick "$W/mix")
	"$QMP" update -s "$W/mix/qmp.sock" -b "$px" --json-out "$W/m1.json" >"$W/m1.out" 2>&1
	rc=$?
	grep -E 'update|pause' "$W/m1.out" | diag
	wait_tick "$W/mix" "$((t + 10))" ram && all_good "$W/mix" && [ $rc = 0 ] &&
		[ "$(json "$W/m1.json" 'new_pid')" = "$pid" ]
	check "stock 10.2.2 -> patched: the patched QEMU takes the state the stock way" [ $? = 0 ]
	t=$(last_tick "$W/mix")
	"$QMP" update -s "$W/mix/qmp.sock" --json-out "$W/m2.json" >"$W/m2.out" 2>&1
	rc=$?
	grep -E 'update|pause' "$W/m2.out" | diag
	wait_tick "$W/mix" "$((t + 10))" ram && all_good "$W/mix" && [ $rc = 0 ] &&
		tr '\0' '\n' </proc/"$pid"/environ | grep -q '^CPRX_INCOMING='
	check "then patched -> patched through libcprx: ticks and RAM intact" [ $? = 0 ]
	check "no QEMU error on the mixed guest's stderr" \
		sh -c "! tr -d '\\0' <'$W/mix/qemu.log' | grep -i 'error'"
	sleep 1
	check "no teardown helper left after the mixed updates" [ "$(children "$pid")" = 0 ]
else
	skip 4 "no stock and patched QEMU 10.2.2 (qemu-integration/qemu-build.sh [--cprx])"
fi
exit $((failed > 0))
