#!/bin/bash
# Pause of a QEMU live update, side by side: cpr-exec driven by cprx-qmp
# (RAM kept) against the baseline, a normal migration to a file plus a
# restart with -incoming (RAM copied), for guests of several sizes with half
# of their RAM dirtied by the guest.
#
#   qemu-integration/bench.sh [--sizes "256 1024 4096"] [--runs N] [--out DIR]
#                             [--qemu PATH]... BUILD_DIR
#
# Sizes in MiB. Prints a Markdown table and writes DIR/bench.json (one JSON
# report of cprx-qmp per line, with "size_mib" and "mode" added). Needs the
# chroot (qemu-chroot.sh) and root. --qemu: a QEMU binary inside the chroot
# (repeatable; default the chroot's stock 11.x, /usr/bin/qemu-system-x86_64;
# qemu-build.sh prints others).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

sizes="256 1024 4096" runs=3 out="" qemus=()
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) sizes=$2; shift ;;
	--runs) runs=$2; shift ;;
	--out) out=$2; shift ;;
	--qemu) qemus+=("$2"); shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
	shift
done
build=${1:?usage: bench.sh [options] BUILD_DIR}
[ ${#qemus[@]} -gt 0 ] || qemus=(/usr/bin/qemu-system-x86_64)
QMP=$(realpath "$build")/qemu-integration/cprx-qmp
[ -x "$QMP" ] || vm_die "no $QMP (build first)"
out=${out:-$(mktemp -d /tmp/cprx-qemu-bench.XXXXXX)}
mkdir -p "$out"
out=$(realpath "$out")
: >"$out/bench.json"
"$here/qemu-chroot.sh" >/dev/null

guest_pid=""
trap '[ -n "$guest_pid" ] && kill "$guest_pid" 2>/dev/null; true' EXIT

wait_ready() {
	local i
	for ((i = 0; i < 1800; i++)); do
		grep -q 'CPRX-GUEST ready' "$1/serial.log" 2>/dev/null && return 0
		sleep 0.2
	done
	vm_die "guest in $1 not ready"
}
record() {	# MODE SIZE JSON QEMU
	python3 -c 'import json,sys; d=json.load(open(sys.argv[3])); d["mode"]=sys.argv[1]; d["size_mib"]=int(sys.argv[2]); d["qemu"]=sys.argv[4]; print(json.dumps(d))' \
		"$@" >>"$out/bench.json"
}

for qemu in "${qemus[@]}"; do
for size in $sizes; do
	g="$out/guest-$size-$(basename "$(dirname "$(dirname "$qemu")")")"
	vm_log "$qemu: guest of $size MiB, $((size / 2)) MiB dirtied"
	guest_pid=$("$here/guest.sh" start "$g" --mem "${size}M" --dirty "$((size / 2))" --prog "$qemu")
	wait_ready "$g"
	for ((r = 1; r <= runs; r++)); do
		"$QMP" update -s "$g/qmp.sock" --state "$g/state" --json-out "$g/cpr-$r.json" >/dev/null
		record cpr-exec "$size" "$g/cpr-$r.json" "$qemu"
		sleep 1
	done
	"$QMP" restart -s "$g/qmp.sock" --state "$g/state" --json-out "$g/restart.json" >/dev/null
	record restart "$size" "$g/restart.json" "$qemu"
	guest_pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["new_pid"])' "$g/restart.json")
	sleep 1
	kill "$guest_pid"
	guest_pid=""
	sleep 1
done
done

python3 - "$out/bench.json" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
print("-accel tcg, half of guest RAM dirtied by the guest")
print()
print("| QEMU | guest RAM | cpr-exec pause (median of runs) | stop→exec | exec→resume | migrate to file + restart | ratio |")
print("|---|---|---|---|---|---|---|")
for q, size in sorted({(r["qemu"], r["size_mib"]) for r in rows}, key=lambda k: (k[0], k[1])):
    cpr = [r for r in rows if r["size_mib"] == size and r["mode"] == "cpr-exec" and r["qemu"] == q]
    rs = [r for r in rows if r["size_mib"] == size and r["mode"] == "restart" and r["qemu"] == q]
    ver = cpr[0]["old_version"]
    med = statistics.median(r["pause_ms"] for r in cpr)
    mid = min(cpr, key=lambda r: abs(r["pause_ms"] - med))
    base = rs[0]["pause_ms"] if rs else float("nan")
    runs = ", ".join(f"{r['pause_ms']:.0f}" for r in cpr)
    print(f"| {ver} | {size} MiB | {med:.1f} ms ({runs}) | {mid['phases']['stop_to_exec_ms']:.1f} ms "
          f"| {mid['phases']['exec_to_resume_ms']:.1f} ms | {base:.0f} ms | {base / med:.0f}x |")
PY
echo "(JSON: $out/bench.json)"
