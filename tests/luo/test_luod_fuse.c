// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-luod against a local user's FUSE server that never answers FLUSH:
 * a close of one of its files then waits, uninterruptibly, for as long as
 * the server likes.  Any uid may send the daemon such a file: with a
 * request, as PRESERVE's fd, queued on a connection that closes, inside a
 * Unix socket sent, on every connection one uid may have.  While those
 * FLUSHes are held, another VMM must still be answered (STATUS, and a
 * CREATE, PRESERVE, HOLD), and once they are answered the daemon must be
 * as it was: its fds as before, no process of its left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include "harness.h"
#include "fuse_stall.h"
#include "luo_util.h"
#include "luod_proto.h"

#define NOBODY		65534
#define CONNS_PER_UID	48	/* cprx-luod's LUOD_CONNS_PER_UID */
#define BOUND		4.0	/* seconds an answer may take meanwhile (loaded CI) */
#define WAIT		5	/* seconds an answer is waited for */

static const char *const fake[] = { "--fake-kexec", NULL };

/* A VMM's steps before a kexec on a connection of its own: seconds, or -1. */
static double prepare_secs(const struct luod_run *r, const char *name)
{
	char req[64], out[CPRX_LUOD_MSG_MAX];
	struct timeval tv = { .tv_sec = WAIT };
	struct timespec a, b;
	int fd = luod_connect(r), mfd = luo_memfd("ram", 4096, 1);
	bool ok;

	snprintf(req, sizeof(req), "CREATE %s", name);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	clock_gettime(CLOCK_MONOTONIC, &a);
	ok = fd >= 0 && mfd >= 0 &&
	     luod_ask(fd, req, -1, out, sizeof(out), NULL) > 0 &&
	     !strcmp(out, "OK") &&
	     luod_ask(fd, "PRESERVE 0000000000000001", mfd, out, sizeof(out),
		      NULL) > 0 && !strcmp(out, "OK") &&
	     luod_ask(fd, "HOLD", -1, out, sizeof(out), NULL) > 0 &&
	     !strcmp(out, "OK");
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (fd >= 0)
		close(fd);
	if (mfd >= 0)
		close(mfd);
	return ok ? (double)(b.tv_sec - a.tv_sec) +
		    (b.tv_nsec - a.tv_nsec) / 1e9 : -1;
}

/* The daemon with no connection: its fd count (no reader left), or -1. */
static int idle_fds(pid_t daemon)
{
	int i;

	/* the readers of luod_start's probes exit at once; a loaded host is slow */
	for (i = 0; i < 200 && proc_children(daemon); i++)
		usleep(100000);
	usleep(100000);
	return proc_children(daemon) ? -1 : proc_fds(daemon);
}

/*
 * A daemon in @r and the stalling file system in its directory, FLUSHes
 * answered for this pid only; the daemon's idle fd count into *@fds0.
 * 0, or -errno: no FUSE here (the daemon stopped again).
 */
static int start(struct luod_run *r, struct fuse_stall *fs, int *fds0)
{
	char dir[128];
	int ret;

	ASSERT_EQ(0, luod_start(r, fake));
	snprintf(dir, sizeof(dir), "%s/fuse", r->dir);
	ret = fuse_stall_start(fs, dir, getpid());
	if (ret) {
		luod_cleanup(r);
		return ret;
	}
	*fds0 = idle_fds(r->pid);
	EXPECT_LT(0, *fds0);
	return 0;
}

/*
 * Waits @secs at most for @fds fds and no more children than @kids: whether
 * it came to that.
 */
static bool settled_to(pid_t daemon, int fds, int kids, int secs)
{
	int i;

	for (i = 0; i < secs * 10; i++) {
		if (proc_fds(daemon) <= fds && proc_children(daemon) <= kids)
			return true;
		usleep(100000);
	}
	TH_LOG("the daemon has %d fds (expected %d) and %d children",
	       proc_fds(daemon), fds, proc_children(daemon));
	return false;
}

static bool settled(pid_t daemon, int fds, int secs)
{
	return settled_to(daemon, fds, 0, secs) && proc_fds(daemon) == fds;
}

/* Sends the FUSE file @f one of the ways; the connection stays open. */
static int send_file(const struct luod_run *r, const char *way, int f,
		     int *fd)
{
	char out[CPRX_LUOD_MSG_MAX];
	int sp[2], ret;

	*fd = luod_connect(r);
	if (*fd < 0)
		return -1;
	setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){ .tv_sec = WAIT },
		   sizeof(struct timeval));
	if (!strcmp(way, "queued")) {
		/* a message the daemon refuses, then one it never reads */
		ret = cprx_luod_send(*fd, "", -1);
		return ret ? ret : cprx_luod_send(*fd, "STATUS", f);
	}
	if (!strcmp(way, "in a socket")) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp))
			return -1;
		ret = cprx_luod_send(sp[0], "x", f);
		if (!ret)
			ret = luod_ask(*fd, "STATUS", sp[1], out, sizeof(out), NULL);
		close(sp[0]);
		close(sp[1]);
		return ret < 0 ? ret : 0;
	}
	if (!strcmp(way, "PRESERVE") &&
	    (luod_ask(*fd, "CREATE fused", -1, out, sizeof(out), NULL) < 0 ||
	     strcmp(out, "OK")))
		return -1;
	ret = luod_ask(*fd, !strcmp(way, "PRESERVE") ?
		       "PRESERVE 0000000000000002" : way, f, out, sizeof(out),
		       NULL);
	if (ret > 0 && !strcmp(way, "PRESERVE") && strncmp(out, "ERR 95", 6))
		TH_LOG("PRESERVE of a FUSE file: '%s'", out);
	/* unanswered: the daemon stalled in the close already */
	return ret == -EAGAIN ? 0 : ret < 0 ? ret : 0;
}

/*
 * Test Case: fuse_flush
 * A FUSE file whose FLUSH is never answered, sent to the daemon each way;
 * the next VMM's requests must be answered within BOUND all the same.
 */
TEST(fuse_flush)
{
	static const char *const ways[] = { "STATUS", "PRESERVE", "queued",
					    "in a socket" };
	char out[CPRX_LUOD_MSG_MAX], name[16];
	struct luod_run r = { 0 };
	struct fuse_stall fs;
	unsigned int i, prepared = 0;
	int fds0, ret;

	if (geteuid())
		SKIP(return, "needs root: mounts a FUSE file system");
	ret = start(&r, &fs, &fds0);
	if (ret)
		SKIP(return, "cannot mount a FUSE file system: %s",
		     strerror(-ret));
	for (i = 0; i < sizeof(ways) / sizeof(ways[0]); i++) {
		/* queued before the daemon takes the connection */
		bool early = !strcmp(ways[i], "queued");
		int held = fuse_stall_held(&fs), f, fd;
		double secs, psecs;

		f = open(fs.file, O_RDWR | O_CLOEXEC);
		EXPECT_LE(0, f);
		if (early)
			kill(r.pid, SIGSTOP);
		ret = send_file(&r, ways[i], f, &fd);
		if (early)
			kill(r.pid, SIGCONT);
		EXPECT_EQ(0, ret);
		close(f);	/* this pid's FLUSH is answered */
		/* inside a socket, its last reference goes without a FLUSH */
		if (strcmp(ways[i], "in a socket"))
			EXPECT_LT(held, fuse_stall_wait(&fs, held + 1, 2000));
		secs = luod_secs(&r, "STATUS", WAIT, out, sizeof(out));
		snprintf(name, sizeof(name), "vm%u", i);
		psecs = prepare_secs(&r, name);
		TH_LOG("%s: %d FLUSH held; STATUS took %.1f s, CREATE PRESERVE "
		       "HOLD %.1f s (-1: no answer in %d s)", ways[i],
		       fuse_stall_held(&fs), secs, psecs, WAIT);
		EXPECT_LE(0, secs);
		EXPECT_GT(BOUND, secs);
		EXPECT_LE(0, psecs);
		EXPECT_GT(BOUND, psecs);
		if (fd >= 0)
			close(fd);
		prepared += psecs >= 0;
		if (secs < 0 || psecs < 0)
			break;	/* stalled: the rest would say the same */
	}
	fuse_stall_release(&fs);
	/* the fake daemon keeps each held session's memfd */
	EXPECT_TRUE(settled(r.pid, fds0 + prepared, 10));
	EXPECT_LE(0, luod_secs(&r, "STATUS", WAIT, out, sizeof(out)));
	EXPECT_EQ(0, strncmp(out, "OK ", 3));
	EXPECT_EQ(prepared, (unsigned int)atoi(out + 3));
	fuse_stall_stop(&fs);
	luod_cleanup(&r);
}

/*
 * A child of uid @uid with @file open: @n connections, each sent the file
 * with a STATUS, kept; then, at a byte on @hog->cmd, @late more that it
 * closes at once (before the daemon, stopped, takes them), and it counts
 * the refusals of the first that carried their connection back.
 */
struct hog {
	pid_t pid;
	int cmd, ack;
};

static void hog_connect(const struct luod_run *r, int f, int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		fds[i] = luod_connect(r);
		if (fds[i] < 0 || cprx_luod_send(fds[i], "STATUS", f))
			break;
	}
}

static char hog_refusals(int *fds, int n)
{
	char out[CPRX_LUOD_MSG_MAX];
	int i, back, got = 0;

	/* answered already, those that are: a short wait each */
	for (i = 0; i < n; i++) {
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO,
			   &(struct timeval){ .tv_usec = 100000 },
			   sizeof(struct timeval));
		if (cprx_luod_recv(fds[i], out, sizeof(out), &back) > 0 &&
		    !strncmp(out, "ERR 24", 6) && back >= 0)
			got++;
		if (back >= 0)
			close(back);
	}
	return (char)got;
}

static void __attribute__((noreturn)) hog_main(const struct luod_run *r,
					       const char *file, int n,
					       int late, int cmd, int ack)
{
	int fds[64], gone[8], f = open(file, O_RDWR), i;
	char c = 0;

	hog_connect(r, f, fds, n);
	if (write(ack, &c, 1) != 1 || read(cmd, &c, 1) != 1)
		_exit(98);
	hog_connect(r, f, gone, late);
	for (i = 0; i < late; i++)
		close(gone[i]);
	if (write(ack, &c, 1) != 1)
		_exit(98);
	c = hog_refusals(fds, n);
	if (write(ack, &c, 1) != 1)
		_exit(98);
	pause();
	_exit(0);
}

/* A byte from the hog in 3 * WAIT s (a stalled daemon takes no connection), or -1. */
static int hog_said(const struct hog *h)
{
	struct pollfd p = { .fd = h->ack, .events = POLLIN };
	char c;

	if (poll(&p, 1, WAIT * 3000) != 1 || read(h->ack, &c, 1) != 1)
		return -1;
	return c;
}

static int hog_file(struct hog *h, const struct luod_run *r,
		    const char *file, uid_t uid, int n, int late)
{
	int cmd[2], ack[2];

	if (pipe(cmd) < 0 || pipe(ack) < 0)
		return -1;
	h->pid = fork();
	if (!h->pid) {
		close(cmd[1]);
		close(ack[0]);
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(99);
		hog_main(r, file, n, late, cmd[0], ack[1]);
	}
	close(cmd[0]);
	close(ack[1]);
	h->cmd = cmd[1];
	h->ack = ack[0];
	return h->pid > 0 && hog_said(h) == 0 ? 0 : -1;
}

/*
 * Its @late connections, the daemon stopped meanwhile; how many of the
 * first were refused with their connection sent back, or -1.
 */
static int hog_late(struct hog *h, pid_t daemon)
{
	char c = 0;
	int ret;

	kill(daemon, SIGSTOP);
	ret = write(h->cmd, &c, 1) == 1 ? hog_said(h) : -1;
	kill(daemon, SIGCONT);
	return ret < 0 ? -1 : hog_said(h);
}

static void hog_end(struct hog *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
	}
	close(h->cmd);
	close(h->ack);
}

/* Whether the daemon's log says @what. */
static bool logged(const struct luod_run *r, const char *what)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "grep -q '%s' '%s/log'", what, r->dir);
	return !system(cmd);
}

/*
 * Test Case: fuse_stuck_uid
 * One uid sends the file on more connections than it may have, and on a
 * few more it closes before the daemon takes them: what it stalls is
 * bounded by its share (CONNS_PER_UID readers, their sockets), the rest
 * are refused without the daemon closing them itself, and the other uids
 * are answered.
 */
TEST(fuse_stuck_uid)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	struct fuse_stall fs;
	struct hog hog = { 0 };
	int fds0, fds, kids, ret, held;
	double secs, psecs;

	if (geteuid())
		SKIP(return, "needs root: mounts a FUSE file system, and "
		     "connects as uid %d", NOBODY);
	ret = start(&r, &fs, &fds0);
	if (ret)
		SKIP(return, "cannot mount a FUSE file system: %s",
		     strerror(-ret));
	EXPECT_EQ(0, hog_file(&hog, &r, fs.file, NOBODY, CONNS_PER_UID + 12, 4));
	held = fuse_stall_wait(&fs, CONNS_PER_UID, 5000);
	/* the refused ones: back to the peer, who closes them itself */
	EXPECT_EQ(12, hog_late(&hog, r.pid));
	secs = luod_secs(&r, "STATUS", WAIT, out, sizeof(out));
	psecs = prepare_secs(&r, "vm");
	/* the readers of those two connections exit */
	settled_to(r.pid, fds0 + CONNS_PER_UID + 1, CONNS_PER_UID, 2);
	kids = proc_children(r.pid);
	fds = proc_fds(r.pid);
	TH_LOG("%d FLUSH held; the daemon has %d children, %d fds (%d idle); "
	       "STATUS took %.1f s, CREATE PRESERVE HOLD %.1f s", held, kids,
	       fds, fds0, secs, psecs);
	EXPECT_EQ(CONNS_PER_UID, held);
	EXPECT_GE(CONNS_PER_UID, kids);
	/* a socket per reader, and the held session's memfd */
	EXPECT_GE(fds0 + CONNS_PER_UID + 1, fds);
	EXPECT_LE(0, secs);
	EXPECT_GT(BOUND, secs);
	EXPECT_LE(0, psecs);
	EXPECT_GT(BOUND, psecs);
	fuse_stall_release(&fs);
	hog_end(&hog);
	EXPECT_TRUE(settled(r.pid, fds0 + (psecs >= 0), 10));
	EXPECT_TRUE(logged(&r, "goes to the reader"));
	EXPECT_FALSE(logged(&r, "closing it here"));
	fuse_stall_stop(&fs);
	luod_cleanup(&r);
}

TEST_HARNESS_MAIN
