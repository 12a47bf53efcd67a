/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcprx - live update ("cpr-exec") of a virtual machine monitor.
 *
 * Old image:  cprx_session_open -> cprx_preserve_ram / cprx_preserve_fd /
 *             cprx_add_blob -> cprx_preflight -> (stop guest) -> cprx_save ->
 *             cprx_exec.  cprx_exec returns only on failure, and then every
 *             fd flag is restored: resume the guest and carry on.
 * New image:  cprx_incoming -> [cprx_rollback_on_failure] ->
 *             cprx_reclaim_fd / cprx_reclaim_ram / cprx_get_blob ->
 *             (resume guest) -> cprx_commit, or cprx_rollback to re-exec
 *             the previous binary.
 * Across a kexec (backend luo, since 0.4): the same calls up to
 *             cprx_save, then cprx_kexec_prepare instead of cprx_exec; after
 *             the reboot a new VMM's cprx_incoming (with
 *             cprx_options.kexec_session) gets RAM and state back.
 *
 * Every call returns 0 or a negative errno.  The session keeps a message that
 * names the problem and a hint that names the fix (cprx_errmsg/cprx_errhint).
 *
 * Arguments: a NULL session or a NULL pointer the call needs is refused with
 * -EINVAL and a message in cprx_errmsg(NULL); it never crashes.  A getter
 * given a NULL session returns the default its comment names.
 * cprx_session_close(NULL) does nothing.
 *
 * Threads: a session is used by one thread at a time (the library takes no
 * lock); different sessions may be used by different threads at once.
 * cprx_errmsg(NULL) and cprx_errhint(NULL) are per thread: they hold the
 * last error of a call, on this thread, that had no session to keep it in.
 * With the cloexec backend no other thread may fork, vfork or spawn while
 * cprx_exec runs (see there).
 *
 * ABI: every symbol is versioned (CPRX_0.2, then CPRX_0.3 for what 0.3
 * added: cprx_rollback_on_failure, CPRX_0.4 for cprx_kexec_prepare and
 * the guardian calls); a release adds a node and never changes what an
 * older node's symbols do.  Structs the
 * caller passes in start with their size: a larger struct from a newer
 * header is accepted while its unknown tail is zero.
 */
#ifndef CPRX_H
#define CPRX_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The release this header belongs to; cprx_version_*() give the library's. */
#define CPRX_VERSION_MAJOR	0
#define CPRX_VERSION_MINOR	4
#define CPRX_VERSION_PATCH	0
/* True when this header is release maj.min or newer. */
#define CPRX_VERSION_AT_LEAST(maj, min)					\
	(CPRX_VERSION_MAJOR > (maj) ||					\
	 (CPRX_VERSION_MAJOR == (maj) && CPRX_VERSION_MINOR >= (min)))

#define CPRX_NAME_MAX	63	/* session names and tokens, without the NUL */
#define CPRX_MSG_MAX	512

/* The one environment variable that tells a new image where its state is. */
#define CPRX_ENV	"CPRX_INCOMING"
/* Forces a backend: "cloexec", "kmod", "luo" or "auto". */
#define CPRX_ENV_BACKEND "CPRX_BACKEND"
/* The guardian's socket, as cprx-guardian(1) starts a VMM: "CPRX_GUARDIAN_FD=N" */
#define CPRX_ENV_GUARDIAN "CPRX_GUARDIAN_FD"

enum cprx_backend {
	CPRX_BACKEND_AUTO = 0,
	CPRX_BACKEND_CLOEXEC,	/* userspace: clear FD_CLOEXEC just before execve */
	CPRX_BACKEND_KMOD,	/* /dev/cprx pins the files across the exec */
	CPRX_BACKEND_LUO,	/* since 0.4: memfds survive a kexec (cprx-luod) */
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

/*
 * size must be at least offsetof(struct cprx_options, backend); fields past
 * size read as zero.  A size larger than this header's struct (a newer
 * header) is accepted only when every byte past the last field this library
 * knows is zero: -EINVAL naming the offset otherwise; a size over 4096 is
 * refused too.  Zero the whole struct (= { .size = sizeof(opts) } or
 * memset) so that padding is zero too.
 */
struct cprx_options {
	uint32_t size;			/* sizeof(struct cprx_options) */
	enum cprx_backend backend;	/* AUTO honours $CPRX_BACKEND */
	enum cprx_state_target target;
	const char *state_path;		/* for CPRX_STATE_FILE */
	bool no_deferred_teardown;	/* tear the old mm down inside execve */
	/*
	 * Since 0.4, backend luo: the name the session was opened with
	 * before the kexec.  cprx_incoming asks cprx-luod for it; NULL: no
	 * kexec is looked for.
	 */
	const char *kexec_session;
};

struct cprx_session;

/* Old image ---------------------------------------------------------------- */

/*
 * -EINVAL: bad name or options; -ENODEV: the kmod backend was asked for and
 * cprx.ko is missing; -ENOMEM; or why the state target cannot be made.
 * *sp is NULL on failure: the message is in cprx_errmsg(NULL).
 */
int cprx_session_open(struct cprx_session **sp, const char *name,
		      const struct cprx_options *opts);
/* Closes every fd the library opened; the caller's fds stay open. */
void cprx_session_close(struct cprx_session *s);

/*
 * Guest RAM: fd must be shareable (memfd, shmem, hugetlbfs or a file);
 * addr is the current MAP_SHARED mapping (preflight checks it), or NULL.
 */
int cprx_preserve_ram(struct cprx_session *s, const char *token, int fd,
		      void *addr, uint64_t size, enum cprx_page_kind kind);
int cprx_preserve_fd(struct cprx_session *s, const char *token, int fd);
/*
 * preserve: -EBADF fd not open, -EEXIST token taken, -EINVAL bad token, an
 * incoming session or one of the session's own fds (its state, binary,
 * cprx.ko session or io_uring), -ENOSPC too many fds.  unpreserve: -ENOENT no such token,
 * -EINVAL an incoming session (its fds are reclaimed, not unpreserved).
 * The kmod backend pins in batches (every 256 fds, at cprx_preflight and at
 * cprx_exec): a refusal only cprx.ko knows of (-ENOSPC at max_user_pins)
 * comes from the preserve that fills a batch, or from those calls.
 */
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

/*
 * The caller owns the checks array: max_checks entries (0 and NULL: only
 * counts).  Preflight stores the first max_checks checks it makes and counts
 * all of them: nr_checks > max_checks means the array was too small (call
 * again with nr_checks entries).  The verdict never depends on max_checks.
 */
struct cprx_preflight_report {
	uint32_t size;			/* sizeof(struct cprx_preflight_report) */
	uint32_t max_checks;		/* entries in checks[] */
	struct cprx_check *checks;	/* caller's array, or NULL */
	uint32_t nr_checks;		/* out: checks made, may exceed max_checks */
	uint32_t nr_failed;		/* out: checks that failed, stored or not */
	uint32_t nr_warned;		/* out: checks that warned, stored or not */
};

/*
 * Checks, before the guest stops, that an update to @path can work:
 * the binary, every RAM region, seccomp, LSMs, the state target, this
 * process's argv (a rollback re-runs it) and a probe run of probe_argv
 * (probe_argv[0] is replaced by @path; NULL skips it).  report may be NULL.
 * Returns 0 when no check failed, else the negative errno of the first
 * failure (-ENOENT no binary, -EACCES not executable, -ENOEXEC wrong format,
 * -ENAMETOOLONG a path longer than PATH_MAX, -EINVAL/-EBADF/-EFAULT a RAM
 * region, -EPERM seccomp/LSM/guard, -E2BIG argv or -EACCES this binary (a
 * rollback could not re-run this VMM), -ETIMEDOUT or -ELIBBAD the probe);
 * -EINVAL when report is malformed.  A name without '/' is looked up in
 * $PATH as execvp does; one in no $PATH directory is -ENOENT.
 *
 * It changes one thing: the deferred teardown's keeper (a child sharing
 * this address space, every signal blocked) is left ready, so that
 * cprx_exec does not start it inside the pause.  cprx_session_close or the
 * next preflight stops it; a keeper that died meanwhile is reaped and
 * replaced by cprx_exec.  The exec of another session ends it too, and
 * the new image reaps it.  A fork's copy of the session never touches it.
 * With the kmod backend it also makes the pins still queued (the "backend"
 * check fails, e.g. -ENOSPC, if cprx.ko refuses one): work the pause no
 * longer does.
 */
int cprx_preflight(struct cprx_session *s, const char *path,
		   char *const probe_argv[],
		   struct cprx_preflight_report *report);

/* Serializes the state (records, blobs, timestamps) through io_uring. */
int cprx_save(struct cprx_session *s);
/*
 * Execs @path with @argv carrying the preserved fds and the state (saving it
 * first if cprx_save was not called).  Flush stdio first: exec drops
 * buffers.  Returns only on failure, with every fd flag restored and the
 * teardown helper gone: resume the guest.  Refusals before the exec name
 * the cause as preflight does (-ENOENT, -ENAMETOOLONG, -EBADF a preserved
 * fd closed or its number reused since preserve, -E2BIG/-EACCES what a
 * rollback needs); the kernel's own refusals of execve come back as is.
 *
 * Threads: with the cloexec backend the preserved fds (guest RAM, devices)
 * are inheritable from the moment cprx_exec arms them until execve, so a
 * fork or posix_spawn by another thread during cprx_exec gives that child
 * the guest's RAM and devices.  Do not spawn while cprx_exec runs.  The kmod
 * backend has no such window: only the session fd crosses the exec.  With
 * either backend a child forked during cprx_exec also keeps the deferred
 * teardown's keeper (and so the old address space) alive until it execs or
 * exits; so does one forked, and not exec'd, between preflight and
 * cprx_exec.
 */
int cprx_exec(struct cprx_session *s, const char *path, char *const argv[]);

/* New image ---------------------------------------------------------------- */

/*
 * Returns 1 and a session when this process was started by a live update,
 * 0 when it was not, or a negative errno when it was but the state is
 * unusable; then *sp is still set so that cprx_rollback can be called.
 *
 * After a kexec (since 0.4): with backend luo (opts or $CPRX_BACKEND) and
 * opts->kexec_session set, and no CPRX_INCOMING, it asks cprx-luod for
 * that session of this uid: 1 and a session (generation + 1; no
 * rollback: the old kernel is gone), 0 when there is none, or -ENODEV
 * when one was prepared but this kernel has no /dev/liveupdate, -ENOENT
 * when the kernel did not bring it: the state is gone, and cprx_errmsg
 * says when it was prepared and why it was lost.  -ECONNREFUSED when
 * cprx-luod cannot be reached, the socket is not root's, or the daemon
 * takes no request (it refuses the connection, or never answers): nothing
 * was taken, and a call once it answers resumes or says which of these
 * it is.
 * Bad options are -EINVAL (and *sp NULL) whether or not there is an update.
 *
 * CPRX_INCOMING is read with secure_getenv and trusted only as far as it is
 * checked: the state must be the sealed memfd an old image of this process
 * made (its ORIGIN pid is getpid()), the kmod session fd must be cprx.ko's,
 * and no fd it names is touched before it holds the recorded dev:ino.  A
 * handover that fails these is refused (-EINVAL, -EBADF, -EPERM) by name,
 * and rollback is refused too: nothing a forged state names is exec'd.
 */
int cprx_incoming(struct cprx_session **sp, const struct cprx_options *opts);
/*
 * The fd preserved under @token, RAM's too (for a VMM that maps it itself).
 * reclaim: -ENOENT the state has no such token, -EINVAL not an incoming
 * session (or committed), a bad token, or a device token given to
 * cprx_reclaim_ram; -EBADF the fd is not the preserved file.
 */
int cprx_reclaim_fd(struct cprx_session *s, const char *token, int *fd);
/*
 * Maps the region MAP_SHARED at a new address.  *fdp gets the RAM fd, owned
 * by the caller from now on (preserve it again for the next update); with
 * fdp NULL the fd is closed and only the mapping remains.  Every fd an
 * incoming session hands out has FD_CLOEXEC set.
 */
int cprx_reclaim_ram(struct cprx_session *s, const char *token, void **addr,
		     uint64_t *size, int *fdp);
/*
 * Points into the session's copy, 8-byte aligned; valid until close.
 * -ENOENT: the state has no such blob; -EINVAL: not an incoming session.
 */
int cprx_get_blob(struct cprx_session *s, const char *token,
		  const void **data, size_t *len);
/*
 * Since 0.4 (CPRX_VERSION_AT_LEAST(0, 4)), backend luo, instead of
 * cprx_exec, with the guest stopped: saves the state if cprx_save was not
 * called, hands every preserved memfd and the sealed state to the
 * session cprx-luod holds for this VMM (named after the session and this
 * process's uid), and asks the daemon to hold it until the kexec.  The
 * VMM may exit then: the daemon's fd keeps the session; guest RAM lives
 * in it, and only a kexec (or cprx-luod stopping, which drops it) ends
 * that.  After the kexec, a new VMM started with the same session name
 * in cprx_options.kexec_session gets it from cprx_incoming.
 * -EINVAL another backend, or an incoming session; -EOPNOTSUPP a file LUO
 * cannot preserve (preflight names it first); -ECONNRESET cprx-luod
 * went away; what cprx_save returns.  On failure nothing is held: resume
 * the guest (cprx_session_close drops the half-made session).
 */
int cprx_kexec_prepare(struct cprx_session *s);
/*
 * Releases the state and the library's own fds: the update is final.
 * -EINVAL: not an incoming session; -EALREADY: committed before.
 */
int cprx_commit(struct cprx_session *s);
/*
 * Re-execs the previous binary with its argv, the same fds and state, marked
 * as a rollback.  Refused (-ELOOP) when this image is itself a rollback,
 * and (-EOPNOTSUPP) after a kexec (backend luo).
 * Returns only on failure.
 */
int cprx_rollback(struct cprx_session *s, const char *why);
/*
 * Since 0.3 (CPRX_VERSION_AT_LEAST(0, 3)).  With @on, from now until
 * cprx_commit (or cprx_session_close, or this call with @on false) a
 * failure of this image rolls back by itself, as cprx_rollback does: an
 * exit() (or a return from main) in any thread, and a SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE or SIGABRT (abort(), a failed assert) in any thread.  The
 * reason the rollback image reads is "new image exited with status N
 * before commit" or "new image got SIGSEGV before commit".  Call it right
 * after cprx_incoming returned 1, and turn it off (@on false, or commit)
 * before the guest runs in this image: from then on the previous binary
 * would resume a device state older than guest RAM.
 *
 * The exec is prepared here (argv, environment, handover): what runs at
 * the failure makes system calls only (the fds' close-on-exec flags or
 * the cprx.ko arm, execveat), so it is safe in a signal handler on any
 * thread, holding any lock.  The environment is the one at this call.
 * The handlers chain to those installed before them, and are put back at
 * the end unless replaced meanwhile; a handler installed later must chain
 * to the one it replaced for a crash to roll back.  Only the process that
 * armed it rolls back: the exit or crash of a fork or vfork child does not.
 * The rollback is slower than an update: the old address space is torn
 * down inside the exec (no keeper can start in a signal handler).
 *
 * Not rolled back: _exit(), _Exit(), quick_exit() and exit_group (no
 * exit handler runs), SIGKILL and signals that are requests (SIGTERM,
 * SIGINT...), a stack overflow on a thread without sigaltstack, and a new
 * binary that never gets this far (the dynamic loader fails, a wrapper
 * script exits): this process is gone before the library runs, and only
 * a supervisor outside it can restart the VMM.
 *
 * 0 when armed (or turned off: always 0); -ELOOP in a rollback image,
 * where nothing is armed (a failure there loses the VM: never a loop);
 * -EINVAL not an incoming session, or committed; -EPERM the handover was
 * refused; -EOPNOTSUPP after a kexec (backend luo: the previous image ran
 * on another kernel); -EBADMSG the state names no previous binary; -EBUSY another
 * session has it armed; -ENOMEM.
 */
int cprx_rollback_on_failure(struct cprx_session *s, bool on);
/* false for NULL */
bool cprx_is_rollback(const struct cprx_session *s);
/* In a rollback image: the reason the failed image gave; else NULL. */
const char *cprx_rollback_reason(const struct cprx_session *s);
/* Updates this process has been through: 0 in a fresh VMM, and for NULL. */
unsigned int cprx_generation(const struct cprx_session *s);

/* The guardian (since 0.4, CPRX_VERSION_AT_LEAST(0, 4)) ----------------- */

/*
 * Names the peer of @sockfd, a connected AF_UNIX SOCK_SEQPACKET socket (the
 * one cprx-guardian(1) names in $CPRX_GUARDIAN_FD, or a supervisor's own),
 * as the guardian of this update.  Should this process die - SIGKILL, an
 * OOM kill, anything - after cprx_exec armed and before the new image's
 * cprx_commit, the guardian gets the guest's RAM, devices and state and
 * restarts the previous binary, with its argv, from them: a rollback
 * image (cprx_is_rollback, cprx_is_guardian_restart) in a new pid.
 * cloexec backend: cprx_exec sends the guardian copies of the preserved
 * fds, the state and this binary just before execve; kmod: cprx.ko keeps
 * the session for the guardian (SET_GUARDIAN, ADOPT_SESSION).  The new
 * image's cprx_commit tells the guardian, which drops what it holds.
 * Outside an update, or with the guardian gone too, nothing outlives this
 * process.
 *
 * The socket stays the caller's (never closed here); it crosses the exec,
 * named in the handover, and the new image's session uses it.  A guardian
 * that is gone or does not read at cprx_exec leaves that update unguarded.
 *
 * A guarded new image must call cprx_commit before it changes guest RAM or
 * devices (before its vCPUs run): until then the guardian may restart the
 * previous binary from them, which must find them as they were saved.
 *
 * Old image, before cprx_exec.  -EBADF/-ENOTSOCK not a socket, -EINVAL not
 * AF_UNIX SOCK_SEQPACKET or its peer is this process, or an incoming
 * session; -ENOTCONN no peer; -EPERM the peer runs under another euid;
 * -EBUSY a guardian is set; -EOPNOTSUPP (kmod) cprx.ko predates it.
 */
int cprx_set_guardian(struct cprx_session *s, int sockfd);
/*
 * The guardian's pid: the one cprx_set_guardian named, or in a new image
 * the one the update came with; 0 when none (and for NULL).
 */
pid_t cprx_guardian_pid(const struct cprx_session *s);
/*
 * True in an image the guardian started after the VMM died mid-update:
 * a rollback image in another pid (false for NULL).
 */
bool cprx_is_guardian_restart(const struct cprx_session *s);

/* Both images ------------------------------------------------------------- */

/* Stamps @phase now; ignores NULL and a phase out of range. */
void cprx_mark(struct cprx_session *s, enum cprx_phase phase);
/*
 * Fills ts[0..n) with ns timestamps indexed by enum cprx_phase, 0 where a
 * phase did not happen (across the exec).  Returns how many it filled,
 * min(n, CPRX_PH_MAX): a newer library's phases past n are left out.
 */
int cprx_timeline(const struct cprx_session *s, uint64_t *ts, unsigned int n);
/* "unknown" for a value out of range. */
const char *cprx_phase_name(enum cprx_phase phase);
/* "cloexec", "kmod" or "luo"; "none" for NULL. */
const char *cprx_backend_name(const struct cprx_session *s);

/*
 * The last error's message and hint ("" when none); valid until the next
 * call on the same session (or, for NULL, on the same thread).  With
 * s == NULL: the last error of a call that had no session (this thread).
 */
const char *cprx_errmsg(const struct cprx_session *s);
const char *cprx_errhint(const struct cprx_session *s);

/* The library's release, which may be newer than this header's. */
unsigned int cprx_version_major(void);
unsigned int cprx_version_minor(void);
/* "0.4.0" */
const char *cprx_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* CPRX_H */
