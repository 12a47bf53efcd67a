// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Rollback: the new image hands the guest back to the previous binary,
 * re-exec'd in the same pid with its argv, the same fds and the same state,
 * marked as a rollback.  cprx_rollback does it when the VMM asks;
 * cprx_rollback_on_failure makes it happen by itself when the new image
 * exits, or dies of a fatal signal, before cprx_commit.
 *
 * A fatal signal may come in any thread, holding any lock: the exec is
 * prepared when armed (argv, envp, the handover up to its exec= and why=),
 * so that the handler writes the reason into memory it owns, makes the
 * backend's fds cross (fcntl or one ioctl), execs, and makes no other call
 * than system calls.  The exit path runs the same code.  One session per
 * process may be armed: the handlers and the exit hook are the process's.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "internal.h"

/* What the new image dies of when it crashes; SIGTERM or SIGINT are asked for. */
static const struct {
	int sig;
	const char *name;
} fatal[] = {
	{ SIGSEGV, "SIGSEGV" }, { SIGBUS, "SIGBUS" }, { SIGILL, "SIGILL" },
	{ SIGFPE, "SIGFPE" }, { SIGABRT, "SIGABRT" },
};
#define NR_FATAL	(sizeof(fatal) / sizeof(fatal[0]))

/* The "why=" the failure writes, and the exec= before it. */
#define WHY_MAX		128

/* armed.state: off, armed, or the tid of the thread rolling back. */
#define AR_OFF		0
#define AR_ARMED	(-1)

static struct {
	_Atomic int state;
	pid_t pid;		/* the image that armed: a fork's child is not */
	struct cprx_session *s;
	char *env;		/* the handover, exec= and why= still to come */
	size_t head, cap;
	char **envp;
	struct sigaction old[NR_FATAL];
} armed;

/*
 * Why @what cannot happen (a rollback for @reason), else 0.  A rollback
 * image never rolls back: that would be a loop.
 */
static int refused(struct cprx_session *s, const char *what,
		   const char *reason)
{
	if (!s->incoming || s->committed)
		return cprx_fail(s, EINVAL, "roll back before cprx_commit, in the "
				 "new image", "nothing to roll back (%s)", reason);
	if (s->backend == &cprx_backend_luo)
		return cprx_fail(s, EOPNOTSUPP, "start the guest afresh, or "
				 "kexec back into the previous kernel and "
				 "prepare again", "refusing %s (%s): the previous "
				 "image ran on a kernel a kexec replaced", what,
				 reason);
	if (!s->verified)
		return cprx_fail(s, EPERM, "nothing is known of the previous "
				 "image: restart the VMM", "cannot roll back "
				 "(%s): the handover was refused", reason);
	if (s->rollback)
		return cprx_fail(s, ELOOP, "the previous binary cannot resume this "
				 "state either; inspect the state and the logs",
				 "refusing %s: this image is already the rollback "
				 "of a failed update (%s)", what, reason);
	if (!s->in.exe_path || !s->in.argv || !s->in.argc)
		return cprx_fail(s, EBADMSG, "the state is unreadable; the guest "
				 "cannot be resumed", "cannot roll back (%s): the "
				 "state does not name the previous binary", reason);
	return 0;
}

CPRX_EXPORT const char *cprx_rollback_reason(const struct cprx_session *s)
{
	return s ? s->why : NULL;
}

CPRX_EXPORT int cprx_rollback(struct cprx_session *s, const char *why)
{
	char reason[CPRX_MSG_MAX], extra[512], esc[400];
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	/* @why may be cprx_errmsg(s), which every refusal below rewrites */
	snprintf(reason, sizeof(reason), "%s", why && *why ? why :
		 "no reason given");
	ret = refused(s, "a second rollback", reason);
	if (ret)
		return ret;
	/* a reason cut short still says why */
	cprx_handover_escape(esc, sizeof(esc), why && *why ? reason : "");
	snprintf(extra, sizeof(extra), "rb=1,why=%s", esc);
	/* Same fds, same state, previous binary; ts tell the story. */
	return cprx_do_exec(s, s->in.exe_path, s->in.argv, extra, s->exe_fd);
}

/* ---- at the failure: system calls only ------------------------------------ */

static char *put(char *p, const char *end, const char *str)
{
	while (*str && p < end)
		*p++ = *str++;
	return p;
}

static char *put_u64(char *p, const char *end, unsigned long long v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n && p < end)
		*p++ = digits[--n];
	return p;
}

/*
 * True when this thread is to roll back.  Another thread already at it
 * will exec (which ends this one) or end the process: wait for that.
 * False when nothing is armed, in a fork's child, or when this thread
 * fails again while rolling back: then the failure takes its course.
 */
static bool claim(void)
{
	int expect = AR_ARMED, tid = (int)syscall(SYS_gettid);

	if (getpid() != armed.pid)
		return false;
	if (atomic_compare_exchange_strong(&armed.state, &expect, tid))
		return true;
	if (expect == AR_OFF || expect == tid)
		return false;
	for (;;)
		pause();
}

/* Execs the previous binary, "why=new image <what><n> before commit". */
static void fire(const char *what, const char *name, long long n)
{
	struct cprx_session *s = armed.s;
	char *p = armed.env + armed.head;
	const char *end = armed.env + armed.cap - 1;

	p = put(p, end, ",exec=");
	p = put_u64(p, end, cprx_now_ns());
	p = put(p, end, ",why=new image ");
	p = put(p, end, what);
	p = name ? put(p, end, name) : put_u64(p, end, (unsigned long long)n);
	p = put(p, end, " before commit");
	*p = '\0';
	s->backend->arm_now(s);
	if (s->exe_fd >= 0)
		syscall(SYS_execveat, s->exe_fd, "", s->in.argv, armed.envp,
			AT_EMPTY_PATH);
	else
		execve(s->in.exe_path, s->in.argv, armed.envp);
}

static void on_fatal(int sig, siginfo_t *info, void *ctx)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	const struct sigaction *old = NULL;
	unsigned int i, n = 0;

	for (i = 0; i < NR_FATAL; i++)
		if (fatal[i].sig == sig)
			old = &armed.old[n = i];
	if (old && claim()) {
		fire("got ", fatal[n].name, 0);
		old = &dfl;	/* the exec failed: die of it */
	}
	if (!old || (!(old->sa_flags & SA_SIGINFO) &&
		     old->sa_handler == SIG_DFL)) {
		/* blocked while we run: delivered, and fatal, when we return */
		sigaction(sig, &dfl, NULL);
		raise(sig);
	} else if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, ctx);
	} else if (old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	}
}

/* Not a signal handler, but it runs the same code: another thread may
 * be in one. */
static void on_exit_status(int status, void *unused)
{
	(void)unused;
	if (!claim())
		return;
	fflush(NULL);	/* the failing image's last words */
	fire("exited with status ", NULL, status & 0xff);
	/* the exec failed: the exit goes on with its status */
}

#ifndef __GLIBC__
static void on_exit_unknown(void)
{
	if (!claim())
		return;
	fflush(NULL);
	fire("exited", "", 0);
}
#endif

/* ---- arming --------------------------------------------------------------- */

static int hook_exit(struct cprx_session *s)
{
	static bool hooked;
	int ret;

	if (hooked)
		return 0;
#ifdef __GLIBC__
	ret = on_exit(on_exit_status, NULL);
#else
	ret = atexit(on_exit_unknown);
#endif
	if (ret)
		return cprx_fail(s, ENOMEM, NULL, "cannot register the exit "
				 "handler of the automatic rollback");
	hooked = true;
	return 0;
}

/* Ours are put back only where nobody replaced them since. */
static void restore_handlers(void)
{
	struct sigaction cur;
	unsigned int i;

	for (i = 0; i < NR_FATAL; i++)
		if (!sigaction(fatal[i].sig, NULL, &cur) &&
		    (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fatal)
			sigaction(fatal[i].sig, &armed.old[i], NULL);
}

static int install_handlers(struct cprx_session *s)
{
	struct sigaction sa = { .sa_sigaction = on_fatal,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };
	unsigned int i;

	/* nothing interrupts the exec; a second fault there is fatal */
	sigfillset(&sa.sa_mask);
	for (i = 0; i < NR_FATAL; i++) {
		if (sigaction(fatal[i].sig, &sa, &armed.old[i]) < 0) {
			int ret = cprx_fail(s, errno, NULL, "cannot handle %s "
					    "for the automatic rollback: %s",
					    fatal[i].name, strerror(errno));

			while (i--)
				sigaction(fatal[i].sig, &armed.old[i], NULL);
			return ret;
		}
	}
	return 0;
}

/* The exec, whole but for exec= and why=: nothing is allocated later. */
static int prepare(struct cprx_session *s)
{
	char field[64], reap[128], *mirror = NULL;

	s->backend->field(s, field, sizeof(field));
	cprx_keepers_handover(reap, sizeof(reap));
	if (s->mirror_path && !(mirror = cprx_mirror_field(s->mirror_path)))
		return -ENOMEM;
	armed.cap = sizeof(CPRX_ENV) + strlen(field) + sizeof(reap) +
		    (mirror ? strlen(mirror) : 0) + 128 + WHY_MAX;
	armed.env = malloc(armed.cap);
	if (armed.env)
		armed.envp = cprx_build_envp(armed.env);
	if (armed.envp)
		/* no keeper: nothing may be started at the failure */
		armed.head = cprx_handover_head(s, armed.env, armed.cap, field,
						"rb=1", mirror, 0, reap);
	free(mirror);
	return armed.envp ? 0 : -ENOMEM;
}

static void release(void)
{
	free(armed.envp);
	free(armed.env);
	armed.envp = NULL;
	armed.env = NULL;
	armed.s = NULL;
}

void cprx_rollback_disarm(struct cprx_session *s)
{
	int expect = AR_ARMED;

	if (!s || armed.s != s)
		return;
	/* a thread rolling back execs, or ends the process, soon */
	if (!atomic_compare_exchange_strong(&armed.state, &expect, AR_OFF) &&
	    expect != AR_OFF && expect != (int)syscall(SYS_gettid))
		for (;;)
			pause();
	restore_handlers();
	release();
}

static int arm(struct cprx_session *s)
{
	int ret;

	if (armed.s == s)
		return 0;
	if (armed.s)
		return cprx_fail(s, EBUSY, "arm the automatic rollback of one "
				 "session per process", "session '%s' has it "
				 "armed already", armed.s->name);
	ret = hook_exit(s);
	if (ret)
		return ret;
	ret = prepare(s);
	if (ret) {
		release();
		return cprx_fail(s, -ret, NULL, "out of memory");
	}
	armed.s = s;
	armed.pid = getpid();
	ret = install_handlers(s);
	if (ret) {
		release();
		return ret;
	}
	atomic_store(&armed.state, AR_ARMED);
	return 0;
}

CPRX_EXPORT int cprx_rollback_on_failure(struct cprx_session *s, bool on)
{
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (!on) {
		cprx_rollback_disarm(s);
		return 0;
	}
	ret = refused(s, "an automatic rollback", "on failure before commit");
	return ret ? ret : arm(s);
}
