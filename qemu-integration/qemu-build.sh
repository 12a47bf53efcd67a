#!/bin/bash
# Builds QEMU 10.2.2 from Debian's source package inside the QEMU chroot
# (qemu-chroot.sh), TCG-only x86_64-softmmu, and installs it there under
# /opt/qemu-VERSION (stock: the benchmark's "stock 10.2.2") or, with
# --cprx, /opt/qemu-VERSION-cprx: the same build with patches/*.patch
# applied and --enable-cprx, linked against this checkout's libcprx
# (built in the chroot with meson -Dlib_only=true, installed in /usr/local).
#
#   qemu-integration/qemu-build.sh [--cprx] [--version 10.2.2] [--jobs N]
#
# Prints the binary's path inside the chroot (run it with
# qemu-run.sh --prog PATH). Cached: rebuilt only when missing, or for
# --cprx when the patches or libcprx's sources changed (then incrementally).
# First run: build dependencies and the source (apt-get source
# qemu=1:VERSION+ds-1, deb-src of sid) into the chroot, then about 4 minutes
# of build per flavour on 2 cores. Needs root and the network once.
# The +ds source has no firmware blobs: Debian's patches (applied, as in
# Debian's build) skip them and, like Debian's build, the binary uses the
# chroot's firmware (--firmwarepath /usr/share/qemu:/usr/share/seabios).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/vm/lib.sh"

version=10.2.2 jobs=$(nproc) flavour=""
while [ $# -gt 0 ]; do
	case $1 in
	--cprx) flavour=cprx ;;
	--version) version=$2; shift ;;
	--jobs) jobs=$2; shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) vm_die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
croot=$("$here/qemu-chroot.sh")
src=$(cd "$here/.." && pwd)
prefix=/opt/qemu-$version${flavour:+-$flavour}
bin=$prefix/bin/qemu-system-x86_64
# What the build is made of: for --cprx the patches and libcprx's sources.
key=stock
if [ -n "$flavour" ]; then
	key=$(cd "$src" && cat qemu-integration/patches/*.patch meson.build meson_options.txt \
		common/meson.build common/*.[ch] shim/meson.build shim/*.[ch] \
		include/cprx.h kernel/include/uapi/linux/cprx.h | sha256sum | cut -c1-16)
fi
complete() { [ -x "$croot$bin" ] && [ "$(cat "$croot$prefix/.complete" 2>/dev/null)" = "$key" ]; }
if complete; then
	echo "$bin"
	exit 0
fi
vm_lock qemu-build${flavour:+-$flavour}
if complete; then	# built while we waited for the lock
	echo "$bin"
	exit 0
fi

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
tree=/usr/src/qemu-$version
configure_extra=""
if [ -n "$flavour" ]; then
	vm_log "building libcprx in the chroot (meson -Dlib_only=true, /usr/local)"
	rm -rf "$croot/usr/src/cprx"
	mkdir -p "$croot/usr/src/cprx"
	# man/: the top meson.build reads it in every build (libcprx(3));
	# kernel/include: cprx.ko's uAPI, which the kmod backend includes
	cp -r "$src/meson.build" "$src/meson_options.txt" "$src/common" "$src/shim" \
		"$src/include" "$src/man" "$croot/usr/src/cprx/"
	mkdir -p "$croot/usr/src/cprx/kernel"
	cp -r "$src/kernel/include" "$croot/usr/src/cprx/kernel/"
	in_chroot sh -c "cd /usr/src/cprx && meson setup -Dlib_only=true --prefix=/usr/local \
		--buildtype=release build >/dev/null && ninja -C build install >/dev/null && ldconfig" >&2 ||
		vm_die "building libcprx in the chroot failed"
	# A copy of the source with the series applied; files the series touches
	# (and those the series applied last time touched, listed in the copy)
	# are restored first, so a changed series rebuilds only what it changes.
	# A file the series adds is removed, for the series to add it again.
	ptree=$tree-$flavour
	if [ ! -f "$croot$ptree/configure" ]; then
		rm -rf "$croot$ptree.tmp"
		mkdir -p "$croot$ptree.tmp"
		(cd "$croot$tree" && tar -c --exclude=./build-cprx .) | tar -x -C "$croot$ptree.tmp"
		mv "$croot$ptree.tmp" "$croot$ptree"
	fi
	applied=$croot$ptree/.cprx-series-files
	touched=$(sed -n 's|^+++ b/||p' "$here"/patches/*.patch | sort -u)
	for f in $( (echo "$touched"; cat "$applied" 2>/dev/null) | sort -u); do
		if [ -e "$croot$tree/$f" ]; then
			cp -p "$croot$tree/$f" "$croot$ptree/$f"
		else
			rm -f "$croot$ptree/$f"
		fi
	done
	echo "$touched" >"$applied"
	for p in "$here"/patches/*.patch; do
		patch -d "$croot$ptree" -p1 -s --no-backup-if-mismatch <"$p" ||
			vm_die "$(basename "$p") does not apply to qemu $version"
	done
	tree=$ptree
	configure_extra=--enable-cprx
fi
vm_log "building qemu $version${flavour:+ with $flavour} (TCG-only x86_64-softmmu, -j$jobs)"
in_chroot sh -c "cd $tree && mkdir -p build-cprx && cd build-cprx &&
	if [ ! -f build.ninja ]; then
		../configure --prefix=$prefix --target-list=x86_64-softmmu --without-default-features \
			--enable-tcg --enable-kvm --enable-seccomp --enable-cap-ng --enable-fdt=system \
			--enable-pixman --enable-slirp --disable-docs --disable-tools --disable-werror \
			--disable-install-blobs --firmwarepath=/usr/share/qemu:/usr/share/seabios \
			$configure_extra >/dev/null
	fi &&
	ninja -j$jobs qemu-system-x86_64 && ninja install >/dev/null &&
	echo $key >$prefix/.complete" >&2 ||
	vm_die "building qemu $version${flavour:+ with $flavour} failed"
vm_log "qemu $version${flavour:+-$flavour} built in $(( $(date +%s) - t0 ))s: $("$here/qemu-run.sh" --prog "$bin" -version | head -n1)"
echo "$bin"
