# Sourced by the guest halves of the kexec tests that run cprx-vmm --kexec
# against cprx-luod (luo-kexec-guest.sh, systemd-kexec-guest.sh): their
# checks of the sessions, which both run.  The caller sets
# stage (1|2), build (the build directory) and share (kept across the
# kexec: the VMMs' JSON lands in SHARE/NAME-UID.STAGE) first.  It brings
# in the checks (checks.sh, kernel-log.sh, luod-checks.sh) and sets what
# they use: CHECK_PREFIX, luod, vmm, CPRX_LUOD_SOCKET, failed.
_here=$(dirname "${BASH_SOURCE[0]}")
. "$_here/kernel-log.sh"
. "$_here/checks.sh"
. "$_here/luod-checks.sh"
CHECK_PREFIX=s$stage-
luod=$build/tools/cprx-luod
vmm=$build/tools/cprx-vmm
export CPRX_LUOD_SOCKET=/run/cprx-luod.sock
failed=0

as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups -- "$@"; }
# cprx-vmm --kexec NAME as UID, its JSON in SHARE/NAME-UID.STAGE; the status
run_vmm() {	# UID NAME [ARGS...]
	local u=$1 name=$2
	shift 2
	as_uid "$u" "$vmm" --kexec --name "$name" --ram 256M --json "$@" \
		>"$share/$name-$u.$stage" 2>&1
}
t_prepared() {	# UID NAME
	run_vmm "$1" "$2" || { tail -n 3 "$share/$2-$1.$stage"; return 1; }
	grep -q '"event":"kexec-prepared"' "$share/$2-$1.$stage"
}
t_resumed() {	# UID NAME
	run_vmm "$1" "$2"
	local rc=$? out=$share/$2-$1.$stage
	[ $rc = 0 ] && grep -q '"event":"update","ok":true,"generation":1,' "$out" &&
		grep -q '"backend":"luo"' "$out" && grep -q '"verify":"ok"}' "$out" &&
		{ grep -o '"verify":"[^"]*"' "$out" | head -n1; return 0; }
	echo "exit $rc: $(tail -n 2 "$out")"
	return 1
}
t_fresh() {	# UID NAME: a VMM of another uid gets no one's session
	run_vmm "$1" "$2" --updates 0
	local rc=$? out=$share/$2-$1.$stage
	[ $rc = 0 ] && grep -q '"event":"exit","generation":0,' "$out" &&
		! grep -q '"event":"update"' "$out" && { echo "fresh start"; return 0; }
	echo "exit $rc: $(tail -n 2 "$out")"
	return 1
}
t_gone() {	# UID NAME: exit 4, saying the state is gone and why
	run_vmm "$1" "$2"
	local rc=$? out=$share/$2-$1.$stage
	[ $rc = 4 ] && grep -q "state of session '$2'.* is gone: /dev/liveupdate is missing" "$out" &&
		{ grep -o '"error":"[^"]*"' "$out" | cut -c1-200; return 0; }
	echo "exit $rc: $(tail -n 2 "$out")"
	return 1
}
# (checks run in subshells: the daemon's pid is looked up)
# (comm, not argv[0], which is '@cprx-luod' under systemd; the readers
# are cprx-luod-conn)
luod_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = cprx-luod ] && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}
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
