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

# vm_apt_refresh SUITE [force]: sets APT_OPTS for SUITE's private index
# (vm_apt_opts) and updates the index when it is missing, older than
# $CPRX_VM_REFRESH_HOURS (12), or "force" is given; when the registry cannot
# be reached, what is cached stays in use.
vm_apt_refresh() {
	local suite=$1 force=${2:-} stamp max_age
	vm_apt_opts "$suite"
	(
		vm_lock "apt-$suite"
		stamp=$(ls -1t "$CACHE/apt-$suite/lists/"*InRelease 2>/dev/null | head -n1) || true
		max_age=$(( ${CPRX_VM_REFRESH_HOURS:-12} * 60 ))
		if [ "$force" = force ] || [ -z "$stamp" ] ||
		   [ -n "$(find "$stamp" -mmin +"$max_age" 2>/dev/null)" ]; then
			vm_log "updating the $suite package index ($CACHE/apt-$suite)"
			apt-get "${APT_OPTS[@]}" -q update >&2 ||
				vm_log "warning: apt-get update for $suite failed; using what is cached"
		fi
	)
}

# vm_fetch_deb PKG VERSION: prints the path of PKG's .deb at VERSION in
# $CACHE/debs, downloaded first (through APT_OPTS) if it is not there;
# returns 1, printing nothing, if it can be neither found nor fetched.
vm_fetch_deb() {
	local pkg=$1 ver=$2 f
	local glob="$CACHE/debs/${pkg}_${ver//:/%3a}_"
	mkdir -p "$CACHE/debs"
	f=$(ls "$glob"*.deb 2>/dev/null | head -n1) || true
	if [ -z "$f" ]; then
		vm_log "fetching $pkg $ver"
		(cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" -o APT::Sandbox::User=root \
			-q download "$pkg=$ver" >&2) ||
			{ vm_log "warning: apt-get download $pkg=$ver failed"; return 1; }
		f=$(ls "$glob"*.deb 2>/dev/null | head -n1) || true
	fi
	[ -n "$f" ] && echo "$f"
}

# vm_pkg_version PKG: the candidate version of PKG in APT_OPTS's index.
vm_pkg_version() {
	apt-cache "${APT_OPTS[@]}" show "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

# Key=value file reader: vm_info FILE KEY
vm_info() { sed -n "s/^$2=//p" "$1" | head -n1; }

# vm_chroot ROOT [HOSTDIR:DIR]... -- COMMAND...: runs COMMAND in the chroot
# ROOT with a clean environment, in a private mount namespace (nothing stays
# mounted), with /proc, a minimal /dev and each HOSTDIR bind-mounted at DIR.
vm_chroot() {
	unshare --mount --propagation private bash -euo pipefail -c '
		r=$1; shift
		mount -t proc proc "$r/proc"
		mount -t tmpfs -o mode=755 dev "$r/dev"
		for n in null zero full random urandom tty; do
			touch "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"
		done
		ln -s /proc/self/fd "$r/dev/fd"
		mkdir -p "$r/dev/pts" "$r/dev/shm"
		mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
		while [ "$1" != -- ]; do
			mkdir -p "$r${1#*:}"
			mount --bind "${1%%:*}" "$r${1#*:}"
			shift
		done
		shift
		exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' vm-chroot "$@"
}

# vm_make_chroot SUITE ROOT: a cached `debootstrap --variant=minbase SUITE`
# chroot at ROOT, made once (the caller holds the ROOT's lock).
vm_make_chroot() {
	local suite=$1 croot=$2 mirror t0
	[ -f "$croot/.complete" ] && return 0
	command -v debootstrap >/dev/null || vm_die "debootstrap missing (tools/deps.sh)"
	mirror=$(vm_mirror)
	vm_log "creating the $suite chroot in $croot (debootstrap --variant=minbase)"
	t0=$(date +%s)
	rm -rf "$croot.tmp"
	unshare --mount --propagation private \
		debootstrap --variant=minbase --include=ca-certificates "$suite" "$croot.tmp" "$mirror" >&2 ||
		{ rm -rf "$croot.tmp"; vm_die "debootstrap $suite failed"; }
	echo "deb $mirror $suite main" >"$croot.tmp/etc/apt/sources.list"
	echo 'Acquire::Check-Valid-Until "false";' >"$croot.tmp/etc/apt/apt.conf.d/99cprx"
	rm -rf "$croot"
	mv "$croot.tmp" "$croot"
	touch "$croot/.complete"
	vm_log "debootstrap took $(( $(date +%s) - t0 ))s"
}
