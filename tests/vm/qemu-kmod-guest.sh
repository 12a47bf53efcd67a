#!/bin/bash
# The guest half of tests/vm/qemu-kmod.sh: QEMU 10.2.2 patched to use libcprx
# (qemu-integration/qemu-build.sh --cprx, in the QEMU chroot) live-updated
# through cprx-qmp with libcprx's kmod backend, i.e. its fds pinned in a
# cprx.ko session.  Runs as root inside a VM-tier guest:
#
#   tests/vm/run.sh -- tests/vm/qemu-kmod-guest.sh CPRX_KO CPRX_QMP
#
# The inner QEMU runs with CPRX_BACKEND=kmod in its environment, so libcprx
# must use /dev/cprx or refuse; it boots nothing (nested TCG is slow): 64 MiB
# of memfd RAM, SeaBIOS idling, and a random 1 MiB pattern put at 1 MiB by
# -device loader.  Once QEMU has loaded it, the pattern file is replaced by
# another one, so a new QEMU that reloaded it instead of keeping guest RAM
# would show the wrong one.  Prints TAP 13 (see the plan below); exit 0 when
# every test point is ok.
set -uo pipefail

[ $# = 2 ] || { echo "usage: $0 CPRX_KO CPRX_QMP" >&2; exit 2; }
ko=$(realpath "$1")
QMP=$(realpath "$2")
src=$(cd "$(dirname "$0")/../.." && pwd)
PX=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64
PATTERN_ADDR=$((0x100000)) PATTERN_SIZE=$((1 << 20))
. "$src/tests/vm/kernel-log.sh"

W=$(mktemp -d /tmp/cprx-qemu-kmod.XXXXXX)
pid=
watcher=
cleanup() {
	[ -z "$watcher" ] || kill "$watcher" 2>/dev/null
	[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

. "$src/tests/tap.sh"
qmp() { python3 "$src/tests/vm/qmp.py" "$W/qmp.sock" "$@"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | xargs printf '%.1f'; }

# Guest RAM at the pattern's address, saved by QEMU itself, equals FILE.
ram_is() {
	rm -f "$W/dump"
	qmp pmemsave "{\"val\": $PATTERN_ADDR, \"size\": $PATTERN_SIZE, \"filename\": \"$W/dump\"}" \
		>/dev/null && cmp -s "$W/dump" "$1"
}
status() { qmp query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
environ_has() { tr '\0' '\n' <"/proc/$pid/environ" | grep -qx -- "$1"; }
# /proc/cprx/sessions lines (without the header) of QEMU's PID.
qemu_sessions() { tail -n +2 /proc/cprx/sessions 2>/dev/null | awk -v p="$pid" '$1 == p'; }
wait_no_session() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ -z "$(qemu_sessions)" ] && return 0
		sleep 0.1
	done
	return 1
}
children() { ps -o pid= --ppid "$pid" | wc -l; }
# Records every distinct line of /proc/cprx/sessions (every 1 ms) until
# $W/watch.stop appears: the kernel's side of an update.
watch_sessions() {
	rm -f "$W/watch.stop" "$W/sessions.log"
	python3 - "$W/watch.stop" "$W/sessions.log" <<'EOF' &
import os, sys, time
stop, out = sys.argv[1:3]
seen = []
while not os.path.exists(stop):
    try:
        with open("/proc/cprx/sessions") as f:
            for line in f.read().splitlines()[1:]:
                key = line.split("\t")[:5]     # not the age
                if key not in [s[0] for s in seen]:
                    seen.append((key, line))
    except OSError:
        pass
    time.sleep(0.001)
with open(out, "w") as f:
    for _, line in seen:
        f.write(line + "\n")
EOF
	watcher=$!
}
unwatch() {
	touch "$W/watch.stop"
	wait "$watcher" 2>/dev/null
	watcher=
}
# The watcher saw QEMU's session: pinned fds, then retrieved by the new image.
session_seen() {
	awk -v p="$pid" -F'\t' '$1 == p && $2 == "qemu" && $3 > 0 { pinned = 1 }
		$1 == p && $2 == "qemu" && $5 == 1 { retrieved = 1 }
		END { exit !(pinned && retrieved) }' "$W/sessions.log"
}
update() {	# NAME [cprx-qmp args]: the update's exit status; output diag'ed
	local name=$1 rc t0
	shift
	t0=$(now)
	"$QMP" update -s "$W/qmp.sock" --json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	echo "# cprx-qmp update took $(since "$t0") s"
	return $rc
}

echo "TAP version 13"
echo "1..19"
echo "# kernel $(uname -r), module $ko, QEMU $PX"
klog_mark cprx-qemu-kmod

# --- QEMU up, no module yet --------------------------------------------------
check "cprx.ko not loaded yet, no /dev/cprx" \
	[ ! -d /sys/module/cprx -a ! -e /dev/cprx ]

head -c "$PATTERN_SIZE" /dev/urandom >"$W/pattern"
cp "$W/pattern" "$W/pattern.orig"
t0=$(now)
CPRX_BACKEND=kmod "$src/qemu-integration/qemu-run.sh" --prog "$PX" -- \
	-name cprx-kmod -accel tcg -nodefaults -no-user-config -display none \
	-machine pc,memory-backend=ram0,aux-ram-share=on \
	-object memory-backend-memfd,id=ram0,size=64M,share=on -m 64M -smp 1 \
	-device "loader,file=$W/pattern,addr=$PATTERN_ADDR" \
	-qmp "unix:$W/qmp.sock,server=on,wait=off" \
	</dev/null >"$W/qemu.log" 2>&1 &
pid=$!
for ((i = 0; i < 600; i++)); do
	[ -S "$W/qmp.sock" ] && qmp query-status >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
echo "# QEMU pid $pid up after $(since "$t0") s"
if ! ram_is "$W/pattern.orig"; then
	diag <"$W/qemu.log"
	not_ok "patched QEMU runs with CPRX_BACKEND=kmod, the pattern in guest RAM"
	echo "Bail out! the patched QEMU did not come up"
	exit 1
fi
ok "patched QEMU runs with CPRX_BACKEND=kmod, the pattern in guest RAM"
# From here on the file differs from guest RAM: only kept RAM passes.
head -c "$PATTERN_SIZE" /dev/urandom >"$W/pattern"

update nokmod --no-trial
rc=$?
[ $rc = 3 ] && grep -q '/dev/cprx' "$W/nokmod.out" &&
	grep -q 'before the guest stopped' "$W/nokmod.out" &&
	grep -q 'guest: running' "$W/nokmod.out"
check "no module: the update is refused before the guest stops, naming /dev/cprx (exit $rc)" [ $? = 0 ]
st=$(status)
[ "$st" = running ] && kill -0 "$pid" && ram_is "$W/pattern.orig"
check "no module: QEMU $pid still runs the guest (query-status: $st), RAM intact" [ $? = 0 ]
# QEMU's stderr from here on must stay quiet.
log0=$(tr -d '\0' <"$W/qemu.log" | wc -l)

# --- the module --------------------------------------------------------------
if ! out=$(insmod "$ko" 2>&1); then
	echo "$out" | diag
	echo "Bail out! insmod $ko failed"
	exit 1
fi
check "insmod cprx.ko: /dev/cprx is a character device in QEMU's root too" \
	[ -c /dev/cprx -a -c "/proc/$pid/root/dev/cprx" ]

# --- first update ------------------------------------------------------------
watch_sessions
update u1
rc=$?
sleep 0.5
unwatch
echo "# /proc/cprx/sessions during the update (pid name pins armed retrieved age_ms):"
diag <"$W/sessions.log"
check "update through cprx-qmp succeeds with the kmod backend (exit $rc)" [ $rc = 0 ]
check "same PID after the update ($pid)" \
	[ "$(json "$W/u1.json" new_pid 2>/dev/null)" = "$pid" -a -d "/proc/$pid" ]
environ_has 'CPRX_INCOMING=.*' && environ_has CPRX_BACKEND=kmod
check "the new QEMU was started by cprx_exec (CPRX_INCOMING), with CPRX_BACKEND=kmod" [ $? = 0 ]
check "cprx.ko held QEMU's session: fds pinned, then retrieved by the new image" session_seen
check "the session is gone once the new QEMU committed" wait_no_session
check "guest RAM intact after the update (the pattern, not the file now on disk)" \
	ram_is "$W/pattern.orig"
sleep 0.5
check "the old image's teardown helper was reaped ($(children) children left)" \
	[ "$(children)" = 0 ]

# --- second update -----------------------------------------------------------
watch_sessions
update u2
rc=$?
sleep 0.5
unwatch
diag <"$W/sessions.log"
[ $rc = 0 ] && [ "$(json "$W/u2.json" new_pid 2>/dev/null)" = "$pid" ] && session_seen
check "a second update (exit $rc, same PID), through a cprx.ko session again" [ $? = 0 ]
wait_no_session && ram_is "$W/pattern.orig"
check "after the second update: no session left, RAM intact" [ $? = 0 ]
st=$(status)
check "guest running after both updates (query-status: $st)" [ "$st" = running ]
tr -d '\0' <"$W/qemu.log" | diag
if tr -d '\0' <"$W/qemu.log" | tail -n +$((log0 + 1)) | grep -qiE 'error|warning|cpr-exec'; then
	not_ok "QEMU logged no error or warning during the updates"
else
	ok "QEMU logged no error or warning during the updates"
fi

# --- the end: QEMU quits, the module unloads, the kernel log is clean ---------
qmp quit >/dev/null
for ((i = 0; i < 100; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
wait "$pid" 2>/dev/null
qrc=$?
kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; qrc=killed; }
pid=
sessions=$(tail -n +2 /proc/cprx/sessions 2>/dev/null)
refcnt=$(cat /sys/module/cprx/refcnt 2>/dev/null)
[ -n "$sessions" ] && echo "$sessions" | diag
check "QEMU quit (exit $qrc), no session left, module refcnt ${refcnt:-?}" \
	[ "$qrc" = 0 -a -z "$sessions" -a "$refcnt" = 0 ]
if out=$(rmmod cprx 2>&1) && [ ! -d /sys/module/cprx ]; then
	ok "rmmod cprx"
else
	echo "$out" | diag
	not_ok "rmmod cprx"
fi
if trouble=$(klog_trouble); then
	ok "dmesg clean (no BUG/WARNING/Oops/leak, no new bad taint)"
else
	printf '%s\n' "$trouble" | diag
	not_ok "dmesg clean (no BUG/WARNING/Oops/leak, no new bad taint)"
fi
echo "# $n test points, $failed failed"
[ $n = 19 ] || { echo "# plan says 19, ran $n"; failed=$((failed + 1)); }
exit $((failed > 0))
