// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libcprx's API without an update: bad arguments refused by name,
 * cprx_incoming() in a fresh start and with a malformed environment, and
 * the backend forced through the environment.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "cprx.h"
#include "harness.h"

/*
 * Test Case: api_rejects_bad_input
 * Bad fds, duplicate, empty and over-long names, zero-sized RAM and
 * duplicate blobs are refused with the errno the API documents, and the
 * message names what was wrong.
 */
TEST(api_rejects_bad_input)
{
	struct cprx_session *s, *s2;
	char longname[80];
	int fd = memfd_create("x", MFD_CLOEXEC);

	ASSERT_EQ(0, cprx_session_open(&s, "api", NULL));
	EXPECT_EQ(-EBADF, cprx_preserve_fd(s, "bad", 12345));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "12345"));
	EXPECT_EQ(0, cprx_preserve_fd(s, "a", fd));
	EXPECT_EQ(-EEXIST, cprx_preserve_fd(s, "a", fd));
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, longname, fd));
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, "", fd));
	EXPECT_EQ(-EINVAL, cprx_preserve_ram(s, "r", fd, NULL, 0, CPRX_PAGE_4K));
	EXPECT_EQ(0, cprx_add_blob(s, "b", "x", 1));
	EXPECT_EQ(-EEXIST, cprx_add_blob(s, "b", "y", 1));
	EXPECT_EQ(0, cprx_unpreserve(s, "a"));
	EXPECT_EQ(-ENOENT, cprx_unpreserve(s, "a"));
	/* Its own pointer: a refused open sets it to NULL, and s must close. */
	EXPECT_EQ(-EINVAL, cprx_session_open(&s2, longname, NULL));
	EXPECT_EQ(NULL, s2);
	EXPECT_NE(NULL, strstr(cprx_errmsg(NULL), "longer than 63"));
	cprx_session_close(s);
	close(fd);
}

/*
 * Test Case: incoming_without_update
 * A fresh start, no $CPRX_INCOMING: cprx_incoming() returns 0 and no session.
 */
TEST(incoming_without_update)
{
	struct cprx_session *s;

	unsetenv(CPRX_ENV);
	ASSERT_EQ(0, cprx_incoming(&s, NULL));
	ASSERT_EQ(NULL, s);
}

/*
 * Test Case: incoming_malformed_env
 * A garbage $CPRX_INCOMING: -EINVAL naming it, and the variable is removed.
 */
TEST(incoming_malformed_env)
{
	struct cprx_session *s;

	setenv(CPRX_ENV, "garbage", 1);
	ASSERT_EQ(-EINVAL, cprx_incoming(&s, NULL));
	ASSERT_NE(NULL, strstr(cprx_errmsg(s), CPRX_ENV));
	ASSERT_EQ(NULL, getenv(CPRX_ENV));
	cprx_session_close(s);
}

/*
 * Test Case: backend_env_forcing
 * $CPRX_BACKEND picks the backend; an unknown one is -EINVAL, named.
 */
TEST(backend_env_forcing)
{
	struct cprx_session *s;

	setenv(CPRX_ENV_BACKEND, "cloexec", 1);
	ASSERT_EQ(0, cprx_session_open(&s, "b", NULL));
	ASSERT_STREQ("cloexec", cprx_backend_name(s));
	cprx_session_close(s);
	setenv(CPRX_ENV_BACKEND, "bogus", 1);
	ASSERT_EQ(-EINVAL, cprx_session_open(&s, "b", NULL));
	ASSERT_NE(NULL, strstr(cprx_errmsg(NULL), "bogus"));
	unsetenv(CPRX_ENV_BACKEND);
}

TEST_HARNESS_MAIN
