#!/bin/bash
# Runs inside the guest for luo-kexec.sh, once in each stage of run.sh
# --kexec:
#   luo-kexec-guest.sh 1|2 BUILD_DIR SHARE
# SHARE (shared read-write with the host) keeps cprx-luod's records and
# logs across the kexec.  Prints "CHECK ok sN-NAME ..." / "CHECK fail
# sN-NAME: why" lines (tests/vm/checks.sh).
#
# Stage 1: cprx-luod (left running: it must hold the sessions at the
# jump) owns /dev/liveupdate (a second opener gets EBUSY); two cprx-vmm
# --kexec of 256 MiB, root's vm-a and nobody's vm-b, prepared; the status
# lists both, nobody's only its own; a VMM that also preserves a device fd
# is refused by preflight naming its token.  Stage 2, in a kernel with
# LUO: the status verb lists both unfinished; a VMM of a third uid asking
# for either name starts afresh (it cannot retrieve them); root's and
# nobody's VMMs resume theirs (RAM and device state verified, generation
# 1), the status listing the one not yet resumed; a session held when
# the daemon stops is dropped, and the daemon says so.  In a kernel
# without LUO: both VMMs say their state is gone and why and exit 4, the
# status lists both unfinished, the third uid starts afresh.  Each boot's
# kernel log must be clean, KHO's and LUO's warnings included.  Exits 1 when a stage-1 check failed (no kexec).
stage=$1 build=$2 share=$3
. "$(dirname "$0")/luo-vmm.sh"

run stage t_stage
if [ "$stage" = 1 ]; then
	run luod start_luod
	run prepare-root t_prepared 0 vm-a
	run luod-owns-device t_owns_device	# opened at the first request
	run prepare-nobody t_prepared 65534 vm-b
	run status-held t_status '^0 vm-a held' '^65534 vm-b held'
	run status-nobody t_status_nobody
	run preflight-device t_device_refused
elif [ -c /dev/liveupdate ]; then
	run luod start_luod
	run status-unfinished t_status '^0 vm-a incoming' '^65534 vm-b incoming'
	run other-uid-a t_fresh 65533 vm-a
	run other-uid-b t_fresh 65533 vm-b
	run resume-root t_resumed 0 vm-a
	run status-one-left t_status '^1$' '^65534 vm-b incoming'
	run resume-nobody t_resumed 65534 vm-b
	run status-none-left t_status '^0$'
	run stop-drops t_stop_drops
else
	run luod start_luod
	run gone-root t_gone 0 vm-a
	run gone-nobody t_gone 65534 vm-b
	run status-unfinished t_status '^0 vm-a incoming' '^65534 vm-b incoming'
	run other-uid-a t_fresh 65533 vm-a
fi
run dmesg klog_boot_trouble 'KHO|kho|luo|liveupdate|memfd_luo'
exit $failed
