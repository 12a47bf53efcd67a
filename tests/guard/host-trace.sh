#!/bin/bash
# The guard on the host kernel (meson test --suite host): TAP on stdout.
#
#   tests/guard/host-trace.sh BUILD_DIR
#
# Where the BPF LSM is unavailable (this project's host kernel refuses LSM
# programs with EPERM) cprx-guard must fall back to trace-only and say so at
# load, in its status file and in `status`; the tp_btf tracepoints must
# still record a cprx-vmm update's timeline, phases in order, with the
# verdict the policy would have given; a guard-cgroup removed and created
# again, or created after the load, must be followed; a task guarded before
# the load or a reload stays guarded out of its cgroup; an exec through the
# ia32 entry is traced too.  Runs in trace mode on a kernel that
# does have the BPF LSM, so it never refuses anything either way.  Needs
# root; SKIPs without it, or when BPF is unavailable altogether.
set -u
B=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
G=$B/bpf/cprx-guard
GT="python3 $HERE/guardtest.py"
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/#   /' "$@"; }
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name${out:+: $(echo "$out" | tail -n1 | cut -c1-200)}"
	else
		notok "$name"; echo "$out" | diag
	fi
}

[ -x "$G" ] || { echo "1..0 # SKIP cprx-guard was not built (see meson's bpf/ message)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root to load BPF programs"; exit 0; }

T=$(mktemp -d /tmp/cprx-guard-host.XXXXXX)
export CPRX_GUARD_STATUS=$T/status
PIN=/sys/fs/bpf/cprx-guard-host.$$	# never created: no --pin here
GPID=
cleanup() {
	[ -z "$GPID" ] || { kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null; }
	rm -rf "$T" "$T.squat"
}
trap cleanup EXIT
# A copy of cprx-vmm of our own: only our processes are guarded.
cp "$B/tools/cprx-vmm" "$T/vmm"
cp "$B/tools/cprx-vmm" "$T/vmm-other"
VMM_OPTS=(--ram 32M --run-ms 30 --json --backend cloexec)

"$G" load --trace-only --pin-dir "$PIN" --guard-exe "$T/vmm" --allow "$T/vmm" \
	--trace --json >"$T/trace.jsonl" 2>"$T/load.err" &
GPID=$!
for i in $(seq 100); do
	grep -q 'cprx-guard: tracing' "$T/load.err" 2>/dev/null && break
	kill -0 "$GPID" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q 'cprx-guard: tracing' "$T/load.err"; then
	if grep -q 'BPF is unavailable' "$T/load.err"; then
		echo "1..0 # SKIP BPF is unavailable here: $(grep 'BPF is unavailable' "$T/load.err" | head -c 300)"
		exit 0
	fi
	notok "cprx-guard load --trace"; diag "$T/load.err"
	echo "1..$n"
	exit 0
fi
"$G" status --json >"$T/status.json"
fallback=0
grep -q '"enforcing":false' "$T/status.json" && ! grep -q "policy's mode is trace" "$T/status.json" && fallback=1
if [ $fallback = 1 ]; then
	why=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["why"])' "$T/status.json")
	ok "fallback detected: trace-only because $why"
	check "load says it loudly: NOT ENFORCED and why" \
		bash -c "grep 'NOT ENFORCED' '$T/load.err' && grep 'why: ' '$T/load.err'"
	check "status says it: NOT ENFORCED: trace-only: <why>" \
		bash -c "'$G' status | grep 'NOT ENFORCED: trace-only: .'"
	check "tp_btf programs attached instead of the LSM hooks" \
		bash -c "grep -q 'cg_sys_enter attached' '$T/load.err' '$T/trace.jsonl' || '$G' status | grep -q cg_sys_enter"
else
	skip "fallback detected" "this kernel runs BPF LSM programs (loaded in trace mode)"
	skip "load says it loudly" "no fallback here"
	skip "status says it" "no fallback here"
	skip "tp_btf programs attached" "no fallback here"
fi
check "status file world-readable, state trace-only with a reason" \
	bash -c "[ \$(stat -c %a '$CPRX_GUARD_STATUS') = 644 ] && grep -qx 'state trace-only' '$CPRX_GUARD_STATUS' && grep -q '^why .' '$CPRX_GUARD_STATUS'"

"$T/vmm" "${VMM_OPTS[@]}" --updates 2 >"$T/u1.json" 2>"$T/u1.err"
rc=$?
[ $rc = 0 ] && ok "cprx-vmm: 2 updates under the trace (exit 0)" ||
	{ notok "cprx-vmm: 2 updates under the trace (exit $rc)"; diag "$T/u1.err"; }
pid=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{") and "\"pid\"" in l:
        print(json.loads(l)["pid"]); break' "$T/u1.json")
check "timeline recorded: armed, checked, committed, retrieved, in order; allowed" \
	$GT timeline "$T/trace.jsonl" --pid "${pid:-0}" --outcome updated \
	--phases armed,checked,committed,retrieved --verdict allow

"$T/vmm" "${VMM_OPTS[@]}" --exec "$T/vmm-other" >"$T/u2.json" 2>"$T/u2.err"
rc=$?
pid=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{") and "\"pid\"" in l:
        print(json.loads(l)["pid"]); break' "$T/u2.json")
[ $rc = 0 ] && ok "not enforced: an update to a non-listed binary goes through" ||
	{ notok "not enforced: an update to a non-listed binary goes through (exit $rc)"; diag "$T/u2.json"; }
check "its timeline: would-deny, not on the allow-list" \
	$GT timeline "$T/trace.jsonl" --pid "${pid:-0}" --outcome updated \
	--phases armed,checked,committed,retrieved --verdict would-deny \
	--reason "not on the allow-list"
check "libcprx's view of the real status file: would refuse, NOT enforced" \
	bash -c "'$G' check '$T/vmm-other' | grep -q ': unguarded: cprx-guard (trace-only'"

kill "$GPID"; wait "$GPID"; GPID=
check "foreground guard detaches and removes its status" test ! -e "$CPRX_GUARD_STATUS"

# --- guard-cgroup is a path: created again, or only after the load, it is guarded ---
CGM=$(sed -n 's|^[0-9]* [0-9]* [^ ]* / \([^ ]*\) .* - cgroup2 .*|\1|p' /proc/self/mountinfo | head -n1)
CGA=$CGM/cprx-guard-host-a.$$ CGB=$CGM/cprx-guard-host-b.$$
cg_exec() { # DIR PROGRAM ARGS...: prints the pid, then runs PROGRAM in cgroup DIR
	bash -c 'echo $$; echo $$ >"$0/cgroup.procs" && exec "$@"' "$@"
}
cg_rmdir() { local i; for i in $(seq 50); do rmdir "$@" 2>/dev/null && return; sleep 0.1; done; }
if [ -z "$CGM" ] || ! mkdir "$CGA" 2>/dev/null; then
	skip "a guard-cgroup directory removed and created again is still guarded" \
		"no writable cgroup2 mount here"
	skip "a guard-cgroup created after the load is guarded" "no writable cgroup2 mount here"
else
	"$G" load --trace-only --guard-cgroup "$CGA" --guard-cgroup "$CGB/vm" \
		--allow "$T/vmm" --trace --json >"$T/cg.jsonl" 2>"$T/cg.err" &
	GPID=$!
	for i in $(seq 100); do grep -q 'cprx-guard: tracing' "$T/cg.err" 2>/dev/null && break; sleep 0.1; done
	cg_rmdir "$CGA"; mkdir "$CGA"
	pid=$(cg_exec "$CGA" "$T/vmm-other" --version | head -n1)
	out=$(cg_exec "$CGA" "$G" check "$T/vmm-other" 2>&1 | tail -n +2)
	if $GT timeline "$T/cg.jsonl" --pid "${pid:-0}" --outcome exec \
		--phases checked,committed --verdict would-deny >"$T/cg.chk" 2>&1 &&
	   [[ $out == *": would-deny: "* ]]; then
		ok "a guard-cgroup directory removed and created again is still guarded (kernel and libcprx)"
	else
		notok "a guard-cgroup directory removed and created again is still guarded"
		diag "$T/cg.chk" "$T/cg.err"; echo "$out" | diag
	fi
	mkdir -p "$CGB/vm"
	pid=$(cg_exec "$CGB/vm" "$T/vmm-other" --version | head -n1)
	ppid_=$(cg_exec "$CGB" "$T/vmm-other" --version | head -n1)
	if $GT timeline "$T/cg.jsonl" --pid "${pid:-0}" --outcome exec \
		--phases checked,committed --verdict would-deny >"$T/cg2.chk" 2>&1 &&
	   ! $GT timeline "$T/cg.jsonl" --pid "${ppid_:-0}" --outcome exec \
		--phases checked,committed --wait 1 >>"$T/cg2.chk" 2>&1; then
		ok "a guard-cgroup created after the load is guarded, its parent is not"
	else
		notok "a guard-cgroup created after the load is guarded, its parent is not"
		diag "$T/cg2.chk" "$T/cg.err"
	fi
	kill "$GPID"; wait "$GPID" 2>/dev/null; GPID=
	cg_rmdir "$CGA" "$CGB/vm"; cg_rmdir "$CGB"
fi

# --- guarded stays guarded: a task running before the load, and across a reload ---
# Each leaves the guarded cgroup by writing cgroup.procs (no hook sees that),
# then execs a binary that is not allowed: the trace must show it guarded.
CGC=$CGM/cprx-guard-host-c.$$ PIN3=/sys/fs/bpf/cprx-guard-host-m-$$
if [ -z "$CGM" ] || ! mkdir "$CGC" 2>/dev/null; then
	skip "a task in a guard-cgroup before the load, leaving it after, is guarded" \
		"no writable cgroup2 mount here"
	skip "a marked task out of its cgroup stays guarded across a reload" \
		"no writable cgroup2 mount here"
	skip "a reload that cannot take over the marks fails" "no writable cgroup2 mount here"
	skip "an exec through int 0x80 (ia32) is traced" "no writable cgroup2 mount here"
else
	mkfifo "$T/go-early" "$T/go-moved"
	# no fork nor exec in the cgroup before the load: only the load can mark it
	bash -c 'echo $$ >"$0/cgroup.procs"; read -r _ <"$1"; echo $$ >"$2/cgroup.procs"; exec "$3" --version' \
		"$CGC" "$T/go-early" "$CGM" "$T/vmm-other" >/dev/null 2>&1 &
	early=$!
	"$G" load --trace-only --pin --pin-dir "$PIN3" --guard-cgroup "$CGC" --allow "$T/vmm" \
		>"$T/m1.out" 2>&1 || diag "$T/m1.out"
	# marked by a fork in the cgroup, then out of it; it execs after a reload
	bash -c 'echo $$ >"$0/cgroup.procs"; "$1" --version >/dev/null; echo $$ >"$2/cgroup.procs"; read -r _ <"$3"; exec "$4" --version' \
		"$CGC" "$T/vmm" "$CGM" "$T/go-moved" "$T/vmm-other" >/dev/null 2>&1 &
	moved=$!
	go() { timeout 10 bash -c 'echo go >"$0"' "$1"; }	# never blocks
	# NAME FIFO PID: wakes PID, which execs; a reader of the pinned guard
	# must see that exec as a guarded process's (would-deny)
	traced_exec() {
		local out=$T/m-$3.jsonl tpid i
		"$G" trace --json --timeout 5 --idle 2 >"$out" 2>"$out.err" &
		tpid=$!
		for i in $(seq 100); do grep -q tracing "$out.err" 2>/dev/null && break; sleep 0.1; done
		go "$2"; wait "$3"
		wait $tpid
		check "$1" $GT timeline "$out" --pid "$3" --outcome exec \
			--phases checked,committed --verdict would-deny
	}
	traced_exec "a task in a guard-cgroup before the load, leaving it after, is guarded" \
		"$T/go-early" $early
	for i in 1 2; do
		"$G" load --trace-only --pin --replace --pin-dir "$PIN3" --guard-cgroup "$CGC" \
			--allow "$T/vmm" >>"$T/m2.out" 2>&1 || { echo "reload $i failed"; cat "$T/m2.out"; } | diag
	done
	traced_exec "a marked task out of its cgroup stays guarded across 2 reloads (--pin --replace)" \
		"$T/go-moved" $moved
	# no marks to take over: the reload fails, the old guard stays
	mv "$PIN3/marks" "$PIN3-marks"
	out=$("$G" load --trace-only --pin --replace --pin-dir "$PIN3" --guard-cgroup "$CGC" \
		--allow "$T/vmm-other" 2>&1); rc=$?
	[ $rc != 0 ] && [[ $out == *"cannot take over the pinned guard's marks"* ]] &&
	   ! grep -q "vmm-other" "$CPRX_GUARD_STATUS" && [ -e "$PIN3/events" ] &&
		ok "a reload that cannot take over the marks fails (exit $rc), the old guard stays" ||
		{ notok "a reload that cannot take over the marks fails, the old guard stays (exit $rc)"; echo "$out" | diag; }
	mv "$PIN3-marks" "$PIN3/marks"
	# an exec through int 0x80 (ia32 numbers, which the trace-only decoder
	# does not know) by a process that joined the cgroup: seen at commit
	cp /bin/true "$T/true-other"
	mkfifo "$T/go-x32"
	bash -c 'read -r _ <"$0"; exec "$@"' "$T/go-x32" $GT exec32 --cgroup "$CGC" "$T/true-other" \
		>"$T/x32.out" 2>&1 &
	x32=$!
	if ! $GT exec32 --cgroup "$CGM" /bin/true >"$T/x32-probe.out" 2>&1; then
		skip "an exec through int 0x80 (ia32) is traced, would-deny" \
			"no ia32 entry here: $(tail -c 100 "$T/x32-probe.out")"
		go "$T/go-x32"; wait $x32
	else
		traced_exec "an exec through int 0x80 (ia32) is traced, would-deny" "$T/go-x32" $x32
	fi
	"$G" detach --quiet --pin-dir "$PIN3" >/dev/null 2>&1
	cg_rmdir "$CGC"
fi

# --- a reload killed between its steps (load --pin --replace) -----------------------
# A reload pins the new guard at DIR-new, renames DIR to DIR-old and DIR-new
# to DIR, rewrites the status, unpins DIR-old.  Each state a SIGKILL can
# leave is built here from a reload that completed: the old guard's pins
# copied aside first (bpftool), its status file kept.  `status` or the next
# load must resolve it: the status file decides which guard stays, the
# other's pins go.
CGE=$CGM/cprx-guard-host-e.$$ PIN5=/sys/fs/bpf/cprx-guard-host-r-$$
prog_ids() { # DIR...: the programs of the links pinned there
	local f
	for f in "$@"; do
		[ -e "$f" ] || continue
		bpftool link show pinned "$f" -j 2>/dev/null
	done | python3 -c 'import json, sys
for l in sys.stdin:
    print(json.loads(l)["prog_id"])' | sort -n | paste -sd' '
}
copy_pins() { # FROM TO: every link and map of FROM pinned again at TO
	local f
	mkdir "$2" || return 1
	for f in "$1"/*; do
		case ${f##*/} in
		link_*) bpftool link pin pinned "$f" "$2/${f##*/}" ;;
		*) bpftool map pin pinned "$f" "$2/${f##*/}" ;;
		esac || return 1
	done
}
gone() { # IDS: none of these programs loaded (links go after an RCU grace period)
	local i id left
	for i in $(seq 50); do
		left=
		for id in $1; do bpftool prog show id "$id" >/dev/null 2>&1 && left+=" $id"; done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	echo "still loaded:$left"
	return 1
}
# STATE: old (A) pinned at $PIN5, then a reload to B; leaves the state a
# kill at STATE would have: pinned (B at -new), renamed (A at -old, B at
# -new, no DIR), swapped (A at -old, B at DIR), status (the same, B's
# status).  Prints "A-ids/B-ids".
killed_reload() {
	local a b
	"$G" load --trace-only --pin --pin-dir "$PIN5" --guard-cgroup "$CGE" \
		--allow "$T/vmm" >"$T/r-$1.out" 2>&1 || return 1
	a=$(prog_ids "$PIN5"/link_*)
	copy_pins "$PIN5" "$PIN5-keep" && cp "$CPRX_GUARD_STATUS" "$T/status-a" || return 1
	"$G" load --trace-only --pin --replace --pin-dir "$PIN5" --guard-cgroup "$CGE" \
		--allow "$T/vmm" --allow "$T/vmm-other" >>"$T/r-$1.out" 2>&1 || return 1
	b=$(prog_ids "$PIN5"/link_*)
	case $1 in
	pinned) mv "$PIN5" "$PIN5-new" && mv "$PIN5-keep" "$PIN5" ;;
	renamed) mv "$PIN5" "$PIN5-new" && mv "$PIN5-keep" "$PIN5-old" ;;
	*) mv "$PIN5-keep" "$PIN5-old" ;;
	esac || return 1
	[ "$1" = status ] || cp "$T/status-a" "$CPRX_GUARD_STATUS"
	echo "$a/$b"
}
if [ -z "$CGM" ] || ! mkdir "$CGE" 2>/dev/null; then
	skip "a reload killed between its steps is resolved" "no writable cgroup2 mount here"
else
	for state in pinned renamed swapped status; do
		ids=$(killed_reload $state) || { notok "a reload killed at '$state': cannot build the state"; diag "$T/r-$state.out"; continue; }
		a=${ids%/*} b=${ids#*/}
		want=$a drop=$b
		[ $state = status ] && want=$b drop=$a
		out=$("$G" status 2>&1)
		now=$(prog_ids "$PIN5"/link_*)
		if [ ! -e "$PIN5-old" ] && [ ! -e "$PIN5-new" ] && [ -n "$now" ] && [ "$now" = "$want" ] &&
		   [[ $out == *"ENFORCING"* || $out == *"NOT ENFORCED"* ]] && [[ $out != *WARNING* ]] &&
		   gone "$drop" >"$T/gone.out" 2>&1; then
			ok "a reload killed at '$state': status resolves it, keeps the guard its status names (${out%%$'\n'*})"
		else
			notok "a reload killed at '$state': status resolves it (pinned now: '$now', want '$want'; $(ls -d "$PIN5"* 2>/dev/null | paste -sd' '))"
			echo "$out" | diag; diag "$T/gone.out"
		fi
		"$G" detach --quiet --pin-dir "$PIN5" >/dev/null 2>&1
		for d in "$PIN5" "$PIN5-old" "$PIN5-new" "$PIN5-keep"; do [ -e "$d" ] && "$G" detach --quiet --pin-dir "$d" >/dev/null 2>&1; rm -rf "$d"; done
	done
	# killed between the renames, then two reloads: a task guarded by its
	# mark alone (out of its cgroup) stays guarded
	mkfifo "$T/go-killed"
	bash -c 'read -r _ <"$0"; echo $$ >"$1/cgroup.procs"; /usr/bin/true; echo $$ >"$2/cgroup.procs"; read -r _ <"$0"; exec "$3" --version' \
		"$T/go-killed" "$CGE" "$CGM" "$T/vmm-other" >/dev/null 2>&1 &
	killed=$!
	if killed_reload renamed >/dev/null; then
		go "$T/go-killed"
		for i in $(seq 100); do grep -q '^0::/$' /proc/$killed/cgroup 2>/dev/null && break; sleep 0.1; done
		for i in 1 2; do
			"$G" load --trace-only --pin --replace --pin-dir "$PIN5" --guard-cgroup "$CGE" \
				--allow "$T/vmm" >>"$T/r-marks.out" 2>&1 || echo "reload $i failed" >>"$T/r-marks.out"
		done
		check "a reload killed between its renames, then 2 reloads: no pins left beside $PIN5" \
			bash -c "[ -e '$PIN5/marks' ] && [ ! -e '$PIN5-old' ] && [ ! -e '$PIN5-new' ] && ! grep -q failed '$T/r-marks.out'"
		traced_exec "a reload killed between its renames, then 2 reloads: a task guarded by its mark alone stays guarded" \
			"$T/go-killed" $killed
	else
		notok "a reload killed between its renames: cannot build the state"; diag "$T/r-renamed.out"
		kill $killed 2>/dev/null
	fi
	for d in "$PIN5" "$PIN5-old" "$PIN5-new" "$PIN5-keep"; do [ -e "$d" ] && "$G" detach --quiet --pin-dir "$d" >/dev/null 2>&1; rm -rf "$d"; done
	cg_rmdir "$CGE"
	# trace-only: a guard-exe upgraded on disk (a new file renamed over
	# it) is guarded from the commit of a VMM started from it
	cp "$(realpath /bin/bash)" "$T/gexe2"
	chmod 0755 "$T/gexe2"
	"$G" load --trace-only --pin --pin-dir "$PIN5" --guard-exe "$T/gexe2" \
		--allow "$T/vmm" >"$T/gexe2.out" 2>&1 || diag "$T/gexe2.out"
	cp "$T/gexe2" "$T/gexe2.new" && mv "$T/gexe2.new" "$T/gexe2"
	mkfifo "$T/go-gexe2"
	"$T/gexe2" -c 'read -r _ <"$0"; exec "$1" --version' "$T/go-gexe2" "$T/vmm-other" >/dev/null 2>&1 &
	traced_exec "trace-only: a VMM started from a guard-exe upgraded on disk is guarded" \
		"$T/go-gexe2" $!
	"$G" detach --quiet --pin-dir "$PIN5" >/dev/null 2>&1
fi

# --- cprx-bench --guard-timeline: kernel timestamps beside libcprx's marks --------
bench_guard() { # OUT: a small sweep with --guard-timeline; every sample has kernel_ms
	"$B/bench/cprx-bench" --guard-timeline --sizes 32M --reps 2 --rounds 1 --baselines floor \
		--backends cloexec --no-progress --no-plots --vmm "$B/tools/cprx-vmm" --out "$1" &&
	python3 - "$1/results.json" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
cells = [c for c in d["cells"] if c["kind"] == "cprx"]
ks = [s["kernel_ms"] for c in cells for s in c["samples"]]
ex = [s["segments_ms"]["exec"] for c in cells for s in c["samples"]]
assert ks and all(isinstance(k, (int, float)) and k > 0 for k in ks), ks
print("kernel check->commit %s ms beside libcprx exec %s ms" % (ks, ex))
PY
}
if [ -x "$B/bench/cprx-bench" ]; then
	"$G" load --trace-only --pin --pin-dir /sys/fs/bpf/cprx-guard-bench-$$ \
		--guard-exe "$B/tools/cprx-vmm" --allow "$B/tools/cprx-vmm" >"$T/bl.out" 2>&1
	check "cprx-bench --guard-timeline: every update's kernel span from the guard" bench_guard "$T/bench"
	"$G" detach --pin-dir /sys/fs/bpf/cprx-guard-bench-$$ >/dev/null 2>&1
else
	skip "cprx-bench --guard-timeline" "cprx-bench was not built"
fi

# --- fail closed, the status file, detach, reload ---
PIN2=/sys/fs/bpf/cprx-guard-host-$$	# bpffs refuses dots in names
cleanup_pins() { "$G" detach --quiet --pin-dir "$PIN2" >/dev/null 2>&1; rm -rf "$PIN2" "$PIN2-new" "$PIN2-old" 2>/dev/null; }
trap 'cleanup_pins; cleanup' EXIT
if [ $fallback = 1 ]; then
	out=$("$G" load --pin --pin-dir "$PIN2" --guard-exe "$T/vmm" --allow "$T/vmm" 2>&1); rc=$?
	[ $rc != 0 ] && [[ $out == *"cannot enforce"* ]] && [ ! -e "$PIN2" ] &&
		ok "fails closed: without --fallback-trace a guard that cannot enforce does not load (exit $rc)" ||
		{ notok "fails closed: load without --fallback-trace (exit $rc)"; echo "$out" | diag; cleanup_pins; }
else
	skip "fails closed" "this kernel runs BPF LSM programs (the VM tier checks the canary)"
fi

# the status file publishes no inode number of a binary it names
"$G" load --trace-only --pin --pin-dir "$PIN2" --guard-exe "$T/vmm" --allow "$T/vmm" >"$T/p1.out" 2>&1
ino=$(stat -c %i "$T/vmm")
check "status file: the allowed binary by fingerprint, not by inode number ($ino)" \
	bash -c "grep -q '^allow 1 fp:[0-9a-f]\{16\} $T/vmm\$' '$CPRX_GUARD_STATUS' && ! grep -qw '$ino' '$CPRX_GUARD_STATUS'"

# a reload as cprx-guard.service does it, with a policy that does not load
unit=$B/bpf/cprx-guard.service
printf 'guard-exe %s\nallow %s/no-such-vmm\nmode trace\n' "$T/vmm" "$T" >"$T/bad.policy"
reload_rc=0
while IFS= read -r cmd; do
	cmd=${cmd#ExecReload=}; cmd=${cmd#-}
	cmd=${cmd//\/etc\/cprx\/guard.policy/$T/bad.policy}
	read -r -a argv <<<"$cmd"
	"$G" "${argv[@]:1:1}" --pin-dir "$PIN2" "${argv[@]:2}" >>"$T/reload.out" 2>&1 || reload_rc=$?
done < <(grep '^ExecReload=' "$unit")
if [ $reload_rc != 0 ] && "$G" status | grep -q "^pinned in $PIN2" && [ -e "$PIN2/events" ] &&
   grep -q "^allow 1 fp:.* $T/vmm\$" "$CPRX_GUARD_STATUS"; then
	ok "reload (the unit's ExecReload) with a bad policy fails (exit $reload_rc) and keeps the old guard"
else
	notok "reload with a bad policy keeps the old guard (exit $reload_rc)"; diag "$T/reload.out"
	"$G" status 2>&1 | diag
fi
printf 'guard-exe %s\nallow %s\nallow %s\nmode trace\n' "$T/vmm" "$T/vmm" "$T/vmm-other" >"$T/good.policy"
"$G" load --pin --replace --pin-dir "$PIN2" --policy "$T/good.policy" >"$T/replace.out" 2>&1
rc=$?
if [ $rc = 0 ] && grep -q "^allow 2 fp:.* $T/vmm-other\$" "$CPRX_GUARD_STATUS" &&
   [ -e "$PIN2/events" ] && [ ! -e "$PIN2-old" ] && [ ! -e "$PIN2-new" ] &&
   [ "$("$G" status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["programs"]))')" -le 8 ]; then
	ok "load --pin --replace swaps in the new policy; no leftovers"
else
	notok "load --pin --replace (exit $rc)"; diag "$T/replace.out"
fi

# an unprivileged user cannot hold the readers' lock (the status directory is 0755)
chmod 0755 "$T"
# -F: flock execs sleep itself, so the kill below ends the lock; the sleep
# outlasts a slow trace under load (the kill comes right after the check).
# It waits for the lock (no -n): the probe below holds it for an instant,
# and a squatter that gave up then would hold nothing.
setpriv --reuid=65534 --regid=65534 --clear-groups flock -F "$T" sleep 120 >/dev/null 2>"$T.squat" &
squat=$!
for i in $(seq 200); do ! flock -n "$T" true && break; sleep 0.1; done
out=$(timeout 20 "$G" trace --json --timeout 1 2>&1); rc=$?
if flock -n "$T" true; then
	skip "a user's lock on the status directory blocks no trace reader" "nobody could not lock $T: $(head -c 200 "$T.squat")"
elif [ $rc = 0 ] && [[ $out == *"cprx-guard: tracing"* ]]; then
	ok "a user's lock on the status directory blocks no trace reader"
else
	notok "a user's lock on the status directory blocks no trace reader (exit $rc)"; echo "$out" | diag
fi
kill $squat 2>/dev/null; wait $squat 2>/dev/null
chmod 0700 "$T"

# a second trace reader would split the events: it refuses
"$G" trace --json --timeout 30 >"$T/tr1.out" 2>"$T/tr1.err" &
tpid=$!
for i in $(seq 50); do grep -q tracing "$T/tr1.err" 2>/dev/null && break; sleep 0.1; done
out=$("$G" trace --json --timeout 1 2>&1); rc=$?
[ $rc != 0 ] && [[ $out == *"another trace reader"* ]] &&
	ok "a second trace reader refuses (exit $rc)" ||
	{ notok "a second trace reader refuses (exit $rc)"; echo "$out" | diag; }
# a reload leaves the first reader on a dead ring: it says so and ends
"$G" load --pin --replace --pin-dir "$PIN2" --policy "$T/good.policy" >>"$T/replace.out" 2>&1
for i in $(seq 50); do kill -0 $tpid 2>/dev/null || break; sleep 0.1; done
if ! kill -0 $tpid 2>/dev/null && grep -q "was replaced" "$T/tr1.err"; then
	ok "a trace reader ends when its guard is replaced"
else
	notok "a trace reader ends when its guard is replaced"; diag "$T/tr1.err"
	kill $tpid 2>/dev/null
fi
wait $tpid 2>/dev/null

# detach from another pin dir than the status names leaves that guard, and its status
out=$("$G" detach --pin-dir "$PIN2-other" 2>&1); rc=$?
[ $rc != 0 ] && [[ $out == *"pinned in $PIN2,"* ]] && [ -e "$PIN2/events" ] && [ -e "$CPRX_GUARD_STATUS" ] &&
	ok "detach --pin-dir elsewhere: exit $rc, the guard and its status stay" ||
	{ notok "detach --pin-dir elsewhere: the guard and its status stay (exit $rc)"; echo "$out" | diag; }
# detach as an unprivileged user must not claim success
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$G" detach --pin-dir "$PIN2" 2>&1); rc=$?
[ $rc != 0 ] && [[ $out != *"cprx-guard: detached"* ]] && [ -e "$PIN2/events" ] && [ -e "$CPRX_GUARD_STATUS" ] &&
	ok "non-root detach fails and says so (exit $rc): ${out:0:120}" ||
	{ notok "non-root detach fails and says so (exit $rc)"; echo "$out" | diag; }
"$G" detach --pin-dir "$PIN2" >"$T/det.out" 2>&1
check "root detach removes the pinned guard" bash -c "[ ! -e '$PIN2' ] && [ ! -e '$CPRX_GUARD_STATUS' ]"

# 17 guard-exe entries: still loaded as far as status and a second load know
exes=()
for i in $(seq 17); do cp /usr/bin/true "$T/exe$i"; exes+=(--guard-exe "$T/exe$i"); done
"$G" load --trace-only "${exes[@]}" --allow "$T/vmm" >"$T/g17.out" 2>"$T/g17.err" &
GPID=$!
for i in $(seq 100); do [ -e "$CPRX_GUARD_STATUS" ] && break; sleep 0.1; done
check "17 guard-exe entries: status says loaded" bash -c "'$G' status | grep -q 'NOT ENFORCED\|ENFORCING'"
out=$(timeout 5 "$G" load --trace-only --guard-exe "$T/vmm" --allow "$T/vmm" 2>&1); rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && [[ $out == *"loaded already"* ]] &&
	ok "17 guard-exe entries: a second load is refused" ||
	{ notok "17 guard-exe entries: a second load is refused (exit $rc)"; echo "$out" | diag; }
kill "$GPID"; wait "$GPID" 2>/dev/null; GPID=
rm -f "$CPRX_GUARD_STATUS"

# a SIGKILLed loader whose pid now belongs to another process
"$G" load --trace-only --guard-exe "$T/vmm" --allow "$T/vmm" >"$T/gk.out" 2>"$T/gk.err" &
GPID=$!
for i in $(seq 100); do [ -e "$CPRX_GUARD_STATUS" ] && break; sleep 0.1; done
kill -9 "$GPID"; wait "$GPID" 2>/dev/null; GPID=
sleep 300 &
victim=$!
sed -i "s/^pid [0-9]*\$/pid $victim/" "$CPRX_GUARD_STATUS"
out=$("$G" status 2>&1)
[[ $out == *"not loaded"*stale* ]] && ok "SIGKILLed loader, pid reused: status says stale" ||
	{ notok "SIGKILLed loader, pid reused: status says stale"; echo "$out" | diag; }
"$G" detach --pin-dir "$PIN2" >"$T/det2.out" 2>&1
kill -0 $victim 2>/dev/null && ok "SIGKILLed loader, pid reused: detach leaves that process alone" ||
	{ notok "SIGKILLed loader, pid reused: detach killed pid $victim"; diag "$T/det2.out"; }
kill $victim 2>/dev/null; wait $victim 2>/dev/null

# bpffs mounted from a private mount namespace would hide the pins: a
# namespace whose mounts are slaves of another one's, as a unit's PrivateTmp=
# makes it (built here inside a namespace of our own, so the host's mounts
# stay as they are)
out=$(unshare -m bash -c "mount --make-rshared / && unshare -m --propagation unchanged bash -c \"mount --make-rslave / && umount -l /sys/fs/bpf 2>/dev/null; grep -q ' /sys [^-]*master:' /proc/self/mountinfo || exit 77; '$G' load --trace-only --pin --pin-dir '$PIN2' --guard-exe '$T/vmm' --allow '$T/vmm'\"" 2>&1); rc=$?
if [ $rc = 77 ]; then
	skip "load --pin refuses to mount bpffs in a unit-like private mount namespace" \
		"this kernel shows no slave mounts (master:) in mountinfo"
elif [ $rc != 0 ] && [[ $out == *"private mount namespace"* ]] && [ ! -e "$CPRX_GUARD_STATUS" ]; then
	ok "load --pin refuses to mount bpffs in a unit-like private mount namespace"
else
	notok "load --pin refuses to mount bpffs in a unit-like private mount namespace (exit $rc)"; echo "$out" | diag
	rm -f "$CPRX_GUARD_STATUS"
fi
bench=()
# the check from sched_prepare_exec (>= 6.10) measures it natively here
grep -qa btf_trace_sched_prepare_exec /sys/kernel/btf/vmlinux 2>/dev/null && bench=(--bench)

# A guard-exe started by an unguarded process, whose file changes (a package
# upgrade moves its change time) before it forks or execs: guarded from its
# commit all the same.  --bench runs the exec check, enforcing nothing, and
# counts what it would refuse.
gexe_would_deny() { # the would-deny counter of the guard pinned in $PIN3
	CPRX_GUARD_STATUS=$T/gexe.status "$G" status --json |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["counters"].get("would-deny", -1))'
}
# NAME: $T/gexe, started now, execs a binary that is not listed: counted
gexe_started_guarded() {
	local before after
	before=$(gexe_would_deny)
	"$T/gexe" -c 'exec "$0" --version' "$T/vmm-other" >/dev/null 2>&1
	after=$(gexe_would_deny)
	[ "$after" = $((before + 1)) ] && ok "$1" ||
		notok "$1 (would-deny $before -> $after: it ran unguarded)"
}
if [ ${#bench[@]} = 0 ]; then
	skip "a guard-exe whose file changed before its first fork or exec is guarded" \
		"no sched_prepare_exec tracepoint (--bench) on $(uname -r)"
	skip "a guard-exe started after its file's change time moved is guarded" \
		"no sched_prepare_exec tracepoint (--bench) on $(uname -r)"
	skip "a guard-exe upgraded on disk: a VMM started from it is guarded" \
		"no sched_prepare_exec tracepoint (--bench) on $(uname -r)"
else
	PIN3=/sys/fs/bpf/cprx-guard-gexe-$$
	cp "$(realpath /bin/bash)" "$T/gexe"
	chmod 0755 "$T/gexe"
	mkfifo "$T/go-gexe"
	if CPRX_GUARD_STATUS=$T/gexe.status "$G" load --pin --bench --pin-dir "$PIN3" \
		--guard-exe "$T/gexe" --allow "$T/vmm" >"$T/gexe.load" 2>&1; then
		before=$(gexe_would_deny)
		"$T/gexe" -c 'read -r _ <"$0"; exec "$1" --version' "$T/go-gexe" \
			"$T/vmm-other" >/dev/null 2>&1 &
		gpid=$!
		for i in $(seq 100); do [ "$(readlink /proc/$gpid/exe)" = "$T/gexe" ] && break; sleep 0.1; done
		chmod 0755 "$T/gexe"	# a new change time: no longer the guard-exe's key
		echo >"$T/go-gexe"
		wait $gpid
		after=$(gexe_would_deny)
		[ "$after" = $((before + 1)) ] &&
			ok "a guard-exe whose file changed before its first fork or exec is guarded (its exec would be refused)" ||
			notok "a guard-exe whose file changed before its first fork or exec is guarded (would-deny $before -> $after: its exec went unguarded)"
		# its file's change time moved before it started: a new hard link
		# (any user's, where fs.protected_hardlinks is 0), a rename of its
		# directory's owner, an upgrade's unlink racing its exec
		ln "$T/gexe" "$T/gexe.link"
		gexe_started_guarded "a guard-exe started after its file's change time moved (a new hard link) is guarded"
		# upgraded as a package manager does it: a new file renamed over
		# the path; a VMM started from it must be guarded all the same
		cp "$T/gexe" "$T/gexe.new" && mv "$T/gexe.new" "$T/gexe"
		gexe_started_guarded "a guard-exe upgraded on disk (a new file renamed over it): a VMM started from it is guarded"
	else
		notok "a guard-exe whose file changed before its first fork or exec is guarded (load --bench failed)"
		diag "$T/gexe.load"
	fi
	CPRX_GUARD_STATUS=$T/gexe.status "$G" detach --pin-dir "$PIN3" >/dev/null 2>&1
fi
if out=$("$HERE/overhead.sh" "${bench[@]}" "$B" "${CPRX_GUARD_EXECS:-1000}" 2>&1); then
	echo "$out" | diag
	ok "per-exec cost measured (kernel.bpf_stats_enabled${bench:+, --bench: the check from sched_prepare_exec}): $(echo "$out" | grep -E '^(un)?guarded' | cut -d'(' -f1 | paste -sd';')"
else
	notok "per-exec cost measured"; echo "$out" | diag
fi
# the trace-only fallback's cost per syscall: the same loops with and without it
if out=$(bash "$HERE/ratio.sh" "$B" 100000 100 3 -- --fallback-trace 2>&1); then
	echo "$out" | diag
	ok "overhead ratio (trace-only fallback): $(echo "$out" | grep '^ioctl:' | cut -c1-160)"
else
	notok "overhead ratio (trace-only fallback)"; echo "$out" | diag
fi
echo "1..$n"
