#!/bin/bash
# Pause of a QEMU live update, side by side in one run: cpr-exec of each
# QEMU given (stock 11.x, stock 10.2.2, 10.2.2 patched to use libcprx...)
# driven by cprx-qmp, the same cpr-exec driven by hand (raw QMP, by-hand.py)
# and the baseline, a normal migration to a file plus a restart with
# -incoming (RAM copied), for guests of several sizes with half of their RAM
# dirtied by the guest and touched again before every update (a QEMU that
# just exec'd has nothing mapped until the guest touches it).
#
#   qemu-integration/bench.sh [--sizes "256 1024 4096"] [--runs N] [--out DIR]
#                             [--qemu LABEL=PATH]... [--no-baseline] BUILD_DIR
#
# Sizes in MiB. --qemu: a QEMU binary inside the chroot, repeatable (default
# the chroot's stock 11.x, /usr/bin/qemu-system-x86_64; qemu-build.sh
# [--cprx] prints the others). Prints a Markdown table and writes
# DIR/bench.json (one report of cprx-qmp per line, with "mode", "size_mib"
# and "qemu" added), DIR/table.md and the plot DIR/qemu-pause.{svg,png}.
# Needs the chroot and root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

sizes="256 1024 4096" runs=5 out="" qemus=() baseline=1
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) sizes=$2; shift ;;
	--runs) runs=$2; shift ;;
	--out) out=$2; shift ;;
	--qemu) qemus+=("$2"); shift ;;
	--no-baseline) baseline=0 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
	shift
done
build=${1:?usage: bench.sh [options] BUILD_DIR}
[ ${#qemus[@]} -gt 0 ] || qemus=(11.x=/usr/bin/qemu-system-x86_64)
QMP=$(realpath "$build")/qemu-integration/cprx-qmp
[ -x "$QMP" ] || vm_die "no $QMP (build first)"
out=${out:-$(mktemp -d /tmp/cprx-qemu-bench.XXXXXX)}
mkdir -p "$out"
out=$(realpath "$out")
: >"$out/bench.json"
"$here/qemu-chroot.sh" >/dev/null

guest_pid=""
trap '[ -n "$guest_pid" ] && kill "$guest_pid" 2>/dev/null; true' EXIT

touched() { grep -ac 'CPRX-GUEST touched' "$1/serial.log" 2>/dev/null || true; }
wait_for() {	# DIR PATTERN
	local i
	for ((i = 0; i < 3000; i++)); do
		grep -aq "$2" "$1/serial.log" 2>/dev/null && return 0
		sleep 0.2
	done
	vm_die "guest in $1: no '$2'"
}
# Two more passes: the second began after the last update, all RAM mapped.
wait_touched() {
	local n i
	n=$(touched "$1")
	for ((i = 0; i < 3000; i++)); do
		[ "$(touched "$1")" -ge $((n + 2)) ] && return 0
		sleep 0.2
	done
	vm_die "guest in $1 stopped touching its RAM"
}
record() {	# MODE SIZE JSON LABEL
	python3 -c 'import json,sys; d=json.load(open(sys.argv[3])); d["mode"]=sys.argv[1]; d["size_mib"]=int(sys.argv[2]); d["qemu"]=sys.argv[4]; print(json.dumps(d))' \
		"$@" >>"$out/bench.json"
}

for size in $sizes; do
for q in "${qemus[@]}"; do
	label=${q%%=*} qemu=${q#*=}
	g="$out/guest-$size-$label"
	vm_log "$label ($qemu): guest of $size MiB, $((size / 2)) MiB dirtied"
	guest_pid=$("$here/guest.sh" start "$g" --mem "${size}M" --dirty "$((size / 2))" --prog "$qemu")
	wait_for "$g" 'CPRX-GUEST ready'
	for ((r = 1; r <= runs; r++)); do
		wait_touched "$g"
		"$QMP" update -s "$g/qmp.sock" --state "$g/state" --json-out "$g/cpr-$r.json" >/dev/null
		record cpr-exec "$size" "$g/cpr-$r.json" "$label"
		wait_touched "$g"
		"$here/by-hand.py" "$g/qmp.sock" "$g/state" "$g/cpr-$r.json" >"$g/hand-$r.json"
		record by-hand "$size" "$g/hand-$r.json" "$label"
	done
	if [ "$baseline" = 1 ]; then
		wait_touched "$g"
		"$QMP" restart -s "$g/qmp.sock" --state "$g/state" --json-out "$g/restart.json" >/dev/null
		record restart "$size" "$g/restart.json" "$label"
		guest_pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["new_pid"])' "$g/restart.json")
	fi
	kill "$guest_pid"
	guest_pid=""
	sleep 1
done
done

python3 "$here/bench-table.py" "$out/bench.json" --plot "$out" | tee "$out/table.md"
echo "(JSON: $out/bench.json)"
