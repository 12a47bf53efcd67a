#!/bin/bash
# Runs inside the guest for systemd-kexec.sh, once in each stage of run.sh
# --systemd --kexec:
#   systemd-kexec-guest.sh 1|2 BUILD_DIR SHARE [CPRX_KO]
# Prints "CHECK ok sN-NAME ..." / "CHECK fail sN-NAME: why" lines
# (tests/vm/checks.sh); exits 1 when a stage-1 check of the sessions failed
# (no kexec then).
#
# Stage 1, systemd PID 1, the units installed as a package would install
# them (systemd-kexec.sh's tree): cprx-luod.socket listens from boot, the
# first VMM's connection starts cprx-luod.service (spared by the OOM
# killer), which alone has /dev/liveupdate open; root's and nobody's
# cprx-vmm --kexec hold their sessions; the status lists both, nobody's
# only its own; a VMM that also preserves a device fd is refused by
# preflight naming its token.  Then cprx-guard.service as
# deployed (with CPRX_KO: cprx.ko installed where modprobe finds it, not
# loaded): it fails without a policy; with an armed-only policy it starts
# and enforces; a reload with a broken policy fails and the old guard
# stays; a stop detaches.  Then the guard as vm-guard-kexec checks it
# across the kexec (tests/guard/kexec-guest.sh: loaded as the unit loads
# it, and a second one whose status file survives; in stage 2 neither
# may say ENFORCING, and a load enforces again).  `systemctl isolate` to a target without
# basic.target (as rescue.target) leaves the daemon and its sessions
# alone.  The harness then runs `systemctl kexec`.
# Stage 2 (the harness's init, no systemd): the status lists both
# unfinished; a VMM of a third uid asking for either name starts afresh;
# a new cprx-luod gives each VMM its session back, RAM and device state
# verified, generation 1, the status listing the one not yet resumed; a
# session held when the daemon stops is dropped, and the daemon says so.
# These are the session checks vm-kexec makes without systemd (luo-vmm.sh
# has them), so CI runs them here, in one boot.
stage=$1 build=$2 share=$3 ko=${4:-}
. "$(dirname "$0")/luo-vmm.sh"
guard=/usr/local/sbin/cprx-guard
export CPRX_GUARD_STATUS=/run/cprx-guard/status
policy=/etc/cprx/guard.policy

t_systemd() {	# PID 1 is systemd and the boot is over
	local st
	[ "$(cat /proc/1/comm)" = systemd ] || { echo "PID 1 is $(cat /proc/1/comm)"; return 1; }
	st=$(timeout 300 systemctl is-system-running --wait)
	case $st in
	running) echo "$st" ;;
	degraded) echo "$st: $(systemctl --failed --no-legend --plain | cut -d' ' -f1 | paste -sd' ')" ;;
	*) echo "is-system-running: $st"; return 1 ;;
	esac
}
state() { systemctl show -P ActiveState "$1"; }
t_listening() {	# enabled: listening from boot, the daemon not yet started
	[ "$(state cprx-luod.socket)" = active ] && [ "$(state cprx-luod.service)" = inactive ] &&
		[ -S /run/cprx-luod.sock ] &&
		{ echo "socket active, service inactive"; return 0; }
	echo "socket $(state cprx-luod.socket), service $(state cprx-luod.service)"
	return 1
}
t_activated() {	# started by the socket, argv[0] '@cprx-luod', spared by the OOM killer
	local pid argv0 adj oom
	pid=$(systemctl show -P MainPID cprx-luod.service)
	argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)
	adj=$(cat "/proc/$pid/oom_score_adj" 2>/dev/null)
	oom=$(systemctl show -P OOMPolicy cprx-luod.service)
	[ "$(state cprx-luod.service)" = active ] && [ "$argv0" = @cprx-luod ] &&
		[ "$adj" = -900 ] && [ "$oom" = continue ] &&
		{ echo "pid $pid, argv[0] $argv0, oom_score_adj $adj, OOMPolicy $oom, $(systemctl show -p TriggeredBy -p Requires cprx-luod.service | paste -sd' ')"; return 0; }
	echo "service $(state cprx-luod.service), pid $pid, argv[0] '$argv0', oom_score_adj '$adj', OOMPolicy '$oom'"
	journalctl -b -u cprx-luod.service --no-pager -q | tail -n 5
	return 1
}
t_isolate() {	# `systemctl isolate` to a rescue-like target keeps the daemon
	local pid=$1
	systemctl isolate cprx-test-rescue.target 2>&1 || return 1
	[ "$(state cprx-luod.service)" = active ] &&
		[ "$(systemctl show -P MainPID cprx-luod.service)" = "$pid" ] &&
		t_status '^0 vm-a held' '^65534 vm-b held' >/dev/null &&
		{ echo "cprx-luod still pid $pid, both sessions held"; return 0; }
	echo "service $(state cprx-luod.service), pid $(systemctl show -P MainPID cprx-luod.service) (was $pid)"
	return 1
}

# --- cprx-guard.service ---------------------------------------------------
# the last lines cprx-guard itself wrote to the journal
journal() { journalctl -b -u cprx-guard.service -t cprx-guard --no-pager -q -o cat | tail -n "${1:-4}"; }
t_guard_no_policy() {	# no policy: the start fails, the unit is failed
	local rc st
	rm -f "$policy"
	systemctl start cprx-guard.service 2>&1
	rc=$?
	st=$(state cprx-guard.service)
	systemctl reset-failed cprx-guard.service 2>/dev/null
	[ $rc != 0 ] && [ "$st" = failed ] && { journal 2 | head -n 1; return 0; }
	echo "systemctl start: exit $rc, unit $st ($(systemctl show -P ConditionResult cprx-guard.service) condition)"
	return 1
}
# an armed-only policy for a cgroup no process is in
write_policy() {	# EXTRA-LINE...
	mkdir -p /etc/cprx /sys/fs/cgroup/cprx-unit-test
	{
		echo "guard-cgroup /sys/fs/cgroup/cprx-unit-test"
		echo "allow /usr/bin/true"
		printf '%s\n' "$@"
	} >"$policy"
}
t_guard_module() {	# cprx.ko installed, not loaded: the unit loads it first
	local rc
	[ ! -d /sys/module/cprx ] || { echo "cprx.ko is loaded already"; return 1; }
	write_policy "armed-only yes"
	systemctl start cprx-guard.service 2>&1
	rc=$?
	[ $rc = 0 ] && [ -d /sys/module/cprx ] && "$guard" status | grep -q 'armed-only' &&
		{ echo "started, cprx.ko loaded"; return 0; }
	echo "systemctl start: exit $rc, unit $(state cprx-guard.service), cprx.ko" \
		"$([ -d /sys/module/cprx ] && echo loaded || echo 'not loaded'):"
	journal 3
	return 1
}
t_guard_start() {	# with a policy: active, enforcing (after the check above)
	if [ "$(state cprx-guard.service)" != active ]; then
		# the check above failed: what follows needs a guard
		systemctl reset-failed cprx-guard.service
		modprobe cprx
		systemctl start cprx-guard.service || { journal; return 1; }
	fi
	"$guard" status | grep -q 'ENFORCING (BPF LSM)' || { "$guard" status; return 1; }
	grep -q "^policy $policy" "$CPRX_GUARD_STATUS" || { cat "$CPRX_GUARD_STATUS"; return 1; }
	"$guard" status | grep -m1 ENFORCING
}
t_guard_reload_broken() {	# fails; the old guard stays, enforcing
	local rc
	cp "$policy" "$policy.good"
	printf 'guard-cgroup /sys/fs/cgroup/cprx-unit-test\nallow /nonexistent/vmm\n' >"$policy"
	systemctl reload cprx-guard.service 2>&1
	rc=$?
	cp "$policy.good" "$policy"
	[ $rc != 0 ] && [ "$(state cprx-guard.service)" = active ] &&
		"$guard" status | grep -q 'ENFORCING (BPF LSM)' &&
		grep -q ' /usr/bin/true$' "$CPRX_GUARD_STATUS" &&
		! grep -q /nonexistent "$CPRX_GUARD_STATUS" &&
		{ echo "reload exit $rc, the old policy enforcing: $(journal 1)"; return 0; }
	echo "reload exit $rc, unit $(state cprx-guard.service)"
	"$guard" status 2>&1 | head -n 3
	return 1
}
t_guard_stop() {	# detached: no pins, no status
	systemctl stop cprx-guard.service 2>&1 || return 1
	[ ! -e /sys/fs/bpf/cprx-guard ] && [ ! -e "$CPRX_GUARD_STATUS" ] &&
		{ "$guard" status 2>&1 | head -n 1; return 0; }
	ls /sys/fs/bpf; "$guard" status 2>&1 | head -n 3
	return 1
}
install_ko() {	# where modprobe finds it (the harness's /lib/modules is writable)
	local d=/lib/modules/$(uname -r)/updates
	mkdir -p "$d" && cp "$ko" "$d/cprx.ko" && depmod -a
}

run stage t_stage
if [ "$stage" = 1 ]; then
	run systemd t_systemd
	run socket-listening t_listening
	run prepare-root t_prepared 0 vm-a
	run socket-activated t_activated
	run luod-owns-device t_owns_device	# opened at the first request
	run prepare-nobody t_prepared 65534 vm-b
	run status-held t_status '^0 vm-a held' '^65534 vm-b held'
	run status-nobody t_status_nobody
	run preflight-device t_device_refused
	# the guard's checks do not stop the kexec: its sessions are held
	if [ -n "$ko" ]; then
		sessions=$failed
		check guard-no-policy t_guard_no_policy
		install_ko
		check guard-module t_guard_module
		check guard-start t_guard_start
		check guard-reload-broken t_guard_reload_broken
		check guard-stop t_guard_stop
		failed=$sessions
	fi
	# the guard across the kexec, as vm-guard-kexec (by hand) checks it
	[ -x "$build/bpf/cprx-guard" ] &&
		bash "$(dirname "$0")/../guard/kexec-guest.sh" 1 "$build" "$share" s1-guard-kexec-
	run isolate t_isolate "$(systemctl show -P MainPID cprx-luod.service)"
else
	[ -x "$build/bpf/cprx-guard" ] &&
		bash "$(dirname "$0")/../guard/kexec-guest.sh" 2 "$build" "$share" s2-guard-kexec-
	run luod start_luod
	run status-unfinished t_status '^0 vm-a incoming' '^65534 vm-b incoming'
	run other-uid-a t_fresh 65533 vm-a
	run other-uid-b t_fresh 65533 vm-b
	run resume-root t_resumed 0 vm-a
	run status-one-left t_status '^1$' '^65534 vm-b incoming'
	run resume-nobody t_resumed 65534 vm-b
	run status-none-left t_status '^0$'
	run stop-drops t_stop_drops
fi
check dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit $failed
