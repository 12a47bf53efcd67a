#!/bin/bash
# QEMU tier (TAP): the patched QEMU 10.2.2 with libcprx's luo backend
# (series patch 0007) on this host, against cprx-luod --fake-kexec (no
# /dev/liveupdate here: the daemon keeps the memfds and acts the kexec).
# The busybox guest under CPRX_BACKEND=luo; a cpr-exec to a non-file URI is
# refused with the guest running; one to a file hands guest RAM and the cpr
# state to the session and QEMU quits; after `cprx-luod kexec` the same
# command line with -incoming takes it back: running, ticks going on from
# the last one, the RAM pattern intact, the session finished.  The real
# kexec is vm-qemu-kexec's (tests/vm/qemu-kexec.sh).
#
#   tests/qemu/luo.sh BUILD_DIR [QEMU]
#
# QEMU: the patched binary's path in the chroot (default
# /opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64) or in this checkout.
set -uo pipefail
build=$(realpath "${1:?usage: $0 BUILD_DIR [QEMU]}")
. "$(dirname "$0")/lib.sh"
px=${2:-/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64}
luod=$build/tools/cprx-luod
[ -x "$luod" ] || skip_all "cprx-luod not built"
qemu_tier_setup luo
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
[ -x "$croot$px" ] || { [ "${px#"$src"/}" != "$px" ] && [ -x "$px" ]; } ||
	skip_all "no patched QEMU 10.2.2 (qemu-integration/qemu-build.sh --cprx)"
export CPRX_LUOD_SOCKET=$W/luod.sock CPRX_BACKEND=luo
g=$W/g
qmp() { python3 "$src/tests/vm/qmp.py" "$g/qmp.sock" "$@"; }
# A field of QMP's answer on stdin; empty when there is none (QEMU gone).
field() {
	python3 -c 'import json,sys
try: print(json.load(sys.stdin).get(sys.argv[1], ""))
except ValueError: pass' "$1"
}
start() { "$GUEST" start "$g" --mem 128M --prog "$px" -- "$@" >/dev/null 2>"$W/start.log"; }
gone() { for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

echo "TAP version 13"
echo "1..7"
"$luod" --fake-kexec --state-dir "$W/state" --socket "$CPRX_LUOD_SOCKET" \
	</dev/null >"$W/luod.log" 2>&1 &
luod_pid=$!
pid=
# a QEMU that never quit has had its pid file overwritten by the next one
trap 'kill $luod_pid $pid 2>/dev/null; qemu_tier_cleanup' EXIT
for _ in $(seq 100); do [ -S "$CPRX_LUOD_SOCKET" ] && break; sleep 0.1; done

start && wait_tick "$g" 0 ram
check "the guest boots under the patched QEMU with CPRX_BACKEND=luo" [ $? = 0 ]
pid=$(cat "$g/pid")

qmp migrate-set-parameters "{\"mode\": \"cpr-exec\", \"cpr-exec-command\": [\"$px\"]}" >/dev/null
qmp migrate '{"uri": "exec:cat >/dev/null"}' >"$W/refused.out" 2>&1
for _ in $(seq 100); do
	st=$(qmp query-migrate | field status)
	[ "$st" = failed ] && break
	sleep 0.1
done
err=$(qmp query-migrate | field error-desc)
echo "# $err"
[ "$st" = failed ] && grep -q "devices' state must go to a file" <<<"$err" &&
	[ "$(qmp query-status | field status)" = running ] && kill -0 "$pid"
check "a migration not to a file is refused, the guest running (migration: $st)" [ $? = 0 ]

qmp migrate "{\"uri\": \"file:$W/vm.state\"}" >/dev/null
gone "$pid" && grep -q "VM in LUO session 'qemu-cprx-demo' until the kexec" "$g/qemu.log"
check "to a file: QEMU hands the VM to the LUO session and quits" [ $? = 0 ]
tr -d '\0' <"$g/qemu.log" | diag
st=$("$luod" status 2>&1)
check "cprx-luod holds it ($(tail -n 1 <<<"$st"))" grep -q '^0 qemu-cprx-demo held' <<<"$st"
before=$(last_tick "$g")
cp "$g/serial.log" "$W/serial.before"

"$luod" kexec >"$W/kexec.out" 2>&1
start -incoming "file:$W/vm.state"
for _ in $(seq 300); do
	st=$(qmp query-status 2>/dev/null | field status)
	[ "$st" = running ] && break
	sleep 0.1
done
check "after the fake kexec, QEMU with -incoming resumes the guest (query-status: $st)" \
	[ "$st" = running ]
wait_tick "$g" "$before" ram && ! console "$g" | grep -qE '^(CPRX-GUEST ready|ram BAD|tick 1 )'
r=$?
check "ticks go on from $before ($(console "$g" | grep -m1 '^tick')), the RAM pattern intact" [ $r = 0 ]
"$luod" status | grep -qx 0 && grep -q 'finished .*qemu-cprx-demo' "$W/luod.log" &&
	! tr -d '\0' <"$g/qemu.log" | grep -qiE 'error|warning'
r=$?
check "the session is finished, QEMU logged no error ($("$luod" status | tr '\n' ' '))" [ $r = 0 ]
tr -d '\0' <"$g/qemu.log" | diag
qmp quit >/dev/null
exit $((failed > 0))
