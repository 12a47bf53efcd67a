#!/bin/bash
# Builds QEMU 10.2.2 from Debian's source package inside the QEMU chroot
# (qemu-chroot.sh), TCG-only x86_64-softmmu, and installs it there under
# /opt/qemu-VERSION[-FLAVOUR], cached. The stock build is the benchmark's
# "stock 10.2.2"; FLAVOUR "cprx" (patches/*.patch applied) is still to come.
#
#   qemu-integration/qemu-build.sh [--version 10.2.2] [--jobs N]
#
# Prints the binary's path inside the chroot (run it with
# qemu-run.sh --prog PATH). First run: build dependencies and the source
# (apt-get source qemu=1:VERSION+ds-1, deb-src of sid) into the chroot, then
# about 4 minutes of build on 2 cores. Needs root and the network once.
# The +ds source has no firmware blobs: Debian's patches (applied, as in
# Debian's build) skip them and, like Debian's build, the binary uses the
# chroot's firmware (--firmwarepath /usr/share/qemu:/usr/share/seabios).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

version=10.2.2 jobs=$(nproc)
while [ $# -gt 0 ]; do
	case $1 in
	--version) version=$2; shift ;;
	--jobs) jobs=$2; shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) vm_die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
croot=$("$here/qemu-chroot.sh")
prefix=/opt/qemu-$version
bin=$prefix/bin/qemu-system-x86_64
if [ -x "$croot$bin" ] && [ -f "$croot$prefix/.complete" ]; then
	echo "$bin"
	exit 0
fi
vm_lock qemu-build

in_chroot() {
	unshare --mount --propagation private bash -euo pipefail -c '
		r=$1; shift
		mount -t proc proc "$r/proc"
		mount --rbind /dev "$r/dev"
		exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' in-chroot "$croot" "$@"
}

t0=$(date +%s)
# The +ds source has no bundled Python wheels: Debian's python3-pycotap.
deps="dpkg-dev gcc g++ make ninja-build meson pkg-config python3 python3-venv
	python3-pycotap libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev
	libseccomp-dev libcap-ng-dev zlib1g-dev xz-utils flex bison libc6-dev
	liburing-dev"
if [ "$(cat "$croot/usr/src/.cprx-build-deps" 2>/dev/null)" != "$deps" ]; then
	vm_log "installing QEMU's build dependencies into the chroot"
	cp /etc/resolv.conf "$croot/etc/resolv.conf"
	in_chroot sh -c "apt-get -q update && apt-get install -y -q --no-install-recommends \
		$(echo $deps) && apt-get clean" >&2 || vm_die "cannot install the build dependencies"
	echo "$deps" >"$croot/usr/src/.cprx-build-deps"
fi
if [ ! -f "$croot/usr/src/qemu-$version/configure" ]; then
	vm_log "fetching the qemu $version source into the chroot"
	mirror=$(vm_mirror)
	echo "deb-src $mirror sid main" >"$croot/etc/apt/sources.list.d/cprx-src.list"
	cp /etc/resolv.conf "$croot/etc/resolv.conf"
	in_chroot sh -c "apt-get -q update && mkdir -p /usr/src/qemu-src && cd /usr/src/qemu-src &&
		apt-get source -q --download-only qemu=1:$version+ds-1 &&
		dpkg-source -x qemu_$version+ds-1.dsc /usr/src/qemu-$version.tmp &&
		rm -rf /usr/src/qemu-$version && mv /usr/src/qemu-$version.tmp /usr/src/qemu-$version &&
		apt-get clean" >&2 || vm_die "cannot fetch the qemu $version source"
fi
vm_log "building qemu $version (TCG-only x86_64-softmmu, -j$jobs)"
in_chroot sh -c "cd /usr/src/qemu-$version && rm -rf build-cprx && mkdir build-cprx && cd build-cprx &&
	../configure --prefix=$prefix --target-list=x86_64-softmmu --without-default-features \
		--enable-tcg --enable-kvm --enable-seccomp --enable-cap-ng --enable-fdt=system \
		--enable-pixman --enable-slirp --disable-docs --disable-tools --disable-werror \
		--disable-install-blobs --firmwarepath=/usr/share/qemu:/usr/share/seabios \
		>/dev/null &&
	ninja -j$jobs qemu-system-x86_64 && ninja install >/dev/null &&
	touch $prefix/.complete" >&2 ||
	vm_die "building qemu $version failed"
vm_log "qemu $version built in $(( $(date +%s) - t0 ))s: $("$here/qemu-run.sh" --prog "$bin" -version | head -n1)"
echo "$bin"
