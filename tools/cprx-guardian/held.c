// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What the VMM sends its guardian (common/guardian_proto.h): at each
 * update the set of files that restarts the previous binary, dropped when
 * the new image commits or the exec failed.  Nothing here is trusted
 * beyond what it is: messages come from the VMM we started, over a socket
 * only it holds, and are checked for shape.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "guardian.h"
#include "state.h"

void held_init(struct held *h)
{
	memset(h, 0, sizeof(*h));
	h->state_fd = h->exe_fd = h->guardian_fd = -1;
	h->adopted = -1;
}

/* Closes every copy: the guest's RAM is the VMM's alone again. */
void held_drop(struct held *h)
{
	unsigned int i;

	for (i = 0; i < h->nr; i++)
		close(h->fd[i]);
	if (h->adopted >= 0)
		close(h->adopted);
	held_init(h);
}

static void close_fds(const int *fds, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

static void take_arm(struct held *h, const struct cprx_gmsg *m,
		     const int *fds, unsigned int n)
{
	unsigned int i;

	if (m->flags & CPRX_GMSG_FIRST) {
		held_drop(h);
		h->building = true;
		h->backend = m->backend;
		h->pid = m->pid;
		h->state_fd = m->state_fd;
		h->exe_fd = m->exe_fd;
		h->guardian_fd = m->guardian_fd;
		memcpy(h->session, m->session, sizeof(h->session));
		h->session[sizeof(h->session) - 1] = '\0';
	}
	if (!h->building || h->nr + n > MAX_HELD || m->nr != n) {
		say("event=protocol what=\"arm chunk out of order or too large\"");
		close_fds(fds, n);
		held_drop(h);
		return;
	}
	for (i = 0; i < n; i++) {
		h->fd[h->nr] = fds[i];
		h->num[h->nr++] = m->fds[i];
	}
	if (m->flags & CPRX_GMSG_LAST) {
		h->building = false;
		h->complete = true;
		say("event=armed pid=%d backend=%s fds=%u", (int)h->pid,
		    h->backend == 2 ? "kmod" : "cloexec", h->nr);
	}
}

/* Returns 1 for a commit, else 0. */
static int take(struct held *h, const struct cprx_gmsg *m, const int *fds,
		unsigned int n)
{
	bool had;

	switch (m->type) {
	case CPRX_GMSG_ARM:
		take_arm(h, m, fds, n);
		return 0;
	case CPRX_GMSG_DISARM:
	case CPRX_GMSG_COMMIT:
		close_fds(fds, n);
		had = h->complete || h->building;
		held_drop(h);
		/* said once the copies are gone: a reader may check at once */
		if (had)
			say("event=%s pid=%d", m->type == CPRX_GMSG_COMMIT ?
			    "committed" : "disarmed", (int)m->pid);
		return m->type == CPRX_GMSG_COMMIT;
	}
	close_fds(fds, n);
	return 0;
}

/*
 * One message: 2 a commit, 1 another, 0 when none is waiting, else -errno.
 */
static int receive_one(struct held *h, int sock)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CPRX_GMSG_FDS)];
		struct cmsghdr align;
	} u;
	struct cprx_gmsg m;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c;
	int fds[CPRX_GMSG_FDS];
	unsigned int n = 0;
	ssize_t got;

	got = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (got < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (!got)
		return -EPIPE;	/* the VMM's end is closed */
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		unsigned int k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n + k > CPRX_GMSG_FDS)
			k = CPRX_GMSG_FDS - n;
		memcpy(fds + n, CMSG_DATA(c), k * sizeof(int));
		n += k;
	}
	if ((size_t)got != sizeof(m) || m.magic != CPRX_GMSG_MAGIC ||
	    m.version != CPRX_GMSG_VERSION || (mh.msg_flags & MSG_CTRUNC)) {
		say("event=protocol what=\"malformed message\"");
		close_fds(fds, n);
		return 1;
	}
	return 1 + take(h, &m, fds, n);
}

int held_receive(struct held *h, int sock)
{
	int ret, commits = 0;

	while ((ret = receive_one(h, sock)) > 0)
		commits += ret == 2;
	return ret < 0 && !commits ? ret : commits;
}

/* Our copy of the fd the VMM had at @num, or -1. */
static int ours(const struct held *h, int num)
{
	unsigned int i;

	for (i = 0; num >= 0 && i < h->nr; i++)
		if (h->num[i] == num)
			return h->fd[i];
	return -1;
}

int held_exe(const struct held *h)
{
	return ours(h, h->exe_fd);
}

int held_origin(struct held *h, char **exe, char ***argv)
{
	int fd = ours(h, h->state_fd);
	struct cprx_state st;
	char err[256];
	struct stat sb;
	void *buf;
	int ret;

	if (fd < 0 || fstat(fd, &sb) || sb.st_size <= 0 ||
	    (size_t)sb.st_size > CPRX_STATE_MAX)
		return -EBADMSG;
	buf = malloc(sb.st_size);
	if (!buf)
		return -ENOMEM;
	ret = pread(fd, buf, sb.st_size, 0) == sb.st_size ? 0 : -EIO;
	if (!ret)
		ret = cprx_state_decode_origin(buf, sb.st_size, &st, err,
					       sizeof(err));
	free(buf);
	if (ret) {
		say("event=error what=\"state unreadable: %s\"", err);
		return ret;
	}
	if (st.pid != h->pid || !st.exe_path || !st.argv || !st.argc) {
		cprx_state_free(&st);
		return -EBADMSG;
	}
	*exe = st.exe_path;
	*argv = st.argv;
	st.exe_path = NULL;
	st.argv = NULL;
	st.argc = 0;
	cprx_state_free(&st);
	return 0;
}
