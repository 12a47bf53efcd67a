// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Backend "cloexec": userspace only, as QEMU does.  Every preserved fd gets
 * FD_CLOEXEC cleared right before execve (and back if execve fails), so the
 * same fd numbers are open in the new image.  The new image checks each one
 * is still the file that was preserved (same inode) and sets FD_CLOEXEC
 * again at once, so nothing it spawns inherits guest RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "internal.h"

static int cloexec_preserve(struct cprx_session *s, struct cprx_entry *e)
{
	(void)s;
	e->handle = e->ino;	/* nothing to pin: the fd table carries it */
	return 0;
}

static int set_cloexec(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0)
		return -errno;
	flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
	return fcntl(fd, F_SETFD, flags) < 0 ? -errno : 0;
}

static void cloexec_disarm(struct cprx_session *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_ents; i++)
		fcntl(s->ents[i].fd, F_SETFD, s->ents[i].saved_fdflags);
	if (s->state_fd >= 0)
		set_cloexec(s->state_fd, true);
	if (s->exe_fd >= 0)
		set_cloexec(s->exe_fd, true);
}

static int cloexec_arm(struct cprx_session *s, char *field, size_t len)
{
	unsigned int i;
	int ret;

	for (i = 0; i < s->nr_ents; i++) {
		struct cprx_entry *e = &s->ents[i];
		int flags = fcntl(e->fd, F_GETFD);

		if (flags < 0) {
			ret = -errno;
			goto err;
		}
		e->saved_fdflags = flags;
		ret = set_cloexec(e->fd, false);
		if (ret)
			goto err;
	}
	if (s->state_fd >= 0 && (ret = set_cloexec(s->state_fd, false)))
		goto err;
	if (s->exe_fd >= 0 && (ret = set_cloexec(s->exe_fd, false)))
		goto err;
	snprintf(field, len, "fd=%d", s->state_fd);
	return 0;
err:
	cloexec_disarm(s);
	return cprx_fail(s, -ret, "keep preserved fds open until the update",
			 "fd %d of token '%s' cannot be carried over: %s",
			 i < s->nr_ents ? s->ents[i].fd : s->state_fd,
			 i < s->nr_ents ? s->ents[i].token : "(state)",
			 strerror(-ret));
}

static int cloexec_retrieve(struct cprx_session *s, const struct cprx_rec_fd *r,
			    int *fdp)
{
	struct stat st;

	if (r->fd < 0 || fstat(r->fd, &st) < 0)
		return cprx_fail(s, EBADF,
				 "the previous image must not close preserved fds",
				 "fd %d of token '%s' did not survive the exec",
				 r->fd, r->token);
	if ((uint64_t)st.st_ino != r->handle)
		return cprx_fail(s, EBADF,
				 "something reused the fd number before reclaim",
				 "fd %d of token '%s' is not the preserved file "
				 "(inode %llu, expected %llu)", r->fd, r->token,
				 (unsigned long long)st.st_ino,
				 (unsigned long long)r->handle);
	*fdp = r->fd;
	return 0;
}

/* The state's fd came through; the previous binary's is in the state. */
static int cloexec_incoming(struct cprx_session *s,
			    const struct cprx_handover *h)
{
	if (h->fd < 0)
		return cprx_fail(s, EINVAL, "the previous image used another "
				 "backend: rebuild with kmod support",
				 "no state fd in " CPRX_ENV);
	s->state_fd = h->fd;
	return set_cloexec(s->state_fd, true);
}

/* What this image did not take back would leak: close it. */
static void cloexec_commit(struct cprx_session *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_ents; i++)
		if (!s->ents[i].reclaimed)
			close(s->ents[i].fd);
}

static int cloexec_nothing(struct cprx_session *s)
{
	(void)s;
	return 0;
}

static void cloexec_nothing_void(struct cprx_session *s)
{
	(void)s;
}

static void cloexec_unpreserve(struct cprx_session *s, struct cprx_entry *e)
{
	(void)s;
	(void)e;
}

const struct cprx_backend_ops cprx_backend_cloexec = {
	.name = "cloexec",
	.id = CPRX_BACKEND_CLOEXEC,
	.open = cloexec_nothing,
	.close = cloexec_nothing_void,
	.preserve = cloexec_preserve,
	.unpreserve = cloexec_unpreserve,
	.arm = cloexec_arm,
	.disarm = cloexec_disarm,
	.incoming = cloexec_incoming,
	.retrieve = cloexec_retrieve,
	.commit = cloexec_commit,
};
