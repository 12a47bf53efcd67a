#!/bin/bash
# QEMU tier (TAP): stock QEMUs (sid's 11.x, and 10.2.2 when qemu-build.sh
# has built it) updated into new QEMUs that die after the exec, before the
# guest runs again, where nothing rolls back:
#   - a new binary that is a wrapper exiting 1 when it is given the state
#     (it runs QEMU for the preflight's -version and trial instance);
#   - a new QEMU killed with SIGKILL after the exec (paused by -S, so it is
#     killed before it resumes the guest);
#   - a load failure: a device missing from the new command line, with the
#     checks that would have refused it bypassed (--no-trial);
#   - (11.x) a new binary that exits 1 once another process of QEMU's uid
#     has bound the QMP socket's path in its place and answers "running":
#     cprx-qmp must talk only to the PID it updates, and rescue.
# cprx-qmp keeps the guest's RAM and the migration file before the stop
# and starts the previous QEMU again on them: each case must end rescued -
# exit 5, the new PID reported in text and JSON, query-status running there,
# the guest's ticks on without a gap or a reboot, its RAM pattern and the
# firmware at the reset vector intact, no fd cprx-qmp opened since it kept
# its references left open at its end, /proc/meminfo's Shmem back to the
# level before the update, no memfd of the QEMU replaced held by any
# process but the rescued QEMU (the RAM), and the rescued QEMU holding no
# more memfds than the first QEMU plus the RAM it was given.  Then a good update of the rescued
# QEMU works, and the SIGKILL case with --no-rescue says the VM is lost
# (exit 4) after the new QEMU served QMP.
#
#   tests/qemu/rescue.sh BUILD_DIR
#
# SKIPs as the QEMU tier does; 10.2.2's cases SKIP without it
# (qemu-integration/qemu-build.sh).
set -uo pipefail
build=${1:?usage: rescue.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup rescue

croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
q11=/usr/bin/qemu-system-x86_64
q10=/opt/qemu-10.2.2/bin/qemu-system-x86_64
versions="11"
[ -x "$croot$q10" ] && versions="11 10"

# Per version a guest for the rescues (with rng0, so a command line can
# lack it) and one to be lost without rescue, each booted when it is
# needed (an idle TCG guest on a loaded machine is one more to starve).
boot() {	# DIR PROG [QEMU ARGS]
	local dir=$1 prog=$2
	shift 2
	"$GUEST" start "$dir" --prog "$prog" -- "$@" >/dev/null 2>"$dir.start"
	wait_tick "$dir" 3 || { cat "$dir.start" "$dir/qemu.log" 2>/dev/null | diag; }
}
# DIR: why its QEMU is gone, when it is.
gone() {
	[ -d "/proc/$(cat "$1/pid")" ] && return
	echo "# QEMU $(cat "$1/pid") of $1 is gone; its stderr and console's end:"
	tr -d '\0' <"$1/qemu.log" | tail -n 5 | diag
	console "$1" | tail -n 3 | diag
}
echo "1..27"

# A new "binary" that runs QEMU except when it is given the state.
wrapper() {	# PATH REAL-QEMU
	cat >"$1" <<EOF
#!/bin/sh
case " \$* " in *" -incoming file:"*) echo "wrapper: exit 1" >&2; exit 1 ;; esac
exec $2 "\$@"
EOF
	chmod +x "$1"
}

# The same wrapper, but before it exits a process of its own binds the
# QMP socket's path (as QEMU does: unlink, bind) and answers every command
# as a running QEMU would; its pid in PATH.pid.
stand_in() {	# PATH REAL-QEMU SOCKET
	cat >"$1" <<EOF
#!/bin/sh
case " \$* " in *" -incoming file:"*)
	setsid python3 - "$3" >/dev/null 2>&1 </dev/null <<'PY' &
import json, os, socket, sys
os.unlink(sys.argv[1])
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
while True:
    c, _ = s.accept()
    f = c.makefile("rw")
    f.write(json.dumps({"QMP": {"version": {"qemu": {"major": 11, "minor": 0, "micro": 0}}, "capabilities": []}}) + "\n")
    f.flush()
    for line in f:
        f.write(json.dumps({"return": {"status": "running", "running": True}}) + "\n")
        f.flush()
PY
	echo \$! >"$1.pid"
	sleep 2
	echo "wrapper: exit 1" >&2; exit 1 ;;
esac
exec $2 "\$@"
EOF
	chmod +x "$1"
}

# HMP through QMP: the 16 bytes at the reset vector, the firmware's.
reset_vector() {	# DIR
	python3 - "$1/qmp.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
f.readline()
cmd("qmp_capabilities")
# One line: xp prints 8 bytes a line, and the caller echoes it into TAP.
out = cmd("human-monitor-command", **{"command-line": "xp /16xb 0xfffffff0"})["return"]
print(" | ".join(l.strip() for l in out.splitlines() if l.strip()))
EOF
}

shmem_kb() { sed -n 's/^Shmem: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
memfds() { find /proc/"$1"/fd -lname '/memfd:*' 2>/dev/null | wc -l; }
# PID: device:inode of each memfd QEMU has open.
memfd_inodes() {
	find /proc/"$1"/fd -lname '/memfd:*' -exec stat -L -c '%d:%i' {} + 2>/dev/null | sort -u
}
# DEV:INODE...: those that a process of the machine has open or mapped.
referenced() {
	python3 - "$@" <<'EOF'
import glob, os, sys
want = set(sys.argv[1:])
held = set()
for d in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        st = os.stat(d)
        held.add("%d:%d" % (st.st_dev, st.st_ino))
    except OSError:
        pass
for m in glob.glob("/proc/[0-9]*/maps"):
    try:
        for line in open(m):
            f = line.split()
            if len(f) >= 5 and f[4] != "0":
                ma, mi = (int(x, 16) for x in f[3].split(":"))
                held.add("%d:%s" % (os.makedev(ma, mi), f[4]))
    except OSError:
        pass
print("\n".join(sorted(want & held)))
EOF
}

# NAME DIR cprx-qmp args: the update, its new QEMU killed by SIGKILL once
# it has exec'd (its argv changed) and serves QMP (its socket is a new
# inode), cprx-qmp given a second to connect; cprx-qmp's exit status.
killed_after_exec() {
	local name=$1 dir=$2 pid before sock i qp
	shift 2
	pid=$(cat "$dir/pid")
	before=$(tr '\0' ' ' </proc/"$pid"/cmdline)
	sock=$(stat -c %i "$dir/qmp.sock")
	"$QMP" update -s "$dir/qmp.sock" --json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1 &
	qp=$!
	for ((i = 0; i < 300; i++)); do
		[ "$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)" != "$before" ] &&
			[ "$(stat -c %i "$dir/qmp.sock" 2>/dev/null)" != "$sock" ] && break
		sleep 0.1
	done
	sleep 1
	kill -KILL "$pid"
	wait $qp
	i=$?
	shmem_kb >"$W/$name.shmem"
	diag <"$W/$name.out"
	return $i
}

# NAME DIR -- cprx-qmp args: exit 5, the new PID in text and JSON.
rescued() {
	local name=$1 dir=$2 old rc new
	shift 3
	old=$(cat "$dir/pid")
	"$QMP" update -s "$dir/qmp.sock" --json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1
	rc=$?
	shmem_kb >"$W/$name.shmem"
	diag <"$W/$name.out"
	new=$(json "$W/$name.json" new_pid 2>/dev/null)
	[ -n "$new" ] && [ "$new" != "$old" ] && echo "$new" >"$dir/pid"
	[ $rc = 5 ] || { echo "# cprx-qmp exit $rc, not 5"; return 1; }
	[ "$(json "$W/$name.json" rescued 2>/dev/null)" = True ] &&
		[ "$(json "$W/$name.json" result 2>/dev/null)" = rescued ] &&
		grep -q "update FAILED, guest rescued" "$W/$name.out" &&
		grep -q "the guest runs in pid $new (was $old)" "$W/$name.out" &&
		grep -q "guest: running (query-status on pid $new)" "$W/$name.out"
}

# DIR RESET-VECTOR: the new PID runs the guest on, intact.
intact() {
	local dir=$1 rv=$2 pid t
	pid=$(cat "$dir/pid")
	t=$(last_tick "$dir")
	[ -d "/proc/$pid" ] || { echo "# QEMU $pid is gone"; return 1; }
	"$QMP" status -s "$dir/qmp.sock" --json >"$W/status.json" 2>&1 &&
		[ "$(json "$W/status.json" guest_status)" = running ] &&
		[ "$(json "$W/status.json" pid)" = "$pid" ] ||
		{ echo "# query-status:"; diag <"$W/status.json"; return 1; }
	[ "$(reset_vector "$dir")" = "$rv" ] || { echo "# firmware: $(reset_vector "$dir")"; return 1; }
	wait_tick "$dir" "$((${t:-0} + 10))" ram && one_run "$dir" &&
		! grep -q '^ram BAD' "$dir/serial.log"
}

# NAME SHMEM-BEFORE INODES-BEFORE DIR: none of cprx-qmp's fds opened since
# it kept its references left open at its end (it counts them in
# /proc/self/fd: kept_fds_left); /proc/meminfo's Shmem as right before the
# update once cprx-qmp is done (the machine is shared: 96 MiB of slack,
# well under the guest's 256 MiB RAM, and up to 20 s for others' growth to
# pass; a VM-tier stream beside it once grew it by 42 MiB); the old
# memfds, by inode, are the exact check;
# each memfd of the QEMU replaced either held by the rescued QEMU (its
# RAM) or by no process at all; the rescued QEMU's memfds as many as the
# first QEMU's plus the RAM it was given.
no_leak() {
	local name=$1 sh0=$2 old=$3 dir=$4 left sh1 pid gone held mf1 i
	left=$(json "$W/$name.json" kept_fds_left 2>/dev/null)
	sh1=$(cat "$W/$name.shmem")
	# Others' guests come and go: a growth of ours stays, theirs may not.
	for ((i = 0; i < 20 && sh1 - sh0 >= 98304; i++)); do
		sleep 1
		sh1=$(($(shmem_kb) < sh1 ? $(shmem_kb) : sh1))
	done
	pid=$(cat "$dir/pid")
	gone=$(comm -23 <(tr ' ' '\n' <<<"$old" | grep . | sort -u) <(memfd_inodes "$pid"))
	# shellcheck disable=SC2086
	held=$(referenced $gone | tr '\n' ' ' | sed 's/ *$//')
	mf1=$(memfds "$pid")
	echo "# cprx-qmp fds left ${left:-?}; Shmem $sh0 -> $sh1 kB; QEMU memfds $mf -> $mf1;" \
		"old memfds still held elsewhere: ${held:-none}"
	[ "$left" = 0 ] && [ $((sh1 - sh0)) -lt 98304 ] && [ -z "$held" ] && [ "$mf1" = "$mf" ]
}

# NAME DIR WHAT -- cprx-qmp args: rescued, intact, nothing leaked.
case_rescued() {
	local name=$1 dir=$2 what=$3 sh0 old
	shift 3
	old=$(memfd_inodes "$(cat "$dir/pid")" | tr '\n' ' ')
	sh0=$(shmem_kb)
	check "$what: rescued (exit 5), the new PID reported" rescued "$name" "$dir" "$@"
	check "$what: query-status running in the new PID, ticks without gap or reboot, RAM and firmware intact" \
		intact "$dir" "$rv"
	check "$what: no fd, memfd or Shmem left behind" no_leak "$name" "$sh0" "$old" "$dir"
}

for v in $versions; do
	eval "prog=\$q$v"
	V=$([ "$v" = 11 ] && echo 11.x || echo 10.2.2)
	g=$W/g$v
	boot "$g" "$prog" -device virtio-rng-pci,id=rng0
	rv=$(reset_vector "$g")
	# The first rescued QEMU holds the guest's RAM once more (fd 200);
	# the later ones as many as it.
	mf=$(($(memfds "$(cat "$g/pid")") + 1))
	echo "# $V: reset vector $rv, $((mf - 1)) memfds in QEMU"

	wrapper "$W/exit1-$v.sh" "$prog"
	case_rescued "exit$v" "$g" "$V: new binary a wrapper exiting 1" -- -b "$W/exit1-$v.sh"
	gone "$g"

	# -S: the new QEMU loads the state and waits, to be killed.
	pid=$(cat "$g/pid")
	old=$(memfd_inodes "$pid" | tr '\n' ' ')
	sh0=$(shmem_kb)
	killed_after_exec "kill$v" "$g" -a -S
	rc=$?
	new=$(json "$W/kill$v.json" new_pid 2>/dev/null)
	[ -n "$new" ] && [ "$new" != "$pid" ] && echo "$new" >"$g/pid"
	check "$V: new QEMU killed by SIGKILL after the exec: rescued (exit $rc), the new PID reported" \
		sh -c "[ $rc = 5 ] && grep -q 'the guest runs in pid $new (was $pid)' '$W/kill$v.out'"
	check "$V: SIGKILL: query-status running in the new PID, ticks without gap or reboot, RAM and firmware intact" \
		intact "$g" "$rv"
	check "$V: SIGKILL: no fd, memfd or Shmem left behind" no_leak "kill$v" "$sh0" "$old" "$g"
	gone "$g"

	if [ "$v" = 11 ]; then
		stand_in "$W/standin.sh" "$prog" "$g/qmp.sock"
		case_rescued "standin$v" "$g" "$V: new binary exits 1, a stand-in serving its QMP socket" \
			-- -b "$W/standin.sh"
		[ -s "$W/standin.sh.pid" ] && kill "$(cat "$W/standin.sh.pid")" 2>/dev/null
		grep -q "is served by pid" "$W/standin$v.out" ||
			echo "# $V: the stand-in was not named"
		gone "$g"
	fi

	st=$W/g$v.state
	mapfile -d '' new < <(argv_without "$g" -device virtio-rng-pci,id=rng0)
	case_rescued "load$v" "$g" "$V: load failure (rng0 missing from the new command line)" -- \
		--no-trial --state "$st" -- "${new[@]}" -incoming "file:$st"
	grep -q 'Unknown section or instance' "$g/qemu.log" ||
		echo "# $V: the load failure was not the missing device's"

	# The rescued QEMU, whose RAM is on an fd of its own, updates as any.
	pid=$(cat "$g/pid")
	t=$(last_tick "$g")
	"$QMP" update -s "$g/qmp.sock" --json-out "$W/good$v.json" >"$W/good$v.out" 2>&1
	rc=$?
	diag <"$W/good$v.out"
	[ $rc = 0 ] && [ "$(json "$W/good$v.json" new_pid 2>/dev/null)" = "$pid" ] &&
		wait_tick "$g" "$((${t:-0} + 10))" ram && one_run "$g" &&
		! grep -q '^ram BAD' "$g/serial.log"
	check "$V: then a good update of the rescued QEMU: ok, same PID, ticks and RAM intact (exit $rc)" \
		[ $? = 0 ]

	# Without rescue the same death is the VM lost, and said so.
	l=$W/l$v
	boot "$l" "$prog"
	killed_after_exec "lost$v" "$l" --no-rescue -a -S
	rc=$?
	res=$(json "$W/lost$v.json" result 2>/dev/null)
	kept=$(json "$W/lost$v.json" state_kept 2>/dev/null)
	check "$V: --no-rescue, new QEMU killed after it served QMP: VM lost, said so (exit $rc)" \
		sh -c "[ $rc = 4 ] && [ '$res' = lost ] && grep -q 'guest: lost' '$W/lost$v.out' &&
			grep -q 'died after it served QMP, before the guest ran' '$W/lost$v.out'"
	# The lost VM's device state is the one thing left of it: kept and named.
	check "$V: the lost VM's migration file is kept and named ($kept)" \
		sh -c "[ -n '$kept' ] && [ -s '$kept' ] && grep -qF 'state: kept in $kept' '$W/lost$v.out'"
	[ -z "$kept" ] || rm -f "$kept"
done
[ "$versions" = 11 ] && skip 12 "no QEMU 10.2.2 (qemu-integration/qemu-build.sh)"
exit $((failed > 0))
