#!/bin/bash
# vm-systemd-kexec: cprx's systemd units under a real systemd (the host's,
# PID 1 in the research kernel's guest: run.sh --systemd), across
# `systemctl kexec`, as an operator kexecs.  TAP on stdout; run from the
# source root:
#
#   tests/vm/systemd-kexec.sh BUILD_DIR
#
# The guest's root gets the units and binaries as a package installs them
# (the built cprx-luod.service, cprx-luod.socket enabled, cprx-guard.service;
# the binaries where the units name them), and an fstab that gives
# /var/lib/cprx-luod a file system of its own (as a separate /var would)
# and /tmp a tmpfs unit (as Debian 13 has): units that require those
# mounts are stopped when they are unmounted at the shutdown.  The state
# directory is a bind of the shared scratch directory, so stage 2 reads the
# daemon's records.  tests/vm/systemd-kexec-guest.sh has the checks; here,
# besides: the kexec made, and the shutdown's console shows systemd neither
# stopping nor killing cprx-luod.  SKIPs without the research kernel or the
# harness's --systemd; the guard's checks SKIP without cprx-guard.
set -u
VM=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$VM/../.." && pwd)
build=$(readlink -f "${1:?usage: $0 BUILD_DIR}")
scratch=$(mktemp -d /tmp/cprx-systemd-kexec.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chmod 777 "$scratch"	# nobody's VMM writes its output there

if ! "$VM/run.sh" --help 2>&1 | grep -q -- --systemd-root; then
	echo "1..0 # SKIP the VM harness has no systemd mode (run.sh --systemd)"
	exit 0
fi
if ! "$VM/kernels.sh" --cached research >"$scratch/kernel.log" 2>&1; then
	echo "1..0 # SKIP research kernel not cached: $(tail -n 1 "$scratch/kernel.log")"
	exit 0
fi
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/#   /' "$@"; }
. "$VM/checks.sh"

# --- the guest's root: what `meson install` and `systemctl enable` make ------
root=$scratch/root
units=$root/etc/systemd/system
mkdir -p "$units/sockets.target.wants" "$root/etc" "$scratch/state"
# where the units run their binaries (the build's prefix)
sbindir=$(sed -n 's|^ExecStart=@\{0,1\}\(/[^ ]*\)/cprx-luod .*|\1|p' "$build/tools/cprx-luod.service")
mkdir -p "$root$sbindir"
cp "$build/tools/cprx-luod.service" "$REPO/tools/cprx-luod/cprx-luod.socket" "$units/"
ln -s ../cprx-luod.socket "$units/sockets.target.wants/cprx-luod.socket"
cp "$build/tools/cprx-luod" "$root$sbindir/"
guard_checks=()
guard_kexec1=() guard_kexec2=()
ko=
if [ -x "$build/bpf/cprx-guard" ] && [ -f "$build/bpf/cprx-guard.service" ]; then
	cp "$build/bpf/cprx-guard.service" "$units/"
	cp "$build/bpf/cprx-guard" "$root$sbindir/"
	. "$REPO/tests/guard/kexec-checks.sh"
	guard_kexec1=("${guard_kexec_s1[@]/#/s1-guard-kexec-}")
	guard_kexec2=("${guard_kexec_s2[@]/#/s2-guard-kexec-}")
	# cprx.ko for this kernel, installed by the guest where modprobe looks
	if "$VM/kbuild.sh" --jobs 2 research "$REPO" "$scratch/kmod" >"$scratch/kbuild.log" 2>&1 &&
		[ -f "$scratch/kmod/cprx.ko" ]; then
		ko=$scratch/kmod/cprx.ko
		guard_checks=(s1-guard-no-policy s1-guard-module s1-guard-start
			s1-guard-reload-broken s1-guard-stop)
	else
		guard_skip="cprx.ko does not build for research: $(tail -n 1 "$scratch/kbuild.log")"
	fi
else
	guard_skip="cprx-guard was not built (see meson's bpf/ message)"
fi
# `systemctl rescue` isolates a target without basic.target, so without
# sockets.target; this one keeps the harness's command running.
cat >"$units/cprx-test-rescue.target" <<EOF
[Unit]
Description=vm-systemd-kexec: sysinit.target only, as rescue.target
Requires=sysinit.target
After=sysinit.target
Wants=cprx-vm-stage.service
AllowIsolate=yes
EOF
cat >"$root/etc/fstab" <<EOF
# vm-systemd-kexec: the state directory on a file system of its own, /tmp a
# tmpfs mount unit (the harness mounted both already: systemd adopts them).
$scratch/state /var/lib/cprx-luod none bind 0 0
tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0
EOF

s1=(s1-stage s1-systemd s1-socket-listening s1-prepare-root s1-socket-activated
    s1-luod-owns-device s1-prepare-nobody s1-status-held s1-status-nobody
    s1-preflight-device "${guard_checks[@]}" "${guard_kexec1[@]}" s1-isolate s1-dmesg)
s2=(s2-stage s2-luod s2-status-unfinished s2-other-uid-a s2-other-uid-b
    s2-resume-root s2-status-one-left s2-resume-nobody s2-status-none-left
    s2-stop-drops "${guard_kexec2[@]}" s2-dmesg)
guest=(bash "$VM/systemd-kexec-guest.sh")
t0=$(date +%s)
# 1536M and the KHO scratch as vm-kexec (luo-kexec.sh says why)
"$VM/run.sh" --kernel research --systemd --systemd-root "$root" --kexec \
	--mem 1536M --append "kho_scratch=32M,352M,32M" --verbose \
	--timeout 2400 --share "$scratch" --stage-report "$scratch/stages" -- \
	"${guest[@]}" 1 "$build" "$scratch" $ko ::: \
	"${guest[@]}" 2 "$build" "$scratch" >"$scratch/out" 2>"$scratch/err"
rc=$?
secs=$(( $(date +%s) - t0 ))
r() { sed -n "s/^$1=//p" "$scratch/stages" 2>/dev/null; }
echo "1..$((2 + ${#s1[@]} + ${#s2[@]} + (${#guard_checks[@]} ? 0 : 1)))"
if [ "$(r KEXEC)" = ok ]; then
	ok "systemctl kexec research -> research (run.sh: $rc in ${secs}s; stage 1 $(r STAGE1_UPTIME)s, stage 2 $(r STAGE2_UPTIME)s into their boots, $(r KEXEC_SECONDS)s between)"
else
	notok "systemctl kexec research -> research (run.sh: $rc, kexec: $(r KEXEC))"
	diag "$scratch/err" | grep -v '^#   \[' | tail -n 20
fi
check_points "$scratch/out" "" "${s1[@]}"
[ ${#guard_checks[@]} -gt 0 ] || ok "cprx-guard.service # SKIP $guard_skip"
# The first kernel's console from `systemctl kexec` on (run.sh --verbose):
# systemd's lines on the units it stopped, systemd-shutdown's on each
# process it had to SIGKILL; cprx-luod in none of them but the one on its
# '@' (spared, and so keeping the root file system busy).
sed -n '/CPRX-VM-KEXEC-NOW/,/Linux version/p' "$scratch/err" |
	sed 's/\x1b\[[0-9;]*m//g' >"$scratch/shutdown"
# (the unit by name, maybe cut short, or by description; the process by its
# name; not /var/lib/cprx-luod's mount)
spared='cprx-luod) has been marked to be excluded from killing'
luod_lines() { grep -E 'cprx-luod\.s|cprx-luod:|cprx-luod socket|\(cprx-luod\)' "$1" | grep -vF "$spared"; }
if grep -q 'CPRX-VM-KEXEC-NOW' "$scratch/shutdown" && ! luod_lines "$scratch/shutdown" >/dev/null; then
	ok "shutdown: systemd neither stopped nor killed cprx-luod$(grep -qF "$spared" "$scratch/shutdown" && echo ' (systemd-shutdown: spared, "likely to block re-mounting of the root file system to read-only")')"
else
	notok "shutdown: systemd neither stopped nor killed cprx-luod"
	luod_lines "$scratch/shutdown" | head -n 20 | diag
fi
check_points "$scratch/out" "" "${s2[@]}"
for f in "$scratch"/luod.*.log; do
	[ -f "$f" ] && { echo "# $(basename "$f"):"; diag "$f"; }
done
[ $rc = 0 ] || diag "$scratch/out" | tail -n 40
