#!/bin/bash
# vm-kexec-smoke: kexec handover (KHO) and the live update orchestrator
# (LUO) in the research kernel, through run.sh --kexec. TAP on stdout; run
# from the source root:
#
#   tests/vm/kexec-smoke.sh BUILD_DIR
#
# Stage 1 (research kernel), in each run: /dev/liveupdate, a session, a
# memfd with a pattern preserved in it, a process holding the session.
# research -> research: stage 2 retrieves the session and the memfd, finds
# the pattern intact and finishes the session. research -> sid (a kernel
# without LUO): LUO's state is serialised on the way out, and the stock
# kernel boots past it. Every boot's kernel log must be clean, KHO's and
# LUO's warnings included (tests/vm/kexec-smoke-guest.sh).
#
# SKIPs when the research kernel is not cached (tests/vm/kernels.sh research
# builds it). kexec_file_load takes only a relocatable bzImage (x86's
# XLF_CAN_BE_LOADED_ABOVE_4G): a research kernel built without
# CONFIG_RELOCATABLE cannot be kexec'd into, and research -> research SKIPs,
# saying so.
set -u
VM=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: $0 BUILD_DIR}
bin=$(readlink -f "$build")/tests/luo_smoke
scratch=$(mktemp -d /tmp/cprx-kexec-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

if ! kdir=$("$VM/kernels.sh" --cached research 2>"$scratch/kernel.log"); then
	echo "1..0 # SKIP research kernel not cached: $(tail -n 1 "$scratch/kernel.log")"
	exit 0
fi
s1=(s1-stage s1-kho-out s1-luo-open s1-no-incoming-session s1-session-create
	s1-memfd-fill s1-memfd-preserve s1-holder s1-dmesg)
s2_luo=(s2-stage s2-kho-in s2-luo-open s2-session-retrieve s2-memfd-retrieve
	s2-memfd-pattern s2-session-finish s2-memfd-usable s2-dmesg)
s2_noluo=(s2-stage s2-no-luo s2-kho-passed s2-dmesg)
# The boot protocol's xloadflags (offset 0x236), bit 1: loadable above 4 GiB,
# which the kexec_file_load bzImage loader requires.
xl=$(od -An -tu2 -j $((0x236)) -N2 "$kdir/vmlinuz" | tr -d ' ')
self=1
(( xl & 2 )) || self=0
echo "1..$(( 1 + ${#s1[@]} + ${#s2_noluo[@]} + (self ? 1 + ${#s1[@]} + ${#s2_luo[@]} : 1) ))"
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"

# run TARGET [noluo]: research -> TARGET, then the points for its checks.
run() {
	local target=$1 mode=${2:-} out="$scratch/$1" rc label="research -> $1"
	local guest=(bash "$VM/kexec-smoke-guest.sh")
	"$VM/run.sh" --kernel research --kexec --kexec-kernel "$target" --timeout 1500 \
		--stage-report "$out.stages" --dmesg-out "$out.dmesg" -- \
		"${guest[@]}" 1 "$bin" ::: "${guest[@]}" 2 "$bin" $mode \
		>"$out.out" 2>"$out.err"
	rc=$?
	r() { sed -n "s/^$1=//p" "$out.stages" 2>/dev/null; }
	if [ $rc = 0 ] && [ "$(r KEXEC)" = ok ] && [ "$(r STAGE1_STATUS)" = 0 ]; then
		ok "$label ($(r KVER2)): kexec, both stages exit 0 (stage 1 $(r STAGE1_UPTIME)s into its boot, stage 2 $(r STAGE2_UPTIME)s into the kexec'd kernel's, $(r KEXEC_SECONDS)s after stage 1 ended)"
	else
		notok "$label: kexec, both stages exit 0 (run.sh: $rc, kexec: $(r KEXEC))"
		diag "$out.out" "$out.err"
	fi
	if [ "$mode" = noluo ]; then
		check_points "$out.out" "$label: " "${s1[@]}" "${s2_noluo[@]}"
	else
		check_points "$out.out" "$label: " "${s1[@]}" "${s2_luo[@]}"
	fi
}

if [ $self = 1 ]; then
	run research
else
	n=$((n + 1))
	echo "ok $n - research -> research # SKIP the cached research kernel's bzImage is not relocatable (xloadflags $xl): kexec_file_load refuses it (ENOEXEC); it needs CONFIG_RELOCATABLE=y (tests/vm/research/kexec.config) and a rebuild"
fi
# sid, unlike research, comes from the registry (or the cache).
if "$VM/kernels.sh" sid >"$scratch/sid.log" 2>&1; then
	run sid noluo
else
	for _ in $(seq $(( 1 + ${#s1[@]} + ${#s2_noluo[@]} ))); do
		n=$((n + 1))
		echo "ok $n # SKIP no sid kernel: $(tail -n 1 "$scratch/sid.log")"
	done
fi
