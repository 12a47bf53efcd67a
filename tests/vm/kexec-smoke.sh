#!/bin/bash
# vm-kexec-smoke: kexec handover (KHO) and the live update orchestrator
# (LUO) in the research kernel, through run.sh --kexec. TAP on stdout; run
# from the source root:
#
#   tests/vm/kexec-smoke.sh BUILD_DIR
#
# Stage 1 (research kernel): /dev/liveupdate, a session, a memfd with a
# pattern preserved in it, a process holding the session; the harness
# kexecs into the research kernel again; stage 2: the session and the memfd
# retrieved, the pattern intact, the session finished. Both boots' kernel
# logs must be clean, KHO's and LUO's warnings included
# (tests/vm/kexec-smoke-guest.sh). SKIPs when the research kernel is not
# cached (tests/vm/kernels.sh research builds it).
set -u
VM=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: $0 BUILD_DIR}
bin=$(readlink -f "$build")/tests/luo_smoke
scratch=$(mktemp -d /tmp/cprx-kexec-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

if ! "$VM/kernels.sh" --cached research >"$scratch/kernel.log" 2>&1; then
	echo "1..0 # SKIP research kernel not cached: $(tail -n 1 "$scratch/kernel.log")"
	exit 0
fi
checks=(s1-stage s1-kho-out s1-luo-open s1-no-incoming-session s1-session-create
	s1-memfd-fill s1-memfd-preserve s1-holder s1-dmesg
	s2-stage s2-kho-in s2-luo-open s2-session-retrieve s2-memfd-retrieve
	s2-memfd-pattern s2-session-finish s2-memfd-usable s2-dmesg)
echo "1..$(( 1 + ${#checks[@]} ))"
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"

guest=(bash "$VM/kexec-smoke-guest.sh")
"$VM/run.sh" --kernel research --kexec --timeout 1500 \
	--stage-report "$scratch/stages" --dmesg-out "$scratch/dmesg" -- \
	"${guest[@]}" 1 "$bin" ::: "${guest[@]}" 2 "$bin" \
	>"$scratch/out" 2>"$scratch/err"
rc=$?
r() { sed -n "s/^$1=//p" "$scratch/stages" 2>/dev/null; }
if [ $rc = 0 ] && [ "$(r KEXEC)" = ok ] && [ "$(r STAGE1_STATUS)" = 0 ]; then
	ok "research -> research kexec, both stages exit 0 (stage 1 $(r STAGE1_UPTIME)s into its boot, stage 2 $(r STAGE2_UPTIME)s into the kexec'd kernel's, $(r KEXEC_SECONDS)s after stage 1 ended)"
else
	notok "research -> research kexec, both stages exit 0 (run.sh: $rc, kexec: $(r KEXEC))"
	diag "$scratch/out" "$scratch/err"
fi
check_points "$scratch/out" "" "${checks[@]}"
