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
#include <limits.h>
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

/*
 * An entry's fd number is the preserved file only while it holds its
 * dev:ino (the inode alone for a state from before dev was recorded): in
 * the new image arming a rollback, and in the old image too, where a
 * number the VMM reused since preserve must not be handed on.  In the new
 * image an anon inode must also be the open file held since incoming.
 */
static bool still_ours(struct cprx_session *s, struct cprx_entry *e)
{
	struct stat st;

	if (s->incoming && e->held >= 0 &&
	    cprx_same_open_file(e->fd, e->held) > 0)
		return false;
	if (e->dev)
		return cprx_same_file(e->fd, e->dev, e->ino, NULL);
	return e->fd >= 0 && !fstat(e->fd, &st) && (uint64_t)st.st_ino == e->ino;
}

static void cloexec_disarm(struct cprx_session *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_ents; i++)
		if (still_ours(s, &s->ents[i]))
			fcntl(s->ents[i].fd, F_SETFD, s->ents[i].saved_fdflags);
	if (s->state_fd >= 0)
		set_cloexec(s->state_fd, true);
	if (s->exe_fd >= 0)
		set_cloexec(s->exe_fd, true);
}

static void cloexec_field(const struct cprx_session *s, char *field,
			  size_t len)
{
	snprintf(field, len, "fd=%d", s->state_fd);
}

/* fcntl and fstat only: safe in a signal handler */
static void cloexec_arm_now(struct cprx_session *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_ents; i++)
		if (still_ours(s, &s->ents[i]))
			set_cloexec(s->ents[i].fd, false);
	if (s->state_fd >= 0)
		set_cloexec(s->state_fd, false);
	if (s->exe_fd >= 0)
		set_cloexec(s->exe_fd, false);
}

static int cloexec_arm(struct cprx_session *s, char *field, size_t len)
{
	unsigned int i;
	int ret;

	for (i = 0; i < s->nr_ents; i++) {
		struct cprx_entry *e = &s->ents[i];
		int flags;

		/* rollback: hand back the preserved files, not what is there now */
		if (!still_ours(s, e)) {
			ret = -EBADF;
			goto err;
		}
		flags = fcntl(e->fd, F_GETFD);
		if (flags >= 0)
			e->saved_fdflags = flags;
		if (flags < 0 || fcntl(e->fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
			ret = -errno;
			goto err;
		}
	}
	if (s->state_fd >= 0 && (ret = set_cloexec(s->state_fd, false)))
		goto err;
	if (s->exe_fd >= 0 && (ret = set_cloexec(s->exe_fd, false)))
		goto err;
	cloexec_field(s, field, len);
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
	struct cprx_entry *e;
	struct stat st;

	/* the session's own: handed out, commit would close it under the caller */
	if (r->fd >= 0 && (r->fd == s->state_fd || r->fd == s->exe_fd))
		return cprx_fail(s, EBADF, "preserve only the VMM's own fds, "
				 "never the library's", "fd %d of token '%s' is "
				 "the library's %s, not a preserved file", r->fd,
				 r->token, r->fd == s->state_fd ? "state" :
				 "previous binary");
	if (r->fd < 0 || fstat(r->fd, &st) < 0)
		return cprx_fail(s, EBADF,
				 "the previous image must not close preserved fds",
				 "fd %d of token '%s' did not survive the exec",
				 r->fd, r->token);
	/* dev 0: a state from before dev was recorded, the inode alone */
	if ((uint64_t)st.st_ino != r->handle ||
	    (r->dev && (uint64_t)st.st_dev != r->dev))
		return cprx_fail(s, EBADF,
				 "something reused the fd number before reclaim",
				 "fd %d of token '%s' is not the preserved file "
				 "(dev:inode %llx:%llu, expected %llx:%llu)", r->fd,
				 r->token, (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino,
				 (unsigned long long)r->dev,
				 (unsigned long long)r->handle);
	/* an anon inode: dev:ino is any eventfd's; the held file says */
	e = cprx_find_entry(s, r->token);
	if (e && e->held >= 0 && cprx_same_open_file(r->fd, e->held) > 0)
		return cprx_fail(s, EBADF, "something reused the fd number "
				 "before reclaim", "fd %d of token '%s' is "
				 "another %s than the preserved one", r->fd,
				 r->token, "anon-inode file");
	/* the caller's now, and only theirs; FD_CLOEXEC is the only fd flag */
	fcntl(r->fd, F_SETFD, FD_CLOEXEC);
	*fdp = r->fd;
	return 0;
}

#define STATE_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
#define STATE_LINK	"/memfd:cprx-state (deleted)"
#define NOT_OURS	"unset " CPRX_ENV " unless a live update sets it"

/*
 * The state crosses the exec in the memfd cprx_save sealed, nothing else:
 * proven from /proc, fstat and its seals before anything changes the fd.
 */
static int check_state_fd(struct cprx_session *s, int fd)
{
	char link[PATH_MAX];
	struct stat st = { 0 };
	int seals;

	if (cprx_fd_link(fd, link, sizeof(link)))
		return cprx_fail(s, EBADF, "the previous image must keep its "
				 "state fd; " NOT_OURS, "state fd %d named by "
				 CPRX_ENV " is not open", fd);
	if (strcmp(link, STATE_LINK))
		return cprx_fail(s, EPERM, NOT_OURS, "state fd %d is %s, not the "
				 "sealed memfd cprx_save makes", fd, link);
	if (fstat(fd, &st) || st.st_uid != geteuid())
		return cprx_fail(s, EPERM, NOT_OURS, "state fd %d is a memfd of "
				 "uid %u, not of this process (uid %u)", fd,
				 (unsigned int)st.st_uid, (unsigned int)geteuid());
	seals = fcntl(fd, F_GET_SEALS);
	if (seals != STATE_SEALS)
		return cprx_fail(s, EPERM, NOT_OURS, "state fd %d is a memfd "
				 "with seals 0x%x, not cprx_save's 0x%x (shrink, "
				 "grow, write, seal)", fd, seals, STATE_SEALS);
	return 0;
}

/* The state's fd came through; the previous binary's is in the state. */
static int cloexec_incoming(struct cprx_session *s,
			    const struct cprx_handover *h)
{
	int ret;

	if (h->fd < 0)
		return cprx_fail(s, EINVAL, "the previous image used another "
				 "backend: rebuild with kmod support",
				 "no state fd in " CPRX_ENV);
	ret = check_state_fd(s, h->fd);
	if (!ret)	/* close-on-exec once ORIGIN.pid is ours too */
		s->state_fd = h->fd;
	return ret;
}

/* @fd's number is the caller's or the session's: not an entry's to close. */
static bool fd_taken(struct cprx_session *s, int fd)
{
	unsigned int i;

	if (fd == s->state_fd || fd == s->exe_fd)
		return true;
	for (i = 0; i < s->nr_ents; i++)
		if (s->ents[i].reclaimed && s->ents[i].fd == fd)
			return true;
	return false;
}

/*
 * What this image did not take back would leak: close it, if its number
 * still holds the preserved file (the image may have closed it and opened
 * another there) and nobody else holds that number (a state may name one
 * fd twice).  An anon inode is that file only if it is the open file held
 * since incoming.  Unknown dev, or no proof: not ours to judge, left open.
 */
static void cloexec_commit(struct cprx_session *s)
{
	unsigned int i;
	bool anon;

	for (i = 0; i < s->nr_ents; i++) {
		struct cprx_entry *e = &s->ents[i];

		if (e->reclaimed || !cprx_same_file(e->fd, e->dev, e->ino, &anon) ||
		    fd_taken(s, e->fd))
			continue;
		if (e->held >= 0 ? cprx_same_open_file(e->fd, e->held) != 0 :
		    anon)
			continue;
		close(e->fd);
		e->fd = -1;	/* a second record of the same number */
	}
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
	.field = cloexec_field,
	.arm_now = cloexec_arm_now,
	.incoming = cloexec_incoming,
	.retrieve = cloexec_retrieve,
	.commit = cloexec_commit,
};
