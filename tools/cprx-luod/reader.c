// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A connection's reader: a process of its own that owns the peer's socket.
 * It receives each request and the fd sent with it, passes the request on
 * to the daemon with the fd only if that is a shmem memfd (the one kind
 * LUO keeps, and whose close waits on no one), relays the answer, and
 * closes every other fd itself.  A close that waits on the peer's side (a
 * FUSE file's flush, a lingering socket, a socket with such files queued
 * in it) then stalls this reader alone, and with it only its own peer; the
 * daemon's loop never waits on a peer.  Its own fd table, not the
 * daemon's, holds what a stalled peer sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include "luod.h"

/* A relay the peer does not take in this long: it stopped reading. */
#define PEER_SEND_SECS	10
/*
 * The daemon answers every request at once, and never waits on a peer; no
 * answer in this long was lost (a queue of hand-offs full).
 */
#define ANSWER_SECS	60

/*
 * Closing a connection releases the fds still queued on it: each is taken
 * and dropped first (cprx_luod_drop_fd).  After the shutdown the peer adds
 * none, and its send buffer (net.core.wmem_max) holds fewer messages than
 * LUOD_DRAIN_MAX; a zero-length message reads as the end, so the loop does
 * not stop there.  Called in readers only, where a close may wait.
 */
void peer_close(int sock)
{
	char buf[CPRX_LUOD_MSG_MAX];
	unsigned int i;
	int fd, ret;

	shutdown(sock, SHUT_RDWR);
	for (i = 0; i < LUOD_DRAIN_MAX; i++) {
		ret = cprx_luod_recv(sock, buf, sizeof(buf), &fd);
		if (fd >= 0)
			cprx_luod_drop_fd(fd);
		if (ret < 0 && ret != -ECONNRESET && ret != -EPROTO)
			break;
	}
	close(sock);
}

/*
 * F_GET_SEALS answers for shmem and hugetlbfs files only, and asks no file
 * system; fstatfs, on those, asks none either and tells them apart.
 */
static bool shmem_memfd(int fd)
{
	struct statfs sfs;

	return fcntl(fd, F_GET_SEALS) >= 0 && !fstatfs(fd, &sfs) &&
	       sfs.f_type == TMPFS_MAGIC;
}

static void vet(int fd, struct fwd *f)
{
	char proc[32];
	ssize_t n;

	memset(f, 0, sizeof(*f));
	f->kind = FWD_REQ;
	if (fd < 0)
		return;
	if (shmem_memfd(fd)) {
		f->fd = FD_MEMFD;
		return;
	}
	f->fd = FD_REFUSED;
	/* the link is the name the kernel keeps: no file system is asked */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, f->what, sizeof(f->what) - 1);
	f->what[n > 0 ? n : 0] = '\0';
}

static int forward(int ctl, const struct fwd *f, const char *msg, int fd)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)f, .iov_len = sizeof(*f) },
		{ .iov_base = (void *)msg, .iov_len = msg ? strlen(msg) : 0 },
	};

	return cprx_luod_sendv(ctl, iov, 2, fd, 0);
}

/*
 * One message into @iov, and the one fd it may carry into *@fd (-1 if
 * none); its length, or -errno.  Both ends are this program's: one fd at
 * most rides along.
 */
static ssize_t recv_one(int sock, struct iovec *iov, int flags, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

/* One message from the daemon: its tag, text into @buf, fd into *@fd. */
static int recv_tagged(int ctl, char *tag, char *buf, size_t len, int *fd,
		       int flags)
{
	struct iovec iov[2] = {
		{ .iov_base = tag, .iov_len = 1 },
		{ .iov_base = buf, .iov_len = len - 1 },
	};
	ssize_t n = recv_one(ctl, iov, flags, fd);

	if (n == 0) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -ECONNRESET;
	}
	if (n < 0)
		return (int)n;
	buf[n - 1] = '\0';
	return (int)n - 1;
}

/*
 * The daemon's answer to the request forwarded, closing on the way the
 * connections it hands over (CTL_DROP).  Its length, or -errno (the daemon
 * is gone, or the answer lost).
 */
static int await_answer(int ctl, char *buf, size_t len, int *fd)
{
	struct pollfd p = { .fd = ctl, .events = POLLIN };
	char tag;
	int n;

	for (;;) {
		n = poll(&p, 1, ANSWER_SECS * 1000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -ETIMEDOUT;
		n = recv_tagged(ctl, &tag, buf, len, fd, 0);
		if (n < 0 || tag == CTL_ANSWER)
			return n;
		if (*fd >= 0)
			peer_close(*fd);
	}
}

/* The connections handed over while no request was under way. */
static int take_drops(int ctl)
{
	char buf[CPRX_LUOD_MSG_MAX], tag;
	int fd, n;

	for (;;) {
		n = recv_tagged(ctl, &tag, buf, sizeof(buf), &fd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return n;
		if (fd >= 0)
			peer_close(fd);
	}
}

/* What the peer sent, closed here: a memfd's close waits on no one. */
static void release(int fd, const struct fwd *f)
{
	if (fd < 0)
		return;
	if (f->fd == FD_MEMFD)
		close(fd);
	else
		cprx_luod_drop_fd(fd);
}

/* Requests until the peer or the daemon hangs up; what ended it. */
static enum fwd_kind relay(int peer, int ctl)
{
	static char msg[CPRX_LUOD_REPLY_MAX];	/* a request, then its answer */
	struct fwd f;
	int fd, afd, n, ret;

	for (;;) {
		struct pollfd p[2] = { { .fd = ctl, .events = POLLIN },
				       { .fd = peer, .events = POLLIN } };

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return FWD_GONE;
		}
		if (p[0].revents) {
			if (take_drops(ctl))
				return FWD_GONE;	/* the daemon stopped */
			continue;
		}
		n = cprx_luod_recv(peer, msg, CPRX_LUOD_MSG_MAX, &fd);
		if (n < 0)
			return FWD_GONE;
		vet(fd, &f);
		if (forward(ctl, &f, msg, f.fd == FD_MEMFD ? fd : -1)) {
			release(fd, &f);
			return FWD_GONE;
		}
		/* an answer given up on never reaches the peer: a HOLD is undone */
		if (await_answer(ctl, msg, sizeof(msg), &afd) < 0) {
			release(fd, &f);
			return FWD_LOST;
		}
		ret = cprx_luod_send(peer, msg, afd);
		if (afd >= 0)
			close(afd);
		release(fd, &f);
		if (ret)
			return FWD_LOST;
	}
}

/* Every fd but the two the reader uses: it holds nothing of the daemon's. */
static void close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	close_range(3, lo - 1, 0);
	close_range(lo + 1, hi - 1, 0);
	close_range(hi + 1, ~0U, 0);
}

/*
 * The unit shields the daemon from the OOM killer (a kill drops every held
 * session); a reader serves one peer and is worth no more than it.
 */
static void oom_adj_reset(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	/* on failure the daemon's adjustment stays: no worse than before */
	if (fd >= 0) {
		ssize_t n = write(fd, "0", 1);

		(void)n;
		close(fd);
	}
}

static void __attribute__((noreturn)) reader_main(int peer, int ctl,
						   pid_t daemon)
{
	struct timeval tv = { .tv_sec = PEER_SEND_SECS };
	struct fwd f = { 0 };
	sigset_t none;

	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_NAME, "cprx-luod-conn");
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != daemon)
		_exit(0);
	close_all_but(peer, ctl);
	oom_adj_reset();	/* after: an fd is free for its open */
	/* blocking from here, bounded: a peer that never reads is let go */
	fcntl(peer, F_SETFL, 0);
	setsockopt(peer, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	f.kind = relay(peer, ctl);
	forward(ctl, &f, NULL, -1);
	peer_close(peer);
	take_drops(ctl);
	_exit(0);
}

/*
 * A reader for the connection @peer, @c its slot.  The daemon keeps no
 * copy of @peer: the reader has it, and with it the last say on its close.
 */
int reader_start(struct conn *c, int peer)
{
	int sv[2], err;
	pid_t daemon = getpid(), pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(sv[0]);
		close(sv[1]);
		return -err;
	}
	if (!pid)
		reader_main(peer, sv[1], daemon);
	close(sv[1]);
	close(peer);	/* not its last reference: the reader has one */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	c->fd = sv[0];
	c->reader = pid;
	return 0;
}

/* The daemon's side: one forwarded request, or -errno (-EAGAIN: none). */
int ctl_recv(int ctl, struct fwd *f, char *buf, size_t len, int *fd)
{
	struct iovec iov[2] = {
		{ .iov_base = f, .iov_len = sizeof(*f) },
		{ .iov_base = buf, .iov_len = len - 1 },
	};
	ssize_t n = recv_one(ctl, iov, MSG_DONTWAIT, fd);

	if (n < 0)
		return (int)n;
	/* a vetted memfd rides along where said, nothing else */
	if ((size_t)n < sizeof(*f) || (*fd >= 0) != (f->fd == FD_MEMFD)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return n ? -EPROTO : -ECONNRESET;
	}
	f->what[sizeof(f->what) - 1] = '\0';
	buf[n - sizeof(*f)] = '\0';
	return (int)(n - sizeof(*f));
}

static int ctl_send(int ctl, char tag, const char *msg, int fd)
{
	struct iovec iov[2] = {
		{ .iov_base = &tag, .iov_len = 1 },
		{ .iov_base = (void *)msg, .iov_len = strlen(msg) },
	};

	return cprx_luod_sendv(ctl, iov, 2, fd, MSG_DONTWAIT);
}

int ctl_answer(int ctl, const char *msg, int fd)
{
	return ctl_send(ctl, CTL_ANSWER, msg, fd);
}

/* @sock to the reader to close: the daemon's own close then waits on nothing. */
int ctl_drop(int ctl, int sock)
{
	return ctl_send(ctl, CTL_DROP, "", sock);
}
