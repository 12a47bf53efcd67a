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
	log=$(dmesg | awk -v m="$klog_marker" 'found; index($0, m) { found = 1 }')
	bad=$(printf '%s\n' "$log" | grep -E "$BAD_LOG")
	taint=$(cat /proc/sys/kernel/tainted)
	new_taint=$(( taint & ~klog_taint0 & BAD_TAINT ))
	[ -z "$bad" ] && [ -z "$leaks" ] && [ $new_taint = 0 ] && return 0
	[ -n "$bad" ] && printf '%s\n' "$bad"
	[ -n "$leaks" ] && printf '%s\n' "$leaks" | head -n 40
	echo "taint $klog_taint0 -> $taint"
	printf '%s\n' "$log" | tail -n 60
	return 1
}
