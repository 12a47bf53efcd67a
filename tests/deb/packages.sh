#!/bin/bash
# The Debian packages (debian/), end to end; TAP.
#
#   tests/deb/packages.sh
#
# 1. Copies the source tree to a temporary directory and builds the binary
#    packages there with `dpkg-buildpackage -b -uc -us` (the host needs the
#    Build-Depends: tools/deps.sh).
# 2. Unpacks a clean bookworm chroot from a pristine tarball cached in
#    ${CPRX_CACHE:-/var/cache/cprx}/deb-chroot (made once by `debootstrap
#    --variant=minbase bookworm` plus the test's own tools: gcc, make,
#    pkg-config and the 6.1 linux-headers), so every run starts from the same
#    state; apt's downloads are kept next to it.
# 3. Installs the .debs there with apt, which resolves their Depends from
#    Debian, then: `cprx-vmm --updates 1` (cloexec backend), the other tools'
#    --help, `pkg-config --modversion cprx`, the packaged example built
#    against libcprx-dev and run, `dkms build` of cprx.ko for the 6.1
#    headers (the .ko's vermagic checked), the man pages.
# 4. lintian on the .changes: fails on any error or warning (the accepted
#    ones are overridden, with the reason, in debian/*lintian-overrides).
#
# Needs root (debootstrap, chroot, mounts in a private namespace: nothing
# stays mounted) and, on the first run, the network. On the 2-core CI
# machine: cold (debootstrap, the base tarball, about 100 MB of downloads)
# about 14 minutes; warm about 4, half of it the package build.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/tap.sh"
. "$src/tests/vm/lib.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root (debootstrap, chroot)"
for t in dpkg-buildpackage dh dh_dkms debootstrap lintian zstd; do
	command -v "$t" >/dev/null || skip_all "$t missing (tools/deps.sh)"
done

W=$(mktemp -d /var/tmp/cprx-deb.XXXXXX)
trap 'rm -rf "$W"' EXIT
t_start=$(date +%s)

# --- the pristine chroot -------------------------------------------------------
# Keyed by what goes into it: a change of the list makes a new tarball.
suite=bookworm
base_pkgs="ca-certificates linux-headers-amd64 gcc libc6-dev make pkg-config kmod"
key=$(echo "$suite $base_pkgs v1" | sha256sum | cut -c1-12)
cdir=$CACHE/deb-chroot
tarball=$cdir/$suite-$key.tar.zst
archives=$cdir/archives-$suite
mirror=$(vm_mirror)
vm_lock deb-chroot
mkdir -p "$archives/partial"

# Runs COMMAND... in the chroot $croot (vm_chroot: private mounts, /proc, a
# minimal /dev) with apt's cached downloads and $BIND_DEBS at /debs.
in_chroot() {
	vm_chroot "$croot" "$archives:/var/cache/apt/archives" \
		${BIND_DEBS:+"$BIND_DEBS:/debs"} -- "$@"
}

if [ ! -f "$tarball" ]; then
	vm_log "making the pristine $suite chroot $tarball"
	t0=$(date +%s)
	croot=$W/mkroot
	debootstrap --variant=minbase "$suite" "$croot" "$mirror" >"$W/debootstrap.log" 2>&1 || {
		tail -n 20 "$W/debootstrap.log" | diag
		echo "Bail out! debootstrap $suite failed"
		exit 1
	}
	echo "deb $mirror $suite main" >"$croot/etc/apt/sources.list"
	cp /etc/resolv.conf "$croot/etc/resolv.conf"
	in_chroot sh -c "apt-get -q update && apt-get install -y -q \
		--no-install-recommends $base_pkgs" >"$W/base.log" 2>&1 || {
		tail -n 20 "$W/base.log" | diag
		echo "Bail out! cannot install the chroot's base packages"
		exit 1
	}
	rm -f "$cdir"/"$suite"-*.tar.zst
	tar -C "$croot" -I 'zstd -T0 -3' -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	rm -rf "$croot"
	vm_log "pristine chroot made in $(($(date +%s) - t0)) s"
fi

# --- build the packages out of tree ----------------------------------------------
# The tree as it is (uncommitted changes included), without .git or build dirs.
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
upstream=${version%-*}
pkgsrc=$W/cprx-$upstream
mkdir -p "$pkgsrc"
excl=(--exclude=./.git)
while IFS= read -r m; do
	excl+=("--exclude=./$(dirname "${m#"$src"/}")")
done < <(find "$src" -maxdepth 3 -type d -name meson-private 2>/dev/null)
tar -C "$src" "${excl[@]}" -cf - . | tar -C "$pkgsrc" -xf -

t0=$(date +%s)
if (cd "$pkgsrc" && dpkg-buildpackage -b -uc -us -j2) >"$W/build.log" 2>&1; then
	ok "dpkg-buildpackage -b -uc -us ($(($(date +%s) - t0)) s)"
else
	not_ok "dpkg-buildpackage -b -uc -us"
	tail -n 40 "$W/build.log" | diag
	echo "1..$n"
	exit 1
fi
changes=$(ls "$W"/cprx_"$version"_*.changes)
mkdir "$W/debs"
for p in libcprx0 libcprx-dev cprx-dkms cprx-tools cprx-guard; do
	check "package $p built" cp "$W/${p}_${version}_"*.deb "$W/debs/"
done

# --- install into a clean chroot and use -------------------------------------------
croot=$W/root
mkdir "$croot"
tar -C "$croot" -I zstd -xf "$tarball"
kver=$(cd "$croot/usr/src" && ls -d linux-headers-6.1.*-amd64 | sed 's/^linux-headers-//' | tail -n1)

# apt resolves the Depends from Debian; with an outdated index (a version
# no longer on the mirror) it updates the index and tries again.
t0=$(date +%s)
install='apt-get install -y -q --no-install-recommends /debs/*.deb'
if BIND_DEBS=$W/debs in_chroot sh -c "$install || { apt-get -q update && $install; }" \
	>"$W/install.log" 2>&1; then
	ok "apt installs the 5 packages and their Depends ($(($(date +%s) - t0)) s)"
else
	not_ok "apt installs the 5 packages and their Depends"
	tail -n 30 "$W/install.log" | diag
fi
grep -E '^(Setting up|Unpacking) ' "$W/install.log" | grep -oE '^Setting up [^ ]+' |
	sed 's/^Setting up //' | tr '\n' ' ' | fmt -w 76 | diag

run() {	# WHAT COMMAND...: a point from a command in the chroot, its output as diag
	local what=$1
	shift
	if in_chroot "$@" >"$W/out" 2>&1; then
		ok "$what"
	else
		not_ok "$what (exit $?)"
	fi
	tail -n 15 "$W/out" | diag
}

run "cprx-vmm --updates 1 (cloexec backend) verifies RAM and devices" sh -c '
	cprx-vmm --updates 1 --human >/tmp/vmm.out 2>&1; rc=$?
	cat /tmp/vmm.out
	[ $rc = 0 ] && grep -q "1 updates ok" /tmp/vmm.out'
run "cprx-qmp, cprx-bench and cprx-guard start (shared libraries resolved)" sh -c '
	cprx-qmp --help >/dev/null && cprx-bench --help >/dev/null &&
	cprx-guard --help >/dev/null && cprx-guard load --help >/dev/null'
run "pkg-config --modversion cprx is $upstream" sh -c "
	v=\$(pkg-config --modversion cprx); echo \"\$v\"; [ \"\$v\" = '$upstream' ]"
run "examples/minimal-vmm.c from libcprx-dev builds against libcprx.so.0 and runs" sh -c '
	ex=/usr/share/doc/libcprx-dev/examples/minimal-vmm.c
	[ -f "$ex" ] || ex=$ex.gz
	zcat -f "$ex" >/tmp/minimal-vmm.c &&
	gcc -Wall -D_GNU_SOURCE -o /tmp/minimal-vmm /tmp/minimal-vmm.c $(pkg-config --cflags --libs cprx) &&
	ldd /tmp/minimal-vmm | grep -F libcprx &&
	ldd /tmp/minimal-vmm | grep -qE "libcprx.so.0 => (/usr)?/lib/x86_64-linux-gnu/libcprx.so.0 " &&
	/tmp/minimal-vmm'
run "the same, libcprx.a linked statically (pkg-config --static)" sh -c '
	gcc -D_GNU_SOURCE -o /tmp/minimal-vmm-static /tmp/minimal-vmm.c $(pkg-config --cflags cprx) \
		-Wl,-Bstatic $(pkg-config --static --libs cprx) -Wl,-Bdynamic &&
	! ldd /tmp/minimal-vmm-static | grep -q libcprx && /tmp/minimal-vmm-static'
# cprx-dkms's postinst may have built it already (DKMS autoinstall for
# every kernel with headers): --force builds it again, here.
run "cprx-dkms: the module is added to DKMS" sh -c "
	s=\$(dkms status cprx/$upstream); echo \"\$s\"; echo \"\$s\" | grep -q '^cprx/$upstream'"
t0=$(date +%s)
run "dkms build cprx/$upstream -k $kver (6.1 headers)" sh -c "
	dkms build --force cprx/$upstream -k $kver &&
	ko=/var/lib/dkms/cprx/$upstream/$kver/x86_64/module/cprx.ko &&
	v=\$(modinfo -F vermagic \$ko) && echo \"vermagic: \$v\" &&
	case \"\$v\" in '$kver '*) ;; *) false ;; esac &&
	modinfo -F license \$ko | grep -qx GPL"
diag <<<"dkms build took $(($(date +%s) - t0)) s"
run "man pages installed: cprx-vmm.1 cprx-qmp.1 cprx-bench.1 cprx-guard.8 libcprx.3" sh -c '
	for m in man1/cprx-vmm.1 man1/cprx-qmp.1 man1/cprx-bench.1 man8/cprx-guard.8 man3/libcprx.3; do
		[ -f /usr/share/man/$m.gz ] || { echo "missing $m"; exit 1; }
	done'
run "cprx-guard units in /lib/systemd/system name /usr/sbin/cprx-guard" sh -c '
	grep -q "^ExecStart=/usr/sbin/cprx-guard load" /lib/systemd/system/cprx-guard.service &&
	grep -q "^ExecStart=/usr/sbin/cprx-guard trace" /lib/systemd/system/cprx-guard-trace.service &&
	! grep -rn /usr/local /lib/systemd/system/cprx-guard*.service'
run "cprx-guard's postinst enables both units, starts only cprx-guard.service" sh -c '
	f=/var/lib/dpkg/info/cprx-guard.postinst
	grep -E "deb-systemd-(helper|invoke)" $f | grep -v "was-enabled\|debian-installed"
	grep -q "deb-systemd-helper enable .cprx-guard-trace.service" $f &&
	grep -q "deb-systemd-helper enable .cprx-guard.service" $f &&
	grep -q "deb-systemd-invoke .* .cprx-guard.service" $f &&
	! grep -q "deb-systemd-invoke .*cprx-guard-trace.service" $f'
# The maintainer scripts as an upgrade runs them, with systemd running
# (stubs that log what they are asked): the guard is reloaded in place,
# never stopped or restarted (a restart detaches, then loads).
run "cprx-guard upgraded: its maintainer scripts reload the guard, never stop or restart it" sh -c '
	stub=/tmp/stub; mkdir -p $stub /run/systemd/system
	for c in systemctl deb-systemd-invoke deb-systemd-helper; do
		printf "#!/bin/sh\necho %s \"\$*\" >>/tmp/calls\n" $c >$stub/$c
		chmod +x $stub/$c
	done
	: >/tmp/calls
	rc=0
	for s in prerm:upgrade preinst:upgrade postinst:configure; do
		f=/var/lib/dpkg/info/cprx-guard.${s%%:*}
		[ ! -e $f ] || PATH=$stub:$PATH $f ${s#*:} 0.1 || rc=$?
	done
	rmdir /run/systemd/system
	cat /tmp/calls
	[ $rc = 0 ] &&
	grep -qx "deb-systemd-invoke try-reload-or-restart cprx-guard.service" /tmp/calls &&
	! grep -E "^[a-z-]+ (stop|restart|try-restart) .*cprx-guard.service" /tmp/calls'

# --- lintian -------------------------------------------------------------------------
t0=$(date +%s)
lintian --fail-on error,warning --display-info "$changes" >"$W/lintian.log" 2>&1 && rc=0 || rc=$?
check "lintian: no errors, no warnings left unexplained ($(($(date +%s) - t0)) s)" \
	test "$rc" = 0
diag <"$W/lintian.log"

diag <<<"total $(($(date +%s) - t_start)) s"
echo "1..$n"
exit $((failed > 0))
