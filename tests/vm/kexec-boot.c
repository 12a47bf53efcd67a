// SPDX-License-Identifier: GPL-2.0
/*
 * The VM tier's kexec step (run.sh --kexec): loads KERNEL and INITRD with
 * kexec_file_load(2) and reboots into them with reboot(LINUX_REBOOT_CMD_KEXEC),
 * the path on which the kernel serialises live update state (LUO's sessions,
 * KHO's preserved memory) just before the jump.
 *
 *   kexec-boot KERNEL INITRD CMDLINE [TSCFILE]
 *   kexec-boot --load-only KERNEL INITRD CMDLINE
 *
 * --load-only (run.sh --systemd): the load alone, exit 0; the jump is then
 * `systemctl kexec`'s, whose systemd-shutdown calls the same reboot.
 *
 * TSCFILE (x86): the TSC before and after the load and just before the
 * reboot call, "load_start=N load_end=N reboot=N", fsync'd: the TSC keeps
 * counting across the kexec, so the new kernel can time the jump.
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

static unsigned long long tsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned int lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((unsigned long long)hi << 32) | lo;
#else
	return 0;
#endif
}

/* The stamps, on disk before the jump; a failure here only loses them. */
static void tsc_write(const char *path, unsigned long long t0,
		      unsigned long long t1, unsigned long long t2)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return;
	fprintf(f, "load_start=%llu load_end=%llu reboot=%llu\n", t0, t1, t2);
	fflush(f);
	fsync(fileno(f));
	fclose(f);
}

static int open_ro(const char *path)
{
	return open(path, O_RDONLY | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	unsigned long long t_load, t_loaded;
	const char *cmdline;
	int kfd, ifd, err, load_only = 0;

	if (argc > 1 && !strcmp(argv[1], "--load-only")) {
		load_only = 1;
		argv++;
		argc--;
	}
	if (argc != 4 && (argc != 5 || load_only)) {
		fprintf(stderr, "usage: kexec-boot KERNEL INITRD CMDLINE [TSCFILE]\n"
			"       kexec-boot --load-only KERNEL INITRD CMDLINE\n");
		return 2;
	}
	cmdline = argv[3];
	kfd = open_ro(argv[1]);
	if (kfd < 0)
		return fail("open", argv[1], errno);
	ifd = open_ro(argv[2]);
	if (ifd < 0)
		return fail("open", argv[2], errno);
	t_load = tsc();
	/* The length counts the terminating NUL. */
	if (syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1,
		    cmdline, 0UL))
		return fail("kexec_file_load", argv[1], errno);
	t_loaded = tsc();
	if (load_only)
		return 0;
	sync();
	if (argc == 5)
		tsc_write(argv[4], t_load, t_loaded, tsc());
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
