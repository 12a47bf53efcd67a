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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

/* The module's max_pins, for an early ENOSPC; 0 if it cannot be read. */
static unsigned int max_pins(void)
{
	FILE *f = fopen("/sys/module/cprx/parameters/max_pins", "re");
	unsigned int n = 0;

	if (f) {
		if (fscanf(f, "%u", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
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
	s->kmod_max_pins = max_pins();
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

/*
 * Pins are queued at preserve and issued in batches, one PRESERVE_FDS each:
 * when KMOD_BATCH are queued, at preflight (while the guest runs) and at
 * arm for what is left, with the state and the binary.  libcprx's own
 * checks stay at preserve, and so do a token collision and max_pins as read
 * at open; what only the kernel knows (max_user_pins, a session's fd) is
 * reported by the next flush, naming the entry.  A flush pins every queued
 * entry or none, and an unpreserve of a queued entry just drops it.  A
 * cprx.ko without PRESERVE_FDS (ENOTTY) gets one PRESERVE_FD per entry.
 */
#define KMOD_BATCH	256

/* @e the entry refused; NULL: the state or the binary, or no entry named. */
static int refused(struct cprx_session *s, const struct cprx_entry *e,
		   int err)
{
	if (!e)
		return cprx_fail(s, err, "check dmesg; CPRX_BACKEND=cloexec "
				 "works without the module", "cprx.ko refused "
				 "the pins of session '%s': %s", s->name,
				 strerror(err));
	if (err == EEXIST)
		return cprx_fail(s, EEXIST, "rename one of the tokens",
				 "token '%s' collides with another one in "
				 "cprx.ko's 64-bit token space", e->token);
	if (err == ENOSPC)
		return cprx_fail(s, ENOSPC, "raise /sys/module/cprx/parameters/"
				 "max_pins (per session) or max_user_pins",
				 "cprx.ko's pin limit reached at '%s'", e->token);
	return cprx_fail(s, err, NULL, "cprx.ko refused to pin fd %d of '%s': "
			 "%s", e->fd, e->token, strerror(err));
}

/*
 * All of @pe[@n] pinned, or none: 0, or -errno and in *@failed the entry
 * refused (@n when the refusal names none).
 */
static int pin_all(struct cprx_session *s, const struct cprx_preserve_entry *pe,
		   unsigned int n, unsigned int *failed)
{
	struct cprx_session_preserve_fds arg = {
		.size = sizeof(arg), .nr = n, .entries = (uintptr_t)pe,
		.failed = n,
	};
	unsigned int i;
	int ret = 0;

	if (!s->kmod_single) {
		if (!ioctl(s->kmod_sfd, CPRX_SESSION_PRESERVE_FDS, &arg))
			return 0;
		if (errno != ENOTTY) {
			*failed = arg.failed;
			return -errno;
		}
		s->kmod_single = true;	/* an older cprx.ko */
	}
	for (i = 0; i < n && !ret; i++)
		ret = pin(s, pe[i].fd, pe[i].token);
	if (!ret)
		return 0;
	*failed = --i;
	while (i--)
		unpin(s, pe[i].token);
	return ret;
}

static bool still_there(const struct cprx_entry *e)
{
	struct stat st;

	if (e->dev)
		return cprx_same_file(e->fd, e->dev, e->ino, NULL);
	return !fstat(e->fd, &st) && (uint64_t)st.st_ino == e->ino;
}

/*
 * Pins the queued entries among the first @n, and the state and the binary
 * too with @internal, in one batch.  A queued fd must still be the file
 * preserved: the pin is of the file the fd holds now.
 */
static int flush(struct cprx_session *s, unsigned int n, bool internal)
{
	unsigned int i, k = 0, max = 2, failed;
	struct cprx_preserve_entry *pe;
	struct cprx_entry **who;
	int ret = 0;

	if (!s->kmod_queued && !internal)
		return 0;
	for (i = 0; i < n; i++)
		max += !s->ents[i].pinned;
	pe = calloc(max, sizeof(*pe));
	who = calloc(max, sizeof(*who));
	if (!pe || !who) {
		ret = cprx_fail(s, ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (i = 0; i < n && !ret; i++) {
		struct cprx_entry *e = &s->ents[i];

		if (e->pinned)
			continue;
		if (!still_there(e))
			ret = cprx_fail(s, EBADF, "keep preserved fds open until "
					"the update", "fd %d of '%s' was closed or "
					"replaced", e->fd, e->token);
		pe[k].fd = e->fd;
		pe[k].token = e->handle;
		who[k++] = e;
	}
	if (ret)
		goto out;
	if (internal) {
		pe[k++] = (struct cprx_preserve_entry){
			.fd = s->state_fd, .token = TOKEN_STATE };
		if (s->exe_fd >= 0)
			pe[k++] = (struct cprx_preserve_entry){
				.fd = s->exe_fd, .token = TOKEN_EXE };
	}
	ret = pin_all(s, pe, k, &failed);
	if (ret) {
		ret = refused(s, failed < k ? who[failed] : NULL, -ret);
		goto out;
	}
	for (i = 0; i < k; i++)
		if (who[i])
			who[i]->pinned = true;
	s->kmod_queued = 0;
out:
	free(pe);
	free(who);
	return ret;
}

/* The guardian cprx.ko keeps the session for if this process dies armed. */
int cprx_kmod_set_guardian(struct cprx_session *s, int sockfd)
{
	struct cprx_session_set_guardian arg = {
		.size = sizeof(arg), .fd = sockfd,
	};

	if (!ioctl(s->kmod_sfd, CPRX_SESSION_SET_GUARDIAN, &arg))
		return 0;
	if (errno == ENOTTY)
		return cprx_fail(s, EOPNOTSUPP, "load a cprx.ko of cprx 0.4 or "
				 "later, or use CPRX_BACKEND=cloexec",
				 "cprx.ko has no guardian (SET_GUARDIAN)");
	return cprx_fail(s, errno, "name the guardian before cprx_exec, "
			 "over a socket connected to it", "cprx.ko refused the "
			 "guardian of session '%s': %s", s->name,
			 strerror(errno));
}

static int kmod_flush(struct cprx_session *s)
{
	return flush(s, s->nr_ents, false);
}

/* @e is s->ents[s->nr_ents], counted only once this returns 0. */
static int kmod_preserve(struct cprx_session *s, struct cprx_entry *e)
{
	unsigned int i;
	int ret;

	e->handle = token_of(e->token);
	for (i = 0; i < s->nr_ents; i++)
		if (s->ents[i].handle == e->handle)
			return refused(s, e, EEXIST);
	if (s->kmod_max_pins && s->nr_ents >= s->kmod_max_pins)
		return refused(s, e, ENOSPC);
	e->pinned = false;
	s->kmod_queued++;
	if (s->kmod_queued < KMOD_BATCH)
		return 0;
	ret = flush(s, s->nr_ents + 1, false);
	if (ret && !e->pinned)
		s->kmod_queued--;
	return ret;
}

static void kmod_unpreserve(struct cprx_session *s, struct cprx_entry *e)
{
	if (e->pinned)
		unpin(s, e->handle);
	else
		s->kmod_queued--;
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

static void kmod_field(const struct cprx_session *s, char *field, size_t len)
{
	snprintf(field, len, "kmod=%d", s->kmod_sfd);
}

static int kmod_arm(struct cprx_session *s, char *field, size_t len)
{
	int ret;

	/* one batch: what is still queued, the state and the binary */
	ret = flush(s, s->nr_ents, !s->kmod_internal);
	if (ret)
		return ret;
	s->kmod_internal = true;
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
	kmod_field(s, field, len);
	return 0;
}

/* An ioctl and an fcntl: safe in a signal handler.  Nothing is queued in
 * a new image, and the state and binary are pinned since the exec. */
static void kmod_arm_now(struct cprx_session *s)
{
	if (!arm_ioctl(s, 0))
		fcntl(s->kmod_sfd, F_SETFD, 0);
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
	.flush = kmod_flush,
	.arm = kmod_arm,
	.disarm = kmod_disarm,
	.field = kmod_field,
	.arm_now = kmod_arm_now,
	.incoming = kmod_incoming,
	.retrieve = kmod_retrieve,
	.commit = kmod_commit,
};
