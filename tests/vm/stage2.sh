# PID 1 after switch_root (run by /run/cprx-vm/busybox sh): runs the job's
# command in the host's tree, reports its exit status, saves the kernel log,
# and stops the VM. See run.sh.
#
# run.sh --kexec: the first kernel runs stage 1 (cmd.sh) and, when it
# succeeds, kexecs into the job's second kernel, leaving stage 1's processes
# running until the jump; that kernel's command line carries cprx_vm.stage=2,
# and this script, run again there by its init, runs stage 2 (cmd2.sh) and
# ends the VM as usual.
#
# run.sh --systemd: systemd is PID 1 and this script runs as its unit
# cprx-vm-stage.service (tests/vm/systemd); the same, except that the kexec
# is the next kernel loaded, then `systemctl kexec`: systemd's shutdown,
# whose systemd-shutdown makes the reboot(LINUX_REBOOT_CMD_KEXEC).
BB=/run/cprx-vm/busybox
IO=/run/cprx-vm/io
. "$IO/job.sh"
stage=1 systemd=0
case " $($BB cat /proc/cmdline) " in *" cprx_vm.stage=2 "*) stage=2 ;; esac
case " $($BB cat /proc/cmdline) " in *" cprx_vm.systemd "*) systemd=1 ;; esac

# ttyS1 carries CMD's output and our markers, nothing else (the kernel console
# is ttyS0).
exec >/dev/ttyS1 2>&1
$BB stty -onlcr 2>/dev/null
$BB hostname cprx-vm 2>/dev/null
# Loopback up (tests may use 127.0.0.1), quietly.
$BB ip link set lo up 2>/dev/null

# FILE: the kernel log, and on ttyS1 too with run.sh --dmesg.
save_dmesg() {
	$BB dmesg >"$IO/$1" 2>/dev/null
	if [ "$CPRX_VM_DMESG" = 1 ]; then
		echo "CPRX-VM-DMESG-BEGIN"
		$BB cat "$IO/$1"
		echo "CPRX-VM-DMESG-END"
	fi
}

# Stage 1 is over with status $rc: report it and, if it is 0, kexec. Returns
# only when there is no kexec (rc stays) or it failed (rc=123, the reason in
# kexec.err).
kexec_next() {
	echo "$rc" >"$IO/exit1.tmp" && $BB mv "$IO/exit1.tmp" "$IO/exit1"
	save_dmesg dmesg1
	echo "CPRX-VM-STAGE1-EXIT-$CPRX_VM_NONCE=$rc"
	[ "$rc" = 0 ] || return
	# Run the tool from tmpfs, not from the 9p share it came in.
	$BB cp "$IO/kexec-boot" /run/cprx-vm/kexec-boot
	if [ $systemd = 1 ]; then
		kexec_systemd
		return
	fi
	# Where the kexec'd kernel's console output begins, for run.sh.
	echo "CPRX-VM-KEXEC-NOW" >/dev/console
	$BB sync
	/run/cprx-vm/kexec-boot "$IO/kexec-kernel" "$IO/kexec-initrd" \
		"$CPRX_VM_KEXEC_CMDLINE" "$IO/kexec.tsc" 2>"$IO/kexec.err"
	st=$?
	[ -s "$IO/kexec.err" ] || echo "kexec-boot came back with status $st" >"$IO/kexec.err"
	rc=123
}

# --systemd: load, then `systemctl kexec`; exits when systemd took the job
# (its shutdown stops this unit), returns with rc=123 when either failed.
# No TSC stamps: the reboot call is systemd-shutdown's.
kexec_systemd() {
	/run/cprx-vm/kexec-boot --load-only "$IO/kexec-kernel" "$IO/kexec-initrd" \
		"$CPRX_VM_KEXEC_CMDLINE" 2>"$IO/kexec.err" || { rc=123; return; }
	echo "CPRX-VM-KEXEC-NOW" >/dev/console
	$BB sync
	# what it says on the way is no failure (no bus after an isolate, say):
	# shown between the stages
	if systemctl kexec 2>/run/cprx-vm/systemctl.err; then
		$BB cat /run/cprx-vm/systemctl.err
		exit 0
	fi
	$BB cp /run/cprx-vm/systemctl.err "$IO/kexec.err"
	[ -s "$IO/kexec.err" ] || echo "systemctl kexec failed" >"$IO/kexec.err"
	rc=123
}

read -r up _ </proc/uptime
echo "$up" >"$IO/uptime$stage"
if [ $stage = 2 ]; then
	echo "CPRX-VM-STAGE2-START-$CPRX_VM_NONCE"
	cmd=$IO/cmd2.sh
else
	echo "CPRX-VM-START-$CPRX_VM_NONCE"
	cmd=$IO/cmd.sh
fi
# A clean environment: cmd.sh (written by run.sh) exports what it needs, cds
# and execs the command. stdin is /dev/null; stdout+stderr go to ttyS1.
$BB env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash "$cmd" </dev/null
rc=$?
if [ "${CPRX_VM_KEXEC:-0}" = 1 ] && [ $stage = 1 ]; then
	kexec_next
else
	save_dmesg dmesg
fi
# Exit status through the I/O share, and as a marker (fallback).
echo "$rc" >"$IO/exit.tmp" && $BB mv "$IO/exit.tmp" "$IO/exit"
$BB sync
echo "CPRX-VM-EXIT-$CPRX_VM_NONCE=$rc"
$BB reboot -f
$BB sleep 5
