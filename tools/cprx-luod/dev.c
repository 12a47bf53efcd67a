// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The device: /dev/liveupdate's ioctls, or with --fake-kexec a stand-in
 * that keeps the preserved fds in the daemon (host tests: there is no LUO
 * there).  The fake refuses what LUO refuses (anything but a shmem memfd)
 * and its KEXEC verb turns held sessions into incoming ones, as a kexec
 * does; the real path is exercised in the VM tier.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include "luod.h"

/* Only one process may have the device open: it is opened once, kept. */
static int dev_open(struct luod *d)
{
	int err;

	if (d->devfd >= 0)
		return 0;
	d->devfd = open(d->device, O_RDWR | O_CLOEXEC);
	if (d->devfd >= 0)
		return 0;
	err = errno;
	if (err == ENOENT)
		snprintf(d->why, sizeof(d->why), "%s is missing: this kernel has "
			 "no Live Update Orchestrator (it needs CONFIG_LIVEUPDATE "
			 "and KHO, and liveupdate=on on its command line)",
			 d->device);
	else if (err == EBUSY)
		snprintf(d->why, sizeof(d->why), "another process has %s open "
			 "(it allows one opener): stop it, cprx-luod must be "
			 "the one", d->device);
	else
		snprintf(d->why, sizeof(d->why), "cannot open %s: %s", d->device,
			 strerror(err));
	return err == ENOENT ? -ENODEV : -err;
}

static int session_ioctl(struct luod *d, unsigned long req, struct sess *s)
{
	struct cprx_luo_session_arg arg = { .size = sizeof(arg) };
	int ret;

	ret = dev_open(d);
	if (ret)
		return ret;
	snprintf((char *)arg.name, sizeof(arg.name), "%s", s->kname);
	if (ioctl(d->devfd, req, &arg) < 0) {
		ret = -errno;
		snprintf(d->why, sizeof(d->why), "%s refused to %s session '%s': "
			 "%s", d->device, req == CPRX_LUO_CREATE_SESSION ?
			 "create" : "retrieve", s->kname, strerror(-ret));
		return ret;
	}
	s->sfd = arg.fd;
	return 0;
}

int dev_create(struct luod *d, struct sess *s)
{
	s->sfd = -1;
	if (d->fake)
		return 0;
	return session_ioctl(d, CPRX_LUO_CREATE_SESSION, s);
}

int dev_retrieve(struct luod *d, struct sess *s)
{
	if (d->fake || s->sfd >= 0)	/* the fake kept it; or retrieved before */
		return 0;
	return session_ioctl(d, CPRX_LUO_RETRIEVE_SESSION, s);
}

/* LUO preserves shmem memfds only: the fake refuses the rest as it does. */
static int fake_check(struct luod *d, int fd)
{
	char proc[32], link[256];
	struct statfs sfs;
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	if (n > 0 && !strncmp(link, "/memfd:", 7) && !fstatfs(fd, &sfs) &&
	    sfs.f_type == TMPFS_MAGIC)
		return 0;
	snprintf(d->why, sizeof(d->why), "%s is not a shmem memfd", link);
	return -EOPNOTSUPP;
}

static int fake_preserve(struct luod *d, struct sess *s, int fd, uint64_t token)
{
	struct fake_fd *f;
	unsigned int i;
	int ret = fake_check(d, fd);

	if (ret)
		return ret;
	for (i = 0; i < s->nr_fds; i++)
		if (s->fds[i].token == token)
			return -EEXIST;
	f = realloc(s->fds, (s->nr_fds + 1) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	s->fds = f;
	f[s->nr_fds].fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (f[s->nr_fds].fd < 0)
		return -errno;
	f[s->nr_fds++].token = token;
	return 0;
}

int dev_preserve(struct luod *d, struct sess *s, int fd, uint64_t token)
{
	struct cprx_luo_fd_arg arg = { .size = sizeof(arg), .fd = fd,
				       .token = token };

	if (d->fake)
		return fake_preserve(d, s, fd, token);
	if (ioctl(s->sfd, CPRX_LUO_SESSION_PRESERVE_FD, &arg) < 0) {
		snprintf(d->why, sizeof(d->why), "%s refused to preserve the fd "
			 "in session '%s': %s", d->device, s->kname,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* A new fd for what @token preserved, or -errno. */
int dev_get(struct luod *d, struct sess *s, uint64_t token)
{
	struct cprx_luo_fd_arg arg = { .size = sizeof(arg), .token = token };
	unsigned int i;

	if (d->fake) {
		for (i = 0; i < s->nr_fds; i++)
			if (s->fds[i].token == token)
				return fcntl(s->fds[i].fd, F_DUPFD_CLOEXEC, 3);
		return -ENOENT;
	}
	if (ioctl(s->sfd, CPRX_LUO_SESSION_RETRIEVE_FD, &arg) < 0)
		return -errno;
	return arg.fd;
}

int dev_finish(struct luod *d, struct sess *s)
{
	struct cprx_luo_finish_arg arg = { .size = sizeof(arg) };

	if (!d->fake && ioctl(s->sfd, CPRX_LUO_SESSION_FINISH, &arg) < 0) {
		snprintf(d->why, sizeof(d->why), "%s refused to finish session "
			 "'%s': %s", d->device, s->kname, strerror(errno));
		return -errno;
	}
	dev_drop(s);
	return 0;
}

/* Closing the session fd before the kexec unpreserves everything in it. */
void dev_drop(struct sess *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_fds; i++)
		close(s->fds[i].fd);
	free(s->fds);
	s->fds = NULL;
	s->nr_fds = 0;
	if (s->sfd >= 0)
		close(s->sfd);
	s->sfd = -1;
}

/*
 * What a kexec does to the sessions: held ones come back as incoming, the
 * rest are gone (their processes are).  The markers on disk stay.
 */
void dev_fake_kexec(struct luod *d)
{
	unsigned int i;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++) {
		struct sess *s = &d->sess[i];

		if (!s->used)
			continue;
		if (s->state == S_HELD) {
			s->state = S_INCOMING;
			continue;
		}
		if (s->owner)
			s->owner->s = NULL;
		marker_remove(d, s);
		dev_drop(s);
		sess_free(d, s);
	}
}
