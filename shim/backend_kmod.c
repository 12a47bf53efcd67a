// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Backend "kmod": cprx.ko pins every preserved file in a session.  Only the
 * session's fd crosses the exec; the new image retrieves the session by name
 * and gets fresh fds (close-on-exec) from the kernel, whatever their numbers.
 * The state and the previous binary are pinned under reserved tokens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include "internal.h"
#include <linux/cprx.h>

#define TOKEN_STATE	(~0ull)
#define TOKEN_EXE	(~0ull - 1)

/* FNV-1a: a token name to the kernel's 64-bit token. */
static uint64_t token_of(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
	return h >= TOKEN_EXE ? h - 2 : h;	/* keep the reserved ones */
}

bool cprx_kmod_available(void)
{
	return access(CPRX_DEVICE, R_OK | W_OK) == 0;
}

static int open_dev(struct cprx_session *s)
{
	int fd = open(CPRX_DEVICE, O_RDWR | O_CLOEXEC);
	int err = errno;

	if (fd < 0)
		return cprx_fail(s, ENODEV, err == EACCES ?
				 "/dev/cprx is root:kvm 0660: run the VMM in "
				 "group kvm, or use CPRX_BACKEND=cloexec" :
				 "load cprx.ko (modprobe cprx), or "
				 "use CPRX_BACKEND=cloexec",
				 "cannot open %s: %s", CPRX_DEVICE, strerror(err));
	return fd;
}

static int kmod_open(struct cprx_session *s)
{
	struct cprx_ioctl_create_session arg = { .size = sizeof(arg) };
	int dev, ret, err;

	dev = open_dev(s);
	if (dev < 0)
		return dev;
	snprintf((char *)arg.name, sizeof(arg.name), "%s", s->name);
	ret = ioctl(dev, CPRX_IOCTL_CREATE_SESSION, &arg);
	err = errno;
	close(dev);
	if (ret < 0)
		return cprx_fail(s, err, err == EEXIST ?
				 "use one session name per update in flight" :
				 err == ENOSPC ? "close finished sessions, or raise "
				 "/sys/module/cprx/parameters/max_sessions (per "
				 "user) or max_total_sessions" : NULL,
				 "cprx.ko refused session '%s': %s", s->name,
				 strerror(err));
	s->kmod_sfd = arg.fd;
	return 0;
}

static void kmod_close(struct cprx_session *s)
{
	if (s->kmod_sfd >= 0)
		close(s->kmod_sfd);
	s->kmod_sfd = -1;
}

static int pin(struct cprx_session *s, int fd, uint64_t token)
{
	struct cprx_session_preserve_fd arg = {
		.size = sizeof(arg), .fd = fd, .token = token,
	};

	return ioctl(s->kmod_sfd, CPRX_SESSION_PRESERVE_FD, &arg) < 0 ? -errno : 0;
}

static void unpin(struct cprx_session *s, uint64_t token)
{
	struct cprx_session_unpreserve_fd arg = {
		.size = sizeof(arg), .token = token,
	};

	ioctl(s->kmod_sfd, CPRX_SESSION_UNPRESERVE_FD, &arg);
}

static int kmod_preserve(struct cprx_session *s, struct cprx_entry *e)
{
	int ret;

	e->handle = token_of(e->token);
	ret = pin(s, e->fd, e->handle);
	if (ret == -EEXIST)
		return cprx_fail(s, EEXIST, "rename one of the tokens",
				 "token '%s' collides with another one in "
				 "cprx.ko's 64-bit token space", e->token);
	if (ret == -ENOSPC)
		return cprx_fail(s, ENOSPC, "raise /sys/module/cprx/parameters/"
				 "max_pins", "cprx.ko's pin limit reached at '%s'",
				 e->token);
	if (ret)
		return cprx_fail(s, -ret, NULL, "cprx.ko refused to pin fd %d "
				 "of '%s': %s", e->fd, e->token, strerror(-ret));
	return 0;
}

static void kmod_unpreserve(struct cprx_session *s, struct cprx_entry *e)
{
	unpin(s, e->handle);
}

static int arm_ioctl(struct cprx_session *s, uint32_t flags)
{
	struct cprx_session_arm arg = { .size = sizeof(arg), .flags = flags };

	return ioctl(s->kmod_sfd, CPRX_SESSION_ARM, &arg) < 0 ? -errno : 0;
}

static void unpin_internal(struct cprx_session *s)
{
	unpin(s, TOKEN_STATE);
	unpin(s, TOKEN_EXE);
	s->kmod_internal = false;
}

static int kmod_arm(struct cprx_session *s, char *field, size_t len)
{
	int ret = 0;

	if (!s->kmod_internal) {
		ret = pin(s, s->state_fd, TOKEN_STATE);
		if (!ret && s->exe_fd >= 0)
			ret = pin(s, s->exe_fd, TOKEN_EXE);
		s->kmod_internal = true;
	}
	if (!ret)
		ret = arm_ioctl(s, 0);
	/* the one fd that crosses the exec: it ties the pins to us */
	if (!ret && fcntl(s->kmod_sfd, F_SETFD, 0) < 0)
		ret = -errno;
	if (ret) {
		arm_ioctl(s, CPRX_ARM_CANCEL);
		unpin_internal(s);
		return cprx_fail(s, -ret, "check dmesg; CPRX_BACKEND=cloexec "
				 "works without the module",
				 "arming cprx.ko session '%s' failed: %s", s->name,
				 strerror(-ret));
	}
	snprintf(field, len, "kmod=%d", s->kmod_sfd);
	return 0;
}

static void kmod_disarm(struct cprx_session *s)
{
	arm_ioctl(s, CPRX_ARM_CANCEL);
	fcntl(s->kmod_sfd, F_SETFD, FD_CLOEXEC);
	/* a retried update saves a new state: pin that one */
	unpin_internal(s);
}

static int retrieve_token(struct cprx_session *s, uint64_t token)
{
	struct cprx_session_retrieve_fd arg = {
		.size = sizeof(arg), .token = token,
	};

	return ioctl(s->kmod_sfd, CPRX_SESSION_RETRIEVE_FD, &arg) < 0 ? -errno
									: arg.fd;
}

/* The inherited fd names the session; retrieving it proves the exec. */
static int retrieve_session(struct cprx_session *s, int old)
{
	struct cprx_session_query q = { .size = sizeof(q) };
	struct cprx_ioctl_retrieve_session arg = { .size = sizeof(arg) };
	char link[64];
	int dev, ret;

	/* proven from /proc before any fcntl or ioctl reaches the fd */
	if (old < 0 || cprx_fd_link(old, link, sizeof(link)) ||
	    strcmp(link, "anon_inode:[cprx-session]"))
		return cprx_fail(s, EBADF, "the previous image must keep the "
				 "session fd; unset " CPRX_ENV " unless a live "
				 "update sets it", "fd %d is not a cprx session "
				 "(it is %s)", old, old < 0 ? "absent" : link);
	fcntl(old, F_SETFD, FD_CLOEXEC);
	if (ioctl(old, CPRX_SESSION_QUERY, &q) < 0)
		return cprx_fail(s, errno, "the previous image must keep the "
				 "session fd", "fd %d is not a cprx session of "
				 "ours: %s", old, strerror(errno));
	dev = open_dev(s);
	if (dev < 0)
		return dev;
	memcpy(arg.name, q.name, sizeof(arg.name));
	ret = ioctl(dev, CPRX_IOCTL_RETRIEVE_SESSION, &arg);
	ret = ret < 0 ? -errno : 0;
	close(dev);
	if (ret)
		return cprx_fail(s, -ret, "only the process that armed a "
				 "session, after its exec, may retrieve it",
				 "cprx.ko refused to hand back session '%s': %s",
				 (char *)q.name, strerror(-ret));
	close(old);
	s->kmod_sfd = arg.fd;
	snprintf(s->name, sizeof(s->name), "%s", (char *)q.name);
	return 0;
}

static int kmod_incoming(struct cprx_session *s, const struct cprx_handover *h)
{
	int ret;

	ret = retrieve_session(s, h->kmod);
	if (ret)
		return ret;
	s->kmod_internal = true;
	s->state_fd = retrieve_token(s, TOKEN_STATE);
	if (s->state_fd < 0)
		return cprx_fail(s, -s->state_fd, "the state is lost; the guest "
				 "cannot be resumed", "session '%s' holds no "
				 "state: %s", s->name, strerror(-s->state_fd));
	s->exe_fd = retrieve_token(s, TOKEN_EXE);	/* optional */
	return 0;
}

static int kmod_retrieve(struct cprx_session *s, const struct cprx_rec_fd *r,
			 int *fdp)
{
	int fd = retrieve_token(s, r->handle);

	if (fd < 0)
		return cprx_fail(s, -fd, "the previous image must not unpreserve "
				 "what the state lists", "cprx.ko has no pin for "
				 "token '%s': %s", r->token, strerror(-fd));
	*fdp = fd;
	return 0;
}

static void kmod_commit(struct cprx_session *s)
{
	struct cprx_session_finish arg = { .size = sizeof(arg) };

	ioctl(s->kmod_sfd, CPRX_SESSION_FINISH, &arg);
	kmod_close(s);
}

const struct cprx_backend_ops cprx_backend_kmod = {
	.name = "kmod",
	.id = CPRX_BACKEND_KMOD,
	.open = kmod_open,
	.close = kmod_close,
	.preserve = kmod_preserve,
	.unpreserve = kmod_unpreserve,
	.arm = kmod_arm,
	.disarm = kmod_disarm,
	.incoming = kmod_incoming,
	.retrieve = kmod_retrieve,
	.commit = kmod_commit,
};
