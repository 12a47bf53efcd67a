// SPDX-License-Identifier: GPL-2.0
/*
 * The VM tier's kexec step (run.sh --kexec): loads KERNEL and INITRD with
 * kexec_file_load(2) and reboots into them with reboot(LINUX_REBOOT_CMD_KEXEC),
 * the path on which the kernel serialises live update state (LUO's sessions,
 * KHO's preserved memory) just before the jump.
 *
 *   kexec-boot KERNEL INITRD CMDLINE
 *
 * Returns only on failure, with one line on stderr naming the step and the
 * errno; the harness reports it. run.sh builds it statically: it runs from
 * the guest's I/O share, whatever the guest's root holds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(const char *step, const char *what, int err)
{
	fprintf(stderr, "kexec-boot: %s%s%s: %s\n", step, what ? " " : "",
		what ? what : "", strerror(err));
	return 1;
}

static int open_ro(const char *path)
{
	return open(path, O_RDONLY | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	const char *cmdline;
	int kfd, ifd, err;

	if (argc != 4) {
		fprintf(stderr, "usage: kexec-boot KERNEL INITRD CMDLINE\n");
		return 2;
	}
	cmdline = argv[3];
	kfd = open_ro(argv[1]);
	if (kfd < 0)
		return fail("open", argv[1], errno);
	ifd = open_ro(argv[2]);
	if (ifd < 0)
		return fail("open", argv[2], errno);
	/* The length counts the terminating NUL. */
	if (syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1,
		    cmdline, 0UL))
		return fail("kexec_file_load", argv[1], errno);
	sync();
	reboot(LINUX_REBOOT_CMD_KEXEC);
	/*
	 * Still here: the kernel refused, e.g. a live update participant
	 * failed to freeze. Unload so that nothing jumps later by surprise.
	 */
	err = errno;
	syscall(SYS_kexec_file_load, -1, -1, 0UL, NULL,
		(unsigned long)KEXEC_FILE_UNLOAD);
	return fail("reboot(LINUX_REBOOT_CMD_KEXEC)", NULL, err);
}
