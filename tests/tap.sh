# Sourced by the shell tests that print TAP with numbered points:
#   check "what" COMMAND...   ok or not ok from COMMAND's status
#   ok / not_ok "what"        a point by hand; skip N "why": N skipped points
#   skip_all "why"            the whole test skipped (prints 1..0 and exits)
#   diag                      stdin as TAP comments
#   json FILE EXPR            EXPR evaluated over the JSON object in FILE
# $n counts the points printed, $failed the failures: end with
# exit $((failed > 0)).
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
skip() { local i; for ((i = 0; i < $1; i++)); do n=$((n + 1)); echo "ok $n # SKIP $2"; done; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
diag() { sed 's/^/# /'; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
