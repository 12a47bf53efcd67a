# Sourced by the QEMU tier's tests (tests/qemu/*.sh BUILD_DIR): TAP helpers
# (tests/tap.sh), then qemu_tier_setup NAME, which SKIPs the whole test
# without cprx-qmp, root, the QEMU chroot, the bookworm kernel or the guest's
# initramfs, and makes the work directory $W (its guests, DIR/pid, are
# killed on exit); then the console helpers for guests of
# qemu-integration/guest.sh, and those of the tests that update a guest
# into a QEMU that fails (rollback.sh, rescue.sh).
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/tests/tap.sh"
GUEST=$src/qemu-integration/guest.sh

qemu_tier_cleanup() {
	local p
	for p in "$W"/*/pid; do
		[ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
	sleep 0.3
	rm -rf "$W"
}

qemu_tier_setup() {	# NAME (of the work directory); needs $build
	QMP=$build/qemu-integration/cprx-qmp
	[ -x "$QMP" ] || skip_all "cprx-qmp not built (needs gio-unix-2.0 and json-glib-1.0)"
	[ "$(id -u)" = 0 ] || skip_all "needs root (chroot, mount namespaces)"
	W=$(mktemp -d "/tmp/cprx-qemu-$1.XXXXXX")
	trap qemu_tier_cleanup EXIT
	"$src/qemu-integration/qemu-chroot.sh" >/dev/null 2>"$W/chroot.log" ||
		skip_all "cannot build the QEMU chroot: $(tail -n1 "$W/chroot.log")"
	"$src/tests/vm/kernels.sh" bookworm >/dev/null 2>"$W/kernel.log" ||
		skip_all "no bookworm kernel: $(tail -n1 "$W/kernel.log")"
	"$GUEST" initramfs >/dev/null 2>"$W/initramfs.log" ||
		skip_all "cannot build the guest initramfs: $(tail -n1 "$W/initramfs.log")"
}

# One guest in $W/g under the chroot's stock QEMU (GUEST_ARGS go to
# guest.sh start); waits for its ticks and sets $pid.  The caller checks
# that it booted.
one_guest() {	# [GUEST_ARGS...]
	"$GUEST" start "$W/g" "$@" >/dev/null 2>"$W/g.start"
	wait_tick "$W/g" 3 || cat "$W/g.start" "$W/g/qemu.log" 2>/dev/null | diag
	pid=$(cat "$W/g/pid" 2>/dev/null)
}

# The console's lines end in \r\n (the guest tty's ONLCR).
console() { tr -d '\r' <"$1/serial.log"; }
last_tick() { console "$1" | sed -n 's/^tick \([0-9]*\) .*/\1/p' | tail -n1; }
# Waits until the guest in DIR printed tick > N (and, with a third argument,
# "ram ok M" with M > N).
wait_tick() {
	local dir=$1 after=$2 ram=${3:-} i t
	for ((i = 0; i < 600; i++)); do
		t=$(last_tick "$dir")
		if [ "${t:-0}" -gt "$after" ]; then
			[ -z "$ram" ] && return 0
			console "$dir" | sed -n 's/^ram ok \([0-9]*\)$/\1/p' |
				awk -v a="$after" '$1 > a { f = 1 } END { exit !f }' && return 0
		fi
		sleep 0.2
	done
	return 1
}

# QEMU's argv without its -incoming and without OPTION VALUE, when given;
# NUL-separated.
argv_without() {	# DIR [OPTION VALUE]
	local a i
	mapfile -d '' a </proc/"$(cat "$1/pid")"/cmdline
	for ((i = 0; i < ${#a[@]}; i++)); do
		if [ "${a[i]}" = -incoming ] ||
			{ [ $# = 3 ] && [ "${a[i]}" = "$2" ] && [ "${a[i + 1]:-}" = "$3" ]; }; then
			i=$((i + 1))
			continue
		fi
		printf '%s\0' "${a[i]}"
	done
}

# One boot, ticks consecutive: the guest never restarted nor skipped.
one_run() {
	console "$1" | awk '/^CPRX-GUEST ready/ { boots++ }
		/^tick / { n = $2 + 0
			if (seen && n != last + 1) { print "# gap: tick " last " -> " n; bad = 1 }
			last = n; seen = 1 }
		END { if (boots != 1) { print "# " boots + 0 " boots"; bad = 1 }
			exit bad || !seen }'
}
