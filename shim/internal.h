/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcprx internals shared between its source files. */
#ifndef CPRX_INTERNAL_H
#define CPRX_INTERNAL_H

#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <sys/types.h>
#include "cprx.h"
#include "state.h"
#include "handover.h"

#define CPRX_EXPORT __attribute__((visibility("default")))

/* A preserved fd, in either image. */
struct cprx_entry {
	char token[CPRX_NAME_MAX + 1];
	enum cprx_fd_kind kind;
	enum cprx_page_kind page_kind;
	int fd;
	int saved_fdflags;	/* restored when an exec fails */
	uint64_t size;
	void *addr;		/* old image: caller's mapping, for preflight */
	uint64_t ino;		/* the file's inode, to spot a replaced fd */
	uint64_t dev;		/* and its device; 0: unknown (older state) */
	uint64_t handle;	/* backend's key: cloexec the inode, kmod a token */
	int held;		/* new image: a dup of an anon inode's fd, or -1 */
	bool reclaimed;
	bool pinned;		/* kmod, luo: in the session, not queued */
};

struct cprx_blob {
	char token[CPRX_NAME_MAX + 1];
	void *data;
	size_t len;
};

/* Deferred teardown: a clone(CLONE_VM) process that holds the old mm. */
enum { CPRX_KEEPER_SIGMASK, CPRX_KEEPER_CLOSE_RANGE, CPRX_KEEPER_SCHED,
       CPRX_KEEPER_STEPS };

struct cprx_keeper {
	pid_t pid;		/* 0: no keeper, the exec tears down inline */
	pid_t owner;		/* the process it was started by, its parent */
	int pidfd;		/* ours: waits with a deadline, reaps it alone */
	int wfd;		/* closing it (or exec closing it) ends the keeper */
	void *map;		/* its stack, its arguments at the top */
	size_t map_size;
	bool idle;		/* it runs at SCHED_IDLE */
	bool ahead;		/* started by preflight, not by this exec */
	pid_t tid;		/* ahead: the thread that started it, */
	int filters;		/* and its seccomp filters then (-1: unknown) */
	int refused[CPRX_KEEPER_STEPS];	/* errno of each step it was refused */
	int signo;		/* what killed it before it was ready */
	int err;		/* why it did not start */
};

struct cprx_backend_ops;

struct cprx_session {
	char name[CPRX_NAME_MAX + 1];
	struct cprx_options opts;
	char *state_path;
	const struct cprx_backend_ops *backend;

	struct cprx_entry *ents;
	unsigned int nr_ents, cap_ents;
	struct cprx_blob *blobs;
	unsigned int nr_blobs, cap_blobs;
	uint64_t ts[CPRX_PH_MAX];
	unsigned int generation;

	/* old image: the saved state */
	int state_fd;		/* memfd (or file) holding the state */
	bool state_fresh;	/* state_fd is an empty memfd, made at open */
	pid_t state_pid;	/* the process that made it (a fork shares it) */
	struct cprx_state origin;	/* this binary and argv, read at open */
	struct io_uring *ring;	/* the save's, set up at open */
	int exe_fd;		/* this binary, for the new image's rollback */
	int kmod_sfd;		/* kmod: the session's fd */
	bool kmod_internal;	/* kmod: state and binary are pinned */
	bool kmod_single;	/* kmod: cprx.ko has no PRESERVE_FDS */
	unsigned int kmod_queued;	/* kmod: entries not pinned yet */
	unsigned int kmod_max_pins;	/* kmod: max_pins at open; 0: unknown */
	int luo_sock;		/* luo: the connection to cprx-luod */
	bool luo_stale;		/* luo: a sent fd was unpreserved since */
	int luo_unreached;	/* luo: the errno for a daemon that took no
				 * request (not reached, not root's, silent) */
	bool saved;		/* state_fd holds the current state */
	struct cprx_keeper keeper;	/* started by preflight, for cprx_exec */
	int argv_err;		/* origin.argv cannot be carried: -errno */
	int exe_err;		/* exe_fd could not be opened: -errno */
	/* the state file, a durable copy of state_fd; new image: from handover */
	char *mirror_path;
	uint64_t mirror_dev, mirror_ino;	/* old image: the file it wrote */
	/* the guardian (guardian.c): its socket, the caller's; -1: none */
	int guardian_fd;
	pid_t guardian_pid;	/* its peer */
	bool guardian_armed;	/* old image: it holds this update's files */
	bool guardian_cloexec;	/* old image: the socket's flag to put back */
	pid_t guardian_restart;	/* new image: restarted for this dead pid */

	/* new image */
	bool incoming;
	bool rollback;
	bool committed;
	bool verified;		/* handover and ORIGIN are this process's */
	bool accepted;		/* cprx_incoming returned 1 */
	char *why;		/* rollback image: why the new image gave up */
	struct cprx_state in;

	char msg[CPRX_MSG_MAX];
	char hint[CPRX_MSG_MAX];
};

/* How preserved files cross the exec. */
struct cprx_backend_ops {
	const char *name;
	enum cprx_backend id;
	/* old image: set up / tear down the backend's side of a session */
	int (*open)(struct cprx_session *s);
	void (*close)(struct cprx_session *s);
	/* old image: a new entry (may refuse it), or one dropped */
	int (*preserve)(struct cprx_session *s, struct cprx_entry *e);
	void (*unpreserve)(struct cprx_session *s, struct cprx_entry *e);
	/* old image: act on what preserve deferred (NULL: nothing deferred) */
	int (*flush)(struct cprx_session *s);
	/*
	 * Last step before execve: make every entry, the state and the
	 * previous binary survive it; write the handover field ("fd=N").
	 */
	int (*arm)(struct cprx_session *s, char *field, size_t len);
	/* execve failed: put everything back as it was */
	void (*disarm)(struct cprx_session *s);
	/* the handover field arm writes ("fd=N"), without arming */
	void (*field)(const struct cprx_session *s, char *field, size_t len);
	/*
	 * New image, rolling back by itself (rollback.c): arm from an exit or
	 * a signal handler, in any thread, with system calls only.  What is
	 * no longer the preserved file is left close-on-exec: the rollback
	 * image finds it missing rather than another file at its number.
	 */
	void (*arm_now)(struct cprx_session *s);
	/* new image: find the state (s->state_fd) and the previous binary */
	int (*incoming)(struct cprx_session *s, const struct cprx_handover *h);
	/* new image: the fd of a record, checked to be the preserved file */
	int (*retrieve)(struct cprx_session *s, const struct cprx_rec_fd *r,
			int *fd);
	/* new image: the update is final, drop what is left */
	void (*commit)(struct cprx_session *s);
};

extern const struct cprx_backend_ops cprx_backend_cloexec;
extern const struct cprx_backend_ops cprx_backend_kmod;
extern const struct cprx_backend_ops cprx_backend_luo;
bool cprx_kmod_available(void);
/* backend_luo.c: what exec.c, incoming.c and preflight.c ask of it */
int cprx_luo_check_fd(int fd, char *why, size_t len);
int cprx_luo_hold(struct cprx_session *s);
int cprx_luo_retrieve(struct cprx_session *s, const char *name);
int cprx_backend_select(struct cprx_session *s, enum cprx_backend want);

/* error.c */
int cprx_fail(struct cprx_session *s, int err, const char *hint,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A NULL session or pointer a call needs: -EINVAL, also in cprx_errmsg(NULL). */
int cprx_null_arg(struct cprx_session *s, const char *call, const char *what);
void cprx_describe_lsm(char *buf, size_t len);
int cprx_seccomp_mode(unsigned int *nr_filters);

/* io.c: the state's bytes, through io_uring when the kernel allows it */
struct io_uring;
struct io_uring *cprx_io_ring(void);
void cprx_io_ring_free(struct io_uring *ring);
int cprx_io_ring_fd(const struct io_uring *ring);
int cprx_io_write(struct io_uring *ring, int fd, const void *buf, size_t len,
		  bool sync);
int cprx_io_read(int fd, void *buf, size_t len);

/* keeper.c */
int cprx_keeper_start(struct cprx_keeper *k);
void cprx_keeper_stop(struct cprx_keeper *k);
bool cprx_keeper_take(struct cprx_keeper *warm, struct cprx_keeper *k);
void cprx_keeper_drop(struct cprx_keeper *warm);
void cprx_keepers_adopt(const pid_t *pids, unsigned int n);
unsigned int cprx_keepers_handover(char *buf, size_t len);
void cprx_keepers_hurry(void);
int cprx_keeper_probe(struct cprx_keeper *keep, char *why, size_t len);

/* session.c */
uint64_t cprx_now_ns(void);
struct cprx_session *cprx_session_alloc(const char *name,
					const struct cprx_options *opts);
int cprx_check_options(const struct cprx_options *opts);
struct cprx_entry *cprx_find_entry(struct cprx_session *s, const char *token);
int cprx_check_token(struct cprx_session *s, const char *what,
		     const char *token);
extern unsigned int cprx_process_generation;

/* incoming.c */
int cprx_fd_link(int fd, char *buf, size_t len);
bool cprx_same_file(int fd, uint64_t dev, uint64_t ino, bool *anon);
int cprx_same_open_file(int fd, int held);
void cprx_entries_release(struct cprx_session *s);

/* exec.c */
int cprx_prepare(struct cprx_session *s);
char **cprx_build_envp(const char *value);
char *cprx_mirror_field(const char *path);
size_t cprx_handover_head(struct cprx_session *s, char *buf, size_t len,
			  const char *field, const char *extra,
			  const char *mirror, pid_t keeper, const char *reap);
int cprx_do_exec(struct cprx_session *s, const char *path,
		 char *const argv[], const char *extra, int exe_fd);
int cprx_resolve_path(const char *path, char *out, size_t len);
int cprx_argv_check(struct cprx_session *s, char *why, size_t len);

/* rollback.c: ends the automatic rollback of @s, if armed */
void cprx_rollback_disarm(struct cprx_session *s);

/* guardian.c */
int cprx_guardian_arm(struct cprx_session *s);
void cprx_guardian_disarm(struct cprx_session *s);
void cprx_guardian_commit(struct cprx_session *s);
int cprx_guardian_incoming(struct cprx_session *s,
			   const struct cprx_handover *h);
/* backend_kmod.c: names the guardian to cprx.ko */
int cprx_kmod_set_guardian(struct cprx_session *s, int sockfd);

/* mirror.c: the state file, a durable copy of the sealed state memfd */
int cprx_mirror_write(struct cprx_session *s, const void *buf, size_t len);
void cprx_mirror_remove(struct cprx_session *s);

#endif /* CPRX_INTERNAL_H */
