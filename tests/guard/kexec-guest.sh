#!/bin/bash
# The guest's half of tests/guard/kexec.sh, one script for both stages of
# a run.sh --kexec run; prints CHECK lines (tests/vm/checks.sh).
#
#   kexec-guest.sh 1|2 BUILD_DIR SHARE [CHECK_PREFIX]
#
# CHECK_PREFIX (default sN-) names the checks apart when another stage
# script runs this one (vm-systemd-kexec's, under systemd).
#
# Stage 1: the guard loaded as cprx-guard.service loads it (pinned, enforcing,
# default status file), and a second pinned guard whose status file lives in
# SHARE (which survives the kexec, as a $CPRX_GUARD_STATUS on a disk would).
# Stage 2, after the kexec: BPF programs and pins died with the old kernel;
# neither status may say ENFORCING, nor libcprx's reader predict a refusal.
# Then the unit's load again, enforcing again.  Each boot's log clean.
set -u
stage=$1 B=$(cd "$2" && pwd) SHARE=$3 prefix=${4:-s$1-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../vm/checks.sh"
. "$HERE/../vm/kernel-log.sh"
G=$B/bpf/cprx-guard
CG=/sys/fs/cgroup/cprx-guard-kexec
KEPT=$SHARE/kept.status		# a status file outside /run
KEPT_PINS=/sys/fs/bpf/cg-kexec-kept
OTHER=/tmp/other-true		# /usr/bin/true's bytes, another inode: not allowed
CHECK_PREFIX=$prefix

in_cg() { bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
# exec of a non-allowed binary from the guarded cgroup: EPERM
refused() {
	local out rc
	out=$(in_cg "$OTHER" 2>&1); rc=$?
	echo "rc $rc: $out"
	[ $rc != 0 ] && [[ $out == *"Operation not permitted"* ]]
}
# and an allowed one runs
allowed() { in_cg /usr/bin/true; }
status_says() {	# STATUS_FILE EXIT TEXT: cprx-guard status exits EXIT, says TEXT
	local out rc
	out=$(CPRX_GUARD_STATUS=$1 "$G" status 2>&1); rc=$?
	echo "$out" | head -n 3
	[ $rc = "$2" ] && [[ $out == *"$3"* ]] && [[ $out != *ENFORCING* ]]
}
enforcing() {	# STATUS_FILE PIN_DIR: cprx-guard status says ENFORCING, pinned there
	local out
	out=$(CPRX_GUARD_STATUS=$1 "$G" status 2>&1) || { echo "$out"; return 1; }
	echo "$out" | head -n 1
	[[ $out == *"ENFORCING (BPF LSM)"* && $out == *"pinned in $2"* ]]
}
verdict_is() {	# STATUS_FILE VERDICT: libcprx's prediction for OTHER, in the cgroup
	local out
	out=$(CPRX_GUARD_STATUS=$1 in_cg "$G" check "$OTHER" 2>&1)
	echo "$out"
	[[ $out == "$OTHER: $2:"* ]]
}
unit_load() {	# as cprx-guard.service's ExecStart: its canary refused
	"$G" load --pin --replace --require-enforce --policy "$SHARE/guard.policy" |
		grep 'canary refused'
}
kept_load() {	# a second guard, its status outside /run
	CPRX_GUARD_STATUS=$KEPT "$G" load --pin --pin-dir "$KEPT_PINS" \
		--require-enforce --policy "$SHARE/guard.policy" | grep 'canary refused'
}

mkdir -p "$CG"
cp /usr/bin/true "$OTHER"
check lsm-bpf grep -qw bpf /sys/kernel/security/lsm
# the unit sets no $CPRX_GUARD_STATUS: its status is the default, on /run
check status-path bash -c "'$G' --help 2>&1 | grep -o '(/run/cprx-guard/status' && findmnt -n -o FSTYPE /run | grep -x tmpfs"

if [ "$stage" = 1 ]; then
	# cprx-guard allowed too: its `check` runs in the guarded cgroup
	printf 'guard-cgroup %s\nallow /usr/bin/true\nallow %s\nmode enforce\n' \
		"$CG" "$G" >"$SHARE/guard.policy"
	check unit-load-canary unit_load
	check status-enforcing enforcing /run/cprx-guard/status /sys/fs/bpf/cprx-guard
	check eperm refused
	check allowed-runs allowed
	check verdict-deny verdict_is /run/cprx-guard/status deny
	check kept-load-canary kept_load
	check kept-status-enforcing enforcing "$KEPT" "$KEPT_PINS"
	check kept-verdict-deny verdict_is "$KEPT" deny
	check dmesg klog_boot_trouble 'KHO|kho|luo'
	exit 0
fi

# --- stage 2: the kexec'd kernel -------------------------------------------------
check kexec-happened bash -c "[ \"\$CPRX_VM_STAGE\" = 2 ] && grep -q cprx_vm.stage=2 /proc/cmdline && uname -r"
check no-status-file test ! -e /run/cprx-guard/status
check no-pins bash -c "! ls /sys/fs/bpf/cprx-guard /sys/fs/bpf/cg-kexec-kept 2>/dev/null"
check status-not-loaded status_says /run/cprx-guard/status 3 "not loaded"
check verdict-no-guard verdict_is /run/cprx-guard/status no-guard
check kept-status-stale status_says "$KEPT" 3 "another boot"
check kept-verdict-no-guard verdict_is "$KEPT" no-guard
check not-refused-before-load allowed
check exec-not-refused-before-load in_cg "$OTHER"
check unit-load-canary unit_load
check status-enforcing enforcing /run/cprx-guard/status /sys/fs/bpf/cprx-guard
check eperm refused
check allowed-runs allowed
check verdict-deny verdict_is /run/cprx-guard/status deny
"$G" detach >/dev/null 2>&1
check detached bash -c "! ls /sys/fs/bpf/cprx-guard 2>/dev/null && [ ! -e /run/cprx-guard/status ]"
check dmesg klog_boot_trouble 'KHO|kho|luo'
exit 0
