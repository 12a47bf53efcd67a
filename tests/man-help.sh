#!/bin/bash
# The manual pages (man/) against the tools' --help; TAP.
#
#   tests/man-help.sh MAN_DIR
#
# For each tool whose binary is given in the environment (CPRX_VMM,
# CPRX_BENCH, CPRX_QMP, CPRX_GUARD, CPRX_LUOD, CPRX_GUARDIAN; a tool not
# built is skipped, saying so),
# every option its --help defines (lines starting "  -x, --foo" or
# "  --foo"), and those of each command's --help (cprx-qmp's and
# cprx-guard's commands, as their --help lists them), must appear in the
# tool's page: one point per option. A self-check removes one option from a
# copy of cprx-vmm's page and expects it reported missing. Then every page
# must format without a warning: `groff -t -man -ww -z` and
# `man --warnings -l` (the check Debian's lintian runs).
set -uo pipefail
. "$(dirname "$0")/tap.sh"

man_dir=${1:?usage: man-help.sh MAN_DIR}
W=$(mktemp -d /tmp/cprx-man-help.XXXXXX)
trap 'rm -rf "$W"' EXIT

# The options an option list defines, one a line ("-s", "--socket").
help_options() {
	grep -E '^[[:space:]]+-' |
		sed -E 's/^[[:space:]]+//' |
		grep -oE '^(-[A-Za-z0-9], )?--?[A-Za-z0-9][-A-Za-z0-9]*' |
		sed 's/, /\n/'
}

# A page's text with troff's escapes for '-' and fonts removed.
page_text() {
	sed -E -e 's/\\-/-/g' -e 's/\\f(\[[^]]*\]|\(..|.)//g' -e 's/\\&//g' "$1"
}

# Does OPTION appear as a word in the page text FILE?
page_has() {
	grep -qE -- "(^|[^-A-Za-z0-9])$2([^-A-Za-z0-9]|\$)" "$1"
}

# The commands a tool's --help lists: cprx-qmp's "COMMAND: a | b" line,
# cprx-guard's "Commands:" section.
help_commands() {
	sed -n -E 's/^COMMAND: //p' | tr -d ' ' | tr '|' '\n'
}
guard_commands() {
	sed -n '/^Commands:/,/^$/p' | sed -n -E 's/^  ([a-z]+) .*/\1/p'
}

# check_tool NAME BINARY PAGE [COMMAND...]: a point per option.
check_tool() {
	local name=$1 bin=$2 page=$3 opt c
	shift 3
	page_text "$page" >"$W/$name.txt"
	{
		"$bin" --help
		for c in "$@"; do "$bin" "$c" --help; done
	} 2>&1 | help_options | sort -u >"$W/$name.opts"
	if [ ! -s "$W/$name.opts" ]; then
		not_ok "$name: no option found in its --help"
		return
	fi
	while read -r opt; do
		check "$name: $opt is in $(basename "$page")" page_has "$W/$name.txt" "$opt"
	done <"$W/$name.opts"
}

tools=(
	"cprx-vmm:${CPRX_VMM:-}:cprx-vmm.1"
	"cprx-bench:${CPRX_BENCH:-}:cprx-bench.1"
	"cprx-qmp:${CPRX_QMP:-}:cprx-qmp.1"
	"cprx-guard:${CPRX_GUARD:-}:cprx-guard.8"
	"cprx-luod:${CPRX_LUOD:-}:cprx-luod.8"
	"cprx-guardian:${CPRX_GUARDIAN:-}:cprx-guardian.1"
)
for t in "${tools[@]}"; do
	IFS=: read -r name bin page <<<"$t"
	if [ -z "$bin" ] || [ ! -x "$bin" ]; then
		skip 1 "$name not built"
		continue
	fi
	case $name in
	cprx-qmp) mapfile -t cmds < <("$bin" --help | help_commands) ;;
	cprx-guard) mapfile -t cmds < <("$bin" --help | guard_commands) ;;
	*) cmds=() ;;
	esac
	[ ${#cmds[@]} = 0 ] || echo "$name commands: ${cmds[*]}" | diag
	case $name in
	cprx-qmp|cprx-guard)
		check "$name: its --help lists commands" test ${#cmds[@]} -gt 0 ;;
	esac
	check_tool "$name" "$bin" "$man_dir/$page" "${cmds[@]}"
done

# The check must fail when an option is missing: cprx-vmm's page without
# the lines naming its first option gets exactly that option reported.
if [ -s "$W/cprx-vmm.opts" ]; then
	opt=$(head -n1 "$W/cprx-vmm.opts")
	page_text "$man_dir/cprx-vmm.1" | grep -vF -- "$opt" >"$W/broken.1"
	(n=0 failed=0; check_tool cprx-vmm "$CPRX_VMM" "$W/broken.1") >"$W/broken.tap"
	grep '^not ok' "$W/broken.tap" | diag
	check "self-check: a page without $opt fails on $opt alone" \
		test "$(grep -c '^not ok' "$W/broken.tap")" = 1 -a \
		"$(grep '^not ok' "$W/broken.tap" | grep -cF -- " $opt is in")" = 1
fi

# Formatting warnings.
for page in "$man_dir"/*.[1-8]; do
	p=$(basename "$page")
	# a ".so" link page is its target, checked on its own
	if [ "$(sed -n '1{/^\.so man[1-8]\//p}' "$page")" ]; then
		check "$p: links to a page here" test -f "$man_dir/$(sed -n \
			'1s|^\.so man[1-8]/||p' "$page")"
		continue
	fi
	if command -v groff >/dev/null; then
		groff -t -man -ww -z "$page" >"$W/groff.log" 2>&1
		check "$p: groff -t -man -ww: no warning" test ! -s "$W/groff.log"
		diag <"$W/groff.log"
	else
		skip 1 "groff missing (groff-base; tools/deps.sh)"
	fi
	if command -v man >/dev/null; then
		LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" \
			2>"$W/man.log" >/dev/null
		check "$p: man --warnings -l: no warning" test ! -s "$W/man.log"
		diag <"$W/man.log"
	else
		skip 1 "man missing (man-db; tools/deps.sh)"
	fi
done

echo "1..$n"
exit $((failed > 0))
