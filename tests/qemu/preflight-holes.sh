#!/bin/bash
# QEMU tier (TAP): the two updates that passed every other preflight check,
# exec'd and lost the VM, now refused before the guest stops:
#   - the new command line's -incoming names another file than the one
#     cprx-qmp migrates to (the new QEMU finds no state and exits);
#   - the new command line lacks a device the running guest has (the new
#     QEMU exits on "Unknown section or instance"), also a hot-plugged one.
# After each refusal the guest still runs, its ticks continue and its RAM
# pattern is intact; updates whose -incoming and devices agree (an explicit
# new argv with the JSON form of -incoming) still go through. With QEMU
# 10.2.2 built (qemu-integration/qemu-build.sh), the device check on it too.
#
#   tests/qemu/preflight-holes.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: preflight-holes.sh BUILD_DIR}
. "$(dirname "$0")/lib.sh"
qemu_tier_setup holes

old=/opt/qemu-10.2.2/bin/qemu-system-x86_64
croot=$("$src/qemu-integration/qemu-chroot.sh" --check)
guests="inc dev"
# A device with an id, one without, a second serial port: what the new
# command lines below drop.
devs=(-device virtio-rng-pci,id=rng0 -device virtio-rng-pci -serial null)
"$GUEST" start "$W/inc" -- "${devs[@]}" >/dev/null 2>"$W/inc.start" &
"$GUEST" start "$W/dev" -- "${devs[@]}" >/dev/null 2>"$W/dev.start" &
if [ -x "$croot$old" ]; then
	"$GUEST" start "$W/old" --prog "$old" -- "${devs[@]}" >/dev/null 2>"$W/old.start" &
	guests="$guests old"
fi
wait
echo "1..9"
for g in $guests; do
	wait_tick "$W/$g" 3 || { cat "$W/$g.start" "$W/$g/qemu.log" 2>/dev/null | diag; }
done

# QEMU's own argv (without OPTION VALUE, when given), NUL-separated.
argv_without() {	# DIR [OPTION VALUE]
	local a i
	mapfile -d '' a </proc/"$(cat "$1/pid")"/cmdline
	for ((i = 0; i < ${#a[@]}; i++)); do
		if [ $# = 3 ] && [ "${a[i]}" = "$2" ] && [ "${a[i + 1]:-}" = "$3" ]; then
			i=$((i + 1))
			continue
		fi
		printf '%s\0' "${a[i]}"
	done
}
# The guest in DIR goes on: ten more ticks, its RAM re-checked, never BAD.
intact() {
	local t
	t=$(last_tick "$1")
	wait_tick "$1" "$((${t:-0} + 10))" ram && ! grep -q '^ram BAD' "$1/serial.log"
}
# NAME PATTERN DIR -- cprx-qmp args: exit 2 (refused), PATTERN in the
# report, the guest running by query-status, then ticks and RAM intact.
refused() {
	local name=$1 pat=$2 dir=$3 rc
	shift 4
	"$QMP" update -s "$dir/qmp.sock" --json-out "$W/$name.json" "$@" >"$W/$name.out" 2>&1
	rc=$?
	diag <"$W/$name.out"
	[ $rc = 2 ] && grep -qF -- "$pat" "$W/$name.out" &&
		grep -q 'guest: running' "$W/$name.out" && intact "$dir"
}

# --- -incoming names another file --------------------------------------------
pid=$(cat "$W/inc/pid")
mapfile -d '' new < <(argv_without "$W/inc")
check "-incoming names another file than --state: refused naming both, guest runs" \
	refused inc1 "-incoming names $W/other.state, but cprx-qmp migrates to $W/inc.state" \
	"$W/inc" -- --state "$W/inc.state" -- "${new[@]}" -incoming "file:$W/other.state"
check "no -incoming in the new command line: refused, saying what to add" \
	refused inc2 "add -incoming file:/tmp/cprx-qmp-$pid.state" "$W/inc" -- -- "${new[@]}"
# The forms QEMU accepts, preflight only (no trial): EXIT -incoming VALUE.
forms() {
	local want=$1 rc
	shift
	"$QMP" update -s "$W/inc/qmp.sock" --state "$W/inc.state" --preflight-only --no-trial \
		-- "${new[@]}" "$@" >"$W/forms.out" 2>&1
	rc=$?
	[ $rc = "$want" ] || { echo "# exit $rc, not $want, for: $*"; diag <"$W/forms.out"; }
	[ $rc = "$want" ]
}
forms_all() {
	forms 2 -incoming defer &&
	forms 2 -incoming "unix:$W/inc.sock" &&
	forms 2 -incoming "file:$W/inc.state,offset=4096" &&
	forms 2 -incoming "file:$W/inc.state" -incoming "file:$W/other.state" &&
	forms 2 -incoming '{"channel-type": "main", "addr": {"transport": "socket", "type": "unix", "path": "/x"}}' &&
	forms 0 -incoming "file:$W/inc.state,offset=0" &&
	forms 0 -incoming "file:$W/other.state" --incoming "file:$W/inc.state" &&
	forms 0 -incoming "main,addr.transport=file,addr.filename=$W/inc.state" &&
	forms 0 -incoming "file:$W/inc.state" -incoming '{"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": "/x"}}'
}
check "-incoming forms: defer, unix:, offset 4096, a later other file refused; offset=0, keyval, a cpr channel beside accepted" \
	forms_all
# The same file named another way, in QEMU's JSON form: the update goes on.
"$QMP" update -s "$W/inc/qmp.sock" --state "$W/inc.state" --json-out "$W/inc3.json" -- \
	"${new[@]}" --incoming "{\"channel-type\": \"main\", \"addr\": {\"transport\": \"file\", \"filename\": \"$W/./inc.state\", \"offset\": 0}}" \
	>"$W/inc3.out" 2>&1
rc=$?
diag <"$W/inc3.out"
[ $rc = 0 ] && [ "$(json "$W/inc3.json" new_pid 2>/dev/null)" = "$pid" ] && intact "$W/inc"
check "the same file in JSON --incoming, same devices: updated, same PID, ticks and RAM intact (exit $rc)" [ $? = 0 ]
ms=$(json "$W/inc3.json" '[c["ms"] for c in preflight if c["check"] == "devices"][0]' 2>/dev/null)
check "the devices check took ${ms:-?} ms (bounded: under 2 s on this shared machine)" \
	awk -v m="${ms:-x}" 'BEGIN { exit !(m + 0 > 0 && m + 0 < 2000) }'

# --- a device the new command line lacks -------------------------------------
st=$W/dev.state
mapfile -d '' new < <(argv_without "$W/dev" -device virtio-rng-pci,id=rng0)
check "new command line without -device virtio-rng-pci,id=rng0: refused naming rng0, guest runs" \
	refused dev1 "id rng0 (virtio-rng-pci, /machine/peripheral/rng0)" "$W/dev" -- \
	--state "$st" -- "${new[@]}" -incoming "file:$st"
mapfile -d '' new < <(argv_without "$W/dev" -serial null)
check "new command line without the second serial port: refused naming it, guest runs" \
	refused dev2 "(isa-serial)" "$W/dev" -- --state "$st" -- "${new[@]}" -incoming "file:$st"
# Hot-plugged: in the running QEMU, not on its command line.
python3 - "$W/dev/qmp.sock" <<'PY' 2>&1 | diag
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for c in ({"execute": "qmp_capabilities"},
	  {"execute": "device_add", "arguments": {"driver": "virtio-rng-pci", "id": "hot0"}}):
	f.write(json.dumps(c) + "\n")
	f.flush()
	while True:
		r = json.loads(f.readline())
		if "return" in r or "error" in r:
			print(c["execute"], r)
			break
PY
check "a hot-plugged device the command line lacks: refused naming hot0, guest runs" \
	refused dev3 "id hot0 (virtio-rng-pci" "$W/dev" --

# --- QEMU 10.2.2 ------------------------------------------------------------
if [[ " $guests " = *" old "* ]]; then
	mapfile -d '' new < <(argv_without "$W/old" -device virtio-rng-pci,id=rng0)
	check "10.2.2: new command line without rng0: refused naming rng0, guest runs" \
		refused old1 "id rng0 (virtio-rng-pci" "$W/old" -- \
		--state "$W/old.state" -- "${new[@]}" -incoming "file:$W/old.state"
else
	skip 1 "no QEMU 10.2.2 (qemu-integration/qemu-build.sh)"
fi
exit $((failed > 0))
