#!/bin/bash
# VM tier, host side: the luo backend's preserve side on the research
# kernel's real /dev/liveupdate (tests/vm/luo-guest.sh), one boot, no
# kexec.  Prints TAP; run from the source root:
#
#   tests/vm/luo.sh BUILD_DIR
#
# The research kernel is not built here (tests/vm/research; .ci/run builds
# it first): without it this SKIPs saying why.
set -uo pipefail

build=${1:?usage: $0 BUILD_DIR}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! tests/vm/kernels.sh --cached research >"$log" 2>&1; then
	echo "1..0 # SKIP research kernel unavailable: $(tail -n 1 "$log")"
	exit 0
fi
# two 256 MiB guests stay pinned in their sessions until the daemon stops
exec tests/vm/run.sh --kernel research --mem 2G --timeout 2400 \
	--fail-on-warn -- tests/vm/luo-guest.sh "$build"
