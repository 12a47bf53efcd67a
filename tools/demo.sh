#!/bin/bash
# Fresh Debian 12 machine: install, build, and live-update a 1 GiB cprx-vmm.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
[ -d build ] || meson setup build
meson compile -C build
exec build/tools/cprx-vmm --ram 1G --vcpus 2 --updates 1 --human "$@"
