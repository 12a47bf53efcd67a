# PID 1 after switch_root (run by /run/cprx-vm/busybox sh): runs the job's
# command in the host's tree, reports its exit status, saves the kernel log,
# and stops the VM. See run.sh.
BB=/run/cprx-vm/busybox
IO=/run/cprx-vm/io
. "$IO/job.sh"

# ttyS1 carries CMD's output and our markers, nothing else (the kernel console
# is ttyS0).
exec >/dev/ttyS1 2>&1
$BB stty -onlcr 2>/dev/null
$BB hostname cprx-vm 2>/dev/null
# Loopback up (tests may use 127.0.0.1), quietly.
$BB ip link set lo up 2>/dev/null

echo "CPRX-VM-START-$CPRX_VM_NONCE"
# A clean environment: cmd.sh (written by run.sh) exports what it needs, cds
# and execs the command. stdin is /dev/null; stdout+stderr go to ttyS1.
$BB env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash "$IO/cmd.sh" </dev/null
rc=$?
# Exit status through the I/O share, and as a marker (fallback).
echo "$rc" >"$IO/exit.tmp" && $BB mv "$IO/exit.tmp" "$IO/exit"
$BB dmesg >"$IO/dmesg" 2>/dev/null
if [ "$CPRX_VM_DMESG" = 1 ]; then
	echo "CPRX-VM-DMESG-BEGIN"
	$BB cat "$IO/dmesg"
	echo "CPRX-VM-DMESG-END"
fi
$BB sync
echo "CPRX-VM-EXIT-$CPRX_VM_NONCE=$rc"
$BB reboot -f
$BB sleep 5
