#!/bin/bash
# Runs inside the guest for kexec-smoke.sh, once in each stage of run.sh
# --kexec (stage 1 in the first kernel, stage 2 in the kexec'd one):
#   kexec-smoke-guest.sh 1|2 LUO_SMOKE [noluo]
# Prints "CHECK ok sN-NAME ..." or "CHECK fail sN-NAME: why" lines (N: the
# stage): the stage, KHO's debugfs side for it, luo_smoke's checks, and the
# whole boot's kernel log, where a warning from KHO or LUO counts as trouble.
# Exits with luo_smoke's status: a failed stage 1 stops the harness's kexec.
# noluo: stage 2 in a kernel without KHO and LUO (sid's stock one): that
# they are absent, that KHO data was handed over all the same, and the log.
stage=$1 bin=$2 mode=${3:-}
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

t_no_luo() {
	[ ! -e /dev/liveupdate ] || { echo "/dev/liveupdate is there"; return 1; }
	[ ! -e /sys/kernel/debug/kho ] || { echo "/sys/kernel/debug/kho is there"; return 1; }
	echo "no /dev/liveupdate, no KHO"
}

# The first kernel handed KHO data over (LUO's among it), which a kernel
# without KHO says it ignores.
t_kho_passed() {
	dmesg | grep -m1 'Passed KHO data' || { echo "no 'Passed KHO data' in the log"; return 1; }
}

check stage t_stage
rc=0
if [ "$mode" = noluo ]; then
	check no-luo t_no_luo
	check kho-passed t_kho_passed
else
	if [ "$stage" = 1 ]; then
		check kho-out t_kho out
	else
		check kho-in t_kho in
	fi
	"$bin" "stage$stage" | sed "s/^CHECK \(ok\|fail\) /&s$stage-/"
	rc=${PIPESTATUS[0]}
fi
check dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit "$rc"
