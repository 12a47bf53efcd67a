#!/bin/bash
# vm-guard-kexec: the guard across a kexec of the research kernel (debug:
# KASAN, lockdep, kmemleak; tests/vm/research). TAP on stdout.
#
#   tests/guard/kexec.sh BUILD_DIR
#
# One run.sh --kexec run, research -> research (tests/guard/kexec-guest.sh
# is both stages). Stage 1 loads the guard as cprx-guard.service does
# (pinned, enforcing: its canary refused, status ENFORCING, a guarded exec
# of a non-allowed binary EPERM), and a second one whose status file
# survives the kexec. Stage 2: BPF does not survive a kexec, so neither
# status may say ENFORCING nor libcprx predict a refusal (the default
# status is on a fresh /run; the kept one is stale by its boot id); the
# unit's load then enforces again. Both boots' kernel logs clean.
#
# No cprx.ko: the guard loads without it (armed-only aside). SKIPs without
# the research kernel in the cache, or when it cannot be kexec'd into.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
VM=$HERE/../vm
B=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
if [ ! -x "$B/bpf/cprx-guard" ]; then
	echo "1..0 # SKIP cprx-guard was not built (see meson's bpf/ message)"
	exit 0
fi
scratch=$(mktemp -d /tmp/cprx-guard-kexec.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
if ! "$VM/kernels.sh" --cached research >/dev/null 2>"$scratch/kernel.log"; then
	echo "1..0 # SKIP research kernel not cached: $(tail -n 1 "$scratch/kernel.log")"
	exit 0
fi
. "$HERE/kexec-checks.sh"
s1=("${guard_kexec_s1[@]}")
s2=("${guard_kexec_s2[@]}")
shares=(--share "$scratch")
case $B/ in /tmp/*|/var/tmp/*|/run/*|/root/*) shares+=(--share "$B") ;; esac
guest=(bash "$HERE/kexec-guest.sh")
t0=$(date +%s)
"$VM/run.sh" --kernel research --kexec --timeout 1500 "${shares[@]}" \
	--stage-report "$scratch/stages" --dmesg-out "$scratch/dmesg" -- \
	"${guest[@]}" 1 "$B" "$scratch" ::: "${guest[@]}" 2 "$B" "$scratch" \
	>"$scratch/out" 2>"$scratch/err"
rc=$?
if [ $rc = 123 ] && grep -q 'kexec_file_load.*Exec format error' "$scratch/err"; then
	echo "1..0 # SKIP the research kernel cannot be kexec'd into: not a relocatable bzImage (CONFIG_RELOCATABLE)"
	exit 0
fi
echo "1..$((1 + ${#s1[@]} + ${#s2[@]}))"
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"
r() { sed -n "s/^$1=//p" "$scratch/stages" 2>/dev/null; }
if [ $rc = 0 ] && [ "$(r KEXEC)" = ok ]; then
	ok "research -> research kexec, both stages exit 0 ($(( $(date +%s) - t0 ))s; stage 2 $(r STAGE2_UPTIME)s into the kexec'd kernel's boot)"
else
	notok "research -> research kexec, both stages exit 0 (run.sh: $rc, kexec: $(r KEXEC))"
	diag "$scratch/out" "$scratch/err"
fi
check_points "$scratch/out" "stage 1 (before the kexec): " "${s1[@]/#/s1-}"
check_points "$scratch/out" "stage 2 (after the kexec): " "${s2[@]/#/s2-}"
