// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The handover attacked again, after its checks: a state that passes them
 * (the sealed memfd, this pid, made here with the codec) but names one fd
 * twice or the library's own state fd, an eventfd whose dev:ino any other
 * eventfd shares, and a refused handover whose rb= and why= were still
 * believed.  Each names what commit or reclaim must not do.
 */
#include <sys/eventfd.h>

#include "exec_util.h"
#include "state.h"

static char *const forged_argv[] = { "sh", "-c", "exit 42", NULL };

/* A record of @fd as it is now: what an old image saves. */
static void record_of(struct cprx_rec_fd *r, const char *token, int fd)
{
	struct stat st;

	CHECK(!fstat(fd, &st), "fstat %d: %m", fd);
	memset(r, 0, sizeof(*r));
	snprintf(r->token, sizeof(r->token), "%s", token);
	r->kind = CPRX_FD_DEVICE;
	r->fd = fd;
	r->handle = st.st_ino;
	r->dev = st.st_dev;
}

/*
 * The sealed state memfd an old image of this process makes, holding
 * @nr records; with @self_token, one more naming the memfd itself.
 */
static int sealed_state(const struct cprx_rec_fd *fds, unsigned int nr,
			const char *self_token)
{
	struct cprx_rec_fd recs[4];
	struct cprx_state st = {
		.session = "forged", .exe_path = "/bin/sh", .argc = 3,
		.argv = (char **)forged_argv, .exe_fd = -1, .pid = getpid(),
		.backend = CPRX_BACKEND_CLOEXEC, .fds = recs,
	};
	size_t len;
	void *buf;
	int fd = memfd_create("cprx-state", MFD_ALLOW_SEALING);

	CHECK(fd >= 0 && nr < 4, "memfd: %m");
	if (nr)
		memcpy(recs, fds, nr * sizeof(*fds));
	if (self_token)
		record_of(&recs[nr++], self_token, fd);
	st.nr_fds = nr;
	CHECK(!cprx_state_encode(&st, &buf, &len), "encode");
	CHECK(write(fd, buf, len) == (ssize_t)len, "write: %m");
	free(buf);
	CHECK(!fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
		     F_SEAL_WRITE | F_SEAL_SEAL), "seal: %m");
	return fd;
}

static struct cprx_session *take_handover(int state_fd, const char *extra)
{
	struct cprx_session *s;
	char env[256];
	int ret;

	snprintf(env, sizeof(env), "v=1,fd=%d,rb=0,keeper=0,reap=,save=1,"
		 "exec=2%s", state_fd, extra);
	CHECK(!setenv(CPRX_ENV, env, 1), "setenv");
	ret = cprx_incoming(&s, NULL);
	CHECK(ret == 1, "incoming %d: %s", ret, s ? cprx_errmsg(s) : "");
	return s;
}

static void same_fd_twice(const void *arg)
{
	struct cprx_rec_fd r[2];
	struct cprx_session *s;
	int p[2], fd;

	(void)arg;
	CHECK(!pipe(p), "pipe: %m");
	record_of(&r[0], "dev.a", p[0]);
	record_of(&r[1], "dev.b", p[0]);
	s = take_handover(sealed_state(r, 2, NULL), "");
	CHECK(!cprx_reclaim_fd(s, "dev.a", &fd), "%s", cprx_errmsg(s));
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(fcntl(fd, F_GETFD) >= 0, "commit closed fd %d, reclaimed as "
	      "'dev.a', because 'dev.b' named it too", fd);
	cprx_session_close(s);
}

/*
 * Test Case: commit_keeps_fd_named_twice
 * One fd under two tokens (a VMM that preserved it twice, or a forged
 * state): the new image reclaims one token, and commit closed the fd
 * under it for the other, unreclaimed one.  A number the caller holds is
 * not commit's to close.
 */
TEST(commit_keeps_fd_named_twice)
{
	ASSERT_EQ(0, in_child(same_fd_twice, NULL));
}

static void state_fd_as_record(const void *arg)
{
	struct cprx_session *s;
	int state = sealed_state(NULL, 0, "dev.state"), fd = -1, ret;

	(void)arg;
	s = take_handover(state, "");
	ret = cprx_reclaim_fd(s, "dev.state", &fd);
	printf("# reclaim: %d (fd %d): %s\n", ret, fd, cprx_errmsg(s));
	CHECK(ret == -EBADF, "reclaim handed out the library's state fd %d "
	      "(%d); commit then closes it under the caller", state, ret);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	cprx_session_close(s);
}

/*
 * Test Case: reclaim_refuses_state_fd
 * A record naming the state memfd's own number with its dev:ino (a VMM
 * that preserved every fd it had, the library's too): reclaim handed out
 * the session's state fd, which commit then closed under the caller.
 */
TEST(reclaim_refuses_state_fd)
{
	ASSERT_EQ(0, in_child(state_fd_as_record, NULL));
}

static void eventfd_reused(const void *arg)
{
	struct cprx_session *s;
	struct cprx_rec_fd r;
	int efd = eventfd(0, 0), mine;

	(void)arg;
	CHECK(efd >= 0, "eventfd: %m");
	record_of(&r, "dev.irq", efd);
	s = take_handover(sealed_state(&r, 1, NULL), "");
	/* never reclaimed; the image closes it and opens its own there */
	CHECK(!close(efd), "close: %m");
	mine = eventfd(0, EFD_CLOEXEC);
	CHECK(mine == efd, "the number was not reused (%d, %d)", mine, efd);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(fcntl(mine, F_GETFD) >= 0, "commit closed eventfd %d, opened "
	      "after the update (every eventfd has the same dev:ino)", mine);
	cprx_session_close(s);
}

/*
 * Test Case: commit_keeps_reused_eventfd
 * Every eventfd (timerfd, epoll, many KVM and VFIO fds) is the same
 * anon inode: dev:ino does not prove an unreclaimed eventfd is the
 * preserved one, and commit closed the image's own eventfd opened at the
 * same number.
 */
TEST(commit_keeps_reused_eventfd)
{
	ASSERT_EQ(0, in_child(eventfd_reused, NULL));
}

static void eventfd_reused_reclaim(const void *arg)
{
	struct cprx_session *s;
	struct cprx_rec_fd r;
	int efd = eventfd(0, 0), mine, fd = -1, ret;

	(void)arg;
	CHECK(efd >= 0, "eventfd: %m");
	record_of(&r, "dev.irq", efd);
	s = take_handover(sealed_state(&r, 1, NULL), "");
	CHECK(!close(efd), "close: %m");
	mine = eventfd(0, 0);
	CHECK(mine == efd, "the number was not reused (%d, %d)", mine, efd);
	ret = cprx_reclaim_fd(s, "dev.irq", &fd);
	printf("# reclaim: %d: %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -EBADF, "reclaim handed out the image's own eventfd %d "
	      "as the preserved one (%d)", fd, ret);
	CHECK(fcntl(mine, F_GETFD) == 0, "reclaim changed the flags of an fd "
	      "it refused");
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(fcntl(mine, F_GETFD) == 0, "commit closed or changed fd %d",
	      mine);
	cprx_session_close(s);
}

/*
 * Test Case: reclaim_refuses_reused_eventfd
 * The same reuse, then a reclaim of the token: the eventfd at the number
 * is not the preserved one, so reclaim refuses it (EBADF, as for any
 * reused number) and leaves its flags alone.
 */
TEST(reclaim_refuses_reused_eventfd)
{
	ASSERT_EQ(0, in_child(eventfd_reused_reclaim, NULL));
}

static void eventfd_reused_rollback(const void *arg)
{
	struct cprx_session *s;
	struct cprx_rec_fd r;
	int efd = eventfd(0, 0), mine, ret;

	(void)arg;
	CHECK(efd >= 0, "eventfd: %m");
	record_of(&r, "dev.irq", efd);
	s = take_handover(sealed_state(&r, 1, NULL), "");
	CHECK(!close(efd), "close: %m");
	mine = eventfd(0, EFD_CLOEXEC);
	CHECK(mine == efd, "the number was not reused (%d, %d)", mine, efd);
	/* the forged state's previous binary is sh -c 'exit 42' */
	ret = cprx_rollback(s, "test");
	printf("# rollback: %d: %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -EBADF, "rollback gave %d", ret);
	CHECK(fcntl(mine, F_GETFD) == FD_CLOEXEC, "rollback left fd %d "
	      "inheritable", mine);
	cprx_session_close(s);
}

/*
 * Test Case: rollback_refuses_reused_eventfd
 * A rollback hands the previous binary the preserved files: an eventfd
 * the new image opened at a preserved eventfd's number is not one, so the
 * rollback is refused (it was exec'd as the preserved device).
 */
TEST(rollback_refuses_reused_eventfd)
{
	ASSERT_EQ(0, in_child(eventfd_reused_rollback, NULL));
}

/*
 * Test Case: null_token_in_errmsg
 * cprx.h: a NULL pointer a call needs is refused with a message in
 * cprx_errmsg(NULL).  A NULL token, blob name or exec path was refused
 * with a message in the session only ("token '(null)' is empty"), or an
 * unrelated one ("nothing to reclaim").
 */
TEST(null_token_in_errmsg)
{
	static const char *const fresh = "cprx_session_open: sp is NULL";
	char *argv[] = { "true", NULL };
	struct cprx_session *s, *none;
	const void *data;
	uint64_t size;
	size_t len;
	void *addr;
	int fd;

	ASSERT_EQ(0, cprx_session_open(&s, "nulls", NULL));
#define NULL_NAMED(call, what) do {					\
		cprx_session_open(NULL, "x", NULL);			\
		ASSERT_STREQ(fresh, cprx_errmsg(NULL));			\
		EXPECT_EQ(-EINVAL, call);				\
		EXPECT_NE(NULL, strstr(cprx_errmsg(NULL), what " is NULL")); \
		TH_LOG("%s: '%s'", #call, cprx_errmsg(NULL));		\
	} while (0)
	NULL_NAMED(cprx_preserve_fd(s, NULL, 0), "token");
	NULL_NAMED(cprx_preserve_ram(s, NULL, 0, NULL, 4096, CPRX_PAGE_4K),
		   "token");
	NULL_NAMED(cprx_unpreserve(s, NULL), "token");
	NULL_NAMED(cprx_add_blob(s, NULL, "x", 1), "blob");
	NULL_NAMED(cprx_exec(s, NULL, argv), "path");
	NULL_NAMED(cprx_exec(s, "/bin/true", NULL), "argv");
	NULL_NAMED(cprx_reclaim_fd(s, NULL, &fd), "token");
	NULL_NAMED(cprx_reclaim_ram(s, NULL, &addr, &size, NULL), "token");
	NULL_NAMED(cprx_get_blob(s, NULL, &data, &len), "blob");
	NULL_NAMED(cprx_session_open(&none, NULL, NULL), "session name");
#undef NULL_NAMED
	cprx_session_close(s);
}

static void refused_claims(const void *arg)
{
	struct cprx_session *s;
	int fd = memfd_create("cprx-state", 0), ret;
	char env[128];

	(void)arg;
	CHECK(fd >= 0, "memfd: %m");
	snprintf(env, sizeof(env), "v=1,fd=%d,rb=1,why=forged,keeper=0,"
		 "reap=,save=1,exec=2", fd);
	CHECK(!setenv(CPRX_ENV, env, 1), "setenv");
	ret = cprx_incoming(&s, NULL);
	CHECK(ret < 0 && s, "an unsealed memfd accepted (%d)", ret);
	printf("# incoming: %d: %s\n", ret, cprx_errmsg(s));
	CHECK(!cprx_is_rollback(s), "a refused handover's rb=1 believed");
	CHECK(!cprx_rollback_reason(s), "a refused handover's why= believed: "
	      "'%s'", cprx_rollback_reason(s));
	cprx_session_close(s);
}

/*
 * Test Case: refused_handover_claims_nothing
 * A handover refused as not this process's (here an unsealed memfd) still
 * made cprx_is_rollback() true and cprx_rollback_reason() its why=: a VMM
 * would log a forged reason and act as a rollback image.
 */
TEST(refused_handover_claims_nothing)
{
	ASSERT_EQ(0, in_child(refused_claims, NULL));
}

TEST_HARNESS_MAIN
