/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcprx - live update ("cpr-exec") of a virtual machine monitor.
 *
 * Old image:  cprx_session_open -> cprx_preserve_ram / cprx_preserve_fd /
 *             cprx_add_blob -> cprx_preflight -> (stop guest) -> cprx_save ->
 *             cprx_exec.  cprx_exec returns only on failure, and then every
 *             fd flag is restored: resume the guest and carry on.
 * New image:  cprx_incoming -> cprx_reclaim_fd / cprx_reclaim_ram /
 *             cprx_get_blob -> (resume guest) -> cprx_commit, or
 *             cprx_rollback to re-exec the previous binary.
 *
 * Every call returns 0 or a negative errno.  The session keeps a message that
 * names the problem and a hint that names the fix (cprx_errmsg/cprx_errhint).
 */
#ifndef CPRX_H
#define CPRX_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CPRX_NAME_MAX	63	/* session names and tokens, without the NUL */
#define CPRX_MSG_MAX	512

/* The one environment variable that tells a new image where its state is. */
#define CPRX_ENV	"CPRX_INCOMING"
/* Forces a backend: "cloexec", "kmod" or "auto". */
#define CPRX_ENV_BACKEND "CPRX_BACKEND"

enum cprx_backend {
	CPRX_BACKEND_AUTO = 0,
	CPRX_BACKEND_CLOEXEC,	/* userspace: clear FD_CLOEXEC just before execve */
	CPRX_BACKEND_KMOD,	/* /dev/cprx pins the files across the exec */
};

enum cprx_page_kind {
	CPRX_PAGE_4K = 0,
	CPRX_PAGE_THP,
	CPRX_PAGE_HUGETLB,
};

/* What a preserved fd is, so the new image can check it got the right thing. */
enum cprx_fd_kind {
	CPRX_FD_RAM = 0,	/* guest RAM, re-mmapped by cprx_reclaim_ram */
	CPRX_FD_DEVICE,		/* any other fd: eventfd, pipe, socket, tty... */
	CPRX_FD_INTERNAL,	/* the library's own (state, previous binary) */
};

enum cprx_state_target {
	CPRX_STATE_MEMFD = 0,	/* state in a sealed memfd; nothing on disk */
	CPRX_STATE_FILE,	/* state in a file: write and fsync linked */
};

/* Phases of an update; timestamps are CLOCK_MONOTONIC ns, valid across exec. */
enum cprx_phase {
	CPRX_PH_PREFLIGHT_START = 0,
	CPRX_PH_PREFLIGHT_END,
	CPRX_PH_STOP,		/* caller: guest stop requested */
	CPRX_PH_STOPPED,	/* caller: every vCPU stopped */
	CPRX_PH_SAVE_START,
	CPRX_PH_SAVE_END,
	CPRX_PH_EXEC,		/* just before execve */
	CPRX_PH_INCOMING,	/* new image found its state */
	CPRX_PH_RECLAIM_END,	/* caller: every fd reclaimed */
	CPRX_PH_REMAP_END,	/* caller: every RAM region mapped */
	CPRX_PH_VERIFY_END,	/* caller: optional checks done */
	CPRX_PH_RESUMED,	/* caller: guest running again */
	CPRX_PH_COMMIT,
	CPRX_PH_MAX
};

struct cprx_options {
	uint32_t size;			/* sizeof(struct cprx_options) */
	enum cprx_backend backend;	/* AUTO honours $CPRX_BACKEND */
	enum cprx_state_target target;
	const char *state_path;		/* for CPRX_STATE_FILE */
	bool no_deferred_teardown;	/* tear the old mm down inside execve */
};

struct cprx_session;

/* Old image ---------------------------------------------------------------- */

int cprx_session_open(struct cprx_session **sp, const char *name,
		      const struct cprx_options *opts);
void cprx_session_close(struct cprx_session *s);

/*
 * Guest RAM: fd must be shareable (memfd, shmem, hugetlbfs or a file);
 * addr is the current MAP_SHARED mapping (preflight checks it), or NULL.
 */
int cprx_preserve_ram(struct cprx_session *s, const char *token, int fd,
		      void *addr, uint64_t size, enum cprx_page_kind kind);
int cprx_preserve_fd(struct cprx_session *s, const char *token, int fd);
int cprx_unpreserve(struct cprx_session *s, const char *token);
/* Opaque caller data carried in the state; copied. */
int cprx_add_blob(struct cprx_session *s, const char *token,
		  const void *data, size_t len);

enum cprx_verdict { CPRX_PASS = 0, CPRX_WARN, CPRX_FAIL };

struct cprx_check {
	char name[CPRX_NAME_MAX + 9];	/* "ram:" and a token */
	enum cprx_verdict verdict;
	char reason[CPRX_MSG_MAX];
};

#define CPRX_MAX_CHECKS 32
struct cprx_preflight_report {
	uint32_t size;			/* sizeof(struct cprx_preflight_report) */
	unsigned int nr_checks;
	struct cprx_check checks[CPRX_MAX_CHECKS];
};

/*
 * Checks, without changing anything, that an update to @path can work:
 * the binary, every RAM region, seccomp, LSMs, the state target and a probe
 * run of probe_argv (probe_argv[0] is replaced by @path; NULL skips it).
 * Returns 0 when no check failed, -EPERM/-ENOENT/... of the first failure.
 */
int cprx_preflight(struct cprx_session *s, const char *path,
		   char *const probe_argv[],
		   struct cprx_preflight_report *report);

/* Serializes the state (records, blobs, timestamps) through io_uring. */
int cprx_save(struct cprx_session *s);
/*
 * Execs @path with @argv carrying the preserved fds and the state (saving it
 * first if cprx_save was not called).  Flush stdio first: exec drops buffers.  Returns only on failure, with every
 * fd flag restored and the teardown helper gone: resume the guest.
 */
/*
 * Threads: with the cloexec backend the preserved fds (guest RAM, devices)
 * are inheritable from the moment cprx_exec arms them until execve, so a
 * fork or posix_spawn by another thread during cprx_exec gives that child
 * the guest's RAM and devices.  Do not spawn while cprx_exec runs.  The kmod
 * backend has no such window: only the session fd crosses the exec.
 */
int cprx_exec(struct cprx_session *s, const char *path, char *const argv[]);

/* New image ---------------------------------------------------------------- */

/*
 * Returns 1 and a session when this process was started by a live update,
 * 0 when it was not, or a negative errno when it was but the state is
 * unusable; then *sp is still set so that cprx_rollback can be called.
 */
int cprx_incoming(struct cprx_session **sp, const struct cprx_options *opts);
int cprx_reclaim_fd(struct cprx_session *s, const char *token, int *fd);
/*
 * Maps the region MAP_SHARED at a new address.  *fdp gets the RAM fd, owned
 * by the caller from now on (preserve it again for the next update); with
 * fdp NULL the fd is closed and only the mapping remains.  Every fd an
 * incoming session hands out has FD_CLOEXEC set.
 */
int cprx_reclaim_ram(struct cprx_session *s, const char *token, void **addr,
		     uint64_t *size, int *fdp);
/* Points into the session's copy, 8-byte aligned; valid until close. */
int cprx_get_blob(struct cprx_session *s, const char *token,
		  const void **data, size_t *len);
/* Releases the state and the library's own fds: the update is final. */
int cprx_commit(struct cprx_session *s);
/*
 * Re-execs the previous binary with its argv, the same fds and state, marked
 * as a rollback.  Refused (-ELOOP) when this image is itself a rollback.
 * Returns only on failure.
 */
int cprx_rollback(struct cprx_session *s, const char *why);
bool cprx_is_rollback(const struct cprx_session *s);
/* In a rollback image: the reason the failed image gave, or NULL. */
const char *cprx_rollback_reason(const struct cprx_session *s);
/* Updates this process has been through (0 in a freshly started VMM). */
unsigned int cprx_generation(const struct cprx_session *s);

/* Both images ------------------------------------------------------------- */

void cprx_mark(struct cprx_session *s, enum cprx_phase phase);
/* ns timestamps, 0 where a phase did not happen; across the exec. */
int cprx_timeline(const struct cprx_session *s, uint64_t ts[CPRX_PH_MAX]);
const char *cprx_phase_name(enum cprx_phase phase);
const char *cprx_backend_name(const struct cprx_session *s);

/* With s == NULL: the last error of a call that had no session (this thread). */
const char *cprx_errmsg(const struct cprx_session *s);
const char *cprx_errhint(const struct cprx_session *s);

#ifdef __cplusplus
}
#endif
#endif /* CPRX_H */
