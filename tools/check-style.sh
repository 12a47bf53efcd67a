#!/bin/bash
# The house style's mechanical rules, checked over the files git tracks
# (TAP; run by `meson test style`, or by hand from anywhere in the tree).
# The rest of the style (kernel coding style; .clang-format, .editorconfig)
# is for people and editors; these are the rules a machine can hold:
#   1. every C source starts with an SPDX licence line;
#   2. C is indented with tabs, has no trailing blanks and no CRLF;
#   3. no file over about 600 lines (650), unless its first comment says why with a
#      line "Kept in one file: <reason>"; generated files are not sources;
#   4. build files and sources cite no tracker numbers: the project speaks
#      of itself;
#   5. no `#define main`: the test harness owns the two-stage dispatch.
set -uo pipefail
top=$(git -C "${1:-$(dirname "$0")}" rev-parse --show-toplevel 2>/dev/null) || {
	echo "1..0 # SKIP not a git checkout: the rules apply to the files git tracks"
	exit 0
}
cd "$top" || exit 1

max_lines=650	# "about 600": a little over is not worth a split
n=0 fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)) fails=$((fails + 1))
	echo "not ok $n - $1"
	sed 's/^/# /'
}
check() {	# check DESCRIPTION: stdin holds the offenders, one a line
	local bad
	bad=$(cat)
	if [ -z "$bad" ]; then ok "$1"; else not_ok "$1" <<<"$bad"; fi
}

# Sources people write; generated output, results and patches are not.
mapfile -t c_files < <(git ls-files -- '*.c' '*.h')
mapfile -t text_files < <(git ls-files -- '*.c' '*.h' '*.sh' '*.py' \
	'*meson.build' '*meson_options.txt' '*Kbuild' '.ci/run' 'debian/rules' \
	'*.conf' '*.service' '*.rules' 'man/*')

echo "TAP version 13"
echo "1..5"

# One pass of each tool over all the files: the check runs in the host
# suite, on loaded machines too.
check "every C source starts with its SPDX licence" < <(
	awk 'FNR == 1 && !/SPDX-License-Identifier:/ {
		print FILENAME ": first line is not an SPDX-License-Identifier" }' \
		"${c_files[@]}")

check "C: tabs for indentation, no trailing blanks, no CRLF" < <(
	grep -nHP '^ {8,}\S|[ \t]+$|\r$' "${c_files[@]}" |
		awk -F: '++seen[$1] <= 3')

check "no file over $max_lines lines without a reason" < <(
	wc -l "${text_files[@]}" | while read -r lines f; do
		[ "$f" = total ] || [ "$lines" -le "$max_lines" ] && continue
		head -n 40 "$f" | grep -q 'Kept in one file: ..*' ||
			echo "$f: $lines lines; split it, or say why in its first comment (\"Kept in one file: <reason>\")"
	done)

check "no tracker numbers in sources and build files" < <(
	grep -nHE '\b[Ii]ssues? ?#?[0-9]+\b|\(#[0-9]+\)' "${text_files[@]}")

check "no #define main" < <(git grep -nE \
	'^[[:space:]]*#[[:space:]]*define[[:space:]]+main\b' -- '*.c' '*.h')

exit $((fails > 0))
