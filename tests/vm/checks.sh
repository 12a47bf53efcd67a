# Sourced by the VM tier's tests that batch their checks into one guest run:
# the guest prints one line a check, the host turns them into TAP points.
#
# Guest: check NAME COMMAND... prints "CHECK ok NAME (COMMAND's output)" or
# "CHECK fail NAME: output" from COMMAND's status; NAME gets $CHECK_PREFIX
# in front.
# Host: check_points FILE LABEL NAME... prints one point a NAME, through the
# caller's ok and notok, from FILE's CHECK lines ("no result from the guest"
# when there is none); LABEL goes in front of each point's text.

check() {
	local name=${CHECK_PREFIX:-}$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "CHECK ok $name${out:+ ($(echo "$out" | paste -sd' ' | cut -c1-200))}"
	else
		echo "CHECK fail $name: $(echo "$out" | paste -sd' ' | cut -c1-600)"
	fi
}

check_points() {
	local file=$1 label=$2 c line
	shift 2
	for c in "$@"; do
		line=$(grep -E "^CHECK (ok|fail) $c( |:|$)" "$file" | head -n1)
		case $line in
		"CHECK ok $c"*) ok "$label$c${line#CHECK ok "$c"}" ;;
		"CHECK fail $c"*) notok "$label$c: ${line#CHECK fail "$c": }" ;;
		*) notok "$label$c: no result from the guest" ;;
		esac
	done
}
