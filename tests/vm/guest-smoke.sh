#!/bin/bash
# Runs inside the guest for smoke.sh (one boot, all checks batched):
#   guest-smoke.sh KVER REPO SHARE_DIR MODULE.ko
# Prints "CHECK ok NAME" or "CHECK fail NAME: why" lines, then exits 7 on
# purpose: smoke.sh checks that this status reaches the host.
kver=$1 repo=$2 share=$3 ko=$4
. "$(dirname "$0")/checks.sh"

t_uname() {
	[ "$(uname -r)" = "$kver" ] || { echo "uname -r is $(uname -r), want $kver"; return 1; }
	[ "${CPRX_IN_VM:-}" = 1 ] || { echo "CPRX_IN_VM not set"; return 1; }
	[ "$PWD" = "$repo" ] || { echo "cwd is $PWD, want $repo"; return 1; }
}

t_lsm() {
	local l
	l=$(cat /sys/kernel/security/lsm) || return 1
	echo "lsm=$l"
	case ",$l," in *,bpf,*) ;; *) return 1 ;; esac
}

t_ro_repo() {
	[ -f "$repo/meson.build" ] || { echo "$repo/meson.build not visible"; return 1; }
	if touch "$repo/.cprx-vm-write-test" 2>/dev/null; then
		rm -f "$repo/.cprx-vm-write-test"
		echo "the repo is writable in the guest"
		return 1
	fi
	grep -q ' / 9p .*\bro\b' /proc/mounts || { echo "/ is not a read-only 9p mount"; return 1; }
}

t_writable() {
	local d
	for d in /tmp /var/tmp /run /root /dev/shm; do
		echo hi >"$d/cprx-vm-w" && [ "$(cat "$d/cprx-vm-w")" = hi ] ||
			{ echo "$d not writable"; return 1; }
		rm -f "$d/cprx-vm-w"
	done
}

t_share() {
	echo "from-guest $kver" >"$share/from-guest" || return 1
	[ "$(cat "$share/from-host")" = from-host ] || { echo "cannot read the host's file"; return 1; }
}

t_apifs() {
	local fs bad=
	for fs in "/proc proc" "/sys sysfs" "/dev devtmpfs" "/dev/pts devpts" \
		"/dev/shm tmpfs" "/sys/kernel/security securityfs" \
		"/sys/kernel/debug debugfs" "/sys/kernel/tracing tracefs" \
		"/sys/fs/bpf bpf" "/sys/fs/cgroup cgroup2"; do
		set -- $fs
		awk -v m="$1" -v t="$2" '$2 == m && $3 == t { f = 1 } END { exit !f }' /proc/mounts ||
			bad="$bad $1($2)"
	done
	[ -z "$bad" ] || { echo "not mounted:$bad"; return 1; }
	[ -d "/lib/modules/$kver/kernel" ] || { echo "/lib/modules/$kver missing"; return 1; }
}

t_module() {
	local m=cprx_hello
	insmod "$ko" magic=7 || return 1
	[ "$(cat /sys/module/$m/parameters/magic)" = 7 ] || { echo "magic param not 7"; return 1; }
	dmesg | grep -q "cprx_hello: loaded on $kver, magic=7" || { echo "no load message"; return 1; }
	if readelf -S "$ko" 2>/dev/null | grep -q '\.BTF '; then
		[ -e /sys/kernel/btf/$m ] || { echo "module BTF not loaded"; return 1; }
		echo "module BTF: yes"
	fi
	rmmod $m || return 1
	! grep -q "^$m " /proc/modules || { echo "still loaded"; return 1; }
	dmesg | grep -q 'cprx_hello: unloaded' || { echo "no unload message"; return 1; }
}

t_dmesg() {
	if dmesg | grep -E 'WARNING:|BUG:|Oops|general protection fault|Call Trace:|new suspected memory leak'; then
		return 1
	fi
}

# research kernel: KASAN, lockdep (still on: no splat turned it off) and
# kmemleak (a scan runs) are live.
t_checkers() {
	local kl=/sys/kernel/debug/kmemleak n
	dmesg | grep -q 'KernelAddressSanitizer initialized (generic)' ||
		{ echo "KASAN did not initialise"; return 1; }
	grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats ||
		{ echo "lockdep is off: $(grep debug_locks /proc/lockdep_stats 2>&1)"; return 1; }
	[ -w $kl ] || { echo "no $kl"; return 1; }
	echo scan >$kl || { echo "kmemleak scan failed"; return 1; }
	n=$(grep -c '^unreferenced object' $kl)
	echo "KASAN generic, lockdep debug_locks=1, kmemleak scan: $n suspects"
}

# research kernel: kexec_file_load, kexec handover on by default, the live
# update orchestrator's device.
t_kexec() {
	[ -e /sys/kernel/kexec_loaded ] || { echo "no kexec"; return 1; }
	[ -d /sys/kernel/debug/kho ] || { echo "no /sys/kernel/debug/kho (KHO off?)"; return 1; }
	[ -c /dev/liveupdate ] || { echo "no /dev/liveupdate (LUO off?)"; return 1; }
	echo "kho and /dev/liveupdate present; cmdline: $(cat /proc/cmdline)"
}

check uname t_uname
check lsm-bpf t_lsm
check repo-readonly t_ro_repo
check tmpfs-writable t_writable
check share-readwrite t_share
check api-filesystems t_apifs
check module t_module
if [ "${CPRX_VM_KERNEL:-}" = research ]; then
	check debug-checkers t_checkers
	check kexec-handover t_kexec
fi
check dmesg-clean t_dmesg
exit 7
