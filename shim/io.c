// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state is written through io_uring: a ring set up when the session
 * opens (cold, its setup costs more than the save), the write and the fsync
 * linked so they are one submission.  Where io_uring is not allowed (sysctl
 * kernel.io_uring_disabled, a seccomp filter, an old kernel) pwrite does the
 * job and preflight says so.  The new image reads the state with pread: one
 * call, where a new ring would cost ~0.1 ms of the pause.
 *
 * Only the process that set the ring up uses it: a fork shares the ring's
 * memory but not liburing's own head and tail, so one use from a fork's
 * copy of the session leaves ours waiting forever for a completion.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
#include <liburing.h>
#include "internal.h"

struct owned_ring {
	struct io_uring ring;
	pid_t owner;		/* the process that set it up */
};

static struct owned_ring *owned(struct io_uring *ring)
{
	return (struct owned_ring *)((char *)ring -
				     offsetof(struct owned_ring, ring));
}

struct io_uring *cprx_io_ring(void)
{
	struct owned_ring *o = malloc(sizeof(*o));

	if (!o)
		return NULL;
	if (io_uring_queue_init(4, &o->ring, 0) < 0) {
		free(o);
		return NULL;
	}
	o->owner = getpid();
	return &o->ring;
}

/* The ring's own fd, so that nobody preserves it as theirs; -1 if none. */
int cprx_io_ring_fd(const struct io_uring *ring)
{
	return ring ? ring->ring_fd : -1;
}

void cprx_io_ring_free(struct io_uring *ring)
{
	if (!ring)
		return;
	io_uring_queue_exit(ring);	/* in a fork: its own mappings and fd */
	free(owned(ring));
}

/* Submits what is queued and reaps @want completions; first error wins. */
static int ring_wait(struct io_uring *ring, int want, int *first_res)
{
	struct io_uring_cqe *cqe;
	int ret, err = 0, i;

	ret = io_uring_submit_and_wait(ring, want);
	if (ret < 0)
		return ret;
	for (i = 0; i < want; i++) {
		/* a VMM's signal handler must not fail a submitted write */
		do
			ret = io_uring_wait_cqe(ring, &cqe);
		while (ret == -EINTR);
		if (ret < 0)
			return ret;
		if (i == 0)
			*first_res = cqe->res;
		if (cqe->res < 0 && !err)
			err = cqe->res;
		io_uring_cqe_seen(ring, cqe);
	}
	return err;
}

/* pwrite or pread of all @len bytes from offset 0. */
static int plain_io(int fd, void *buf, size_t len, bool write)
{
	char *p = buf;
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write ? pwrite(fd, p + done, len - done, done)
			  : pread(fd, p + done, len - done, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

int cprx_io_write(struct io_uring *ring, int fd, const void *buf, size_t len,
		  bool sync)
{
	const char *p = buf;
	size_t done = 0;
	int ret = 0, res;

	if (ring && owned(ring)->owner != getpid())
		ring = NULL;	/* a fork's copy: not ours to advance */
	if (!ring) {
		ret = plain_io(fd, (void *)buf, len, true);
		if (!ret && sync && fsync(fd) < 0)
			ret = -errno;
		return ret;
	}

	while (done < len) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		int want = 1;

		io_uring_prep_write(sqe, fd, p + done, len - done, done);
		if (sync) {
			/* fsync runs only if the write completed in full */
			sqe->flags |= IOSQE_IO_LINK;
			sqe = io_uring_get_sqe(ring);
			io_uring_prep_fsync(sqe, fd, 0);
			want = 2;
		}
		res = 0;
		ret = ring_wait(ring, want, &res);
		if (res > 0)
			done += res;
		if (ret == -ECANCELED && res > 0)
			continue;	/* short write: write the rest */
		if (ret < 0)
			break;
		if (res <= 0) {
			ret = -EIO;
			break;
		}
	}
	return ret < 0 ? ret : 0;
}

int cprx_io_read(int fd, void *buf, size_t len)
{
	return plain_io(fd, buf, len, false);
}
