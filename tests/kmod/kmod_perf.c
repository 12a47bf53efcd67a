// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftest: the time 1000 fds take through an update, printed.
 */
#include "kmod_util.h"

/* --- perf: 1000 fds through an update ------------------------------------- */

#define PERF_FDS	1000

static void perf_old_image(long n)
{
	static int efd[PERF_FDS];
	long long t0, t1;
	int dev, sfd;

	CHECK(!nofile_at_least(2 * n + 64), "RLIMIT_NOFILE: %m");
	for (int i = 0; i < n; i++) {
		efd[i] = eventfd(i + 1, EFD_CLOEXEC);
		CHECK(efd[i] >= 0, "eventfd: %m");
	}
	t0 = now_ns();
	dev = open_dev();
	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	for (int i = 0; i < n; i++)
		CHECK(!preserve(sfd, efd[i], i), "preserve %d", i);
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	t1 = now_ns();
	exec_or_die("perf", t0, t1, n);
}

KMOD_EXEC_CASE(perf, t0, t1, n)
{
	long long t2 = now_ns(), t3;
	static int fds[PERF_FDS];
	uint64_t v;
	int dev, sfd;

	dev = open_dev();
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	for (int i = 0; i < n; i++)
		fds[i] = retrieve_fd(sfd, i);
	t3 = now_ns();
	for (int i = 0; i < n; i++)
		CHECK(fds[i] >= 0 && read(fds[i], &v, 8) == 8 &&
		      v == (uint64_t)i + 1, "fd %d: %d", i, fds[i]);
	CHECK(!finish(sfd), "finish");
	printf("# perf: %ld fds: %lld ns create+preserve+arm, %lld ns exec, %lld ns retrieve\n",
	       n, (long long)t1 - t0, t2 - t1, t3 - t2);
	printf("# perf: %ld fds: %lld ns in all, %lld ns in cprx ioctls (%lld ns per fd)\n",
	       n, t3 - t0, (long long)(t1 - t0) + (t3 - t2),
	       ((long long)(t1 - t0) + (t3 - t2)) / n);
	fflush(stdout);
	return 0;
}

/*
 * Test Case: perf
 * 1000 eventfds preserved, armed, carried over an exec and retrieved, each
 * with its count: the times are printed ("# perf:"), not checked.
 */
TEST_F_TIMEOUT(kmod, perf, 300)
{
	EXPECT_EQ(0, run_child(self, perf_old_image, PERF_FDS));
}

TEST_HARNESS_MAIN
