#!/bin/bash
# QEMU tier (TAP): the rescue starts the previous QEMU as the user it ran
# as, not as cprx-qmp (root).  A stock QEMU run as nobody (setpriv) is
# updated by root's cprx-qmp into a new binary that exits 1 when given the
# state; the rescued QEMU must run with nobody's uids, gids and no
# supplementary groups, and the guest on.  Without this a user whose QEMU
# root updates gets the user's binary, environment (LD_PRELOAD...) and
# working directory run as root by killing the new QEMU, which is theirs.
#
#   tests/qemu/rescue-creds.sh BUILD_DIR
#
# SKIPs as the QEMU tier does, and when the chroot has no setpriv.
set -uo pipefail
build=${1:?usage: rescue-creds.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup creds

croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
[ -x "$croot/usr/bin/setpriv" ] || skip_all "no setpriv in the QEMU chroot"
q=/usr/bin/qemu-system-x86_64
nobody=65534
# $W is bound into the chroot (/tmp): the guest's files must be nobody's,
# and like a /tmp nobody may make files in it (the default --state).
chmod 1777 "$W"
mkdir -p "$W/g" && chown "$nobody:$nobody" "$W/g"
printf '#!/bin/sh\nexec setpriv --reuid=%s --regid=%s --clear-groups %s "$@"\n' \
	"$nobody" "$nobody" "$q" >"$W/as-nobody.sh"
printf '#!/bin/sh\ncase " $* " in *" -incoming file:"*) echo "wrapper: exit 1" >&2; exit 1 ;; esac\nexec %s "$@"\n' \
	"$q" >"$W/exit1.sh"
chmod 755 "$W/as-nobody.sh" "$W/exit1.sh"

echo "1..7"
one_guest --prog "$W/as-nobody.sh"
# Uid, Gid and Groups lines of /proc/PID/status, one line.
ids() { sed -n 's/^\(Uid\|Gid\|Groups\):[[:space:]]*//p' "/proc/$1/status" 2>/dev/null | tr -s '\t\n' '  '; }
want="$nobody $nobody $nobody $nobody $nobody $nobody $nobody $nobody "
check "the guest boots under a stock QEMU run as nobody (pid $pid: $(ids "$pid"))" \
	[ "$(ids "$pid")" = "$want" ]

# NAME [cprx-qmp args]: the update into the wrapper, rescued as nobody.
case_creds() {
	local name=$1 t new
	shift
	t=$(last_tick "$W/g")
	"$QMP" update -s "$W/g/qmp.sock" --json-out "$W/$name.json" -b "$W/exit1.sh" "$@" \
		>"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	new=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("new_pid", ""))' \
		"$W/$name.json" 2>/dev/null)
	[ -n "$new" ] && echo "$new" >"$W/g/pid"
	rescued() { [ "$rc" = 5 ] && [ -n "$new" ]; }
	check "$name: the new QEMU exits 1: rescued (exit $rc), in pid ${new:-?}" rescued
	check "$name: the rescued QEMU runs as nobody, no groups (got: $(ids "$new"))" \
		[ "$(ids "$new")" = "$want" ]
	check "$name: the guest ticks on in the rescued QEMU" wait_tick "$W/g" "$((${t:-0} + 5))"
}

# A migration file nobody made, in nobody's directory: QEMU can write it.
su -s /bin/sh nobody -c ": >'$W/g/state'" 2>/dev/null ||
	{ : >"$W/g/state"; chown "$nobody:$nobody" "$W/g/state"; }
case_creds "nobody's --state" --state "$W/g/state"
# The default one, which cprx-qmp creates: it must be QEMU's user's.
case_creds "default --state"
