// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of its tracepoint cprx_session_end (kernel/cprx_trace.h),
 * which cprx-guard's armed-only follows: once per session that dies without
 * FINISH (closed, owner gone), naming the owner by tgid and its leader's
 * start time whichever task fires it, with what the owner still holds.
 * Read through a tracefs instance of the test's own; each scenario runs in
 * a child, so its start time lies between the clock before and after fork.
 */
#include <sys/socket.h>
#include "kmod_util.h"

#define TRACEFS		"/sys/kernel/tracing"
#define EVENT		"events/cprx/cprx_session_end"
#define MAX_EVENTS	8

struct end_event {
	int task;		/* the task it fired in */
	unsigned int owner, armed, left, left_armed;
	unsigned long long start;
};

FIXTURE(tp) {
	FIXTURE_DATA(kmod) k;
	char inst[128];		/* our tracefs instance */
};

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		ret = -errno;
	close(fd);
	return ret;
}

/* A failed ASSERT here skips the teardown: nothing is left made by then. */
FIXTURE_SETUP(tp)
{
	char path[256];
	int ret;

	kmod_setup(&self->k);
	if (th_res->status != TH_PASS)
		return;
	if (access(TRACEFS "/instances", F_OK) ||
	    access(TRACEFS "/events/cprx", F_OK))
		SKIP(return, "no tracefs with cprx.ko's events at " TRACEFS);
	if (access(TRACEFS "/" EVENT, F_OK))
		TH_LOG("cprx.ko has no cprx_session_end tracepoint");
	ASSERT_EQ(0, access(TRACEFS "/" EVENT, F_OK));
	snprintf(self->inst, sizeof(self->inst),
		 TRACEFS "/instances/kmod-trace-%d", getpid());
	ASSERT_EQ(0, mkdir(self->inst, 0700));
	snprintf(path, sizeof(path), "%s/" EVENT "/enable", self->inst);
	ret = write_str(path, "1");
	if (ret)
		rmdir(self->inst);
	ASSERT_EQ(0, ret);
}

FIXTURE_TEARDOWN(tp)
{
	if (self->inst[0])
		EXPECT_EQ(0, rmdir(self->inst));
	kmod_teardown(&self->k);
}

/* The pid before " [cpu]" in "comm-pid [cpu] ...", or -1. */
static int line_task(const char *line)
{
	const char *p = strstr(line, " [");

	while (p && p > line && p[-1] == ' ')
		p--;
	while (p && p > line && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return p && p > line && p[-1] == '-' ? atoi(p) : -1;
}

/* @owner's events in our instance, in order, into @ev: how many. */
static int end_events(FIXTURE_DATA(tp) *self, int owner,
		      struct end_event *ev)
{
	char path[256], line[512];
	const char *p;
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/trace", self->inst);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		struct end_event e;

		p = strstr(line, "cprx_session_end: ");
		if (!p || sscanf(p, "cprx_session_end: owner=%u start=%llu "
				 "armed=%u left=%u left_armed=%u", &e.owner,
				 &e.start, &e.armed, &e.left,
				 &e.left_armed) != 5 ||
		    e.owner != (unsigned int)owner)
			continue;
		e.task = line_task(line);
		if (n < MAX_EVENTS)
			ev[n] = e;
		n++;
	}
	fclose(f);
	return n;
}

/* Waits up to @ms for @owner's events to number @want: how many. */
static int wait_events(FIXTURE_DATA(tp) *self, int owner, int want,
		       struct end_event *ev, int ms)
{
	int n;

	while ((n = end_events(self, owner, ev)) < want && ms > 0) {
		usleep(50 * 1000);
		ms -= 50;
	}
	return n;
}

/*
 * Runs @fn(@arg) in a child and reaps it; its events must then be @n, each
 * (armed, left, left_armed) as in @want, in order, with a start time
 * between the clock before and after the fork (CLOCK_MONOTONIC, as
 * task_struct.start_time).  Returns the child's pid, its events in @ev.
 */
static pid_t expect_ends(FIXTURE_DATA(tp) *self, void (*fn)(long), long arg,
			 const unsigned int (*want)[3], int n,
			 struct end_event *ev)
{
	long long t0 = now_ns(), t1;
	pid_t pid = fork_flushed();

	t1 = now_ns();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(0);
	}
	track(&self->k, pid);
	ASSERT_EQ(0, reap_kid(&self->k, pid));
	/* an owner gone ends its sessions from a work item: not at once */
	ASSERT_EQ(n, wait_events(self, pid, n, ev, 20000));
	for (int i = 0; i < n; i++) {
		TH_LOG("owner=%u start=%llu armed=%u left=%u left_armed=%u "
		       "(task %d)", ev[i].owner, ev[i].start, ev[i].armed,
		       ev[i].left, ev[i].left_armed, ev[i].task);
		EXPECT_EQ(want[i][0], ev[i].armed);
		EXPECT_EQ(want[i][1], ev[i].left);
		EXPECT_EQ(want[i][2], ev[i].left_armed);
		EXPECT_GE(ev[i].start, t0);
		EXPECT_LE(ev[i].start, t1);
	}
	return pid;
}

static void *create_in_thread(void *arg)
{
	int dev = open_dev();

	*(int *)arg = create(dev, "kmod-trace");
	close(dev);
	return NULL;
}

/* A thread creates, the main thread arms and closes. */
static void armed_closed(long unused)
{
	pthread_t t;
	int sfd = -1;

	(void)unused;
	CHECK(!pthread_create(&t, NULL, create_in_thread, &sfd) &&
	      !pthread_join(t, NULL), "thread");
	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(!arm(sfd, 0), "arm");
	close(sfd);
}

/*
 * Test Case: end_armed_closed
 * An armed session's last fd closed: one event, in the closing task, for
 * the owner (created by another of its threads: the leader's start time).
 */
TEST_F(tp, end_armed_closed)
{
	static const unsigned int want[][3] = { { 1, 0, 0 } };
	struct end_event ev[MAX_EVENTS];
	pid_t pid = expect_ends(self, armed_closed, 0, want, 1, ev);

	EXPECT_EQ(pid, ev[0].task);
}

/* a, b; arm a; close b; c armed; close a; close c */
static void two_sessions(long unused)
{
	int dev = open_dev(), a = create(dev, "kmod-trace-a");
	int b = create(dev, "kmod-trace-b"), c;

	(void)unused;
	CHECK(a >= 0 && b >= 0 && !arm(a, 0), "a, b");
	close(b);
	c = create(dev, "kmod-trace-c");
	CHECK(c >= 0 && !arm(c, 0), "c");
	close(a);
	close(c);
}

/*
 * Test Case: end_counts_what_is_left
 * Of an owner's sessions, each one closed says what is left of the others
 * and how many of them are armed: the guard keeps no count of its own.
 */
TEST_F(tp, end_counts_what_is_left)
{
	static const unsigned int want[][3] = {
		{ 0, 1, 1 },	/* b: a, armed, is left */
		{ 1, 1, 1 },	/* a: c, armed, is left */
		{ 1, 0, 0 },	/* c: nothing */
	};
	struct end_event ev[MAX_EVENTS];

	expect_ends(self, two_sessions, 0, want, 3, ev);
}

/* a finished (still open), b armed and closed, then a closed */
static void finished_then_closed(long unused)
{
	int dev = open_dev(), a = create(dev, "kmod-trace-a"), b;

	(void)unused;
	CHECK(a >= 0 && !finish(a), "a finished");
	b = create(dev, "kmod-trace-b");
	CHECK(b >= 0 && !arm(b, 0), "b armed");
	close(b);
	close(a);
}

/*
 * Test Case: end_not_for_finished
 * A finished session is not counted as left, and its close says nothing:
 * FINISH said it (cprx_ioctl_done).
 */
TEST_F(tp, end_not_for_finished)
{
	static const unsigned int want[][3] = { { 1, 0, 0 } };
	struct end_event ev[MAX_EVENTS];

	expect_ends(self, finished_then_closed, 0, want, 1, ev);
}

/* Exits holding an armed session: its fd table's flush ends it. */
static void exit_armed(long unused)
{
	int sfd = create(open_dev(), "kmod-trace");

	(void)unused;
	CHECK(sfd >= 0 && !arm(sfd, 0), "armed");
}

/*
 * Test Case: end_owner_exit
 * The owner exits with its armed session open: one event, as it exits.
 */
TEST_F(tp, end_owner_exit)
{
	static const unsigned int want[][3] = { { 1, 0, 0 } };
	struct end_event ev[MAX_EVENTS];

	expect_ends(self, exit_armed, 0, want, 1, ev);
}

/* Arms, sends the session fd to @sock's peer, closes its own, exits. */
static void hand_over_armed(long sock)
{
	int sfd = create(open_dev(), "kmod-trace"), ret;

	CHECK(sfd >= 0 && !arm(sfd, 0), "armed");
	ret = send_fd(sock, sfd);
	CHECK(!ret, "send_fd: %s", strerror(-ret));
	close(sfd);
}

/*
 * Test Case: end_owner_gone_elsewhere
 * The owner exits after handing its armed session's fd to us: its pid wait
 * queue's work item ends the session, and the event names the owner, not
 * the worker it runs in.  Our close of the copy says nothing more.
 */
TEST_F(tp, end_owner_gone_elsewhere)
{
	static const unsigned int want[][3] = { { 1, 0, 0 } };
	struct end_event ev[MAX_EVENTS];
	int s[2], copy;
	pid_t pid;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s));
	pid = expect_ends(self, hand_over_armed, s[0], want, 1, ev);
	EXPECT_NE(pid, ev[0].task);
	copy = recv_fd(s[1]);
	ASSERT_GE(copy, 0);
	close(copy);
	EXPECT_EQ(1, end_events(self, pid, ev));
}

TEST_HARNESS_MAIN
