// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What one uid may make cprx-luod (root) keep or do for it: the files it
 * preserves cost the kernel pages no one is charged for, and preserving
 * freezes a file for all who share it.  The daemon (--fake-kexec) must
 * refuse what would make root pay, or touch another uid's file, and keep
 * its answers whole however many sessions it holds.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include "harness.h"
#include "cprx.h"
#include "luo_util.h"
#include "luod_proto.h"

#define NOBODY		65534

static const char *const fake[] = { "--fake-kexec", NULL };

/*
 * CREATE @name on a new connection, then PRESERVE @fd; the reply into
 * @out.  Each call its own name: the last one's goes when its reader
 * tells the daemon that it closed.
 */
static int preserve_one(const struct luod_run *r, const char *name, int fd,
			char *out, size_t len)
{
	char req[64];
	int c = luod_connect(r), ret;

	if (c < 0)
		return -1;
	snprintf(req, sizeof(req), "CREATE %s", name);
	ret = luod_ask(c, req, -1, out, len, NULL);
	if (ret > 0 && !strcmp(out, "OK"))
		ret = luod_ask(c, "PRESERVE 0000000000000001", fd, out, len, NULL);
	close(c);
	return ret;
}

/*
 * Test Case: readonly_memfd
 * Preserving a memfd freezes it for everyone who has it (no resize, no
 * fallocate) until the kexec, fills and pins its pages, and LUO takes an
 * inode in one session only: a uid that can only read another uid's memfd
 * (one shared read-only) must not make the daemon preserve it.  An fd open
 * read-only is refused; the same memfd open read-write is taken.
 */
TEST(readonly_memfd)
{
	char out[CPRX_LUOD_MSG_MAX], proc[64];
	struct luod_run r = { 0 };
	int mfd = luo_memfd("shared", 65536, 7), ro;

	ASSERT_LE(0, mfd);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	ro = open(proc, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, ro);
	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_GT(preserve_one(&r, "ro", ro, out, sizeof(out)), 0);
	TH_LOG("a read-only fd: %s", out);
	EXPECT_EQ(0, strncmp(out, "ERR 13 ", 7));
	ASSERT_GT(preserve_one(&r, "rw", mfd, out, sizeof(out)), 0);
	EXPECT_STREQ("OK", out);
	close(ro);
	close(mfd);
	luod_cleanup(&r);
}

/*
 * Test Case: sparse_memfd
 * LUO preserves a memfd by allocating, zeroing and pinning a page for
 * every hole, inside the daemon's ioctl: charged to the daemon (root), not
 * to the uid that sent it, and every VMM waits while it runs.  A 1 TiB
 * memfd of one written page must be refused; the same memfd with its
 * pages allocated by its owner is taken.
 */
TEST(sparse_memfd)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	int mfd = memfd_create("sparse", MFD_CLOEXEC);

	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, ftruncate(mfd, 1ull << 40));
	ASSERT_EQ(1, pwrite(mfd, "x", 1, 1 << 20));
	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_GT(preserve_one(&r, "sparse", mfd, out, sizeof(out)), 0);
	TH_LOG("1 TiB of holes: %s", out);
	EXPECT_EQ(0, strncmp(out, "ERR 27 ", 7));
	ASSERT_EQ(0, ftruncate(mfd, 1 << 22));
	ASSERT_EQ(0, fallocate(mfd, 0, 0, 1 << 22));
	ASSERT_GT(preserve_one(&r, "filled", mfd, out, sizeof(out)), 0);
	EXPECT_STREQ("OK", out);
	close(mfd);
	luod_cleanup(&r);
}

#define FILES_SESSIONS	3
#define FILES_EACH	1000
#define FILES_PER_UID	2048	/* cprx-luod(8), Limits */

/* Empty memfds preserved in FILES_SESSIONS sessions; the count taken. */
static int preserve_many(void *arg)
{
	char out[CPRX_LUOD_MSG_MAX], req[64];
	const struct luod_run *r = arg;
	int i, j, c[FILES_SESSIONS], n = 0;

	for (i = 0; i < FILES_SESSIONS; i++) {
		c[i] = luod_connect(r);
		snprintf(req, sizeof(req), "CREATE many%d", i);
		if (c[i] < 0 || luod_ask(c[i], req, -1, out, sizeof(out),
					 NULL) <= 0 || strcmp(out, "OK"))
			return 255;
		for (j = 0; j < FILES_EACH; j++) {
			int mfd = memfd_create("empty", MFD_CLOEXEC);

			snprintf(req, sizeof(req), "PRESERVE %016x", j + 1);
			if (mfd < 0 || luod_ask(c[i], req, mfd, out, sizeof(out),
						NULL) <= 0)
				return 255;
			close(mfd);
			if (strcmp(out, "OK"))
				break;
			n++;
		}
	}
	printf("# uid %d: %d empty memfds preserved (last: %s)\n", NOBODY, n,
	       out);
	fflush(stdout);		/* as_uid's child leaves by _exit */
	return n > FILES_PER_UID ? 1 : 0;
}

/*
 * Test Case: files_per_uid
 * Each file LUO preserves costs the kernel a page of preserved memory and
 * its bookkeeping, charged to no one and kept until the kexec; an empty
 * memfd costs its sender next to nothing.  One uid may not preserve more
 * than its share of files, whatever the number of its sessions.
 */
TEST(files_per_uid)
{
	struct luod_run r = { 0 };

	if (geteuid())
		SKIP(return, "needs root: the memfds are sent as uid %d", NOBODY);
	ASSERT_EQ(0, luod_start(&r, fake));
	fflush(stdout);
	EXPECT_EQ(0, as_uid(NOBODY, preserve_many, &r));
	luod_cleanup(&r);
}

#define LONG_NAME	"a-name-of-the-most-bytes-one-may-give-a-session"

/* @n sessions held on @r by the caller's uid, named LONG_NAME<i>; 0 or -1. */
static int hold_sessions(const struct luod_run *r, int n)
{
	char out[CPRX_LUOD_MSG_MAX], req[96];
	int i, c, mfd = luo_memfd("state", 4096, 1), ret = 0;

	for (i = 0; i < n && !ret; i++) {
		c = luod_connect(r);
		snprintf(req, sizeof(req), "CREATE %.*s%d",
			 CPRX_LUOD_NAME_MAX - 2, LONG_NAME, i);
		ret = c < 0 || luod_ask(c, req, -1, out, sizeof(out), NULL) <= 0 ||
		      strcmp(out, "OK") ||
		      luod_ask(c, "PRESERVE ffffffffffffffff", mfd, out,
			       sizeof(out), NULL) <= 0 || strcmp(out, "OK") ||
		      luod_ask(c, "HOLD", -1, out, sizeof(out), NULL) <= 0 ||
		      strcmp(out, "OK") ? -1 : 0;
		if (c >= 0)
			close(c);
	}
	if (mfd >= 0)
		close(mfd);
	return ret;
}

static int hold_8(void *arg)
{
	return hold_sessions(arg, 8) ? 1 : 0;
}

/*
 * Test Case: status_every_session
 * Root's `cprx-luod status` is how an admin sees, before a kexec, which
 * VMMs are held, and after it which are not finished: it must list every
 * session, however long the names one uid gives its own (40 here, 32 of
 * root's and 8 of nobody's, every name of the most bytes).
 */
TEST(status_every_session)
{
	static char out[1 << 18];
	struct luod_run r = { 0 };
	unsigned int n = 0, lines = 0;
	const char *p;

	if (geteuid())
		SKIP(return, "needs root: 8 of the sessions are held as uid %d",
		     NOBODY);
	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, hold_sessions(&r, 32));
	ASSERT_EQ(0, as_uid(NOBODY, hold_8, &r));
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	ASSERT_EQ(1, sscanf(out, "OK %u", &n));
	for (p = out; (p = strchr(p, '\n')); p++)
		lines++;
	TH_LOG("STATUS: %u sessions, %u listed in %zu bytes", n, lines,
	       strlen(out));
	EXPECT_EQ(40, n);
	EXPECT_EQ(n, lines);
	luod_cleanup(&r);
}

/* Empty files in @arg until the file system has no inode left; 0 or 1. */
static int fill_inodes(void *arg)
{
	char path[192];
	int i, fd;

	for (i = 0; i < 100000; i++) {
		snprintf(path, sizeof(path), "%s/f%d", (const char *)arg, i);
		fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (fd < 0)
			return 0;
		close(fd);
	}
	return 1;
}

/*
 * Test Case: hold_with_state_fs_full
 * HOLD records the session in the state directory, with the guest
 * stopped.  Another uid that fills the file system under it (its inodes:
 * /var/tmp is often the same one as /var/lib, and root has no reserve of
 * inodes) must not make that HOLD fail: the record's file is taken at
 * CREATE, before the guest stops.  A tmpfs of 64 inodes stands for it.
 */
TEST(hold_with_state_fs_full)
{
	char out[CPRX_LUOD_MSG_MAX], fs[128], state[160], pub[160];
	const char *extra[] = { "--fake-kexec", "--state-dir", state, NULL };
	struct luod_run r = { .dir = "/tmp/cprx-luo.XXXXXX" };
	int c, mfd = luo_memfd("state", 4096, 1);

	if (geteuid())
		SKIP(return, "needs root: a tmpfs of its own, filled as uid %d",
		     NOBODY);
	ASSERT_NE(NULL, mkdtemp(r.dir));
	chmod(r.dir, 0755);
	snprintf(fs, sizeof(fs), "%s/fs", r.dir);
	snprintf(state, sizeof(state), "%s/state", fs);
	snprintf(pub, sizeof(pub), "%s/pub", fs);
	ASSERT_EQ(0, mkdir(fs, 0755));
	if (mount("cprx-luo", fs, "tmpfs", 0, "nr_inodes=64,mode=0755"))
		SKIP(return, "cannot mount a tmpfs: %m");
	ASSERT_EQ(0, mkdir(pub, 01777));
	ASSERT_EQ(0, chmod(pub, 01777));
	ASSERT_EQ(0, luod_start(&r, extra));
	c = luod_open_vm(&r, mfd);
	ASSERT_LE(0, c);
	EXPECT_EQ(0, as_uid(NOBODY, fill_inodes, pub));
	ASSERT_GT(luod_ask(c, "HOLD", -1, out, sizeof(out), NULL), 0);
	TH_LOG("HOLD with no inode left: %s", out);
	EXPECT_STREQ("OK", out);
	close(c);
	close(mfd);
	luod_stop(&r);
	umount2(fs, MNT_DETACH);
	luod_cleanup(&r);
}

/*
 * Test Case: vmm_pays_for_holes
 * The other side of sparse_memfd: a VMM's guest RAM is mostly holes
 * until the guest touches it, and LUO keeps every page.  libcprx's luo
 * backend allocates them in the VMM, so that preflight passes and the
 * memfd the daemon gets has none left.
 */
TEST(vmm_pays_for_holes)
{
	struct cprx_options o = { .size = sizeof(o),
				  .backend = CPRX_BACKEND_LUO };
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;
	int ram = memfd_create("ram", MFD_CLOEXEC);
	struct stat st;

	ASSERT_LE(0, ram);
	ASSERT_EQ(0, ftruncate(ram, 4 << 20));
	ASSERT_EQ(1, pwrite(ram, "x", 1, 1 << 20));
	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, cprx_session_open(&s, "vm", &o));
	ASSERT_EQ(0, cprx_preserve_ram(s, "ram0", ram, NULL, 4 << 20,
				       CPRX_PAGE_4K));
	EXPECT_EQ(0, cprx_preflight(s, "/proc/self/exe", NULL, NULL));
	TH_LOG("preflight: %s", cprx_errmsg(s));
	ASSERT_EQ(0, fstat(ram, &st));
	TH_LOG("%lld of %lld bytes allocated", (long long)st.st_blocks * 512,
	       (long long)st.st_size);
	EXPECT_LE(st.st_size, st.st_blocks * 512);
	cprx_session_close(s);
	close(ram);
	luod_cleanup(&r);
}

TEST_HARNESS_MAIN
