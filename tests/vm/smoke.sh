#!/bin/bash
# The VM tier's smoke test, TAP on stdout (meson test --suite vm).
#
# For each kernel (bookworm, sid; override with CPRX_VM_KERNELS="...", which
# may name research too): fetch it, build tests/vm/hello against its headers
# with kbuild.sh --werror, boot it once and run guest-smoke.sh there (uname,
# bpf in the LSM list, the repo read-only, tmpfs writable, a --share
# read-write both ways, the API filesystems, insmod/rmmod of the hello module,
# a clean kernel log; research also: KASAN, lockdep and kmemleak live, kexec
# handover and /dev/liveupdate), and check that the guest's exit status
# reaches the host. Then check that a timeout is reported as 124, and a panic
# before /init as 125 after a retry; and run.sh --kexec: both stages' output
# and statuses reach the host, a failed stage 1 means no kexec, a refused
# kexec is 123, a kexec'd kernel that never starts stage 2 is 125.
#
# A kernel that cannot be fetched (no registry, sid moved on and the cache is
# empty) makes its tests "ok # SKIP", unless CPRX_VM_REQUIRE_KERNELS=1.
set -u
VM=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$VM/../.." && pwd)
cd "$REPO" || exit 1
read -r -a kernels <<<"${CPRX_VM_KERNELS:-bookworm sid}"
# The guest's checks for kernel $1, in guest-smoke.sh's order.
checks_of() {
	echo uname lsm-bpf repo-readonly tmpfs-writable share-readwrite api-filesystems module
	[ "$1" != research ] || echo debug-checkers kexec-handover
	echo dmesg-clean
}
total=6
for k in "${kernels[@]}"; do
	total=$(( total + 4 + $(checks_of "$k" | wc -w) ))
done
echo "1..$total"

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"

scratch=$(mktemp -d /tmp/cprx-vm-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export CPRX_VM_TIME=1
any_kernel=

for k in "${kernels[@]}"; do
	read -r -a checks <<<"$(checks_of "$k" | paste -sd' ')"
	per=$((4 + ${#checks[@]}))
	# 1: the kernel
	t0=$(date +%s)
	if ! kdir=$("$VM/kernels.sh" "$k" 2>"$scratch/$k-fetch.log"); then
		if [ "${CPRX_VM_REQUIRE_KERNELS:-0}" = 1 ]; then
			notok "$k: fetch the kernel"
			diag "$scratch/$k-fetch.log"
			for _ in $(seq 2 "$per"); do notok "$k: no kernel"; done
		else
			echo "# $k kernel unavailable:"
			diag "$scratch/$k-fetch.log"
			for _ in $(seq 1 "$per"); do skip "$k kernel cannot be fetched"; done
		fi
		continue
	fi
	kver=$(sed -n 's/^KVER=//p' "$kdir/info")
	any_kernel=$k
	ok "$k: kernel $kver ($(sed -n 's/^PKGVER=//p' "$kdir/info")) in $kdir ($(( $(date +%s) - t0 ))s)"

	# 2: the module build (bookworm: with module BTF via --btf when pahole is there)
	out="$scratch/hello-$k"
	flags=(--werror)
	[ "$k" != bookworm ] || ! command -v pahole >/dev/null || flags+=(--btf)
	t0=$(date +%s)
	if "$VM/kbuild.sh" "${flags[@]}" "$k" "$VM/hello" "$out" >"$scratch/$k-kbuild.log" 2>&1 &&
	   [ -f "$out/cprx_hello.ko" ]; then
		ok "$k: hello module builds against $(sed -n 's/^HEADERS=//p' "$kdir/info") with no warnings ($(( $(date +%s) - t0 ))s)"
	else
		notok "$k: hello module builds against $(sed -n 's/^HEADERS=//p' "$kdir/info") with no warnings"
		diag "$scratch/$k-kbuild.log"
	fi

	# 3: one boot, all guest checks
	share="$scratch/share-$k"
	mkdir -p "$share"
	echo from-host >"$share/from-host"
	t0=$(date +%s.%N)
	"$VM/run.sh" --kernel "$k" --share "$scratch" --timeout 300 \
		--dmesg-out "$scratch/$k-dmesg" -- \
		bash "$VM/guest-smoke.sh" "$kver" "$REPO" "$share" "$out/cprx_hello.ko" \
		>"$scratch/$k-guest.log" 2>"$scratch/$k-run.err"
	rc=$?
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
	if [ $rc = 7 ]; then
		ok "$k: boots, runs a command and returns its exit status (7) (${secs}s)"
	else
		notok "$k: boots, runs a command and returns its exit status (got $rc, want 7)"
		diag "$scratch/$k-guest.log" "$scratch/$k-run.err"
	fi
	check_points "$scratch/$k-guest.log" "$k: " "${checks[@]}"

	# 4: the host sees what the guest wrote to the share
	if [ "$(cat "$share/from-guest" 2>/dev/null)" = "from-guest $kver" ]; then
		ok "$k: the host reads the guest's file from --share"
	else
		notok "$k: the host reads the guest's file from --share"
	fi
	if [ -s "$scratch/$k-dmesg" ] && grep -qE 'WARNING:|BUG:|Oops' "$scratch/$k-dmesg"; then
		echo "# $k guest dmesg:"
		diag "$scratch/$k-dmesg"
	fi
done

# Last: a guest that does not finish in time is reported as 124.
if [ -n "$any_kernel" ]; then
	t0=$(date +%s)
	"$VM/run.sh" --kernel "$any_kernel" --timeout 3 -- sleep 600 >"$scratch/timeout.log" 2>&1
	rc=$?
	if [ $rc = 124 ] && grep -q 'timeout' "$scratch/timeout.log"; then
		ok "run.sh reports a timeout as 124 ($(( $(date +%s) - t0 ))s)"
	else
		notok "run.sh reports a timeout as 124 (got $rc)"
		diag "$scratch/timeout.log"
	fi
else
	skip "no kernel to test the timeout with"
fi

# Test Case: a kernel that panics before /init (here: no /init to run, so it
# looks for a root device and finds none) is booted once more, then reported
# as a panic (125), never as the command's exit status.
if [ -n "$any_kernel" ]; then
	t0=$(date +%s)
	"$VM/run.sh" --kernel "$any_kernel" --timeout 120 \
		--append "rdinit=/cprx-no-such-init" -- true >"$scratch/panic.log" 2>&1
	rc=$?
	if [ $rc = 125 ] && grep -q 'booting it once more' "$scratch/panic.log" &&
	   grep -q 'error: the guest kernel panicked' "$scratch/panic.log"; then
		ok "run.sh boots a kernel that panics before /init twice, then reports 125 ($(( $(date +%s) - t0 ))s)"
	else
		notok "run.sh boots a kernel that panics before /init twice, then reports 125 (got $rc)"
		diag "$scratch/panic.log"
	fi
else
	skip "no kernel to test a boot panic with"
fi

# run.sh --kexec, on the first kernel that could be had, kexec'ing into
# itself. Stage 1 notes the boot's id, writes to its /tmp and leaves a process
# running; stage 2 must see a new boot id, an empty /tmp, the share, and its
# status (5) must be run.sh's.
kexec_run() {	# NAME RUN.SH-ARGS...: run.sh --kexec, output in $scratch/NAME.*
	local name=$1
	shift
	t0=$(date +%s)
	"$VM/run.sh" --kernel "$any_kernel" --kexec --timeout 300 \
		--stage-report "$scratch/$name.stages" "$@" \
		>"$scratch/$name.out" 2>"$scratch/$name.err"
	rc=$?
	secs=$(( $(date +%s) - t0 ))
}
if [ -n "$any_kernel" ]; then
	kx_share="$scratch/kexec-share"
	mkdir -p "$kx_share"
	kexec_run kexec --share "$kx_share" -- sh -c '
		echo "stage $CPRX_VM_STAGE in $CPRX_VM_KERNEL, to $CPRX_VM_KEXEC_KERNEL"
		cat /proc/sys/kernel/random/boot_id >"$1/boot_id"
		echo here >/tmp/stage1
		setsid sleep 1000 </dev/null >/dev/null 2>&1 &' sh "$kx_share" ::: sh -c '
		echo "stage $CPRX_VM_STAGE in $CPRX_VM_KERNEL"
		[ "$(cat /proc/sys/kernel/random/boot_id)" != "$(cat "$1/boot_id")" ] && echo new boot
		[ -e /tmp/stage1 ] || echo fresh tmp
		exit 5' sh "$kx_share"
	want=$(printf '%s\n' "stage 1 in $any_kernel, to $any_kernel" "stage 2 in $any_kernel" "new boot" "fresh tmp")
	if [ $rc = 5 ] && [ "$(cat "$scratch/kexec.out")" = "$want" ] &&
	   grep -qx 'KEXEC=ok' "$scratch/kexec.stages" && grep -qx 'STAGE1_STATUS=0' "$scratch/kexec.stages" &&
	   grep -q 'stage 2 exited 5' "$scratch/kexec.err"; then
		ok "run.sh --kexec: stage 1, a kexec, stage 2 in a new boot; output and statuses reach the host (${secs}s: $(grep -o 'stage 1 .*' "$scratch/kexec.err"))"
	else
		notok "run.sh --kexec: stage 1, a kexec, stage 2 in a new boot; output and statuses reach the host (got $rc)"
		diag "$scratch/kexec.out" "$scratch/kexec.err" "$scratch/kexec.stages"
	fi

	kexec_run stage1-fails -- sh -c 'exit 3' ::: sh -c 'echo stage 2 ran'
	if [ $rc = 3 ] && grep -qx 'KEXEC=skipped' "$scratch/stage1-fails.stages" &&
	   ! grep -q 'stage 2 ran' "$scratch/stage1-fails.out"; then
		ok "run.sh --kexec: a failed stage 1 (3) is the status, and no kexec (${secs}s)"
	else
		notok "run.sh --kexec: a failed stage 1 (3) is the status, and no kexec (got $rc)"
		diag "$scratch/stage1-fails.out" "$scratch/stage1-fails.err"
	fi

	# kexec_load_disabled makes kexec_file_load fail with EPERM.
	kexec_run refused -- sh -c 'echo 1 >/proc/sys/kernel/kexec_load_disabled' ::: true
	if [ $rc = 123 ] && grep -q 'the kexec into .* failed: kexec-boot: kexec_file_load .*Operation not permitted' "$scratch/refused.err"; then
		ok "run.sh --kexec: a refused kexec is 123, saying why (${secs}s)"
	else
		notok "run.sh --kexec: a refused kexec is 123, saying why (got $rc)"
		diag "$scratch/refused.out" "$scratch/refused.err"
	fi

	# The kexec'd kernel finds no /init to run: it panics before stage 2.
	kexec_run no-stage2 --kexec-append rdinit=/cprx-no-such-init -- true ::: true
	if [ $rc = 125 ] && grep -q "panicked before stage 2 started" "$scratch/no-stage2.err"; then
		ok "run.sh --kexec: a kexec'd kernel that never starts stage 2 is 125, saying so (${secs}s)"
	else
		notok "run.sh --kexec: a kexec'd kernel that never starts stage 2 is 125, saying so (got $rc)"
		diag "$scratch/no-stage2.out" "$scratch/no-stage2.err"
	fi
else
	for _ in 1 2 3 4; do skip "no kernel to test run.sh --kexec with"; done
fi
