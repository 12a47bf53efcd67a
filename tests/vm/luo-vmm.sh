# Sourced by the guest halves of the kexec tests that run cprx-vmm --kexec
# against cprx-luod (luo-kexec-guest.sh, systemd-kexec-guest.sh), which set
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
