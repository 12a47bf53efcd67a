#!/bin/bash
# Runs in a research-kernel guest (tests/vm/luo.sh), as root: the preserve
# side of libcprx's luo backend on a real /dev/liveupdate, in one boot (the
# kexec itself is vm-kexec's).  TAP:
#
#   tests/vm/run.sh --kernel research -- tests/vm/luo-guest.sh BUILD_DIR
#
# cprx-luod owns the device (a second opener gets EBUSY); cprx-vmm --kexec
# of root and of nobody each prepare a 256 MiB guest in a session named
# after their uid; status lists both held, nobody's only its own; a VMM
# that also preserves its device fds is refused by preflight naming the
# token; stopping the daemon drops the sessions; the kernel log stays
# clean throughout.
set -uo pipefail
here=$(dirname "$0")
. "$here/../tap.sh"
. "$here/kernel-log.sh"

build=${1:?usage: $0 BUILD_DIR}
luod=$build/tools/cprx-luod
vmm=$build/tools/cprx-vmm
[ -c /dev/liveupdate ] ||
	skip_all "no /dev/liveupdate on $(uname -r): boot with liveupdate=on"
echo "TAP version 13"
klog_mark luo
W=$(mktemp -d /tmp/cprx-luo-vm.XXXXXX)
chmod 755 "$W"
export CPRX_LUOD_SOCKET=$W/sock
"$luod" --socket "$W/sock" --state-dir "$W/state" 2>"$W/luod.log" &
luod_pid=$!
for _ in $(seq 100); do [ -S "$W/sock" ] && break; sleep 0.1; done

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
prepare() {	# NAME OUT [as_nobody]
	local name=$1 out=$2
	shift 2
	"$@" "$vmm" --kexec --name "$name" --ram 256M --json >"$out" 2>&1
}

prepare vm-a "$W/a.json"
check "root's cprx-vmm --kexec prepares vm-a (exit 0)" \
	grep -q '"event":"kexec-prepared"' "$W/a.json"
diag <"$W/a.json"
check "cprx-luod holds /dev/liveupdate open" \
	sh -c "ls -l /proc/$luod_pid/fd | grep -q /dev/liveupdate"
# the shell that fails to open it says why, and exits
check "a second opener of /dev/liveupdate gets EBUSY" \
	sh -c "sh -c 'exec 9<>/dev/liveupdate' 2>&1 | grep -q 'resource busy'"
prepare vm-b "$W/b.json" as_nobody
check "nobody's cprx-vmm --kexec prepares vm-b (exit 0)" \
	grep -q '"event":"kexec-prepared"' "$W/b.json"
diag <"$W/b.json"
"$luod" status >"$W/status" 2>&1
diag <"$W/status"
check "status: root's vm-a held" grep -q '^0 vm-a held' "$W/status"
check "status: nobody's vm-b held" grep -q '^65534 vm-b held' "$W/status"
as_nobody "$luod" status >"$W/status-nobody" 2>&1
check "nobody's status lists only its own session" \
	sh -c "head -n1 '$W/status-nobody' | grep -qx 1 &&
	       grep -q '^65534 vm-b held' '$W/status-nobody'"
"$vmm" --kexec --name vm-c --ram 16M --json --inject kexec-device \
	>"$W/c.json" 2>&1
rc=$?
check "a device fd is refused by preflight naming it (exit 3, got $rc)" \
	sh -c "[ $rc = 3 ] && grep -q 'luo:dev.eventfd' '$W/c.json'"
kill "$luod_pid"
wait "$luod_pid"
diag <"$W/luod.log"
check "stopping cprx-luod drops the held sessions (it says so)" \
	grep -q 'stopping: session cprx-0-vm-a is dropped' "$W/luod.log"
check "the kernel log stays clean" klog_trouble
echo "1..$n"
rm -rf "$W"
exit $((failed > 0))
