#!/bin/bash
# QEMU tier (TAP): a migration file that someone else left at --state's
# path (by default /tmp/cprx-qmp-PID.state, a name any local user can
# guess) is refused by the preflight's "state" check, before the guest
# stops: a symlink (QEMU's O_TRUNC would follow it and write the devices'
# state over its target, the rescue would load whatever is there), a file
# of another user (who could read the state or change it before a load),
# a file with a second hard link.  Its target is left as it was.  A file
# of ours there passes, as before.
#
#   tests/qemu/state-file.sh BUILD_DIR
#
# SKIPs as the QEMU tier does.
set -uo pipefail
build=${1:?usage: state-file.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup state

echo "1..6"
one_guest
check "the guest boots under the chroot's stock QEMU and ticks" [ -n "$(last_tick "$W/g")" ]
# The default path, as QEMU (in its root) and as we see it.
state=/tmp/cprx-qmp-$pid.state
hs=/proc/$pid/root$state
victim=$hs.victim
echo precious >"$victim"

# cprx-qmp update --preflight-only (rescue references taken too); exit
# status in $rc, the state check's line in $line.
pre() {	# NAME
	"$QMP" update -s "$W/g/qmp.sock" --preflight-only --no-trial \
		>"$W/$1.out" 2>&1
	rc=$?
	diag <"$W/$1.out"
	line=$(grep '^  preflight state ' "$W/$1.out")
}
# Refused (exit 2) on the state check naming WHY; the victim intact, the
# planted file still there (not ours to remove), the guest running.
refused() {	# NAME WHY
	[ $rc = 2 ] && [[ $line = "  preflight state     FAIL "* ]] &&
		grep -q -- "$2" <<<"$line" && [ "$(cat "$victim")" = precious ] &&
		[ -e "$hs" ] && grep -q 'guest: running' "$W/$1.out"
}

ln -s "$victim" "$hs"
pre link
check "a symlink at $state is refused, its target untouched (exit $rc)" \
	refused link 'a symbolic link'
rm -f "$hs"

echo planted >"$hs"
chown 65534:65534 "$hs"
chmod 666 "$hs"
pre foreign
check "a file of another user at $state is refused (exit $rc)" \
	refused foreign 'owned by another user'
rm -f "$hs"

ln "$victim" "$hs"
pre hardlink
check "a second hard link of another file at $state is refused (exit $rc)" \
	refused hardlink 'other hard links'
rm -f "$hs"

: >"$hs"
pre ours
passed() { [ $rc = 0 ] && [[ $line = "  preflight state     ok "* ]]; }
check "a file of ours at $state passes the state check (exit $rc)" passed
rm -f "$hs"
check "the guest still ticks" wait_tick "$W/g" "$(last_tick "$W/g")"
