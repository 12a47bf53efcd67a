// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The guardian: a process outside the VMM (its supervisor, or cprx-guardian)
 * that keeps the guest when the VMM dies in the middle of an update, after
 * cprx_exec armed and before the new image committed.  Nothing inside the
 * process can survive a SIGKILL there; the guardian restarts the previous
 * binary from the same state and files, as a rollback would.
 *
 * cloexec backend: at the exec the guardian gets copies of the state, the
 * previous binary and every preserved fd (SCM_RIGHTS, common/guardian_proto.h),
 * and drops them when the new image commits.  kmod backend: cprx.ko keeps
 * the pins of a session whose owner died mid-update for the guardian named
 * by SET_GUARDIAN, which adopts it; the guardian gets only the state and
 * the binary, to know what to restart.
 *
 * The restarted image is a rollback image started by its parent, the
 * guardian: its handover says "restart=" the pid that died, and the state's
 * ORIGIN must name that pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "internal.h"
#include "guardian_proto.h"

/* Who is at the other end of @fd, an AF_UNIX SOCK_SEQPACKET socket. */
static int peer_of(struct cprx_session *s, int fd, struct ucred *uc)
{
	socklen_t len = sizeof(int);
	int domain = 0, type = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return cprx_fail(s, errno == ENOTSOCK ? ENOTSOCK : EBADF,
				 "pass the socket the guardian gave the VMM "
				 "($" CPRX_ENV_GUARDIAN ")", "guardian fd %d is "
				 "not a socket: %s", fd, strerror(errno));
	len = sizeof(int);
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	if (domain != AF_UNIX || type != SOCK_SEQPACKET)
		return cprx_fail(s, EINVAL, "the guardian's socket is an "
				 "AF_UNIX SOCK_SEQPACKET socket", "guardian fd %d "
				 "is a socket of domain %d, type %d", fd, domain,
				 type);
	len = sizeof(*uc);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len) < 0 || uc->pid <= 0)
		return cprx_fail(s, ENOTCONN, "connect the socket to the "
				 "guardian first", "guardian fd %d has no peer",
				 fd);
	if (uc->uid != geteuid())
		return cprx_fail(s, EPERM, "run the guardian as the VMM's user",
				 "the guardian (pid %d) runs as uid %u, the VMM "
				 "as %u", (int)uc->pid, (unsigned int)uc->uid,
				 (unsigned int)geteuid());
	return 0;
}

CPRX_EXPORT int cprx_set_guardian(struct cprx_session *s, int sockfd)
{
	struct ucred uc;
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (s->incoming)
		return cprx_fail(s, EINVAL, "name the guardian in the session "
				 "of the next update", "session '%s' is an "
				 "incoming one: its guardian came with the update",
				 s->name);
	if (s->guardian_fd >= 0)
		return cprx_fail(s, EBUSY, "name one guardian per session",
				 "session '%s' has a guardian already (pid %d)",
				 s->name, (int)s->guardian_pid);
	if (sockfd < 0)
		return cprx_fail(s, EBADF, "pass the guardian's socket",
				 "guardian fd %d is not open", sockfd);
	ret = peer_of(s, sockfd, &uc);
	if (ret)
		return ret;
	if (uc.pid == getpid())
		return cprx_fail(s, EINVAL, "the guardian must be another "
				 "process: it outlives this one", "the guardian "
				 "socket's peer is this process (pid %d)",
				 (int)uc.pid);
	if (s->backend == &cprx_backend_kmod) {
		ret = cprx_kmod_set_guardian(s, sockfd);
		if (ret)
			return ret;
	}
	s->guardian_fd = sockfd;
	s->guardian_pid = uc.pid;
	return 0;
}

CPRX_EXPORT pid_t cprx_guardian_pid(const struct cprx_session *s)
{
	return s && s->guardian_fd >= 0 ? s->guardian_pid : 0;
}

CPRX_EXPORT bool cprx_is_guardian_restart(const struct cprx_session *s)
{
	return s && s->guardian_restart;
}

static void msg_init(struct cprx_session *s, struct cprx_gmsg *m,
		     enum cprx_gmsg_type type)
{
	memset(m, 0, sizeof(*m));
	m->magic = CPRX_GMSG_MAGIC;
	m->version = CPRX_GMSG_VERSION;
	m->type = type;
	m->pid = getpid();
	m->backend = s->backend->id;
	m->state_fd = s->state_fd;
	m->exe_fd = s->exe_fd;
	m->guardian_fd = s->guardian_fd;
	snprintf(m->session, sizeof(m->session), "%s", s->name);
}

/*
 * One message, with @m->nr fds.  Never blocks: a guardian that does not
 * read must not hold the update (nor the guest) up.
 */
static int send_msg(struct cprx_session *s, struct cprx_gmsg *m)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CPRX_GMSG_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (m->nr) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nr);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * m->nr);
		memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nr);
	}
	if (sendmsg(s->guardian_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		return -errno;
	return 0;
}

/* Adds @fd to the chunk in @m, sending it when full. */
static int add_fd(struct cprx_session *s, struct cprx_gmsg *m, int fd)
{
	int ret;

	if (fd < 0)
		return 0;
	if (m->nr == CPRX_GMSG_FDS) {
		ret = send_msg(s, m);
		if (ret)
			return ret;
		m->flags &= ~CPRX_GMSG_FIRST;
		m->nr = 0;
	}
	m->fds[m->nr++] = fd;
	return 0;
}

/*
 * Old image, the backend armed: the guardian gets what restarts the
 * previous binary.  The guardian socket crosses the exec, for the new
 * image's commit.  A guardian gone or not reading leaves the update
 * unguarded, as it would be without one: the update itself goes on.
 */
int cprx_guardian_arm(struct cprx_session *s)
{
	struct cprx_gmsg m;
	unsigned int i;
	int ret, flags;

	if (s->guardian_fd < 0 || s->incoming)
		return 0;
	flags = fcntl(s->guardian_fd, F_GETFD);
	if (flags >= 0 && (flags & FD_CLOEXEC)) {
		fcntl(s->guardian_fd, F_SETFD, flags & ~FD_CLOEXEC);
		s->guardian_cloexec = true;
	}
	msg_init(s, &m, CPRX_GMSG_ARM);
	m.flags = CPRX_GMSG_FIRST;
	ret = add_fd(s, &m, s->state_fd);
	if (!ret)
		ret = add_fd(s, &m, s->exe_fd);
	for (i = 0; !ret && s->backend == &cprx_backend_cloexec &&
	     i < s->nr_ents; i++)
		ret = add_fd(s, &m, s->ents[i].fd);
	if (!ret) {
		m.flags |= CPRX_GMSG_LAST;
		ret = send_msg(s, &m);
	}
	s->guardian_armed = !ret;
	return ret;
}

/* Old image, the exec failed: the guardian has nothing to keep. */
void cprx_guardian_disarm(struct cprx_session *s)
{
	struct cprx_gmsg m;

	if (s->guardian_fd < 0 || s->incoming)
		return;
	if (s->guardian_cloexec)
		fcntl(s->guardian_fd, F_SETFD, FD_CLOEXEC);
	s->guardian_cloexec = false;
	if (!s->guardian_armed)
		return;
	msg_init(s, &m, CPRX_GMSG_DISARM);
	send_msg(s, &m);
	s->guardian_armed = false;
}

/* New image, committed: the previous binary will never resume this guest. */
void cprx_guardian_commit(struct cprx_session *s)
{
	struct cprx_gmsg m;

	if (s->guardian_fd < 0)
		return;
	msg_init(s, &m, CPRX_GMSG_COMMIT);
	m.state_fd = m.exe_fd = -1;
	send_msg(s, &m);
}

/*
 * New image: the guardian's socket, named by the handover.  A restart must
 * come from the guardian itself, this process's parent: it is the only one
 * that may hand this process another pid's state.
 */
int cprx_guardian_incoming(struct cprx_session *s,
			   const struct cprx_handover *h)
{
	struct ucred uc;
	int ret;

	if (h->guardian < 0) {
		if (h->restart)
			return cprx_fail(s, EPERM, "unset " CPRX_ENV " unless a "
					 "live update sets it", "a restart of pid "
					 "%d without a guardian socket", h->restart);
		return 0;
	}
	ret = peer_of(s, h->guardian, &uc);
	if (ret)
		return ret;
	if (h->restart && uc.pid != getppid())
		return cprx_fail(s, EPERM, "only the guardian restarts a VMM, "
				 "as its parent", "restart of pid %d by pid %d, "
				 "but this process's parent is pid %d",
				 h->restart, (int)uc.pid, (int)getppid());
	/* libcprx's now, as the state is: nothing this image spawns gets it */
	fcntl(h->guardian, F_SETFD, FD_CLOEXEC);
	s->guardian_fd = h->guardian;
	s->guardian_pid = uc.pid;
	s->guardian_restart = h->restart;
	return 0;
}
