/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handover: what the old image puts in CPRX_INCOMING for the new one,
 * "v=1,fd=3,rb=0,keeper=812,reap=,save=N,exec=N[,why=..][,mirror=..]"
 * [,guardian=N][,restart=PID].
 * Comma-separated key=value fields; why= and mirror= are escaped (',', '%'
 * and control bytes as %XX).  Private to libcprx and its tools: libcprx
 * parses its own, cprx-qmp another process's (a QEMU rolled back says so,
 * and why, in its environment).  The fuzz target builds handover.c on its
 * own, so it needs nothing but libc.
 */
#ifndef CPRX_HANDOVER_H
#define CPRX_HANDOVER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>
#include "cprx.h"

#define CPRX_MAX_KEEPERS 8

struct cprx_handover {
	int version;
	int fd;			/* cloexec: the state's fd, else -1 */
	int kmod;		/* kmod: the session's fd, else -1 */
	pid_t keepers[CPRX_MAX_KEEPERS];	/* the last one's, then older */
	unsigned int nr_keepers;
	int rollback;
	unsigned long long save_ns, exec_ns;
	char why[CPRX_MSG_MAX];
	char mirror[PATH_MAX];	/* the state file's durable mirror, or "" */
	int guardian;		/* the guardian's socket, else -1 */
	pid_t restart;		/* guardian restart: the owner that died, or 0 */
};

/*
 * Parses @value strictly: every number whole and in range, no key twice,
 * exactly one of fd= and kmod=.  Unknown keys (from a newer library) are
 * skipped.  Returns 0, or -EINVAL with what is wrong in @err.
 */
int cprx_handover_parse(const char *value, struct cprx_handover *h,
			char *err, size_t errlen);
/*
 * The handover process @pid was exec'd with, from /proc/PID/environ (the
 * environment execve gave it: a new image's own unsetenv does not hide
 * it), parsed as above.  Returns 0; -ENOENT when there is none (the
 * process was not started by a live update); -EINVAL with @err when it is
 * malformed; another -errno when /proc/PID/environ cannot be read (EACCES:
 * another user's process, ESRCH: gone).  Nothing in it is proven: it says
 * what the process was told, for reports, never for acting on its fds.
 */
int cprx_handover_of_pid(pid_t pid, struct cprx_handover *h, char *err,
			 size_t errlen);
/* Returns 0, or -ENAMETOOLONG when @in did not fit (@out is cut short). */
int cprx_handover_escape(char *out, size_t len, const char *in);
/* Returns 0, -EINVAL on a bad escape, -ENAMETOOLONG when cut short. */
int cprx_handover_unescape(char *out, size_t len, const char *in);

#endif /* CPRX_HANDOVER_H */
