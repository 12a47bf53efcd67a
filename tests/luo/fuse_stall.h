/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A FUSE file system that stalls whoever closes its file: a server of a few
 * dozen lines on /dev/fuse (no library) with one file, "f", whose FLUSH it
 * leaves unanswered for every pid but one until told otherwise.  A close(2)
 * of such a file waits, uninterruptibly, for the answer: what any local
 * user's FUSE server can do to a process it hands the file to.
 */
#ifndef CPRX_FUSE_STALL_H
#define CPRX_FUSE_STALL_H

#include <sys/types.h>

struct fuse_stall {
	pid_t pid;		/* the server */
	int ctl;		/* to the server: a byte answers what it holds */
	int *held;		/* FLUSHes unanswered now (shared with it) */
	char dir[128];		/* the mount point */
	char file[160];		/* its file, open to every uid */
};

/*
 * Mounts it at @dir (made if missing; root only), the FLUSHes of pid
 * @answer answered.  0, or -errno (no /dev/fuse, no permission).
 */
int fuse_stall_start(struct fuse_stall *f, const char *dir, pid_t answer);
int fuse_stall_held(const struct fuse_stall *f);
/* Waits up to @ms for at least @n FLUSHes held; what is held then. */
int fuse_stall_wait(const struct fuse_stall *f, int n, int ms);
/* Answers what it holds, and every FLUSH from now on. */
void fuse_stall_release(struct fuse_stall *f);
/* Unmounts it and ends the server (whatever still waits on it fails). */
void fuse_stall_stop(struct fuse_stall *f);

#endif
