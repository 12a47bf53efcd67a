// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftest: the time 1000 fds take through an update, printed; and
 * PRESERVE_FDS + RETRIEVE_FD against dup + close of the same fds.
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

/* --- vperf: the vector verb against dup + close --------------------------- */

#define VPERF_ROUNDS	5

/* One round's times, in a memfd that crosses the execs. */
struct vperf {
	long long preserve, retrieve, dup_close;
};

static void vperf_put(int res, long round, const struct vperf *v)
{
	CHECK(pwrite(res, v, sizeof(*v), round * sizeof(*v)) == sizeof(*v),
	      "pwrite: %m");
}

/* Pins @fds in a new session with one PRESERVE_FDS, timed, and execs. */
__attribute__((noreturn))
static void vperf_preserve(const int *fds, long n, long round, int res)
{
	static struct cprx_preserve_entry ents[PERF_FDS];
	struct vperf v = { 0 };
	uint32_t failed = 0;
	long long t0;
	int dev = open_dev(), sfd, ret;

	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	close(dev);
	for (long i = 0; i < n; i++) {
		ents[i].fd = fds[i];
		ents[i].token = i;
	}
	t0 = now_ns();
	ret = preserve_fds(sfd, ents, n, &failed);
	v.preserve = now_ns() - t0;
	CHECK(!ret, "preserve_fds: %d at %u", ret, failed);
	vperf_put(res, round, &v);
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	exec_or_die("vperf", round, res, n);
}

static void vperf_old_image(long n)
{
	static int efd[PERF_FDS];
	int res = memfd_create("vperf", 0);	/* crosses the execs */

	CHECK(res >= 0, "memfd: %m");
	CHECK(!nofile_at_least(3 * n + 64), "RLIMIT_NOFILE: %m");
	for (int i = 0; i < n; i++) {
		efd[i] = eventfd(i + 1, EFD_CLOEXEC);
		CHECK(efd[i] >= 0, "eventfd: %m");
	}
	vperf_preserve(efd, n, 0, res);
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static void vperf_print(int res, long n)
{
	struct vperf v[VPERF_ROUNDS];
	long long vec[VPERF_ROUNDS], dc[VPERF_ROUNDS];
	double ratio[VPERF_ROUNDS];

	CHECK(pread(res, v, sizeof(v), 0) == sizeof(v), "pread: %m");
	for (int r = 0; r < VPERF_ROUNDS; r++) {
		vec[r] = v[r].preserve + v[r].retrieve;
		dc[r] = v[r].dup_close;
		ratio[r] = (double)vec[r] / dc[r];
		printf("# vperf: round %d: %ld fds: %lld ns PRESERVE_FDS + %lld ns RETRIEVE_FD, %lld ns dup+close: ratio %.2f\n",
		       r, n, v[r].preserve, v[r].retrieve, dc[r], ratio[r]);
	}
	qsort(vec, VPERF_ROUNDS, sizeof(vec[0]), cmp_ll);
	qsort(dc, VPERF_ROUNDS, sizeof(dc[0]), cmp_ll);
	/* the median of the per-round ratios, not the ratio of medians */
	for (int r = 0; r < VPERF_ROUNDS; r++)
		for (int q = r + 1; q < VPERF_ROUNDS; q++)
			if (ratio[q] < ratio[r]) {
				double t = ratio[r];

				ratio[r] = ratio[q];
				ratio[q] = t;
			}
	printf("# vperf: median of %d: %lld ns per fd preserved+retrieved, %lld ns per fd dup+close, ratio per fd %.2f (target <= 3)\n",
	       VPERF_ROUNDS, vec[VPERF_ROUNDS / 2] / n, dc[VPERF_ROUNDS / 2] / n,
	       ratio[VPERF_ROUNDS / 2]);
	fflush(stdout);
}

KMOD_EXEC_CASE(vperf, round, res, n)
{
	static int fds[PERF_FDS];
	struct vperf v;
	long long t0;
	int dev = open_dev(), sfd;

	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	close(dev);
	CHECK(pread(res, &v, sizeof(v), round * sizeof(v)) == sizeof(v),
	      "pread: %m");
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		fds[i] = retrieve_fd(sfd, i);
	v.retrieve = now_ns() - t0;
	for (long i = 0; i < n; i++)
		CHECK(fds[i] >= 0, "retrieve_fd %ld: %d", i, fds[i]);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		close(dup(fds[i]));
	v.dup_close = now_ns() - t0;
	vperf_put(res, round, &v);
	CHECK(!finish(sfd), "finish");
	close(sfd);
	if (round + 1 < VPERF_ROUNDS)
		vperf_preserve(fds, n, round + 1, res);
	vperf_print(res, n);
	return 0;
}

/*
 * Test Case: vperf
 * 1000 eventfds pinned with one PRESERVE_FDS and, after the exec, retrieved
 * one by one with RETRIEVE_FD, against 1000 dup + close of the same fds;
 * five rounds (five execs) in one process: each round's times and the
 * median ratio per fd are printed ("# vperf:"), not checked.
 */
TEST_F_TIMEOUT(kmod, vperf, 300)
{
	EXPECT_EQ(0, run_child(self, vperf_old_image, PERF_FDS));
}

TEST_HARNESS_MAIN
