// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of the uAPI's later rules: printable names only, an
 * ioctl type of cprx's own, a CREATE that faults changes nothing, and
 * QUERY's DEAD flag.
 */
#include "kmod_util.h"

/*
 * Test Case: create_names_printable
 * A name is printable ASCII: a newline, a tab, DEL or a byte past 0x7e is
 * EINVAL (a name could otherwise forge lines of /proc/cprx/sessions) and
 * nothing is created; a space is fine.
 */
TEST_F(kmod, create_names_printable)
{
	static const char *const bad[] = {
		"forged\n1\tfake", "tab\there", "del\x7f", "latin\xe9",
		"\x01",
	};
	int fd;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		EXPECT_EQ(-EINVAL, create(self->dev, bad[i]));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));
	fd = create(self->dev, "with space ~");
	EXPECT_GE(fd, 0);
	EXPECT_EQ(1, proc_count(getpid(), "with space ~", NULL, 0));
}

/*
 * Test Case: ioctl_type_not_cxl
 * The commands use type 0xE7, which no one else registered: CXL's 0xCE (the
 * type cprx used to take) with cprx's numbers is ENOTTY on /dev/cprx and on
 * a session, and creates nothing.
 */
TEST_F(kmod, ioctl_type_not_cxl)
{
	static const unsigned int nrs[] = {
		0x00, 0x01, 0x02, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46,
		0x47,
	};
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	int sfd = create(self->dev, SESS);

	ASSERT_GE(sfd, 0);
	EXPECT_EQ(0xE7, CPRX_IOCTL_TYPE);
	EXPECT_EQ(0xE7, _IOC_TYPE(CPRX_IOCTL_CREATE_SESSION));
	EXPECT_EQ(0xE7, _IOC_TYPE(CPRX_SESSION_QUERY));
	for (size_t i = 0; i < ARRAY_SIZE(nrs); i++) {
		set_name(a.name, "cxl");
		EXPECT_EQ(-ENOTTY, xioctl(self->dev, _IO(0xCE, nrs[i]), &a));
		EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(0xCE, nrs[i]), &a));
	}
	EXPECT_EQ(1, proc_count(getpid(), NULL, NULL, 0));
}

/* @size bytes of @src in a page that is then read-only. */
static void *read_only_copy(const void *src, size_t size)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memcpy(p, src, size);
	if (mprotect(p, PAGE, PROT_READ))
		return NULL;
	return p;
}

/* The fd number the next open would get. */
static int next_fd(void)
{
	int fd = dup(STDERR_FILENO);

	close(fd);
	return fd;
}

/*
 * Test Case: create_fault_changes_nothing
 * CREATE_SESSION with its argument in a read-only page: EFAULT (the fd
 * cannot be written back), and no session is created, no fd is taken, the
 * name stays free; refused (EEXIST), the caller's fd field is left as it
 * was.
 */
TEST_F(kmod, create_fault_changes_nothing)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) }, *ro;
	int fd = next_fd(), sfd;

	set_name(a.name, "ro");
	ro = read_only_copy(&a, sizeof(a));
	ASSERT_NE(NULL, ro);
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, ro));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));
	EXPECT_EQ(fd, next_fd());
	sfd = create(self->dev, "ro");
	EXPECT_GE(sfd, 0);
	/* a refusal writes nothing back */
	a.fd = -7;
	EXPECT_EQ(-EEXIST, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(-7, a.fd);
	munmap(ro, PAGE);
}

/*
 * Test Case: query_dead_flag
 * QUERY reports a finished session as CPRX_SESSION_DEAD (with no pins), a
 * live one without it.
 */
TEST_F(kmod, query_dead_flag)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 1));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(0, q.flags);
	ASSERT_EQ(0, finish(sfd));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_DEAD, q.flags);
	EXPECT_EQ(0, q.nr_entries);
}

TEST_HARNESS_MAIN
