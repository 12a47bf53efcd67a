# Sourced by the VM tier's guest-side scripts: did the kernel complain while
# they ran?  klog_mark writes a marker to /dev/kmsg and notes the taint;
# klog_trouble prints what went wrong since (BUG, WARNING, Oops, leaks,
# kmemleak reports, a new bad taint flag, then the log's tail) and returns 1,
# or prints nothing and returns 0.

# Taint bits that mean trouble: M (machine check), B (bad page), D (oops),
# W (warning), L (soft lockup).  O and E, for our out-of-tree unsigned
# module, are expected.
BAD_TAINT=$(( (1 << 4) | (1 << 5) | (1 << 7) | (1 << 9) | (1 << 14) ))
BAD_LOG='BUG|WARNING|Oops|leak|kmemleak|general protection|refcount_t'
KMEMLEAK=/sys/kernel/debug/kmemleak
# What every boot of the research kernel says that BAD_LOG would match.
BOOT_OK='kmemleak: Kernel memory leak detector initialized|kmemleak: Automatic memory scanning thread'
# A user process's own fault, reported by the kernel ("traps: COMM[PID]
# general protection fault ip:..."): vm-guard's int 0x80 probe makes one
# where ia32 entry is off.  A fault in the kernel reads "Oops: general
# protection fault", which BAD_LOG still catches.
USER_FAULT='traps: .*\[[0-9]+\] general protection fault ip:'

klog_mark() {	# NAME
	klog_marker="$1: start $$.$RANDOM"
	echo "$klog_marker" >/dev/kmsg
	klog_taint0=$(cat /proc/sys/kernel/tainted)
	[ -w "$KMEMLEAK" ] && echo clear >"$KMEMLEAK"
	return 0
}

klog_trouble() {
	local log bad leaks="" taint new_taint
	if [ -w "$KMEMLEAK" ]; then
		echo scan >"$KMEMLEAK"
		sleep 1
		echo scan >"$KMEMLEAK"
		leaks=$(cat "$KMEMLEAK")
	fi
	log=$(dmesg | awk -v m="$klog_marker" 'm == "" || found; m != "" && index($0, m) { found = 1 }')
	bad=$(printf '%s\n' "$log" | grep -E "$BAD_LOG" | grep -vE "$BOOT_OK|$USER_FAULT")
	taint=$(cat /proc/sys/kernel/tainted)
	new_taint=$(( taint & ~klog_taint0 & BAD_TAINT ))
	[ -z "$bad" ] && [ -z "$leaks" ] && [ $new_taint = 0 ] && return 0
	[ -n "$bad" ] && printf '%s\n' "$bad"
	[ -n "$leaks" ] && printf '%s\n' "$leaks" | head -n 40
	echo "taint $klog_taint0 -> $taint"
	printf '%s\n' "$log" | tail -n 60
	return 1
}

# The whole boot, for a guest that lives through a kexec (each kernel's log
# starts empty): klog_boot_trouble SUBSYS_ERE prints what klog_trouble would
# since boot (taint against none), plus every message of level warning or
# worse from the subsystems whose prefixes SUBSYS_ERE matches (e.g. 'KHO|luo'
# matches "KHO: " and "luo_session: "): their warnings count too.
klog_boot_trouble() {
	local sub rc=0
	klog_marker=
	klog_taint0=0
	sub=$(dmesg --level=emerg,alert,crit,err,warn 2>/dev/null |
		grep -E "^\[[ 0-9.]+\] ($1)[a-z_]*: ")
	klog_trouble || rc=1
	[ -z "$sub" ] || { printf '%s\n' "$sub"; rc=1; }
	return $rc
}
