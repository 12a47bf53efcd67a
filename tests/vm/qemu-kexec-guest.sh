#!/bin/bash
# Runs inside the guest for qemu-kexec.sh, once in each stage of run.sh
# --kexec:
#   qemu-kexec-guest.sh 1|2 BUILD_DIR SHARE QEMU KERNEL_DIR
# QEMU is the patched QEMU's path inside the QEMU chroot, KERNEL_DIR the
# inner guest's kernel (kernels.sh cannot lock the cache in a guest); SHARE
# (read-write, bound into the chroot too) keeps cprx-luod's records, the
# migration file and the logs across the kexec; QEMU's QMP socket and the
# inner guest's console are in /tmp (a socket cannot live on the share).
# Prints "CHECK ok sN-NAME ..." / "CHECK fail sN-NAME: why" lines
# (tests/vm/checks.sh).
#
# Stage 1: cprx-luod (left running: it holds the session at the jump), the
# busybox guest of qemu-integration/guest.sh under the patched QEMU with
# CPRX_BACKEND=luo; once it ticks with its RAM pattern checked, a cpr-exec
# migration to a file on SHARE: QEMU hands guest RAM and its cpr state to
# the LUO session and quits.  Stage 2, after a research -> research kexec:
# the same QEMU command line with -incoming from the file takes the session
# back; the guest runs on (ticks go on from where they were, the pattern
# intact), the session is finished, QEMU logged nothing wrong.  Each boot's
# kernel log must be clean.  Exits 1 when a stage-1 check failed (no kexec).
set -u
stage=$1 build=$2 share=$3 PX=$4 kdir=$5
here=$(dirname "$0")
src=$(cd "$here/../.." && pwd)
. "$here/kernel-log.sh"
. "$here/checks.sh"
. "$here/luod-checks.sh"
CHECK_PREFIX=s$stage-
luod=$build/tools/cprx-luod
vm=/tmp/cprx-vm
# in /tmp: the chroot binds it, so QEMU reaches the daemon there too
export CPRX_LUOD_SOCKET=/tmp/cprx-luod.sock
export CPRX_QEMU_BINDS=$share
failed=0

qmp() { python3 "$here/qmp.py" "$vm/qmp.sock" "$@"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }
# The patched QEMU with libcprx's luo backend, the busybox guest in 128 MiB
# of memfd RAM (its console appended to SHARE/vm/serial.log); extra args.
start_qemu() {
	CPRX_BACKEND=luo "$src/qemu-integration/guest.sh" start "$vm" --mem 128M \
		--kernel-dir "$kdir" --prog "$PX" -- "$@" >"$share/pid.$stage" 2>"$share/start.$stage"
}
last_tick() { sed -n 's/^tick \([0-9]*\) .*/\1/p' "$vm/serial.log" | tail -n 1; }
# Waits up to SEC seconds (of the clock: under load a poll takes seconds
# too) for the console, after line FROM, to match RE.
wait_console() {	# FROM RE SEC
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		tail -n +"$1" "$vm/serial.log" 2>/dev/null | grep -qE "$2" && return 0
		sleep 1
	done
	echo "no '$2' in ${3}s; console: $(tail -n +"$1" "$vm/serial.log" | tail -n 3)"
	return 1
}

t_booted() {
	start_qemu || { cat "$share/start.$stage"; return 1; }
	# nested TCG in the KASAN kernel: 6 min at load 2-5, over 20 at load 10
	wait_console 1 '^ram ok ' 1800 || return 1
	grep -m1 '^CPRX-GUEST ready' "$vm/serial.log"
	echo "ticks to $(last_tick), $(grep -c '^ram ok' "$vm/serial.log") pattern checks ok"
}
# cpr-exec to a file: with CPRX_BACKEND=luo the patched QEMU hands guest
# RAM to the LUO session instead of exec'ing, and quits.
t_handed_over() {
	local pid st i
	pid=$(cat "$share/pid.$stage")
	qmp migrate-set-parameters "{\"mode\": \"cpr-exec\", \"cpr-exec-command\": [\"$PX\", \"-incoming\", \"file:$share/vm.state\"]}" >/dev/null ||
		return 1
	qmp migrate "{\"uri\": \"file:$share/vm.state\"}" >/dev/null || return 1
	for ((i = 0; i < 1200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		st=$(qmp query-migrate 2>/dev/null | field status 2>/dev/null)
		[ "$st" = failed ] && { qmp query-migrate; return 1; }
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "QEMU $pid still runs (migration: $st)"
		return 1
	fi
	grep -q "VM in LUO session 'qemu-cprx-demo' until the kexec" "$vm/qemu.log" ||
		{ echo "QEMU quit without handing the VM over: $(tail -n 3 "$vm/qemu.log")"; return 1; }
	# the console up to here: stage 2 looks at what comes after it
	last_tick >"$share/tick.before"
	echo "QEMU quit, migration file $(stat -c %s "$share/vm.state") bytes, last tick $(cat "$share/tick.before")"
}
t_resumed() {
	local st i
	start_qemu -incoming "file:$share/vm.state" || { cat "$share/start.$stage"; return 1; }
	for ((i = 0; i < 600; i++)); do
		st=$(qmp query-status 2>/dev/null | field status)
		[ "$st" = running ] && break
		kill -0 "$(cat "$share/pid.$stage")" 2>/dev/null || break
		sleep 0.2
	done
	[ "$st" = running ] || { echo "query-status: '$st'; $(tail -n 3 "$vm/qemu.log")"; return 1; }
	echo "query-status running"
}
# The guest's shell runs on: its counter goes on from the last tick before
# the kexec (a guest booted afresh would start at 1) and its pattern check
# passes again (the md5 it took at boot, of RAM the new QEMU never wrote).
t_ticks_on() {
	local from=1 before first
	before=$(cat "$share/tick.before")
	# a tick after the kexec, then a pattern check made after it (the one
	# pending at the stop may print first)
	wait_console "$from" '^tick [0-9]+ ' 900 || return 1
	local end=$((SECONDS + 900))
	until tr -d '\r' <"$vm/serial.log" |
		awk -v b="$before" '/^ram ok / && $3 + 0 > b { f = 1 } END { exit !f }'; do
		[ $SECONDS -lt $end ] ||
			{ echo "no pattern check after tick $before in 900s"; return 1; }
		sleep 1
	done
	first=$(tail -n +"$from" "$vm/serial.log" | sed -n 's/^tick \([0-9]*\) .*/\1/p' | head -n 1)
	tail -n +"$from" "$vm/serial.log" | grep -E '^(CPRX-GUEST ready|ram BAD|tick 1 )' &&
		{ echo "the guest restarted or its pattern broke"; return 1; }
	[ -n "$first" ] && [ "$first" -gt "$before" ] ||
		{ echo "first tick after the kexec '$first', before it $before; console:" \
			"$(head -n 6 "$vm/serial.log" | cat -v | tr '\n' '|')"; return 1; }
	echo "tick $before -> $first, to $(last_tick); $(tail -n +"$from" "$vm/serial.log" | grep -m1 '^ram ok')"
}
t_qemu_log() {
	local bad
	bad=$(tr -d '\0' <"$vm/qemu.log" | grep -iE 'error|warning') &&
		{ echo "$bad"; return 1; }
	echo "nothing"
}
t_quit() {
	local pid
	pid=$(cat "$share/pid.$stage")
	qmp quit >/dev/null
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	echo "QEMU $pid still runs"
	return 1
}

run stage t_stage
run luod start_luod
if [ "$stage" = 1 ]; then
	run booted t_booted
	run handed-over t_handed_over
	run status-held t_status '^0 qemu-cprx-demo held'
else
	run status-incoming t_status '^0 qemu-cprx-demo incoming'
	run resumed t_resumed
	run ticks-on t_ticks_on
	run status-finished t_status '^0$'
	run qemu-log t_qemu_log
	run quit t_quit
fi
cp "$vm/qemu.log" "$share/qemu.$stage.log" 2>/dev/null
cp "$vm/serial.log" "$share/serial.$stage.log" 2>/dev/null
run dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit $failed
