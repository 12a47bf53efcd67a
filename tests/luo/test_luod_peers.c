// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-luod against the other local users: any uid may connect, send
 * fds of any kind, hold connections, stall, hang up mid-request.  The
 * daemon (--fake-kexec) must keep answering the rest, act on no request
 * whose VMM gave up, and a set-user-ID VMM must not ask its user's socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "harness.h"
#include "luo_util.h"
#include "luod_proto.h"

#define NOBODY		65534

static const char *const fake[] = { "--fake-kexec", NULL };

/*
 * Test Case: name_control_chars
 * A session name reaches root's `cprx-luod status`, the journal and the
 * state directory: a control character (a terminal escape) is refused
 * like a '/', and a non-ASCII name still passes.
 */
TEST(name_control_chars)
{
	static const char *const bad[] = { "CREATE vm\033]0;owned\007",
					   "CREATE vm\rroot-vm\033[K",
					   "CREATE vm\177" };
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	unsigned int i;

	ASSERT_EQ(0, luod_start(&r, fake));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_GT(luod_ask1(&r, bad[i], out, sizeof(out)), 0);
		EXPECT_EQ(0, strncmp(out, "ERR 22 session name", 19));
	}
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	ASSERT_GT(luod_ask1(&r, "CREATE vm-\303\251t\303\251", out, sizeof(out)), 0);
	EXPECT_STREQ("OK", out);
	luod_cleanup(&r);
}

/*
 * Test Case: hold_after_giving_up
 * A VMM whose HOLD got no answer in time (a daemon stalled) gives up,
 * closes its connection and runs its guest on: the stalled daemon must
 * not hold that session when it gets to the request, or a later kexec
 * carries the guest's new RAM with its old device state.
 */
TEST(hold_after_giving_up)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	int fd, mfd;

	ASSERT_EQ(0, luod_start(&r, fake));
	mfd = luo_memfd("state", 4096, 1);
	fd = luod_open_vm(&r, mfd);
	ASSERT_LE(0, fd);
	kill(r.pid, SIGSTOP);
	ASSERT_EQ(0, cprx_luod_send(fd, "HOLD", -1));
	close(fd);
	kill(r.pid, SIGCONT);
	usleep(200000);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	close(mfd);
	luod_cleanup(&r);
}

/* The first child of @pid, or -1. */
static pid_t first_child(pid_t pid)
{
	char path[64];
	FILE *f;
	int child = -1;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
		 (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &child) != 1)
		child = -1;
	fclose(f);
	return child;
}

/*
 * Test Case: hold_answer_undelivered
 * The answer to a HOLD that cannot reach the connection's reader (gone
 * when the stalled daemon gets to the request: a reader gives up on an
 * answer after a minute, here killed for speed) never reaches the VMM,
 * which gives up and runs its guest on: the daemon must not keep that
 * session held.
 */
TEST(hold_answer_undelivered)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	pid_t reader;
	int fd, mfd, i;

	ASSERT_EQ(0, luod_start(&r, fake));
	mfd = luo_memfd("state", 4096, 1);
	fd = luod_open_vm(&r, mfd);
	ASSERT_LE(0, fd);
	/* luod_start's probe's reader gone: the one left is this connection's */
	for (i = 0; i < 100 && proc_children(r.pid) != 1; i++)
		usleep(20000);
	ASSERT_EQ(1, proc_children(r.pid));
	reader = first_child(r.pid);
	ASSERT_LT(0, reader);
	kill(r.pid, SIGSTOP);
	ASSERT_EQ(0, cprx_luod_send(fd, "HOLD", -1));
	usleep(200000);		/* forwarded: the reader waits on the answer */
	kill(reader, SIGKILL);
	usleep(200000);
	kill(r.pid, SIGCONT);
	usleep(200000);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	close(fd);
	close(mfd);
	luod_cleanup(&r);
}

/* /proc/@pid/oom_score_adj, or -10000. */
static int oom_adj(pid_t pid)
{
	char path[64];
	FILE *f;
	int adj = -10000;

	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%d", &adj) != 1)
			adj = -10000;
		fclose(f);
	}
	return adj;
}

/*
 * Test Case: reader_not_oom_shielded
 * The unit shields the daemon from the OOM killer (-900): the reader it
 * forks for a peer's connection must not inherit that, or any local user
 * gets up to 48 processes the OOM killer passes over.  Lowering needs
 * CAP_SYS_RESOURCE, which a test host may lack; what is inherited is the
 * same either way, so the daemon is set apart upwards here.
 */
TEST(reader_not_oom_shielded)
{
	struct luod_run r = { 0 };
	char path[64];
	pid_t reader;
	int fd, i;
	FILE *f;

	ASSERT_EQ(0, luod_start(&r, fake));
	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)r.pid);
	f = fopen(path, "we");
	ASSERT_NE(NULL, f);
	fprintf(f, "500\n");
	ASSERT_EQ(0, fclose(f));
	ASSERT_EQ(500, oom_adj(r.pid));
	/* luod_start's probe's reader gone: the one to come is this one's */
	for (i = 0; i < 100 && proc_children(r.pid); i++)
		usleep(20000);
	fd = luod_connect(&r);
	ASSERT_LE(0, fd);
	for (i = 0; i < 100 && proc_children(r.pid) != 1; i++)
		usleep(20000);
	reader = first_child(r.pid);
	ASSERT_LT(0, reader);
	for (i = 0; i < 100 && oom_adj(reader) == 500; i++)
		usleep(20000);
	EXPECT_EQ(0, oom_adj(reader));
	EXPECT_EQ(500, oom_adj(r.pid));
	close(fd);
	luod_cleanup(&r);
}

/* A child of uid @uid holding @n connections to @r until killed; its pid. */
static pid_t hog_conns(const struct luod_run *r, uid_t uid, int n)
{
	int p[2], i, fd;
	char c = 0;
	pid_t pid;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (!pid) {
		close(p[0]);
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(99);
		for (i = 0; i < n; i++) {
			fd = luod_connect(r);
			if (fd < 0)
				break;
		}
		c = 1;
		if (write(p[1], &c, 1) != 1)
			_exit(98);
		pause();
		_exit(0);
	}
	close(p[1]);
	if (pid > 0 && (read(p[0], &c, 1) != 1 || c != 1)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pid = -1;
	}
	close(p[0]);
	return pid;
}

/*
 * Test Case: conns_per_uid
 * One uid holding every connection the daemon takes (LUOD_MAX_CONNS) must
 * not lock the other uids out: a VMM of another uid still gets answers.
 */
TEST(conns_per_uid)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	pid_t hog;

	if (geteuid())
		SKIP(return, "needs root: the connections are held as uid %d",
		     NOBODY);
	ASSERT_EQ(0, luod_start(&r, fake));
	hog = hog_conns(&r, NOBODY, 300);
	ASSERT_LT(0, hog);
	usleep(300000);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	ASSERT_GT(luod_ask1(&r, "CREATE vm", out, sizeof(out)), 0);
	EXPECT_STREQ("OK", out);
	kill(hog, SIGKILL);
	waitpid(hog, NULL, 0);
	luod_cleanup(&r);
}

/*
 * A TCP socket whose close waits: connected to a listener that never
 * reads, its send queue full, SO_LINGER set to @secs.  Closing its last
 * reference blocks the closer until the peer takes the data or @secs pass.
 */
static int lingering_socket(int *listener, int secs)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct linger l = { .l_onoff = 1, .l_linger = secs };
	socklen_t len = sizeof(sa);
	char buf[65536] = { 0 };
	int fd, small = 4096;

	*listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*listener < 0 ||
	    setsockopt(*listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) ||
	    bind(*listener, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(*listener, (struct sockaddr *)&sa, &len) ||
	    listen(*listener, 1))
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    fcntl(fd, F_SETFL, O_NONBLOCK))
		return -1;
	while (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) > 0)
		;
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)))
		return -1;
	return fd;
}

/* Seconds a STATUS on a new connection takes to be answered, or -1. */
static double status_secs(const struct luod_run *r)
{
	char out[CPRX_LUOD_MSG_MAX];

	return luod_secs(r, "STATUS", 10, out, sizeof(out));
}

/*
 * Test Case: lingering_fd
 * Any uid may send the daemon an fd whose close waits (a TCP socket with
 * SO_LINGER and unsent data), with a verb that takes none, with one that
 * takes one (PRESERVE), as a second fd, left queued on a connection the
 * daemon closes, or queued inside a Unix socket sent (whose close releases
 * it).  One loop serves every VMM: no such close may happen in it, or
 * every VMM waits with it.
 */
TEST(lingering_fd)
{
	static const char *const ways[] = { "STATUS", "CREATE vm",
					    "PRESERVE 0000000000000001",
					    "two fds", "eight fds", "queued",
					    "in a socket" };
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	unsigned int i;
	double secs;

	ASSERT_EQ(0, luod_start(&r, fake));
	for (i = 0; i < sizeof(ways) / sizeof(ways[0]); i++) {
		/* sent before the daemon takes the connection */
		bool early = !strcmp(ways[i], "queued") ||
			     !strcmp(ways[i], "in a socket");
		int lis, sk = lingering_socket(&lis, 30), fd;

		/*
		 * The daemon stopped, so that it holds the fd's last
		 * reference: before it takes the connection when the test
		 * closes its copies before the daemon reads them.
		 */
		if (early)
			kill(r.pid, SIGSTOP);
		fd = luod_connect(&r);
		ASSERT_LE(0, sk);
		ASSERT_LE(0, fd);
		if (strncmp(ways[i], "CREATE", 6) && !early) {
			ASSERT_EQ(0, cprx_luod_send(fd, "CREATE vm", -1));
			ASSERT_GT(cprx_luod_recv(fd, out, sizeof(out),
						 &(int){ -1 }), 0);
		}
		if (!early)
			kill(r.pid, SIGSTOP);
		if (strstr(ways[i], " fds")) {
			/* the lingering one last: past what a short buffer takes */
			char cbuf[CMSG_SPACE(8 * sizeof(int))] = { 0 };
			struct iovec iov = { .iov_base = "STATUS", .iov_len = 6 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
					     .msg_control = cbuf,
					     .msg_controllen = sizeof(cbuf) };
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			int many[8] = { lis, lis, lis, lis, lis, lis, lis, lis };
			int n = ways[i][0] == 't' ? 2 : 8;

			many[n - 1] = sk;
			mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(n * sizeof(int));
			memcpy(CMSG_DATA(c), many, n * sizeof(int));
			ASSERT_LT(0, sendmsg(fd, &mh, 0));
		} else if (!strcmp(ways[i], "queued")) {
			/* a message the daemon refuses, then one it never reads */
			ASSERT_EQ(0, cprx_luod_send(fd, "", -1));
			ASSERT_EQ(0, cprx_luod_send(fd, "STATUS", sk));
		} else if (!strcmp(ways[i], "in a socket")) {
			int sp[2];

			ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET |
						SOCK_CLOEXEC, 0, sp));
			ASSERT_EQ(0, cprx_luod_send(sp[0], "x", sk));
			ASSERT_EQ(0, cprx_luod_send(fd, "STATUS", sp[1]));
			close(sp[0]);
			close(sp[1]);
		} else {
			ASSERT_EQ(0, cprx_luod_send(fd, ways[i], sk));
		}
		close(sk);
		kill(r.pid, SIGCONT);
		secs = status_secs(&r);
		TH_LOG("%s with a lingering fd: the next STATUS took %.1f s",
		       ways[i], secs);
		EXPECT_LE(0, secs);
		/* the close lingers 30 s; a loaded CI host may take a few */
		EXPECT_GT(8.0, secs);
		close(fd);
		close(lis);
	}
	luod_cleanup(&r);
}

/* cprx-vmm @bin --kexec, with $CPRX_LUOD_SOCKET @sock; 127 if not run. */
static int exec_kexec_vmm(const char *bin, const char *sock)
{
	setenv(CPRX_LUOD_ENV, sock, 1);
	freopen("/dev/null", "w", stdout);	/* its JSON is no TAP */
	freopen("/dev/null", "w", stderr);
	execl(bin, bin, "--json", "--ram", "16M", "--run-ms", "50", "--kexec",
	      "--name", "vm", (char *)NULL);
	return 127;
}

static int run_setuid_vmm(void *arg)
{
	const char *dir = arg;
	char bin[128], sock[128];

	snprintf(bin, sizeof(bin), "%s/vmm", dir);
	snprintf(sock, sizeof(sock), "%s/fake.sock", dir);
	return exec_kexec_vmm(bin, sock);
}

/*
 * Test Case: setuid_vmm_socket
 * A VMM image running with more privilege than its user (set-user-ID)
 * must not take $CPRX_LUOD_SOCKET from that user: a socket of theirs
 * could hand it a forged state.  Run as nobody, a set-user-ID root copy
 * of cprx-vmm --kexec does not connect to the socket the variable names.
 */
TEST(setuid_vmm_socket)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/cprx-luo.XXXXXX", cmd[512], bin[64];
	const char *vmm_bin = getenv("CPRX_VMM");
	int lfd, c;

	if (geteuid() || !vmm_bin)
		SKIP(return, "needs root and $CPRX_VMM: a set-user-ID copy run "
		     "as uid %d", NOBODY);
	ASSERT_NE(NULL, mkdtemp(dir));
	chmod(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/vmm", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 4755 '%s'", vmm_bin,
		 bin, bin);
	ASSERT_EQ(0, system(cmd));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", dir);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ASSERT_LE(0, lfd);
	ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&sa, sizeof(sa)));
	chmod(sa.sun_path, 0666);
	ASSERT_EQ(0, listen(lfd, 8));
	as_uid(NOBODY, run_setuid_vmm, dir);
	c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c >= 0) {
		TH_LOG("the set-user-ID VMM connected to its user's socket");
		close(c);
	}
	EXPECT_GT(0, c);
	close(lfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		TH_LOG("could not remove %s", dir);
}

#define DAEMON_UID	1	/* a system uid other than nobody and root */

struct forged {
	char dir[32];
	int ready[2], result[2];
};

/*
 * A listener at @f->dir/sock served by DAEMON_UID: it answers the first
 * request it gets with an error, and reports 'R' (a request came), 'E'
 * (the client hung up unasked) or 'N' (no client).
 */
static int forged_daemon(void *arg)
{
	struct forged *f = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 20 };
	struct pollfd p = { .events = POLLIN };
	char buf[CPRX_LUOD_MSG_MAX], res = 'N';
	int lfd, c, fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", f->dir);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    chmod(sa.sun_path, 0666) || listen(lfd, 8))
		return 1;
	if (write(f->ready[1], "", 1) != 1)
		return 1;
	p.fd = lfd;
	if (poll(&p, 1, 20000) == 1) {
		c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		res = cprx_luod_recv(c, buf, sizeof(buf), &fd) > 0 ? 'R' : 'E';
		if (res == 'R')
			cprx_luod_send(c, "ERR 1 a forged daemon", -1);
		close(c);
	}
	return write(f->result[1], &res, 1) == 1 ? 0 : 1;
}

static int run_vmm_at(void *arg)
{
	const struct forged *f = arg;
	char sock[64];

	snprintf(sock, sizeof(sock), "%s/sock", f->dir);
	return exec_kexec_vmm(getenv("CPRX_VMM"), sock);
}

/*
 * Test Case: daemon_of_another_uid
 * $CPRX_LUOD_SOCKET may name a path another uid can bind first (a shared
 * directory): whoever serves it sees the VMM's session and, after a
 * kexec, hands it the RAM and state to resume.  libcprx talks only to a
 * daemon of root or of its own uid: a VMM run as nobody sends no request
 * to a listener of uid 1.
 */
TEST(daemon_of_another_uid)
{
	struct forged f = { .dir = "/tmp/cprx-luo.XXXXXX" };
	char res = '?', cmd[64];
	pid_t pid;

	if (geteuid() || !getenv("CPRX_VMM"))
		SKIP(return, "needs root and $CPRX_VMM: the listener is uid %d, "
		     "the VMM uid %d", DAEMON_UID, NOBODY);
	ASSERT_NE(NULL, mkdtemp(f.dir));
	chmod(f.dir, 0777);
	ASSERT_EQ(0, pipe(f.ready));
	ASSERT_EQ(0, pipe(f.result));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(as_uid(DAEMON_UID, forged_daemon, &f));
	ASSERT_EQ(1, read(f.ready[0], &res, 1));
	as_uid(NOBODY, run_vmm_at, &f);
	ASSERT_EQ(1, read(f.result[0], &res, 1));
	waitpid(pid, NULL, 0);
	TH_LOG("the listener of uid %d: %s", DAEMON_UID, res == 'R' ?
	       "got a request" : res == 'E' ? "connected to, never asked" :
	       "never connected to");
	EXPECT_NE('R', res);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f.dir);
	if (system(cmd))
		TH_LOG("could not remove %s", f.dir);
}

TEST_HARNESS_MAIN
