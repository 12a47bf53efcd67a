#!/bin/busybox sh
# /init of the VM tier's initramfs (PID 1, busybox only). Built into the
# initramfs by run.sh; see run.sh for the whole picture.
#
# Loads the few modules the 9p root needs, mounts the host's / (9p tag
# "hostroot", read-only) on /newroot, the run's I/O directory (9p tag
# "cprxio", read-write) on /newroot/run/cprx-vm/io, reads the job there, lays
# out tmpfs, the API filesystems and the --share directories, then
# switch_root's into the host's tree with stage2.sh as the new PID 1.
# run.sh --systemd (cprx_vm.systemd on the command line): the root is an
# overlay, the 9p root read-only under a tmpfs, the job's io/sdroot copied
# onto it, and systemd is PID 1.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
	echo "CPRX-VM-INIT-FAILED: $*" >/dev/console
	echo "cprx-vm init: $*" >/dev/console
	sleep 1
	reboot -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/modules/$m" || echo "cprx-vm init: insmod $m failed" >/dev/console
done </modules/order
echo "cprx-vm init: modules loaded, mounting the 9p root" >/dev/console

systemd=0
case " $(cat /proc/cmdline) " in *" cprx_vm.systemd "*)
	systemd=1
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "/modules/$m" || echo "cprx-vm init: insmod $m failed" >/dev/console
	done </modules/order.systemd ;;
esac
lower=/newroot
[ $systemd = 0 ] || lower=/lower
mkdir -p $lower

# 9p over virtio-pci appears asynchronously: retry the root mount briefly.
opts=trans=virtio,version=9p2000.L,msize=512000
i=0
until mount -t 9p -o "$opts,ro,cache=loose" hostroot $lower 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "cannot mount the 9p root (hostroot)"
	sleep 0.05
done
# --systemd: the writable layer (and /lib/modules/<kver>'s) in /rw.
if [ $systemd = 1 ]; then
	mkdir -p /rw
	mount -t tmpfs -o mode=755 rw /rw && mkdir /rw/root /rw/root.work ||
		fail "tmpfs for the overlay root"
	mount -t overlay -o lowerdir=/lower,upperdir=/rw/root,workdir=/rw/root.work \
		root /newroot || fail "cannot mount the overlay root (--systemd)"
	# A host that is a container marks its root so: systemd in the guest
	# would believe it runs in one (and, for one, never kexec).
	rm -f /newroot/.dockerenv /newroot/.containerenv
fi

R=/newroot
mount -t tmpfs -o mode=755,nosuid,nodev run "$R/run" || fail "tmpfs on /run"
mkdir -p "$R/run/cprx-vm/io"
mount -t 9p -o "$opts,cache=none" cprxio "$R/run/cprx-vm/io" || fail "cannot mount the I/O share"
IO="$R/run/cprx-vm/io"
[ -f "$IO/job.sh" ] || fail "no job.sh in the I/O share"
. "$IO/job.sh"
# run.sh --kexec: in the kexec'd kernel, whose command line says so, that
# kernel's version and modules.
case " $(cat /proc/cmdline) " in *" cprx_vm.stage=2 "*)
	CPRX_VM_KVER=$CPRX_VM_KVER2
	CPRX_VM_KMODDIR=$CPRX_VM_KMODDIR2
	CPRX_VM_KMODTAG=$CPRX_VM_KMODTAG2 ;;
esac

# Writable scratch. /tmp etc. hide the host's contents; --share dirs (mounted
# below, after the tmpfs) punch through them.
for d in /tmp /var/tmp; do
	mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$R$d" || fail "tmpfs on $d"
done
mount -t tmpfs -o mode=700 root "$R/root" || fail "tmpfs on /root"
for d in $CPRX_VM_TMPFS; do
	mkdir -p "$R$d" 2>/dev/null
	mount -t tmpfs -o mode=755 extra "$R$d" || fail "tmpfs on $d"
done

# API filesystems.
mount --move /proc "$R/proc"
mount --move /sys "$R/sys"
mount --move /dev "$R/dev"
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
mount -t mqueue mqueue "$R/dev/mqueue" 2>/dev/null
S="$R/sys"
mount -t securityfs securityfs "$S/kernel/security" || echo "cprx-vm init: no securityfs" >/dev/console
mount -t debugfs debugfs "$S/kernel/debug" || echo "cprx-vm init: no debugfs" >/dev/console
mount -t tracefs tracefs "$S/kernel/tracing" 2>/dev/null ||
	mount -t tracefs tracefs "$S/kernel/debug/tracing" 2>/dev/null
mount -t bpf -o mode=700 bpffs "$S/fs/bpf" || echo "cprx-vm init: no bpffs" >/dev/console
mount -t cgroup2 -o nsdelegate cgroup2 "$S/fs/cgroup" || echo "cprx-vm init: no cgroup2" >/dev/console
mount -t configfs configfs "$S/kernel/config" 2>/dev/null
[ -d "$S/firmware/efi/efivars" ] && mount -t efivarfs efivarfs "$S/firmware/efi/efivars" 2>/dev/null

# The guest kernel's own modules at /lib/modules/<kver> (the host's are
# meaningless there): a tmpfs over /lib/modules with a bind of the cached tree.
# --systemd: an overlay of it, writable (a test installs a module, depmod).
if [ $systemd = 1 ]; then
	mkdir -p /kmods /rw/kmods /rw/kmods.work "$R/lib/modules/$CPRX_VM_KVER"
	if [ -n "$CPRX_VM_KMODTAG" ]; then
		mount -t 9p -o "$opts,ro,cache=loose" "$CPRX_VM_KMODTAG" /kmods
	else
		mount --bind "/lower$CPRX_VM_KMODDIR" /kmods
	fi &&
	mount -t overlay -o lowerdir=/kmods,upperdir=/rw/kmods,workdir=/rw/kmods.work \
		kmods "$R/lib/modules/$CPRX_VM_KVER" ||
		echo "cprx-vm init: no /lib/modules/$CPRX_VM_KVER" >/dev/console
elif [ -n "$CPRX_VM_KMODTAG" ]; then
	mount -t tmpfs -o mode=755 modules "$R/lib/modules" &&
	mkdir -p "$R/lib/modules/$CPRX_VM_KVER" &&
	mount -t 9p -o "$opts,ro,cache=loose" "$CPRX_VM_KMODTAG" "$R/lib/modules/$CPRX_VM_KVER"
elif [ -n "$CPRX_VM_KMODDIR" ] && [ -d "$R$CPRX_VM_KMODDIR" ]; then
	mount -t tmpfs -o mode=755 modules "$R/lib/modules" &&
	mkdir -p "$R/lib/modules/$CPRX_VM_KVER" &&
	mount --bind "$R$CPRX_VM_KMODDIR" "$R/lib/modules/$CPRX_VM_KVER"
fi

# --share / --ro-share DIR: 9p, same path as on the host.
if [ -f "$IO/shares" ]; then
	while read -r tag path mode; do
		[ -n "$tag" ] || continue
		mkdir -p "$R$path" 2>/dev/null
		if [ "$mode" = ro ]; then o=ro,cache=loose; else o=cache=mmap; fi
		mount -t 9p -o "$opts,$o" "$tag" "$R$path" ||
			fail "cannot mount share $path"
	done <"$IO/shares"
fi

echo "cprx-vm init: switching to the host's root" >/dev/console
cp /bin/busybox "$R/run/cprx-vm/busybox"
cp /stage2.sh "$R/run/cprx-vm/stage2.sh"
if [ $systemd = 1 ]; then
	cp -a "$IO/sdroot/." "$R/" || fail "cannot copy io/sdroot onto the root"
	exec switch_root "$R" /lib/systemd/systemd --unit=cprx-vm.target
fi
exec switch_root "$R" /run/cprx-vm/busybox sh /run/cprx-vm/stage2.sh
fail "switch_root failed"
