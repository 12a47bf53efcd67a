// SPDX-License-Identifier: GPL-2.0
/*
 * Does the live update orchestrator carry a memfd across a kexec? The guest
 * half of tests/vm/kexec-smoke.sh, run by run.sh --kexec in its two stages:
 *
 *   luo_smoke stage1   open /dev/liveupdate, create a session, fill a memfd
 *                      with a pattern, preserve it, and leave a process
 *                      holding the session's fd for the kexec
 *   luo_smoke stage2   in the kexec'd kernel: retrieve the session and the
 *                      memfd, check the pattern, finish the session
 *
 * Prints "CHECK ok NAME (detail)" or "CHECK fail NAME: why" lines (the VM
 * tier's guest format) and exits 1 if any check failed.
 *
 * The uAPI is Linux's include/uapi/linux/liveupdate.h, declared here: the
 * host's headers predate it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LU_TYPE 0xBA
#define LU_NAME_LEN 64

struct lu_session_arg {		/* create and retrieve session */
	uint32_t size;
	int32_t fd;
	uint8_t name[LU_NAME_LEN];
};

struct lu_fd_arg {		/* preserve and retrieve fd */
	uint32_t size;
	int32_t fd;
	uint64_t token __attribute__((aligned(8)));
};

struct lu_finish_arg {
	uint32_t size;
	uint32_t reserved;
};

#define LU_CREATE_SESSION _IO(LU_TYPE, 0x00)
#define LU_RETRIEVE_SESSION _IO(LU_TYPE, 0x01)
#define LU_PRESERVE_FD _IO(LU_TYPE, 0x40)
#define LU_RETRIEVE_FD _IO(LU_TYPE, 0x41)
#define LU_FINISH _IO(LU_TYPE, 0x42)

#define SESSION "cprx-vm-kexec-smoke"
#define TOKEN 0xc0ffee42ULL
#define MAGIC 0x314f554c58525043ULL	/* "CPRXLUO1" */
#define PAGE 4096
/* More than one folio's worth, an odd page count, one page never written. */
#define NPAGES 261
#define HOLE 7
#define SIZE ((off_t)NPAGES * PAGE)

static int failed;

static void check(int ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("CHECK %s %s%s", ok ? "ok" : "fail", name, ok ? " (" : ": ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	puts(ok ? ")" : "");
	fflush(stdout);
	failed |= !ok;
}

/* The pattern: splitmix64 of the seed and the word's index. */
static uint64_t word_at(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Page 0: magic, seed, size; then the pattern; page HOLE stays a hole. */
static void fill_page(uint64_t *p, size_t pg, uint64_t seed)
{
	size_t i;

	for (i = 0; i < PAGE / 8; i++)
		p[i] = word_at(seed, pg * (PAGE / 8) + i);
	if (pg == 0) {
		p[0] = MAGIC;
		p[1] = seed;
		p[2] = SIZE;
	}
}

static int open_luo(void)
{
	int fd = open("/dev/liveupdate", O_RDWR);

	check(fd >= 0, "luo-open", "/dev/liveupdate: %s",
	      fd >= 0 ? "open" : strerror(errno));
	return fd;
}

static int session_ioctl(int fd, unsigned long cmd, const char *name)
{
	struct lu_session_arg a = { .size = sizeof(a) };

	snprintf((char *)a.name, sizeof(a.name), "%s", name);
	if (ioctl(fd, cmd, &a))
		return -errno;
	return a.fd;
}

static int write_pattern(int mfd, uint64_t seed)
{
	uint64_t buf[PAGE / 8];
	size_t pg;

	if (ftruncate(mfd, SIZE))
		return -errno;
	for (pg = 0; pg < NPAGES; pg++) {
		if (pg == HOLE)
			continue;
		fill_page(buf, pg, seed);
		if (pwrite(mfd, buf, PAGE, (off_t)pg * PAGE) != PAGE)
			return -EIO;
	}
	return 0;
}

/* 0, or the first page that differs (+1); -errno when unreadable. */
static long verify_pattern(int mfd, uint64_t *seed)
{
	uint64_t buf[PAGE / 8], want[PAGE / 8];
	size_t pg;

	if (pread(mfd, buf, PAGE, 0) != PAGE)
		return -EIO;
	if (buf[0] != MAGIC || buf[2] != SIZE)
		return 1;
	*seed = buf[1];
	for (pg = 0; pg < NPAGES; pg++) {
		if (pread(mfd, buf, PAGE, (off_t)pg * PAGE) != PAGE)
			return -EIO;
		if (pg == HOLE)
			memset(want, 0, sizeof(want));
		else
			fill_page(want, pg, *seed);
		if (memcmp(buf, want, PAGE))
			return pg + 1;
	}
	return 0;
}

/*
 * Keeps the session (and /dev/liveupdate) open until the kexec: closing the
 * last fd of a session gives up what it preserves. The child is what the
 * harness's kexec finds running.
 */
static pid_t hold_for_kexec(void)
{
	pid_t pid = fork();
	int null;

	if (pid)
		return pid;
	setsid();
	null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	if (chdir("/"))
		_exit(1);
	for (;;)
		pause();
}

static int stage1(void)
{
	uint64_t seed;
	int luo, sfd, mfd, err;
	struct lu_fd_arg p = { .size = sizeof(p), .token = TOKEN };
	pid_t pid;

	luo = open_luo();
	if (luo < 0)
		return 1;
	sfd = session_ioctl(luo, LU_RETRIEVE_SESSION, SESSION);
	check(sfd < 0, "no-incoming-session", "retrieving %s before any kexec: %s",
	      SESSION, sfd < 0 ? strerror(-sfd) : "found one");
	sfd = session_ioctl(luo, LU_CREATE_SESSION, SESSION);
	check(sfd >= 0, "session-create", "%s: %s", SESSION,
	      sfd >= 0 ? "created" : strerror(-sfd));
	if (sfd < 0)
		return 1;
	seed = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
	mfd = memfd_create("cprx-luo-smoke", 0);
	err = mfd < 0 ? -errno : write_pattern(mfd, seed);
	check(!err, "memfd-fill", "%d pages, page %d a hole, seed %#" PRIx64 "%s%s",
	      NPAGES, HOLE, seed, err ? ": " : "", err ? strerror(-err) : "");
	if (err)
		return 1;
	p.fd = mfd;
	err = ioctl(sfd, LU_PRESERVE_FD, &p) ? errno : 0;
	check(!err, "memfd-preserve", "token %#llx: %s", TOKEN,
	      err ? strerror(err) : "preserved");
	if (err)
		return 1;
	/* The session holds the memfd now; only the session fd must stay. */
	close(mfd);
	pid = hold_for_kexec();
	check(pid > 0, "holder", "pid %d keeps the session open for the kexec",
	      (int)pid);
	return failed;
}

static int stage2(void)
{
	struct lu_fd_arg r = { .size = sizeof(r), .token = TOKEN };
	struct lu_finish_arg f = { .size = sizeof(f) };
	struct stat st;
	uint64_t seed = 0;
	int luo, sfd, mfd, err;
	long bad;

	luo = open_luo();
	if (luo < 0)
		return 1;
	sfd = session_ioctl(luo, LU_RETRIEVE_SESSION, SESSION);
	check(sfd >= 0, "session-retrieve", "%s: %s", SESSION,
	      sfd >= 0 ? "retrieved" : strerror(-sfd));
	if (sfd < 0)
		return 1;
	err = ioctl(sfd, LU_RETRIEVE_FD, &r) ? errno : 0;
	mfd = r.fd;
	check(!err, "memfd-retrieve", "token %#llx: %s", TOKEN,
	      err ? strerror(err) : "retrieved");
	if (err)
		return 1;
	if (fstat(mfd, &st))
		st.st_size = -1;
	if (st.st_size != SIZE) {
		check(0, "memfd-pattern", "size %lld, want %lld",
		      (long long)st.st_size, (long long)SIZE);
	} else {
		bad = verify_pattern(mfd, &seed);
		if (bad < 0)
			check(0, "memfd-pattern", "read: %s", strerror(-bad));
		else if (bad == 1)
			check(0, "memfd-pattern", "page 0 (the header) differs");
		else if (bad)
			check(0, "memfd-pattern", "page %ld differs", bad - 1);
		else
			check(1, "memfd-pattern",
			      "%d pages as written, page %d zero, seed %#" PRIx64,
			      NPAGES, HOLE, seed);
	}
	err = ioctl(sfd, LU_FINISH, &f) ? errno : 0;
	check(!err, "session-finish", "%s", err ? strerror(err) : "finished");
	/* Finished: the memfd is an ordinary one now. */
	err = pwrite(mfd, &seed, sizeof(seed), PAGE * HOLE) == sizeof(seed) ? 0 : errno;
	check(!err, "memfd-usable", "write after finish: %s",
	      err ? strerror(err) : "ok");
	close(mfd);
	close(sfd);
	close(luo);
	return failed;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "stage1"))
		return stage1();
	if (argc == 2 && !strcmp(argv[1], "stage2"))
		return stage2();
	fprintf(stderr, "usage: luo_smoke stage1|stage2\n");
	return 2;
}
