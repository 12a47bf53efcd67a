// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Deferred teardown.  execve() drops the old address space; if the old mm has
 * no other user the kernel unmaps all of guest RAM inside execve (about
 * 33 ms/GiB with 4 KiB pages).  The keeper is a process created with
 * clone(CLONE_VM) - sharing the mm, not a thread of ours - that holds the mm
 * across the exec.  It waits on a pipe whose write end only we hold, with
 * O_CLOEXEC: the exec (or our explicit close when execve fails, or our death)
 * gives it EOF, and it exits, tearing the old mm down off the critical path.
 *
 * The keeper runs on our address space with our TLS, so it uses raw system
 * calls only and touches no libc state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "internal.h"

#define KEEPER_STACK	(64 * 1024)

struct keeper_arg {
	int rfd;
	int *ready;
};

static int keeper_main(void *p)
{
	struct keeper_arg *arg = p;
	int rfd = arg->rfd;
	struct sched_param param = { 0 };
	uint64_t all = ~0ULL;
	char c;

	/* No handler of ours may run on this stack. */
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, sizeof(all));
	/* Drop our copy of every fd but the read end: no pins, and EOF works. */
	if (rfd > 0)
		syscall(SYS_close_range, 0, rfd - 1, 0);
	syscall(SYS_close_range, rfd + 1, ~0U, 0);

	/*
	 * During the pause the teardown may run only on an idle CPU: the new
	 * image must never wait for it, not even for a scheduler tick.  The
	 * new image's commit raises it back (cprx_keepers_hurry).
	 */
	syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, &param);

	__atomic_store_n(arg->ready, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, arg->ready, FUTEX_WAKE, 1, NULL, NULL, 0);

	while (syscall(SYS_read, rfd, &c, 1) < 0)
		;	/* EINTR cannot happen with every signal blocked */
	syscall(SYS_exit, 0);
	return 0;
}

int cprx_keeper_start(struct cprx_keeper *k)
{
	struct keeper_arg arg;
	int pfd[2], ret;
	pid_t pid;

	k->pid = 0;
	k->wfd = -1;
	k->ready = 0;
	k->stack_size = KEEPER_STACK;
	k->stack = mmap(NULL, k->stack_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (k->stack == MAP_FAILED)
		return -errno;
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto err_stack;
	}
	arg.rfd = pfd[0];
	arg.ready = &k->ready;
	pid = clone(keeper_main, (char *)k->stack + k->stack_size,
		    CLONE_VM | SIGCHLD, &arg);
	if (pid < 0) {
		ret = -errno;
		close(pfd[0]);
		close(pfd[1]);
		goto err_stack;
	}
	close(pfd[0]);
	k->pid = pid;
	k->wfd = pfd[1];
	/* Until the keeper dropped its own write end, exec would not wake it. */
	while (!__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE))
		syscall(SYS_futex, &k->ready, FUTEX_WAIT, 0, NULL, NULL, 0);
	return 0;

err_stack:
	munmap(k->stack, k->stack_size);
	k->stack = NULL;
	return ret;
}

/* The exec failed: the keeper must go at once. */
void cprx_keeper_stop(struct cprx_keeper *k)
{
	if (!k->pid)
		return;
	close(k->wfd);
	k->wfd = -1;
	while (waitpid(k->pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	k->pid = 0;
	munmap(k->stack, k->stack_size);
	k->stack = NULL;
}

/*
 * After the exec the keeper is a child of the new image, still tearing down
 * the old mm.  A thread reaps it; if this image execs again first, the pids
 * not yet reaped are handed over with the state, so no keeper ever lingers
 * as a zombie.  Plain pids, not pidfds: a pidfd would show up in the new
 * image's fd table, which must hold only what it reclaimed.  Nobody else
 * waits for these children, so their pids cannot be reused under us.
 */
struct pending {
	pid_t pid;
	bool done;
};

static struct pending pending[CPRX_MAX_KEEPERS];
static unsigned int nr_pending;
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static void *reap_pending(void *arg)
{
	unsigned int i, n = (unsigned int)(long)arg;

	for (i = 0; i < n; i++) {
		while (waitpid(pending[i].pid, NULL, __WALL) < 0 && errno == EINTR)
			;
		pthread_mutex_lock(&pending_lock);
		pending[i].done = true;
		pthread_mutex_unlock(&pending_lock);
	}
	return NULL;
}

/* A VMM that exits right after an update still leaves no keeper behind. */
static void wait_keepers(void)
{
	pid_t pids[CPRX_MAX_KEEPERS];
	unsigned int i, n = 0;

	pthread_mutex_lock(&pending_lock);
	for (i = 0; i < nr_pending; i++)
		if (!pending[i].done)
			pids[n++] = pending[i].pid;
	pthread_mutex_unlock(&pending_lock);
	for (i = 0; i < n; i++)	/* ECHILD if the thread got it first */
		while (waitpid(pids[i], NULL, __WALL) < 0 && errno == EINTR)
			;
}

/* Takes over the keepers of the images before us (new image, at once). */
void cprx_keepers_adopt(const pid_t *pids, unsigned int n)
{
	static bool at_exit;
	unsigned int i;

	pthread_mutex_lock(&pending_lock);
	nr_pending = 0;
	for (i = 0; i < n && nr_pending < CPRX_MAX_KEEPERS; i++)
		if (pids[i] > 0 && pids[i] != getpid())
			pending[nr_pending++] = (struct pending){ pids[i], false };
	n = nr_pending;
	pthread_mutex_unlock(&pending_lock);
	if (n && !at_exit)
		at_exit = !atexit(wait_keepers);
}

/* A thread reaps them: started after the pause, not during it. */
static void reap_later(void)
{
	pthread_attr_t attr;
	unsigned int n;
	pthread_t t;

	pthread_mutex_lock(&pending_lock);
	n = nr_pending;
	pthread_mutex_unlock(&pending_lock);
	if (!n)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&t, &attr, reap_pending, (void *)(long)n))
		reap_pending((void *)(long)n);
	pthread_attr_destroy(&attr);
}

/* Reaps the keepers that are done; lists the others as "p1:p2" in @buf. */
void cprx_keepers_handover(char *buf, size_t len)
{
	size_t off = 0;
	unsigned int i;
	pid_t ret;

	buf[0] = '\0';
	pthread_mutex_lock(&pending_lock);
	for (i = 0; i < nr_pending; i++) {
		if (pending[i].done)
			continue;
		ret = waitpid(pending[i].pid, NULL, WNOHANG | __WALL);
		if (ret != 0) {		/* reaped now, or by the thread */
			pending[i].done = true;
			continue;
		}
		if (off < len)
			off += snprintf(buf + off, len - off, "%s%d", off ? ":" : "",
					pending[i].pid);
	}
	pthread_mutex_unlock(&pending_lock);
}

/*
 * The guest runs again: the teardown no longer competes with a pause, but a
 * busy guest would starve a SCHED_IDLE keeper forever.  Back to normal,
 * and a thread reaps them when they are done.
 */
void cprx_keepers_hurry(void)
{
	struct sched_param param = { 0 };
	unsigned int i;

	pthread_mutex_lock(&pending_lock);
	for (i = 0; i < nr_pending; i++)
		if (!pending[i].done)
			sched_setscheduler(pending[i].pid, SCHED_OTHER, &param);
	pthread_mutex_unlock(&pending_lock);
	reap_later();
}
