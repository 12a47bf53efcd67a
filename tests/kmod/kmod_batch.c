// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of PRESERVE_FDS: a batch pinned whole and carried over
 * an exec, and every refusal pinning nothing, with @failed naming the entry
 * refused.  On a module without the command, each fails with ENOTTY.
 */
#include "kmod_util.h"

#define UNSET		0xdeadbeefu	/* @failed before the call */
#define TOK_OLD		100		/* a pin made before the batch */

static void entry(struct cprx_preserve_entry *e, int fd, uint64_t token)
{
	memset(e, 0, sizeof(*e));
	e->fd = fd;
	e->token = token;
}

/* A session with one pin (an eventfd under TOK_OLD). */
static int session_with_pin(int dev)
{
	int sfd = create(dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	if (sfd < 0 || efd < 0 || preserve(sfd, efd, TOK_OLD))
		return -1;
	close(efd);
	return sfd;
}

/* Does the batch leave the session as session_with_pin() made it? */
static bool only_old_pin(int sfd)
{
	return nr_pins(sfd) == 1 && kind_of(sfd, TOK_OLD) == CPRX_KIND_EVENTFD;
}

/* --- Across exec ---------------------------------------------------------- */

static void batch_old_image(long unused)
{
	struct cprx_preserve_entry ents[4];
	uint32_t failed = UNSET;
	int dev = open_dev(), sfd, mfd, efd, p[2], ret;

	(void)unused;
	CHECK(dev >= 0, "open %s: %m", CPRX_DEVICE);
	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(MEM_SIZE, 9);
	efd = eventfd(EVT_COUNT, EFD_CLOEXEC);
	CHECK(mfd >= 0 && efd >= 0 && !pipe2(p, O_CLOEXEC), "fds: %m");
	CHECK(write(p[1], PIPE_MSG, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG),
	      "pipe write: %m");
	entry(&ents[0], mfd, TOK_MEM);
	entry(&ents[1], efd, TOK_EVT);
	entry(&ents[2], p[0], TOK_PIPE_R);
	entry(&ents[3], p[1], TOK_PIPE_W);
	ret = preserve_fds(sfd, ents, 4, &failed);
	CHECK(!ret && failed == 4, "preserve_fds: %d, failed %u", ret, failed);
	CHECK(nr_pins(sfd) == 4, "%d pins", nr_pins(sfd));
	/* ours are closed: the pins alone keep the files */
	close(mfd);
	close(efd);
	close(p[0]);
	close(p[1]);
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	exec_or_die("batch", 0, 0, 0);
}

KMOD_EXEC_CASE(batch, a0, a1, a2)
{
	char msg[sizeof(PIPE_MSG)];
	int dev = open_dev(), sfd, mfd, efd, r, w;
	uint64_t count;

	(void)a0;
	(void)a1;
	(void)a2;
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	CHECK(nr_pins(sfd) == 4, "%d pins", nr_pins(sfd));
	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd >= 0 && memfd_bad(mfd, MEM_SIZE, 9) < 0, "memfd: %d", mfd);
	efd = retrieve_fd(sfd, TOK_EVT);
	CHECK(efd >= 0 && read(efd, &count, 8) == 8 && count == EVT_COUNT,
	      "eventfd: %d", efd);
	r = retrieve_fd(sfd, TOK_PIPE_R);
	w = retrieve_fd(sfd, TOK_PIPE_W);
	CHECK(r >= 0 && w >= 0, "pipe: %d %d", r, w);
	CHECK(read(r, msg, sizeof(msg)) == sizeof(msg) &&
	      !memcmp(msg, PIPE_MSG, sizeof(msg)), "pipe bytes lost");
	CHECK(!finish(sfd), "finish");
	return 0;
}

/*
 * Test Case: batch_across_exec
 * A memfd, an eventfd and both ends of a pipe pinned by one PRESERVE_FDS
 * (@failed set to nr), the caller's fds closed, armed, exec'd: the new
 * image retrieves all four, with the memfd's bytes, the eventfd's count
 * and the pipe's bytes in flight.
 */
TEST_F(kmod, batch_across_exec)
{
	EXPECT_EQ(0, run_child(self, batch_old_image, 0));
}

/* --- Refusals: nothing pinned, @failed names the entry -------------------- */

/*
 * Test Case: batch_bad_fd
 * A batch of five whose entry 2 is a closed fd: EBADF, @failed 2, only the
 * earlier pin in the session, and the files of entries 0 and 1 are not
 * held (a pipe's read end sees EOF once our write end is closed).  A
 * negative fd is EBADF too.
 */
TEST_F(kmod, batch_bad_fd)
{
	struct cprx_preserve_entry ents[5];
	uint32_t failed = UNSET;
	int sfd = session_with_pin(self->dev), efd = eventfd(0, EFD_CLOEXEC);
	int p[2], closed = dup(efd);
	char c;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	close(closed);
	entry(&ents[0], p[1], 1);
	entry(&ents[1], efd, 2);
	entry(&ents[2], closed, 3);
	entry(&ents[3], efd, 4);
	entry(&ents[4], efd, 5);
	EXPECT_EQ(-EBADF, preserve_fds(sfd, ents, 5, &failed));
	EXPECT_EQ(2, failed);
	EXPECT_TRUE(only_old_pin(sfd));
	close(p[1]);
	EXPECT_EQ(0, read(p[0], &c, 1));	/* EOF: no write end pinned */
	failed = UNSET;
	entry(&ents[1], -1, 2);
	EXPECT_EQ(-EBADF, preserve_fds(sfd, ents + 1, 4, &failed));
	EXPECT_EQ(0, failed);
	EXPECT_TRUE(only_old_pin(sfd));
}

/*
 * Test Case: batch_duplicate_in_batch
 * Tokens 1, 2, 3, 2 in one batch: EEXIST, @failed 3 (the second 2), no
 * pin of the batch stays.
 */
TEST_F(kmod, batch_duplicate_in_batch)
{
	struct cprx_preserve_entry ents[4];
	uint32_t failed = UNSET;
	int sfd = session_with_pin(self->dev), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	entry(&ents[0], efd, 1);
	entry(&ents[1], efd, 2);
	entry(&ents[2], efd, 3);
	entry(&ents[3], efd, 2);
	EXPECT_EQ(-EEXIST, preserve_fds(sfd, ents, 4, &failed));
	EXPECT_EQ(3, failed);
	EXPECT_TRUE(only_old_pin(sfd));
}

/*
 * Test Case: batch_duplicate_of_pin
 * A batch whose entry 1 reuses the token of a pin made before it: EEXIST,
 * @failed 1, that pin kept as it was, nothing of the batch pinned.
 */
TEST_F(kmod, batch_duplicate_of_pin)
{
	struct cprx_preserve_entry ents[3];
	uint32_t failed = UNSET;
	int sfd = session_with_pin(self->dev), mfd = memfd_pattern(PAGE, 1);

	ASSERT_GE(sfd, 0);
	entry(&ents[0], mfd, 1);
	entry(&ents[1], mfd, TOK_OLD);
	entry(&ents[2], mfd, 3);
	EXPECT_EQ(-EEXIST, preserve_fds(sfd, ents, 3, &failed));
	EXPECT_EQ(1, failed);
	EXPECT_TRUE(only_old_pin(sfd));
}

/*
 * Test Case: batch_over_limits
 * As root, max_pins 8, one pin made: a batch of 8 is ENOSPC with @failed 7
 * (the first entry that does not fit), one of 9 (above max_pins) the same
 * before its entries are read (they are a bad pointer here); max_user_pins
 * 5: a batch of 5 is ENOSPC at entry 4; nothing is pinned by any of them.
 * Then a batch of 4 fits, and with max_user_pins back, one of 3 fills the
 * session to max_pins exactly.
 */
TEST_F(kmod, batch_over_limits)
{
	struct cprx_preserve_entry ents[8];
	uint32_t failed = UNSET;
	int sfd, efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_preserve_fds a = {
		.size = sizeof(a), .nr = 9, .entries = 8, .failed = UNSET,
	};

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_PINS, 8);
	sfd = session_with_pin(self->dev);
	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 8; i++)
		entry(&ents[i], efd, i);
	EXPECT_EQ(-ENOSPC, preserve_fds(sfd, ents, 8, &failed));
	EXPECT_EQ(7, failed);
	EXPECT_TRUE(only_old_pin(sfd));
	EXPECT_EQ(-ENOSPC, xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, &a));
	EXPECT_EQ(7, a.failed);
	EXPECT_TRUE(only_old_pin(sfd));
	set_param(self, P_USER_PINS, 5);
	failed = UNSET;
	EXPECT_EQ(-ENOSPC, preserve_fds(sfd, ents, 5, &failed));
	EXPECT_EQ(4, failed);
	EXPECT_TRUE(only_old_pin(sfd));
	EXPECT_EQ(0, preserve_fds(sfd, ents, 4, &failed));
	EXPECT_EQ(4, failed);
	EXPECT_EQ(5, nr_pins(sfd));
	set_param(self, P_USER_PINS, 65536);
	EXPECT_EQ(0, preserve_fds(sfd, ents + 4, 3, &failed));
	EXPECT_EQ(3, failed);
	EXPECT_EQ(8, nr_pins(sfd));
	EXPECT_EQ(-ENOSPC, preserve_fds(sfd, ents + 7, 1, &failed));
	EXPECT_EQ(0, failed);
}

/*
 * Test Case: batch_fault
 * @entries unmapped, or running off the end of a readable page: EFAULT,
 * nothing pinned, @failed left as it was; with the argument itself in a
 * read-only page (@failed cannot be written back), EFAULT and nothing
 * pinned either.
 */
TEST_F(kmod, batch_fault)
{
	struct cprx_session_preserve_fds a = {
		.size = sizeof(a), .nr = 2, .failed = UNSET,
	}, *ro;
	struct cprx_preserve_entry *ents;
	int sfd = session_with_pin(self->dev), efd = eventfd(0, EFD_CLOEXEC);
	char *map;

	ASSERT_GE(sfd, 0);
	map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, munmap(map + PAGE, PAGE));
	a.entries = (uintptr_t)(map + PAGE);
	EXPECT_EQ(-EFAULT, xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, &a));
	EXPECT_EQ(UNSET, a.failed);
	EXPECT_TRUE(only_old_pin(sfd));
	/* the first entry readable, the second not */
	ents = (void *)(map + PAGE - sizeof(*ents));
	entry(ents, efd, 1);
	a.entries = (uintptr_t)ents;
	EXPECT_EQ(-EFAULT, xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, &a));
	EXPECT_EQ(UNSET, a.failed);
	EXPECT_TRUE(only_old_pin(sfd));
	/* the argument read-only */
	a.nr = 1;
	memcpy(map, &a, sizeof(a));
	ASSERT_EQ(0, mprotect(map, PAGE, PROT_READ));
	ro = (void *)map;
	EXPECT_EQ(-EFAULT, xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, ro));
	EXPECT_TRUE(only_old_pin(sfd));
	munmap(map, PAGE);
}

/*
 * Test Case: batch_invalid
 * EINVAL and nothing pinned: the argument's reserved field set (@failed
 * left as it was); entry 1's reserved field set (@failed 1); entry 2 a
 * cprx session (@failed 2).
 */
TEST_F(kmod, batch_invalid)
{
	struct cprx_session_preserve_fds a = {
		.size = sizeof(a), .nr = 1, .failed = UNSET, .reserved = 1,
	};
	struct cprx_preserve_entry ents[3];
	uint32_t failed = UNSET;
	int sfd = session_with_pin(self->dev), efd = eventfd(0, EFD_CLOEXEC);
	int other = create(self->dev, "other");

	ASSERT_GE(sfd, 0);
	ASSERT_GE(other, 0);
	entry(&ents[0], efd, 1);
	entry(&ents[1], efd, 2);
	entry(&ents[2], efd, 3);
	a.entries = (uintptr_t)ents;
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, &a));
	EXPECT_EQ(UNSET, a.failed);
	EXPECT_TRUE(only_old_pin(sfd));
	ents[1].reserved = 1;
	EXPECT_EQ(-EINVAL, preserve_fds(sfd, ents, 3, &failed));
	EXPECT_EQ(1, failed);
	EXPECT_TRUE(only_old_pin(sfd));
	ents[1].reserved = 0;
	entry(&ents[2], other, 3);
	failed = UNSET;
	EXPECT_EQ(-EINVAL, preserve_fds(sfd, ents, 3, &failed));
	EXPECT_EQ(2, failed);
	EXPECT_TRUE(only_old_pin(sfd));
}

/*
 * Test Case: batch_session_state
 * Armed: EBUSY; finished: ESRCH; neither pins anything nor sets @failed.
 * An empty batch pins nothing and sets @failed to 0.
 */
TEST_F(kmod, batch_session_state)
{
	struct cprx_preserve_entry ents[1];
	uint32_t failed = UNSET;
	int sfd = session_with_pin(self->dev), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	entry(&ents[0], efd, 1);
	EXPECT_EQ(0, preserve_fds(sfd, ents, 0, &failed));
	EXPECT_EQ(0, failed);
	ASSERT_EQ(0, arm(sfd, 0));
	failed = UNSET;
	EXPECT_EQ(-EBUSY, preserve_fds(sfd, ents, 1, &failed));
	EXPECT_EQ(UNSET, failed);
	EXPECT_TRUE(only_old_pin(sfd));
	ASSERT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, finish(sfd));
	EXPECT_EQ(-ESRCH, preserve_fds(sfd, ents, 1, &failed));
	EXPECT_EQ(UNSET, failed);
	EXPECT_EQ(0, nr_pins(sfd));
}

TEST_HARNESS_MAIN
