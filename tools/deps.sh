#!/bin/bash
# Installs what cprx needs to build and test on Debian 12, from Debian only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
	build-essential meson ninja-build pkg-config \
	liburing-dev libglib2.0-dev libjson-glib-dev \
	clang libclang-rt-14-dev \
	llvm bpftool libbpf-dev \
	procps \
	gnuplot-nox \
	qemu-system-x86 busybox-static cpio debootstrap patch xz-utils zstd kmod \
	bc flex bison libelf-dev libssl-dev dwarves binutils util-linux \
	man-db groff-base \
	debhelper dh-dkms lintian \
	bindfs systemd
# (the VM tier, tests/vm: QEMU TCG guests, their initramfs, the sid chroot for
# sid's headers, out-of-tree module builds; tests/vm/kbuild.sh installs the
# linux-headers matching the cached kernel itself; gnuplot-nox: cprx-bench plots)
# (man-db, groff-base: the man-help test's formatting check; debhelper,
# dh-dkms, lintian: tests/deb builds the Debian packages and lints them; the
# packages' Depends, dkms included, go into its bookworm chroot only;
# bindfs: guard-policy's FUSE mount, which cprx-guard must refuse rules on;
# systemd: run.sh --systemd boots the host's as the guest's PID 1)
