# Shared helpers for the VM tier scripts (sourced, not run).
# shellcheck shell=bash

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CPRX_CACHE:-/var/cache/cprx}
# The mirror the host's apt uses (first deb.debian.org-style URI found), so the
# sid apt config and the sid chroot talk to the same place.
: "${CPRX_MIRROR:=}"

vm_log() { printf 'cprx-vm: %s\n' "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 1; }

vm_mirror() {
	if [ -n "$CPRX_MIRROR" ]; then
		echo "$CPRX_MIRROR"
		return
	fi
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security |
		head -n1 | tr -d ' ')
	echo "${m:-http://deb.debian.org/debian}" | sed 's,/*$,,'
}

# Exclusive lock on $CACHE/<name>.lock for the rest of the calling shell.
vm_lock() {
	mkdir -p "$CACHE"
	local fd
	exec {fd}>"$CACHE/$1.lock"
	if ! flock -n "$fd"; then
		vm_log "waiting for lock $CACHE/$1.lock"
		flock "$fd"
	fi
}

# apt options for a private sid (or trixie) package index under $CACHE/apt-<suite>;
# never touches the host's own sources, lists or status.
vm_apt_opts() {
	local suite=$1 d="$CACHE/apt-$1"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/etc/preferences.d"
	[ -f "$d/status" ] || : >"$d/status"
	[ -f "$d/etc/sources.list" ] ||
		echo "deb $(vm_mirror) $suite main" >"$d/etc/sources.list"
	APT_OPTS=(
		-o "Dir::Etc::SourceList=$d/etc/sources.list"
		-o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::Etc::Preferences=/dev/null"
		-o "Dir::Etc::PreferencesParts=$d/etc/preferences.d"
		-o "Dir::State::Lists=$d/lists"
		-o "Dir::State::status=$d/status"
		-o "Dir::Cache=$d/cache"
		-o "Acquire::Check-Valid-Until=false"
		-o "APT::Architecture=amd64"
		-o "APT::Architectures=amd64"
		-o "APT::Sandbox::User=root"
		-o "Acquire::http::Timeout=30"
		-o "Acquire::Retries=2"
	)
}

# Key=value file reader: vm_info FILE KEY
vm_info() { sed -n "s/^$2=//p" "$1" | head -n1; }
