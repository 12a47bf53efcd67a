#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one fuzzer (fuzz_state, fuzz_handover) for a bounded time and
# reports in TAP.
# usage: run-fuzz.sh FUZZER SEEDGEN ARTIFACT_DIR [SEEDGEN_OPTION]
# The test's name is the fuzzer's: fuzz_state runs as fuzz-state.  SEEDGEN
# [SEEDGEN_OPTION] DIR writes the seed corpus.  $CPRX_FUZZ_SECONDS: how
# long (20).  A crashing input is kept in ARTIFACT_DIR as
# fuzz-<name>-crash-*; rerun it with "FUZZER FILE".
fuzzer=$1 seedgen=$2 keep=${3:-.} seedopt=$4
secs=${CPRX_FUZZ_SECONDS:-20}
base=${fuzzer##*/}
base=${base%-absent}
name=$(echo "$base" | tr _ -)

echo "TAP version 13"
echo "1..1"
if [ ! -x "$fuzzer" ]; then
	echo "ok 1 $name # SKIP no clang with libFuzzer"
	exit 0
fi
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/corpus"
if ! "$seedgen" $seedopt "$dir/corpus" >"$dir/log" 2>&1; then
	echo "not ok 1 $name"
	sed 's/^/# /' "$dir/log"
	exit 1
fi

"$fuzzer" -max_total_time="$secs" -max_len=65536 -timeout=10 \
	-print_final_stats=1 -artifact_prefix="$dir/" \
	"$dir/corpus" >"$dir/log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
if [ $rc -eq 0 ]; then
	echo "ok 1 $name (${runs:-?} runs in $secs s)"
	exit 0
fi
echo "not ok 1 $name (exit $rc after ${runs:-?} runs)"
# the sanitizer's report if there is one, else the end of the log
sed -n "/^$base\\.c:[0-9]*:\\|^==[0-9]*== *ERROR/,/^SUMMARY/p" "$dir/log" | head -n 60 >"$dir/report"
[ -s "$dir/report" ] || tail -n 40 "$dir/log" >"$dir/report"
sed 's/^/# /' "$dir/report"
for f in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
	[ -e "$f" ] || continue
	cp "$f" "$keep/$name-${f##*/}" &&
		echo "# input kept as $keep/$name-${f##*/}"
done
exit 1
