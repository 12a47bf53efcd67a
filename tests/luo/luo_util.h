/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the luo tests share: a cprx-luod of their own (--fake-kexec on the
 * host, where there is no /dev/liveupdate) in a temporary directory, and
 * one-verb clients of its protocol.
 */
#ifndef CPRX_LUO_UTIL_H
#define CPRX_LUO_UTIL_H

#include <stdbool.h>
#include <sys/types.h>

struct luod_run {
	pid_t pid;
	char dir[64];		/* the test's directory: socket, state, logs */
	char sock[96];
	char state[96];
};

/*
 * Starts $CPRX_LUOD with --socket and --state-dir in @r->dir (made when
 * empty) and @extra (NULL-terminated), and points $CPRX_LUOD_SOCKET at
 * it.  0, or -1 when it did not come up.
 */
int luod_start(struct luod_run *r, const char *const extra[]);
void luod_stop(struct luod_run *r);
void luod_cleanup(struct luod_run *r);
/* A connection to it, or -1. */
int luod_connect(const struct luod_run *r);
/*
 * One request on @fd (with @pass, or -1), the reply into @out; *@got the
 * fd the reply carried (may be NULL).  The reply's length, or -errno.
 */
int luod_ask(int fd, const char *req, int pass, char *out, size_t len,
	     int *got);
/*
 * A connection on which session "vm" is created and @mfd preserved as
 * its state (token ffffffffffffffff): the opening of every test that
 * holds.  The connection, or -1 with the step that failed on stderr.
 */
int luod_open_vm(const struct luod_run *r, int mfd);
/* The same on a connection of its own. */
int luod_ask1(const struct luod_run *r, const char *req, char *out, size_t len);
/*
 * Seconds @req on a new connection takes to be answered (waiting @secs at
 * most), or -1: unanswered.  The reply into @out.
 */
double luod_secs(const struct luod_run *r, const char *req, int secs,
		 char *out, size_t len);
/* Whether @needle is in @hay; when not, both are logged. */
bool has(const char *hay, const char *needle);
/* How many fds process @pid has open, or -1. */
int proc_fds(pid_t pid);
/* How many processes have @pid for their parent. */
int proc_children(pid_t pid);
/* A shmem memfd of @size bytes filled with @byte. */
int luo_memfd(const char *name, size_t size, int byte);
/*
 * Runs @fn in a child with uid and gid @uid; its exit status (0 = pass),
 * or -1.  The child's stdio is the test's.
 */
int as_uid(uid_t uid, int (*fn)(void *), void *arg);

#endif
