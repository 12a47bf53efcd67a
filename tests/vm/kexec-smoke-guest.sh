#!/bin/bash
# Runs inside the guest for kexec-smoke.sh, once in each stage of run.sh
# --kexec (stage 1 in the first kernel, stage 2 in the kexec'd one):
#   kexec-smoke-guest.sh 1|2 LUO_SMOKE
# Prints "CHECK ok sN-NAME ..." or "CHECK fail sN-NAME: why" lines (N: the
# stage): the stage, KHO's debugfs side for it, luo_smoke's checks, and the
# whole boot's kernel log, where a warning from KHO or LUO counts as trouble.
# Exits with luo_smoke's status: a failed stage 1 stops the harness's kexec.
stage=$1 bin=$2
. "$(dirname "$0")/kernel-log.sh"
. "$(dirname "$0")/checks.sh"
CHECK_PREFIX=s$stage-

t_stage() {
	[ "${CPRX_VM_STAGE:-}" = "$stage" ] ||
		{ echo "CPRX_VM_STAGE is '${CPRX_VM_STAGE:-}', want $stage"; return 1; }
	[ "$(uname -r)" = "$CPRX_VM_KVER" ] ||
		{ echo "uname -r is $(uname -r), want $CPRX_VM_KVER"; return 1; }
	echo "$CPRX_VM_KERNEL $(uname -r), up $(cut -d' ' -f1 /proc/uptime)s"
}

# KHO's debugfs: out/ in every kernel that can hand over, in/ only in one
# that was handed something.
t_kho() {
	local d=/sys/kernel/debug/kho/$1
	[ -d "$d" ] || { echo "no $d"; return 1; }
	echo "$d: $(ls "$d" | paste -sd' ')"
}

check stage t_stage
if [ "$stage" = 1 ]; then
	check kho-out t_kho out
else
	check kho-in t_kho in
fi
"$bin" "stage$stage" | sed "s/^CHECK \(ok\|fail\) /&s$stage-/"
rc=${PIPESTATUS[0]}
check dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit "$rc"
