#!/bin/bash
# QEMU tier (TAP): cprx-guard's verdict in cprx-qmp's preflight (check
# "guard"). One guest under the sid chroot's stock QEMU; `cprx-qmp update
# --preflight-only` with $CPRX_GUARD_STATUS pointing at hand-written guard
# status files (format in common/guard_reader.h; no BPF is loaded): no policy, QEMU
# not guarded, guarded by uid / cgroup / binary without an allow rule for
# the new binary (refused, the guest keeps running), allowed by the rule
# naming the binary's device and inode in QEMU's root, trace-only (a
# warning), malformed and stale status files (warnings), armed-only with a
# stock QEMU (refused).
#
#   tests/qemu/guard-preflight.sh BUILD_DIR
#
# SKIPs (1..0 # SKIP reason) when cprx-qmp was not built, without root, or
# when the chroot or the kernel cannot be had (no network on a cold cache).
set -uo pipefail
build=${1:?usage: guard-preflight.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup guard

echo "1..13"
one_guest
check "the guest boots under the chroot's stock QEMU and ticks" [ -n "$(last_tick "$W/g")" ]
bin=/usr/bin/qemu-system-x86_64
# The new binary (the running one) as the guard sees it: device and inode
# through QEMU's root, as cprx-guard load resolves its allow rules.
binid=$(stat -L -c '%Hd:%Ld:%i' "/proc/$pid/root$bin" 2>/dev/null)
touch "$W/other"
otherid=$(stat -c '%Hd:%Ld:%i' "$W/other")
qcg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)
echo "# QEMU pid $pid, $bin is $binid in its root, its cgroup ${qcg:-?}"
mkdir -p "$W/bpffs"

# A status file as cprx-guard writes it: STATE (enforcing|trace-only), then
# the selector and rule lines given. "pid 0": pinned in bpffs, no loader to
# outlive.
status() {	# FILE STATE [LINE...]
	local f=$1 state=$2
	shift 2
	{
		echo "cprx-guard 1"
		echo "state $state"
		[ "$state" = enforcing ] ||
			echo "why the kernel refused the BPF LSM program (EPERM)"
		echo "mode enforce"
		echo "pid 0"
		echo "pinned $W/bpffs"
		echo "policy $W/guard.policy"
		printf '%s\n' "$@"
	} >"$f"
}

# cprx-qmp update --preflight-only with the status file; output in
# $W/NAME.out, report in $W/NAME.json, exit status in $rc, the guard's
# line in $line.
pre() {	# NAME STATUS-FILE [cprx-qmp args]
	local name=$1 st=$2
	shift 2
	CPRX_GUARD_STATUS=$st "$QMP" update -s "$W/g/qmp.sock" --preflight-only --no-trial \
		--json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	line=$(grep '^  preflight guard ' "$W/$name.out")
}
# The guard check in the JSON report: "ok warn" (True/False).
guard_json() {
	python3 -c 'import json, sys
c = [c for c in json.load(open(sys.argv[1]))["preflight"] if c["check"] == "guard"][0]
print(c["ok"], c["warn"])' "$1" 2>/dev/null
}
# Passed (exit 0), the guard's line says LEVEL (ok|warn) and matches PATTERN.
passed() {	# NAME LEVEL PATTERN
	local want
	want=$([ "$2" = warn ] && echo "True True" || echo "True False")
	[ $rc = 0 ] && [[ $line = "  preflight guard     $2 "* ]] &&
		grep -q -- "$3" <<<"$line" && [ "$(guard_json "$W/$1.json")" = "$want" ]
}
# Refused (exit 2) on the guard's FAIL matching PATTERN, nothing stopped,
# the guest still ticks.
refused() {	# NAME PATTERN
	[ $rc = 2 ] && [[ $line = "  preflight guard     FAIL "* ]] &&
		grep -q -- "$2" <<<"$line" && grep -q 'update refused: preflight' "$W/$1.out" &&
		grep -q 'guest: running' "$W/$1.out" &&
		[ "$(guard_json "$W/$1.json")" = "False False" ] && wait_tick "$W/g" "${t:-0}"
}

# (1) no status file: no policy.
pre none "$W/no-such-status"
check "no status file: guard ok, no policy active (exit $rc)" \
	passed none ok 'no cprx-guard policy active'

# (2) enforcing, QEMU guarded by uid 0, no allow rule for its binary.
status "$W/deny" enforcing "guard-uid 0" "allow 1 $otherid $W/other"
t=$(last_tick "$W/g")
pre deny "$W/deny"
check "enforcing, guarded by uid 0, binary not allowed: refused naming the guard and $bin, guest runs (exit $rc)" \
	refused deny "cprx-guard (BPF LSM, enforcing) refuses exec of $bin (binary $binid) by QEMU (pid $pid, guarded by uid 0): no allow rule matches"
check "the refusal's hint says how to allow-list the binary in cprx-guard's policy" \
	grep -q "hint: add 'allow .*qemu-system-x86_64' to the cprx-guard policy" "$W/deny.out"

# (3) the same with the rule for the binary's device and inode in QEMU's root.
status "$W/allow" enforcing "guard-uid 0" "allow 1 $otherid $W/other" \
	"allow 2 $binid /proc/$pid/root$bin"
pre allow "$W/allow"
check "enforcing, guarded by uid 0, binary allowed: guard ok naming rule 2 (exit $rc)" \
	passed allow ok "allows exec of $bin (binary $binid) by QEMU (pid $pid, guarded by uid 0): rule 2 "

# (4) trace-only, binary not allowed: a warning, not a refusal.
status "$W/trace" trace-only "guard-uid 0" "allow 1 $otherid $W/other"
pre trace "$W/trace"
check "trace-only, binary not allowed: warn, would be refused if enforced, not refused (exit $rc)" \
	passed trace warn 'would refuse exec.*would be refused if enforced'

# (5) a malformed status file: a warning naming the line.
status "$W/bad" enforcing "guard-uid 0" "allow 1 not-an-inode $bin"
pre bad "$W/bad"
check "malformed status file: warn naming the line, not refused (exit $rc)" \
	passed bad warn "ignored: line 8 ('allow') is malformed"

# (6) armed-only, enforcing, binary allowed: a stock QEMU arms no session.
status "$W/armed" enforcing "armed-only 1" "guard-uid 0" "allow 1 $binid /proc/$pid/root$bin"
t=$(last_tick "$W/g")
pre armed "$W/armed"
check "armed-only, enforcing, binary allowed, stock QEMU: refused naming armed-only, guest runs (exit $rc)" \
	refused armed 'rule 1 .* matches, but the policy is armed-only .*no libcprx in its maps'
check "the armed-only hint names --enable-cprx and /dev/cprx" \
	grep -q 'hint: use a QEMU built with --enable-cprx.*/dev/cprx.*drop armed-only' "$W/armed.out"

# Other selectors and states.
status "$W/unguarded" enforcing "guard-uid 4242" "allow 1 $otherid $W/other"
pre unguarded "$W/unguarded"
check "policy guarding another uid: guard ok, QEMU not guarded (exit $rc)" \
	passed unguarded ok "QEMU (pid $pid) is not guarded by the policy"
status "$W/cgroup" enforcing "guard-cgroup ${qcg:-/} /sys/fs/cgroup${qcg%/}" \
	"allow 1 $otherid $W/other"
t=$(last_tick "$W/g")
pre cgroup "$W/cgroup"
check "guarded by QEMU's cgroup (${qcg:-?}), binary not allowed: refused naming the cgroup (exit $rc)" \
	refused cgroup "guarded by cgroup /sys/fs/cgroup"
status "$W/exe" enforcing "guard-exe $binid /proc/$pid/root$bin" "allow 1 $otherid $W/other"
t=$(last_tick "$W/g")
pre exe "$W/exe"
check "guarded by QEMU's running binary, binary not allowed: refused naming it (exit $rc)" \
	refused exe "guarded by its binary /proc/$pid/root$bin"
# A loader that is gone: a pid that was just reaped.
sleep 0 &
dead=$!
wait $dead
status "$W/stale" enforcing "guard-uid 0"
sed -i "s/^pid 0$/pid $dead/" "$W/stale"
pre stale "$W/stale"
check "stale status file (loader pid $dead gone): warn, not refused (exit $rc)" \
	passed stale warn "stale: its loader (pid $dead) is gone"
exit $((failed > 0))
