// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests: the uAPI's rules and error codes, command by command
 * (CREATE_SESSION and RETRIEVE_SESSION, every session command's sizes,
 * PRESERVE_FD and UNPRESERVE_FD, QUERY, ARM), within one image.
 */
#include "kmod_util.h"

/* --- CREATE_SESSION and RETRIEVE_SESSION arguments ------------------------ */

/*
 * Test Case: create_names
 * CREATE_SESSION's name: empty, or no NUL in its 64 bytes, is EINVAL; the
 * longest fits and reads back from QUERY with our pid, no flags and no pins,
 * on a close-on-exec fd; a name this process has is EEXIST, bytes after the
 * NUL not counting; closing or finishing a session gives its name back.
 */
TEST_F(kmod, create_names)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	char longest[CPRX_SESSION_NAME_LEN];
	struct cprx_session_query q;
	int fd, dup;

	EXPECT_EQ(-EINVAL, create(self->dev, ""));
	/* no NUL within the 64 bytes */
	memset(a.name, 'x', sizeof(a.name));
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));

	memset(longest, 'y', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	fd = create(self->dev, longest);
	ASSERT_GE(fd, 0);
	EXPECT_EQ(FD_CLOEXEC, cloexec_of(fd));
	ASSERT_EQ(0, query(fd, &q, NULL, 0));
	EXPECT_STREQ(longest, (char *)q.name);
	EXPECT_EQ(getpid(), q.owner_pid);
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(0, q.nr_entries);

	dup = create(self->dev, "dup");
	ASSERT_GE(dup, 0);
	EXPECT_EQ(-EEXIST, create(self->dev, "dup"));
	/* bytes after the NUL are not part of the name */
	memcpy(a.name, "dup\0trailing junk", 18);
	EXPECT_EQ(-EEXIST, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(2, proc_count(getpid(), NULL, NULL, 0));
	/* a closed session gives its name back, and so does a finished one */
	close(dup);
	dup = create(self->dev, "dup");
	ASSERT_GE(dup, 0);
	EXPECT_EQ(0, finish(dup));
	EXPECT_GE(create(self->dev, "dup"), 0);
}

static void create_dup_in_child(long dev)
{
	int fd = create(dev, "dup");

	CHECK(fd >= 0, "another process's name is not ours: %d", fd);
}

/*
 * Test Case: create_names_per_process
 * Names are per process: a child may create a session named like one of
 * ours.
 */
TEST_F(kmod, create_names_per_process)
{
	ASSERT_GE(create(self->dev, "dup"), 0);
	EXPECT_EQ(0, run_child(self, create_dup_in_child, self->dev));
}

/*
 * Test Case: create_args
 * CREATE_SESSION's other fields: unknown flags or a non-zero reserved is
 * EINVAL, a bad pointer EFAULT; fd is out only.  /dev/cprx and a session
 * file answer ENOTTY to each other's commands, to unknown numbers and to a
 * command number that encodes a size.
 */
TEST_F(kmod, create_args)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	int sfd;

	set_name(a.name, "args");
	a.flags = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.flags = 0x80000000;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.flags = 0;
	a.reserved = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.reserved = 0;
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, NULL));
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION,
				  (void *)16));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));
	/* fd is out only: whatever comes in is ignored */
	a.fd = 12345;
	ASSERT_EQ(0, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	sfd = a.fd;
	EXPECT_NE(12345, sfd);
	EXPECT_EQ(FD_CLOEXEC, cloexec_of(sfd));
	/* each file takes only its own commands */
	EXPECT_EQ(-ENOTTY, xioctl(sfd, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(-ENOTTY, xioctl(self->dev, CPRX_SESSION_ARM, &a));
	EXPECT_EQ(-ENOTTY, xioctl(self->dev, _IO(CPRX_IOCTL_TYPE, 0x03), &a));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(CPRX_IOCTL_TYPE, 0x48), &a));
	/* the size is in the struct, not in the command */
	EXPECT_EQ(-ENOTTY, xioctl(self->dev,
				  _IOWR(CPRX_IOCTL_TYPE, 0, typeof(a)), &a));
}

/*
 * CREATE_SESSION with a @size-byte argument, all zero past our struct but
 * byte @size - 1 = @last (if past it).  The fd, or -errno.
 */
static int create_sized(int dev, uint32_t size, uint8_t last, const char *name)
{
	static uint64_t buf[3 * PAGE / 8];
	struct cprx_ioctl_create_session *a = (void *)buf;
	int ret;

	memset(buf, 0, sizeof(buf));
	a->size = size;
	set_name(a->name, name);
	a->fd = -1;
	if (size > sizeof(*a) && size <= sizeof(buf))
		((uint8_t *)buf)[size - 1] = last;
	ret = xioctl(dev, CPRX_IOCTL_CREATE_SESSION, a);
	if (ret)
		return ret;
	/* the kernel writes back no more than it was given */
	if (size > sizeof(*a) && size <= sizeof(buf) &&
	    ((uint8_t *)buf)[size - 1] != last)
		return -EOVERFLOW;
	return a->fd;
}

/*
 * Test Case: create_sizes
 * CREATE_SESSION's size: below what covers the fd EINVAL, above a page
 * E2BIG, a non-zero byte past our struct E2BIG; older, ours and bigger
 * zero-tailed structs each create a session, and the kernel writes back no
 * more than it was given.
 */
TEST_F(kmod, create_sizes)
{
	static const uint32_t too_small[] = {
		0, 1, 4, 8, offsetof(struct cprx_ioctl_create_session, name),
		offsetofend(struct cprx_ioctl_create_session, name) - 1,
		/* a session the caller could not learn the fd of */
		offsetofend(struct cprx_ioctl_create_session, name),
		SESSION_ARG_MIN - 1,
	};
	static const uint32_t too_big[] = { PAGE + 1, 2 * PAGE, UINT32_MAX };
	uint32_t ours = sizeof(struct cprx_ioctl_create_session);
	int ok = 0;

	for (size_t i = 0; i < ARRAY_SIZE(too_small); i++) {
		TH_LOG("size %u", too_small[i]);
		EXPECT_EQ(-EINVAL, create_sized(self->dev, too_small[i], 0, "s"));
	}
	for (size_t i = 0; i < ARRAY_SIZE(too_big); i++) {
		TH_LOG("size %u", too_big[i]);
		EXPECT_EQ(-E2BIG, create_sized(self->dev, too_big[i], 0, "b"));
	}
	/* unknown bytes must be zero */
	EXPECT_EQ(-E2BIG, create_sized(self->dev, ours + 1, 1, "t1"));
	EXPECT_EQ(-E2BIG, create_sized(self->dev, PAGE, 0xff, "t2"));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));

	/* older (no reserved), ours, and newer ones with a zero tail */
	EXPECT_GE(create_sized(self->dev, SESSION_ARG_MIN, 0, "ok1"), 0);
	EXPECT_GE(create_sized(self->dev, ours, 0, "ok2"), 0);
	EXPECT_GE(create_sized(self->dev, ours + 1, 0, "ok3"), 0);
	EXPECT_GE(create_sized(self->dev, PAGE, 0, "ok4"), 0);
	for (int i = 1; i <= 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "ok%d", i);
		ok += proc_count(getpid(), name, NULL, 0);
	}
	EXPECT_EQ(4, ok);
	EXPECT_EQ(4, proc_count(getpid(), NULL, NULL, 0));
}

/*
 * Test Case: retrieve_session_args
 * RETRIEVE_SESSION's arguments: unknown flags, a non-zero reserved or too
 * small a size EINVAL, too big E2BIG, an empty name EINVAL, an unknown one
 * ENOENT, a bad pointer EFAULT; and the image that armed a session may not
 * retrieve it (EPERM).
 */
TEST_F(kmod, retrieve_session_args)
{
	struct cprx_ioctl_retrieve_session a = { .size = sizeof(a) };
	int sfd = create(self->dev, SESS);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, arm(sfd, 0));
	set_name(a.name, SESS);
	a.flags = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.flags = 0;
	a.reserved = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.reserved = 0;
	a.size = SESSION_ARG_MIN - 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.size = PAGE + 1;
	EXPECT_EQ(-E2BIG, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	EXPECT_EQ(-EINVAL, retrieve_session(self->dev, ""));
	EXPECT_EQ(-ENOENT, retrieve_session(self->dev, "no such session"));
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, NULL));
	/* ours, armed, but this is the image that armed it */
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
}

/*
 * Every session command: below its minimum size EINVAL, above a page E2BIG,
 * a non-zero unknown byte E2BIG; a bigger zero-tailed struct works, and the
 * kernel writes back no more than our struct.
 */
static const struct sess_cmd {
	const char *name;
	unsigned long cmd;
	uint32_t min;
	uint32_t size;
} sess_cmds[] = {
	{ "PRESERVE_FD", CPRX_SESSION_PRESERVE_FD,
	  offsetofend(struct cprx_session_preserve_fd, token),
	  sizeof(struct cprx_session_preserve_fd) },
	{ "UNPRESERVE_FD", CPRX_SESSION_UNPRESERVE_FD,
	  offsetofend(struct cprx_session_unpreserve_fd, token),
	  sizeof(struct cprx_session_unpreserve_fd) },
	{ "ARM", CPRX_SESSION_ARM, offsetofend(struct cprx_session_arm, flags),
	  sizeof(struct cprx_session_arm) },
	{ "RETRIEVE_FD", CPRX_SESSION_RETRIEVE_FD,
	  offsetofend(struct cprx_session_retrieve_fd, token),
	  sizeof(struct cprx_session_retrieve_fd) },
	{ "FINISH", CPRX_SESSION_FINISH,
	  offsetofend(struct cprx_session_finish, reserved),
	  sizeof(struct cprx_session_finish) },
	{ "QUERY", CPRX_SESSION_QUERY,
	  offsetofend(struct cprx_session_query, entries),
	  sizeof(struct cprx_session_query) },
	{ "PRESERVE_FDS", CPRX_SESSION_PRESERVE_FDS,
	  sizeof(struct cprx_session_preserve_fds),
	  sizeof(struct cprx_session_preserve_fds) },
};

/* @cmd on @sfd with a zeroed @size-byte argument, byte @size - 1 = @last. */
static int sess_sized(int sfd, const struct sess_cmd *c, uint32_t size,
		      uint8_t last, const void *init)
{
	static uint64_t buf[2 * PAGE / 8];

	memset(buf, 0, sizeof(buf));
	if (init)
		memcpy(buf, init, c->size);
	memcpy(buf, &size, sizeof(size));
	if (size > c->size && size <= sizeof(buf))
		((uint8_t *)buf)[size - 1] = last;
	return xioctl(sfd, c->cmd, buf);
}

/*
 * Test Case: session_arg_sizes
 * The size rules of every session command (sess_cmds[]): EINVAL, E2BIG and
 * EFAULT as above, and nothing done; bigger zero-tailed structs work, QUERY
 * at its minimum size too.
 */
TEST_F(kmod, session_arg_sizes)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_preserve_fd p = { .fd = efd, .token = 7 };
	struct cprx_session_unpreserve_fd u = { .token = 7 };
	struct cprx_session_arm cancel = { .flags = CPRX_ARM_CANCEL };

	ASSERT_GE(sfd, 0);
	ASSERT_GE(efd, 0);
	for (size_t i = 0; i < ARRAY_SIZE(sess_cmds); i++) {
		const struct sess_cmd *c = &sess_cmds[i];

		TH_LOG("%s: min %u, ours %u", c->name, c->min, c->size);
		EXPECT_EQ(-EINVAL, sess_sized(sfd, c, 0, 0, NULL));
		EXPECT_EQ(-EINVAL, sess_sized(sfd, c, c->min - 1, 0, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, PAGE + 1, 0, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, c->size + 8, 1, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, PAGE, 0x80, NULL));
		EXPECT_EQ(-EFAULT, xioctl(sfd, c->cmd, NULL));
	}
	/* nothing above did anything */
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));	/* not armed */

	/* bigger zero-tailed structs work; sess_sized() checks the tail */
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[0], PAGE, 0, &p));
	EXPECT_EQ(1, nr_pins(sfd));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[1], PAGE, 0, &u));
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[2], sess_cmds[2].size + 1, 0,
				NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[2], PAGE, 0, &cancel));
	EXPECT_EQ(-EPERM, sess_sized(sfd, &sess_cmds[3], PAGE, 0, NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[5], PAGE, 0, NULL));
	/* QUERY at its minimum: no name comes back, and nothing past it */
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[5], sess_cmds[5].min, 0, NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[4], PAGE, 0, NULL));
	EXPECT_EQ(-ESRCH, preserve(sfd, efd, 1));
}

/*
 * Test Case: query_short_struct
 * QUERY with a size that ends before the name: the kernel writes back only
 * what the caller's size covers.
 */
TEST_F(kmod, query_short_struct)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS);

	ASSERT_GE(sfd, 0);
	memset(&q, 0xa5, sizeof(q));
	q.size = offsetofend(struct cprx_session_query, entries);
	q.flags = 0;
	q.owner_pid = 0;
	q.nr_entries = 0;
	q.entries = 0;
	ASSERT_EQ(0, xioctl(sfd, CPRX_SESSION_QUERY, &q));
	EXPECT_EQ(getpid(), q.owner_pid);
	for (size_t i = 0; i < sizeof(q.name); i++)
		EXPECT_EQ(0xa5, q.name[i]);
}

/* --- PRESERVE_FD / UNPRESERVE_FD ------------------------------------------ */

/*
 * Test Case: preserve_errors
 * PRESERVE_FD and UNPRESERVE_FD: bad, closed, out-of-range and O_PATH fds
 * EBADF; a session file, ours or another, EINVAL; a taken token EEXIST
 * whatever the file; tokens are all 64 bits; an unknown token ENOENT on
 * UNPRESERVE_FD; pins are per session.
 */
TEST_F(kmod, preserve_errors)
{
	int sfd = create(self->dev, SESS), other = create(self->dev, "other");
	int efd = eventfd(0, EFD_CLOEXEC), closed, opath;

	ASSERT_GE(sfd, 0);
	ASSERT_GE(other, 0);
	ASSERT_GE(efd, 0);
	closed = dup(efd);
	close(closed);
	opath = open("/", O_PATH | O_CLOEXEC);
	ASSERT_GE(opath, 0);

	EXPECT_EQ(-EBADF, preserve(sfd, -1, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, closed, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, 1 << 20, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, INT_MAX, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, opath, 1));
	/* a session in a session would never die */
	EXPECT_EQ(-EINVAL, preserve(sfd, sfd, 1));
	EXPECT_EQ(-EINVAL, preserve(sfd, other, 1));
	EXPECT_EQ(0, nr_pins(sfd));

	EXPECT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EEXIST, preserve(sfd, efd, 1));
	/* it is the token that is taken, not the file */
	EXPECT_EQ(-EEXIST, preserve(sfd, self->dev, 1));
	EXPECT_EQ(0, preserve(sfd, efd, 2));
	EXPECT_EQ(0, preserve(sfd, efd, 0));
	EXPECT_EQ(0, preserve(sfd, efd, ~0ull));
	/* tokens are 64 bits wide: no truncation, no folding */
	EXPECT_EQ(0, preserve(sfd, efd, (1ull << 63) | 5));
	EXPECT_EQ(-EEXIST, preserve(sfd, efd, ~0ull));
	EXPECT_EQ(5, nr_pins(sfd));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, 1));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, ~0ull));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, (1ull << 63) | 5));
	EXPECT_EQ(-1, kind_of(sfd, 5));
	EXPECT_EQ(-1, kind_of(sfd, (1ull << 32) | 5));

	EXPECT_EQ(-ENOENT, unpreserve(sfd, 3));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 5));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, (1ull << 32) | 5));
	EXPECT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 1));
	EXPECT_EQ(4, nr_pins(sfd));
	EXPECT_EQ(0, preserve(sfd, efd, 1));
	/* pins are per session */
	EXPECT_EQ(0, preserve(other, efd, 1));
	EXPECT_EQ(1, nr_pins(other));
	EXPECT_EQ(5, nr_pins(sfd));
}

/*
 * Test Case: unpreserve_reserved
 * UNPRESERVE_FD with a non-zero reserved field: EINVAL, the pin stays.
 */
TEST_F(kmod, unpreserve_reserved)
{
	struct cprx_session_unpreserve_fd u = {
		.size = sizeof(u), .reserved = 1, .token = 1,
	};
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_UNPRESERVE_FD, &u));
	EXPECT_EQ(1, nr_pins(sfd));
}

/*
 * Test Case: pin_holds_the_file
 * A pin is a reference: a pipe keeps a reader while only the pin has it,
 * and loses it (EPIPE) when unpreserved.
 */
TEST_F(kmod, pin_holds_the_file)
{
	int sfd = create(self->dev, SESS), p[2];

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_NE(SIG_ERR, signal(SIGPIPE, SIG_IGN));
	ASSERT_EQ(0, preserve(sfd, p[0], 1));
	close(p[0]);
	EXPECT_EQ(1, write(p[1], "x", 1));
	ASSERT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(-1, write(p[1], "x", 1));
	EXPECT_EQ(EPIPE, errno);
}

/*
 * Test Case: finish_drops_pins
 * FINISH drops the pins (the pipe's last reader goes: EPIPE); a finished
 * session takes no pin or ARM (ESRCH) and is no longer listed.
 */
TEST_F(kmod, finish_drops_pins)
{
	int sfd = create(self->dev, SESS), p[2];

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_NE(SIG_ERR, signal(SIGPIPE, SIG_IGN));
	ASSERT_EQ(0, preserve(sfd, p[0], 1));
	close(p[0]);
	ASSERT_EQ(0, finish(sfd));
	EXPECT_EQ(-1, write(p[1], "x", 1));
	EXPECT_EQ(EPIPE, errno);
	/* finished is dead: nothing more can be pinned or armed */
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(-ESRCH, preserve(sfd, p[1], 2));
	EXPECT_EQ(-ESRCH, arm(sfd, 0));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 1));
	EXPECT_EQ(0, proc_count(getpid(), SESS, NULL, 0));
}

/* --- QUERY ---------------------------------------------------------------- */

struct kind_case {
	const char *what;
	int fd;
	uint32_t kind;
};

/*
 * Test Case: query_kinds
 * QUERY reports each pin's kind: memfd, eventfd, pipe and FIFO, socket,
 * character devices (on devtmpfs, a tmpfs: the file type wins), regular
 * file, anon inode, and a hugetlb memfd where the kernel has them.
 */
TEST_F(kmod, query_kinds)
{
	struct cprx_query_entry ents[16];
	struct kind_case k[12];
	struct cprx_session_query q;
	char fifo[] = "/tmp/cprx-kmod-fifo-XXXXXX";
	int sfd = create(self->dev, SESS), p[2], sp[2], n = 0, hfd;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
	k[n++] = (struct kind_case){ "memfd", memfd_create("k", MFD_CLOEXEC),
				     CPRX_KIND_MEMFD };
	k[n++] = (struct kind_case){ "eventfd", eventfd(0, EFD_CLOEXEC),
				     CPRX_KIND_EVENTFD };
	k[n++] = (struct kind_case){ "pipe", p[0], CPRX_KIND_PIPE };
	k[n++] = (struct kind_case){ "socket", sp[0], CPRX_KIND_SOCKET };
	/* devtmpfs is a tmpfs: the file type must win over the fs */
	k[n++] = (struct kind_case){ "/dev/null",
				     open("/dev/null", O_RDWR | O_CLOEXEC),
				     CPRX_KIND_CHARDEV };
	k[n++] = (struct kind_case){ "/dev/cprx", self->dev,
				     CPRX_KIND_CHARDEV };
	k[n++] = (struct kind_case){ "regular", open(th_self,
				     O_RDONLY | O_CLOEXEC), CPRX_KIND_REGULAR };
	k[n++] = (struct kind_case){ "epoll", epoll_create1(EPOLL_CLOEXEC),
				     CPRX_KIND_ANON };
	if (mkdtemp(fifo) && !rmdir(fifo) && !mkfifo(fifo, 0600)) {
		k[n++] = (struct kind_case){ "fifo on /tmp",
			open(fifo, O_RDWR | O_CLOEXEC), CPRX_KIND_PIPE };
		unlink(fifo);
	}
	hfd = memfd_create("k", MFD_CLOEXEC | MFD_HUGETLB);
	if (hfd >= 0)
		k[n++] = (struct kind_case){ "hugetlb memfd", hfd,
					     CPRX_KIND_HUGETLB };
	else
		TH_LOG("no hugetlb memfd (%m): not checked");
	for (int i = 0; i < n; i++) {
		ASSERT_GE(k[i].fd, 0);
		ASSERT_EQ(0, preserve(sfd, k[i].fd, 100 + i));
	}
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	ASSERT_EQ(n, q.nr_entries);
	for (int i = 0; i < n; i++) {
		int kind = kind_of(sfd, 100 + i);

		if (kind != (int)k[i].kind)
			TH_LOG("%s: kind %d, expected %u", k[i].what, kind,
			       k[i].kind);
		EXPECT_EQ(k[i].kind, kind);
		EXPECT_EQ(0, ents[i].reserved);
	}
}

/*
 * Test Case: query_entries
 * QUERY's entries: with fewer places than pins, the count of all and that
 * many copied; with enough, each token once; with none, just the count; a
 * bad pointer EFAULT; flags and owner_pid are out only (EINVAL if set).
 */
TEST_F(kmod, query_entries)
{
	struct cprx_query_entry ents[8];
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	uint64_t seen = 0;

	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 6; i++)
		ASSERT_EQ(0, preserve(sfd, efd, 10 + i));
	/* fewer places than pins: the count is all of them, two are copied */
	memset(ents, 0xa5, sizeof(ents));
	ASSERT_EQ(0, query(sfd, &q, ents, 2));
	EXPECT_EQ(6, q.nr_entries);
	for (int i = 0; i < 2; i++) {
		EXPECT_GE(ents[i].token, 10);
		EXPECT_LE(ents[i].token, 15);
	}
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, ents[2].token);
	/* enough places: each token exactly once */
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	EXPECT_EQ(6, q.nr_entries);
	for (int i = 0; i < 6; i++)
		seen |= 1ull << (ents[i].token - 10);
	EXPECT_EQ(0x3f, seen);
	/* no room: just the count, even without a pointer */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(6, q.nr_entries);
	EXPECT_STREQ(SESS, (char *)q.name);
	EXPECT_EQ(getpid(), q.owner_pid);
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(-EFAULT, query(sfd, &q, (void *)16, 4));
	EXPECT_EQ(-EFAULT, query(sfd, &q, NULL, 4));
	/* flags and owner_pid are out: must come in as 0 */
	memset(&q, 0, sizeof(q));
	q.size = sizeof(q);
	q.flags = CPRX_SESSION_ARMED;
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_QUERY, &q));
	q.flags = 0;
	q.owner_pid = getpid();
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_QUERY, &q));
}

/* --- ARM ------------------------------------------------------------------ */

/*
 * Test Case: arm_rules
 * ARM: unknown flags, or CANCEL with nothing armed, EINVAL; twice EBUSY;
 * armed, the session is frozen (PRESERVE_FD, UNPRESERVE_FD, FINISH EBUSY,
 * retrieves EPERM) until CANCEL, after which it works as before.
 */
TEST_F(kmod, arm_rules)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_query q;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));	/* nothing to undo */
	EXPECT_EQ(-EINVAL, arm(sfd, 2));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL | 0x80000000));
	ASSERT_EQ(0, arm(sfd, 0));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
	EXPECT_EQ(-EBUSY, arm(sfd, 0));
	/* an armed session is frozen */
	EXPECT_EQ(-EBUSY, preserve(sfd, efd, 2));
	EXPECT_EQ(-EBUSY, unpreserve(sfd, 1));
	EXPECT_EQ(-EBUSY, finish(sfd));
	EXPECT_EQ(1, nr_pins(sfd));
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, 1));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	/* until the arm is undone */
	ASSERT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	EXPECT_EQ(0, preserve(sfd, efd, 2));
	EXPECT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	EXPECT_EQ(0, finish(sfd));
}

TEST_HARNESS_MAIN
