#!/bin/bash
# The pause of a cpr-exec update explained by QEMU's own trace events: one
# guest of the patched QEMU 10.2.2 (qemu-build.sh --cprx), started with
# -msg timestamp=on and the events pause-breakdown.py reads (the new QEMU
# keeps the command line, so it traces too), updated N times by cprx-qmp;
# then each stage's median from STOP to RESUME, and for reference a bare
# start of the same binary (exec, dynamic loader, constructors: -version).
#
#   qemu-integration/pause-breakdown.sh [--runs N] [--mem SIZE] [--prog PATH]
#                                       [--json] [--keep] BUILD_DIR
#
# --prog: a QEMU inside the chroot with the series' trace events (default
# the patched 10.2.2). --json: the breakdown as JSON (pause-breakdown.py).
# Needs the chroot and root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

runs=5 mem=256M prog=/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64 json="" keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift ;;
	--mem) mem=$2; shift ;;
	--prog) prog=$2; shift ;;
	--json) json=--json ;;
	--keep) keep=1 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
	shift
done
build=${1:?usage: pause-breakdown.sh [options] BUILD_DIR}
QMP=$(realpath "$build")/qemu-integration/cprx-qmp
[ -x "$QMP" ] || vm_die "no $QMP (build first)"
croot=$("$here/qemu-chroot.sh" --check) || vm_die "no QEMU chroot (qemu-chroot.sh)"
[ -x "$croot$prog" ] || vm_die "no $prog in the chroot (qemu-build.sh --cprx)"

dir=$(mktemp -d /tmp/cprx-breakdown.XXXXXX)
guest=""
cleanup() {
	[ -n "$guest" ] && kill "$guest" 2>/dev/null
	[ "$keep" = 1 ] && vm_log "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

guest=$("$here/guest.sh" start "$dir/g" --mem "$mem" --prog "$prog" -- -msg timestamp=on \
	-trace cpr_exec_cprx_exec -trace cpr_exec_cprx_incoming \
	-trace machine_init_phase -trace vmstate_downtime_checkpoint)
for ((i = 0; i < 600; i++)); do
	grep -aq '^tick 3 ' "$dir/g/serial.log" 2>/dev/null && break
	sleep 0.2
done
reports=()
for ((r = 1; r <= runs; r++)); do
	sleep 1	# the guest runs between updates, as in the field
	"$QMP" update -s "$dir/g/qmp.sock" --state "$dir/state" --json-out "$dir/u-$r.json" \
		>"$dir/u-$r.out" 2>&1 || { cat "$dir/u-$r.out" >&2; vm_die "update $r failed"; }
	reports+=("$dir/u-$r.json")
done
python3 "$here/pause-breakdown.py" "$dir/g/qemu.log" "${reports[@]}" $json
[ -n "$json" ] && exit 0

# A bare start of the binary: what exec, ld.so and QEMU's constructors cost
# before any of its own code, in the same chroot.
"$here/qemu-run.sh" --prog /bin/bash -- -c '
	for ((i = 0; i < 11; i++)); do
		s=$EPOCHREALTIME; "$0" -version >/dev/null; e=$EPOCHREALTIME
		echo "$s $e"
	done' "$prog" | awk '{ gsub(",", "."); printf "%.3f\n", ($2 - $1) * 1000 }' | sort -n |
	awk '{ d[NR] = $1 } END { printf "\nbare start of the binary (-version, %d runs): median %.2f ms\n", NR, d[int((NR + 1) / 2)] }'
