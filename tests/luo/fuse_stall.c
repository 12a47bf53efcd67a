// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The stalling FUSE file system (fuse_stall.h): INIT, LOOKUP and GETATTR
 * of one file, OPEN, RELEASE and STATFS answered; FLUSH answered for one
 * pid only, until released; the rest ENOSYS.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/fuse.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include "fuse_stall.h"

#define FILE_INO	2
#define HELD_MAX	4096

struct server {
	int dev;
	pid_t answer;
	int *held;
	int released;
	uint64_t unique[HELD_MAX];
};

static void answer(int dev, uint64_t unique, int err, const void *body,
		   size_t len)
{
	struct fuse_out_header h = { .len = sizeof(h) + len, .error = -err,
				     .unique = unique };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)body, len } };

	if (writev(dev, iov, len ? 2 : 1) < 0 && errno != ENOENT)
		perror("# fuse_stall: writev");
}

static void fill_attr(uint64_t ino, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->nlink = 1;
	a->blksize = 4096;
	a->mode = ino == FILE_INO ? S_IFREG | 0666 : S_IFDIR | 0755;
	a->size = ino == FILE_INO ? 4096 : 0;
}

static void on_flush(struct server *s, const struct fuse_in_header *in)
{
	if (s->released || in->pid == (uint32_t)s->answer ||
	    *s->held >= HELD_MAX)
		return answer(s->dev, in->unique, 0, NULL, 0);
	s->unique[(*s->held)++] = in->unique;
}

static void on_request(struct server *s, const char *buf)
{
	const struct fuse_in_header *in = (const void *)buf;
	const char *arg = buf + sizeof(*in);
	struct fuse_init_out init = { .major = FUSE_KERNEL_VERSION,
				      .minor = FUSE_KERNEL_MINOR_VERSION,
				      .max_write = 4096 };
	struct fuse_entry_out entry = { .nodeid = FILE_INO, .generation = 1,
					.entry_valid = 3600, .attr_valid = 3600 };
	struct fuse_attr_out attr = { .attr_valid = 3600 };
	struct fuse_open_out open_out = { .fh = 1 };
	struct fuse_statfs_out st = { .st = { .bsize = 4096, .namelen = 255 } };

	switch (in->opcode) {
	case FUSE_INIT:
		return answer(s->dev, in->unique, 0, &init, sizeof(init));
	case FUSE_LOOKUP:
		if (in->nodeid != FUSE_ROOT_ID || strcmp(arg, "f"))
			return answer(s->dev, in->unique, ENOENT, NULL, 0);
		fill_attr(FILE_INO, &entry.attr);
		return answer(s->dev, in->unique, 0, &entry, sizeof(entry));
	case FUSE_GETATTR:
		fill_attr(in->nodeid, &attr.attr);
		return answer(s->dev, in->unique, 0, &attr, sizeof(attr));
	case FUSE_OPEN:
		return answer(s->dev, in->unique, 0, &open_out, sizeof(open_out));
	case FUSE_STATFS:
		return answer(s->dev, in->unique, 0, &st, sizeof(st));
	case FUSE_RELEASE:
		return answer(s->dev, in->unique, 0, NULL, 0);
	case FUSE_FLUSH:
		return on_flush(s, in);
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:	/* a FLUSH is not interruptible anyway */
		return;
	default:
		return answer(s->dev, in->unique, ENOSYS, NULL, 0);
	}
}

static void release_held(struct server *s)
{
	int i;

	s->released = 1;
	for (i = 0; i < *s->held; i++)
		answer(s->dev, s->unique[i], 0, NULL, 0);
	*s->held = 0;
}

static void __attribute__((noreturn)) serve(struct server *s, int ctl)
{
	static char buf[FUSE_MIN_READ_BUFFER + 65536];
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		struct pollfd p[2] = { { .fd = s->dev, .events = POLLIN },
				       { .fd = ctl, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p[1].revents) {
			if (read(ctl, &c, 1) != 1)
				_exit(0);	/* the test is done */
			release_held(s);
		}
		if (!(p[0].revents & POLLIN)) {
			if (p[0].revents)
				_exit(0);	/* unmounted */
			continue;
		}
		n = read(s->dev, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == ENOENT))
			continue;
		if (n < (ssize_t)sizeof(struct fuse_in_header))
			_exit(n < 0 && errno == ENODEV ? 0 : 1);
		on_request(s, buf);
	}
}

int fuse_stall_start(struct fuse_stall *f, const char *dir, pid_t answer)
{
	static struct server s;
	char opts[128];
	int p[2], err;

	memset(f, 0, sizeof(*f));
	f->ctl = -1;
	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	snprintf(f->file, sizeof(f->file), "%s/f", dir);
	mkdir(dir, 0755);
	f->held = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (f->held == MAP_FAILED)
		return -errno;
	s.dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (s.dev < 0)
		return -errno;
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,"
		 "group_id=0,allow_other", s.dev);
	if (mount("cprx-stall", dir, "fuse.cprx-stall", MS_NOSUID | MS_NODEV,
		  opts) < 0 || pipe2(p, O_CLOEXEC) < 0) {
		err = errno;
		close(s.dev);
		umount2(dir, MNT_DETACH);
		return -err;
	}
	s.answer = answer;
	s.held = f->held;
	f->pid = fork();
	if (!f->pid) {
		close(p[1]);
		serve(&s, p[0]);
	}
	err = errno;
	close(p[0]);
	close(s.dev);
	f->ctl = p[1];
	if (f->pid < 0) {
		fuse_stall_stop(f);
		return -err;
	}
	return 0;
}

int fuse_stall_held(const struct fuse_stall *f)
{
	return __atomic_load_n(f->held, __ATOMIC_SEQ_CST);
}

int fuse_stall_wait(const struct fuse_stall *f, int n, int ms)
{
	for (; fuse_stall_held(f) < n && ms > 0; ms -= 10)
		usleep(10000);
	return fuse_stall_held(f);
}

void fuse_stall_release(struct fuse_stall *f)
{
	char c = 1;

	if (f->ctl >= 0 && write(f->ctl, &c, 1) != 1)
		perror("# fuse_stall: release");
}

void fuse_stall_stop(struct fuse_stall *f)
{
	fuse_stall_release(f);
	umount2(f->dir, MNT_DETACH);
	if (f->ctl >= 0)
		close(f->ctl);
	f->ctl = -1;
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
	}
	f->pid = 0;
	if (f->held && f->held != MAP_FAILED)
		munmap(f->held, sizeof(int));
	f->held = NULL;
	rmdir(f->dir);
}
