#!/bin/bash
# Runs inside the guest for luo-kexec.sh, once in each stage of run.sh
# --kexec:
#   luo-kexec-guest.sh 1|2 BUILD_DIR SHARE
# SHARE (shared read-write with the host) keeps cprx-luod's records and
# logs across the kexec.  Prints "CHECK ok sN-NAME ..." / "CHECK fail
# sN-NAME: why" lines (tests/vm/checks.sh).
#
# Stage 1: cprx-luod (left running: it must hold the sessions at the
# jump) owns /dev/liveupdate (a second opener gets EBUSY); two cprx-vmm
# --kexec of 256 MiB, root's vm-a and nobody's vm-b, prepared; the status
# lists both, nobody's only its own; a VMM that also preserves a device fd
# is refused by preflight naming its token.  Stage 2, in a kernel with
# LUO: the status verb lists both unfinished; a VMM of a third uid asking
# for either name starts afresh (it cannot retrieve them); root's and
# nobody's VMMs resume theirs (RAM and device state verified, generation
# 1), the status listing the one not yet resumed; a session held when
# the daemon stops is dropped, and the daemon says so.  In a kernel
# without LUO: both VMMs say their state is gone and why and exit 4, the
# status lists both unfinished, the third uid starts afresh.  Each boot's
# kernel log must be clean, KHO's and LUO's warnings included.  Exits 1 when a stage-1 check failed (no kexec).
stage=$1 build=$2 share=$3
. "$(dirname "$0")/luo-vmm.sh"

# (checks run in subshells: the daemon's pid is looked up)
luod_pid() { pidof -s cprx-luod; }
# The daemon alone has /dev/liveupdate (from its first request on): the
# device takes one opener.
t_owns_device() {
	local luod_pid
	luod_pid=$(luod_pid) || { echo "no cprx-luod running"; return 1; }
	ls -l "/proc/$luod_pid/fd" | grep -q /dev/liveupdate ||
		{ echo "cprx-luod ($luod_pid) has no /dev/liveupdate open"; return 1; }
	local err
	err=$(sh -c 'exec 9<>/dev/liveupdate' 2>&1) && { echo "a second open worked"; return 1; }
	grep -q 'resource busy' <<<"$err" || { echo "second open: $err"; return 1; }
	echo "a second opener: $err"
}
# nobody's status lists its own session only
t_status_nobody() {
	local st
	st=$(as_uid 65534 "$luod" status 2>&1) || { echo "$st"; return 1; }
	[ "$(head -n1 <<<"$st")" = 1 ] && grep -q '^65534 vm-b held' <<<"$st" ||
		{ echo "nobody's status: $st"; return 1; }
	echo "$st"
}
# A kind LUO cannot keep (a device fd) is refused before the guest stops.
t_device_refused() {
	local out=$share/vm-c-0.$stage rc
	"$vmm" --kexec --name vm-c --ram 16M --json --inject kexec-device >"$out" 2>&1
	rc=$?
	[ $rc = 3 ] && grep -q 'luo:dev.eventfd' "$out" &&
		{ grep -o '"error":"[^"]*"' "$out" | cut -c1-200; return 0; }
	echo "exit $rc (want 3, naming luo:dev.eventfd): $(tail -n 2 "$out")"
	return 1
}
# A session held when the daemon stops is dropped, and the log says so.
t_stop_drops() {
	local luod_pid
	t_prepared 0 vm-d || return 1
	luod_pid=$(luod_pid) || { echo "no cprx-luod running"; return 1; }
	kill "$luod_pid" && wait_gone "$luod_pid" ||
		{ echo "cprx-luod ($luod_pid) did not stop"; return 1; }
	grep 'session cprx-0-vm-d is dropped' "$share/luod.$stage.log" ||
		{ echo "not said: $(tail -n 3 "$share/luod.$stage.log")"; return 1; }
}
wait_gone() { for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

run stage t_stage
if [ "$stage" = 1 ]; then
	run luod start_luod
	run prepare-root t_prepared 0 vm-a
	run luod-owns-device t_owns_device	# opened at the first request
	run prepare-nobody t_prepared 65534 vm-b
	run status-held t_status '^0 vm-a held' '^65534 vm-b held'
	run status-nobody t_status_nobody
	run preflight-device t_device_refused
elif [ -c /dev/liveupdate ]; then
	run luod start_luod
	run status-unfinished t_status '^0 vm-a incoming' '^65534 vm-b incoming'
	run other-uid-a t_fresh 65533 vm-a
	run other-uid-b t_fresh 65533 vm-b
	run resume-root t_resumed 0 vm-a
	run status-one-left t_status '^1$' '^65534 vm-b incoming'
	run resume-nobody t_resumed 65534 vm-b
	run status-none-left t_status '^0$'
	run stop-drops t_stop_drops
else
	run luod start_luod
	run gone-root t_gone 0 vm-a
	run gone-nobody t_gone 65534 vm-b
	run status-unfinished t_status '^0 vm-a incoming' '^65534 vm-b incoming'
	run other-uid-a t_fresh 65533 vm-a
fi
run dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit $failed
