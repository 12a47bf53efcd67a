# Sourced by the guest halves of the kexec tests that run cprx-luod
# (luo-kexec-guest.sh, qemu-kexec-guest.sh), after checks.sh.  The caller
# sets stage (1|2), share (kept across the kexec), luod (the binary),
# CPRX_LUOD_SOCKET and failed=0.

. "$(dirname "${BASH_SOURCE[0]}")/luod.sh"
# cprx-luod, left running (a daemon alive at the jump holds the sessions),
# its records in SHARE/state and its log in SHARE/luod.STAGE.log.
start_luod() { luod_start "$luod" "$share/state" "$share/luod.$stage.log"; }
t_stage() {
	[ "${CPRX_VM_STAGE:-}" = "$stage" ] ||
		{ echo "CPRX_VM_STAGE is '${CPRX_VM_STAGE:-}', want $stage"; return 1; }
	echo "$CPRX_VM_KERNEL $(uname -r), /dev/liveupdate:" \
		"$([ -c /dev/liveupdate ] && echo yes || echo no)"
}
t_status() {	# EXTENDED-REGEX... every one must match a line of the status
	local st re
	st=$("$luod" status 2>&1) || { echo "$st"; return 1; }
	for re in "$@"; do
		grep -qE "$re" <<<"$st" || { echo "no '$re' in: $st"; return 1; }
	done
	echo "$st" | head -n 3
}
# A check (checks.sh) whose failure makes the stage fail.
run() { local out; out=$(check "$@"); echo "$out"; case $out in "CHECK fail"*) failed=1 ;; esac; }
