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
 * No wait here is unbounded: the start polls the keeper's pidfd with its
 * ready report and a deadline, and a keeper that dies or is late is killed
 * and reaped; the exec is then only slower.  The keeper runs on our address
 * space with our TLS: its code makes raw system calls only (no libc, PLT,
 * errno or stack protector), with every signal blocked before it exists,
 * and reads its arguments from its own stack mapping.
 *
 * Kept in one file: the keeper, its start and stop, and the reaping of
 * keepers handed over by earlier images share one pending list and lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "internal.h"
#include "errname.h"

#ifndef __NR_pidfd_open
#define __NR_pidfd_open		434
#endif
#ifndef __NR_clone3
#define __NR_clone3		435
#endif
#ifndef __NR_close_range
#define __NR_close_range	436
#endif
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal	424
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD		0x00001000
#endif
#define KEEPER_P_PIDFD		3	/* waitid's idtype, absent from old libcs */

#define KEEPER_GUARD	4096
#define KEEPER_STACK	(64 * 1024)
#define KEEPER_START_MS	1000	/* not ready by then: killed, exec goes on */
#define KEEPER_STOP_MS	1000	/* after a failed exec: then SIGKILL */
#define KEEPERS_EXIT_MS	5000	/* the atexit wait; later ones are init's */

/* At the top of the keeper's own stack mapping, never in our frame. */
struct keeper_arg {
	int rfd;		/* EOF on it: the exec happened, exit */
	int wfd;		/* our write end: the keeper must not keep it */
	int ready;		/* its report goes there */
	unsigned int fd_bound;	/* fds to close one by one if close_range fails */
};

/* What the keeper reports when ready: 0 or -errno for each step. */
struct keeper_report {
	int sigmask;
	int close_range;
	int sched;
};

/* ---- the keeper itself: raw system calls only ----------------------------- */

#if defined(__x86_64__) || defined(__aarch64__)
#define KEEPER_ARCH 1

#if defined(__has_attribute) && __has_attribute(no_stack_protector)
#define KEEPER_NO_SSP __attribute__((no_stack_protector))
#else
#define KEEPER_NO_SSP
#endif
/* Nothing may reach TLS, a sanitizer's runtime or a PLT from the keeper. */
#define KEEPER_CODE KEEPER_NO_SSP __attribute__((no_instrument_function, \
	no_sanitize("address", "undefined")))

#if defined(__x86_64__)
static inline __attribute__((always_inline)) KEEPER_CODE long
ksys(long nr, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;

	__asm__ volatile("syscall" : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

/* clone or clone3; the child calls @fn(@arg) on its stack, never returns. */
static long kclone(long nr, long a, long b, long c, void (*fn)(void *),
		   void *arg)
{
	register long r10 __asm__("r10") = 0;
	register long r8 __asm__("r8") = 0;
	register void (*r12)(void *) __asm__("r12") = fn;
	register void *r13 __asm__("r13") = arg;
	long ret;

	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "mov %%r13, %%rdi\n\t"
			 "call *%%r12\n\t"
			 "ud2\n"
			 "1:"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
			   "r"(r12), "r"(r13)
			 : "rcx", "r11", "memory");
	return ret;
}
#else /* __aarch64__ */
static inline __attribute__((always_inline)) KEEPER_CODE long
ksys(long nr, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;

	__asm__ volatile("svc #0" : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}

static long kclone(long nr, long a, long b, long c, void (*fn)(void *),
		   void *arg)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = 0;
	register long x4 __asm__("x4") = 0;
	register void (*x19)(void *) __asm__("x19") = fn;
	register void *x20 __asm__("x20") = arg;

	__asm__ volatile("svc #0\n\t"
			 "cbnz x0, 1f\n\t"
			 "mov x29, xzr\n\t"
			 "mov x30, xzr\n\t"
			 "mov x0, x20\n\t"
			 "blr x19\n\t"
			 "brk #0\n"
			 "1:"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4),
			   "r"(x19), "r"(x20)
			 : "memory");
	return x0;
}
#endif

static inline __attribute__((always_inline)) KEEPER_CODE void
keeper_close_range(unsigned int lo, unsigned int hi, int *err)
{
	long ret;

	if (lo > hi)
		return;
	ret = ksys(__NR_close_range, lo, hi, 0, 0);
	if (ret < 0 && !*err)
		*err = (int)ret;
}

/*
 * close_range refused: close what /proc/self/fd lists (our fd table is a
 * copy of the parent's), else every fd below the parent's bound.
 */
static inline __attribute__((always_inline)) KEEPER_CODE void
keeper_close_each(int keep1, int keep2, unsigned int bound)
{
	static const char fd_dir[] = "/proc/self/fd";
	char buf[2048];
	long n, off, dfd, fd;
	unsigned int i;
	const char *name;
	unsigned short reclen;

	dfd = ksys(__NR_openat, AT_FDCWD, (long)fd_dir,
		   O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0) {
		for (i = 0; i < bound; i++)
			if ((int)i != keep1 && (int)i != keep2)
				ksys(__NR_close, i, 0, 0, 0);
		return;
	}
	while ((n = ksys(__NR_getdents64, dfd, (long)buf, sizeof(buf), 0)) > 0) {
		for (off = 0; off < n; off += reclen) {
			reclen = *(const unsigned short *)(buf + off + 16);
			name = buf + off + 19;
			for (fd = 0; *name >= '0' && *name <= '9'; name++)
				fd = fd * 10 + (*name - '0');
			if (!*name && name != buf + off + 19 && fd != keep1 &&
			    fd != keep2 && fd != dfd)
				ksys(__NR_close, fd, 0, 0, 0);
		}
	}
	ksys(__NR_close, dfd, 0, 0, 0);
}

static __attribute__((noinline, noreturn, used)) KEEPER_CODE
void keeper_main(void *p)
{
	const struct keeper_arg *arg = p;
	int rfd = arg->rfd, ready = arg->ready;
	unsigned int lo, hi, bound = arg->fd_bound;
	struct keeper_report rep = { 0, 0, 0 };
	unsigned long all = ~0UL;
	int param = 0;		/* struct sched_param: the priority only */
	char c;

	/* Already blocked by our parent around clone; now also glibc's own. */
	rep.sigmask = (int)ksys(__NR_rt_sigprocmask, SIG_BLOCK, (long)&all, 0,
				sizeof(all));
	/* The write end first: whatever else fails, the exec gives us EOF. */
	ksys(__NR_close, arg->wfd, 0, 0, 0);
	/* No pins: drop every other fd of the old image. */
	lo = rfd < ready ? rfd : ready;
	hi = rfd < ready ? ready : rfd;
	if (lo > 0)
		keeper_close_range(0, lo - 1, &rep.close_range);
	keeper_close_range(lo + 1, hi - 1, &rep.close_range);
	keeper_close_range(hi + 1, ~0U, &rep.close_range);
	if (rep.close_range)	/* seccomp or a kernel before 5.9 */
		keeper_close_each(rfd, ready, bound);
	/*
	 * During the pause the teardown may run only on an idle CPU: the new
	 * image must never wait for it, not even for a scheduler tick.  The
	 * new image's commit raises it back (cprx_keepers_hurry).
	 */
	rep.sched = (int)ksys(__NR_sched_setscheduler, 0, SCHED_IDLE,
			      (long)&param, 0);
	ksys(__NR_write, ready, (long)&rep, sizeof(rep), 0);
	ksys(__NR_close, ready, 0, 0, 0);
	/* EOF, an error, even a byte: the only way on is out. */
	ksys(__NR_read, rfd, (long)&c, 1, 0);
	for (;;)
		ksys(__NR_exit_group, 0, 0, 0, 0);
}

/* Legacy clone's argument order differs; clone3 is refused in some sandboxes. */
struct keeper_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
	uint64_t stack, stack_size, tls;
};

/*
 * Exit signal 0: no SIGCHLD, so SIG_IGN or SA_NOCLDWAIT cannot autoreap it
 * in this image and a waitpid(-1) without __WALL never sees it.
 */
static pid_t keeper_clone(struct keeper_arg *arg, void *stack, size_t size,
			  int *pidfd)
{
	struct keeper_clone_args ca = {
		.flags = CLONE_VM | CLONE_PIDFD,
		.pidfd = (uintptr_t)pidfd,
		.exit_signal = 0,
		.stack = (uintptr_t)stack,
		.stack_size = size,
	};
	long ret;

	ret = kclone(__NR_clone3, (long)&ca, sizeof(ca), 0, keeper_main, arg);
	if (ret == -ENOSYS || ret == -EPERM)
		ret = kclone(__NR_clone, CLONE_VM | CLONE_PIDFD,
			     (long)((char *)stack + size), (long)pidfd,
			     keeper_main, arg);
	return ret;
}
#else
/* Elsewhere no keeper: exec tears the old mm down inline, only slower. */
static pid_t keeper_clone(struct keeper_arg *arg, void *stack, size_t size,
			  int *pidfd)
{
	(void)arg, (void)stack, (void)size, (void)pidfd;
	return -ENOSYS;
}
#endif

/* ---- start and stop, in the image that owns the keeper -------------------- */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/*
 * How far a keeper that can use neither close_range nor /proc closes fds
 * one by one: the soft limit bounds every fd opened under it.
 */
static unsigned int fd_bound(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur > (1u << 20))
		return 1u << 20;
	return (unsigned int)rl.rlim_cur;
}

static bool pidfd_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static int pidfd_reap(int pidfd, int options, siginfo_t *info)
{
	memset(info, 0, sizeof(*info));
	return syscall(SYS_waitid, KEEPER_P_PIDFD, pidfd, info,
		       WEXITED | __WALL | options, NULL) ? -errno : 0;
}

/* Whether the keeper exits within @ms. */
static bool keeper_exits(struct cprx_keeper *k, int ms)
{
	struct pollfd p = { .fd = k->pidfd, .events = POLLIN };
	long long end = now_ms() + ms;
	int left;

	for (;;) {
		left = (int)(end - now_ms());
		if (left <= 0 || poll(&p, 1, left) == 0)
			return pidfd_exited(k->pidfd);
		if (p.revents)
			return true;
	}
}

/*
 * Waits for the keeper to exit, up to @ms, then kills it; reaps it.  A
 * sandbox may refuse pidfd_send_signal: kill() names the same process, our
 * unreaped child.  Refused both, the keeper (stuck, say, on a seccomp
 * supervisor that never answers) is not waited for: its stack stays
 * mapped and it is reaped as a handed-over keeper is.
 */
static void keeper_reap(struct cprx_keeper *k, int ms)
{
	siginfo_t info;

	if (!keeper_exits(k, ms)) {
		if (syscall(__NR_pidfd_send_signal, k->pidfd, SIGKILL, NULL, 0) &&
		    !pidfd_exited(k->pidfd))
			kill(k->pid, SIGKILL);
		if (!keeper_exits(k, KEEPER_STOP_MS)) {
			cprx_keepers_adopt(&k->pid, 1);
			close(k->pidfd);
			k->pidfd = -1;
			k->map = NULL;
			k->pid = 0;
			return;
		}
	}
	while (pidfd_reap(k->pidfd, 0, &info) == -EINTR)
		;
	if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
		k->signo = info.si_status;
	/* Exited (or gone to a __WALL waiter): its stack is unused now. */
	if (pidfd_exited(k->pidfd))
		munmap(k->map, k->map_size);
	close(k->pidfd);
	k->pidfd = -1;
	k->map = NULL;
	k->pid = 0;
}

/* Ready report, death or deadline, whichever comes first. */
static int keeper_wait_ready(struct cprx_keeper *k, int rfd)
{
	struct pollfd p[2] = { { .fd = rfd, .events = POLLIN },
			       { .fd = k->pidfd, .events = POLLIN } };
	long long end = now_ms() + KEEPER_START_MS;
	struct keeper_report rep;
	int n, left;

	for (;;) {
		left = (int)(end - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(p, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[0].revents) {
			if (read(rfd, &rep, sizeof(rep)) != sizeof(rep))
				return -ECHILD;
			k->refused[CPRX_KEEPER_SIGMASK] = -rep.sigmask;
			k->refused[CPRX_KEEPER_CLOSE_RANGE] = -rep.close_range;
			k->refused[CPRX_KEEPER_SCHED] = -rep.sched;
			k->idle = !rep.sched;
			return 0;
		}
		if (p[1].revents)
			return -ECHILD;
	}
}

int cprx_keeper_start(struct cprx_keeper *k)
{
	struct keeper_arg *arg;
	int go[2], rdy[2], ret;
	sigset_t all, old;
	uintptr_t top;
	long pid;

	memset(k, 0, sizeof(*k));
	k->pidfd = -1;
	k->wfd = -1;
	k->map_size = KEEPER_GUARD + KEEPER_STACK;
	k->map = mmap(NULL, k->map_size, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (k->map == MAP_FAILED) {
		k->map = NULL;
		return -errno;
	}
	/* A guard page below: an overflow faults instead of hitting our heap. */
	if (mprotect((char *)k->map + KEEPER_GUARD, KEEPER_STACK,
		     PROT_READ | PROT_WRITE))
		goto err_map;
	if (pipe2(go, O_CLOEXEC))
		goto err_map;
	if (pipe2(rdy, O_CLOEXEC))
		goto err_go;
	top = ((uintptr_t)k->map + k->map_size - sizeof(*arg)) & ~(uintptr_t)15;
	arg = (struct keeper_arg *)top;
	arg->rfd = go[0];
	arg->wfd = go[1];
	arg->ready = rdy[1];
	arg->fd_bound = fd_bound();

	/* No handler of the VMM's may run on the keeper's stack, ever. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = keeper_clone(arg, (char *)k->map + KEEPER_GUARD,
			   top - ((uintptr_t)k->map + KEEPER_GUARD), &k->pidfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(go[0]);
	close(rdy[1]);
	if (pid < 0) {
		close(rdy[0]);
		close(go[1]);
		errno = (int)-pid;
		goto err_map;
	}
	k->pid = (pid_t)pid;
	k->owner = getpid();
	k->wfd = go[1];
	ret = keeper_wait_ready(k, rdy[0]);
	close(rdy[0]);
	if (ret) {
		/* Dead or late: without it the exec is only slower. */
		close(k->wfd);
		k->wfd = -1;
		keeper_reap(k, 0);
		k->err = ret;
		return ret;
	}
	return 0;

err_go:
	close(go[0]);
	close(go[1]);
err_map:
	ret = -errno;
	munmap(k->map, k->map_size);
	k->map = NULL;
	k->err = ret;
	return ret;
}

static bool ready_add(pid_t pid, pid_t owner);
static void ready_del(pid_t pid);

/* This thread's seccomp filters (only ever added), -1: unknown. */
static int seccomp_filters(void)
{
	char line[128];
	int n = -1;
	FILE *f;

	f = fopen("/proc/thread-self/status", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp_filters: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * It survived its own sched_setscheduler, so ours is allowed too - under
 * the filters it ran under.  One started ahead may have seen fewer: ours
 * then is tried only if this thread's filters are still the same.
 */
static bool renice_allowed(const struct cprx_keeper *k)
{
	if (!k->ahead)
		return true;
	return k->filters >= 0 && k->tid == gettid() &&
	       seccomp_filters() == k->filters;
}

/* The exec failed, or is not wanted: the keeper must go at once. */
void cprx_keeper_stop(struct cprx_keeper *k)
{
	struct sched_param param = { 0 };

	if (!k->pid)
		return;
	/* Our unreaped child with exit signal 0: nothing can recycle its pid. */
	if (k->idle && !pidfd_exited(k->pidfd) && renice_allowed(k))
		sched_setscheduler(k->pid, SCHED_OTHER, &param);
	close(k->wfd);
	k->wfd = -1;
	keeper_reap(k, KEEPER_STOP_MS);
}

/*
 * 1: the keeper runs, our child; 0: it exited; -1: it runs, but as another
 * process's child: a fork's copy of the session.  The pid does not tell a
 * fork (one into a new pid namespace may have its parent's pid); a wait on
 * the pidfd does, ECHILD for anyone else's child.
 */
static int keeper_alive(const struct cprx_keeper *k)
{
	siginfo_t info;
	int ret;

	if (k->owner != getpid())
		return pidfd_exited(k->pidfd) ? 0 : -1;
	ret = pidfd_reap(k->pidfd, WNOHANG | WNOWAIT, &info);
	if (!ret)
		return info.si_pid ? 0 : 1;
	if (pidfd_exited(k->pidfd))
		return 0;
	return ret == -ECHILD ? -1 : 1;	/* waitid refused: the pid says */
}

/*
 * A keeper started ahead (by preflight, while the guest runs) keeps the
 * start's round trip out of the pause: it shares the mm, which is the same
 * until the exec, and the fds it dropped are all it ever had.  Taken only
 * by the process that started it and only alive; a dead one is reaped.
 */
bool cprx_keeper_take(struct cprx_keeper *warm, struct cprx_keeper *k)
{
	int alive;

	if (!warm->pid)
		return false;
	*k = *warm;
	memset(warm, 0, sizeof(*warm));
	ready_del(k->pid);
	alive = keeper_alive(k);
	if (alive > 0)
		return true;
	if (!alive) {
		cprx_keeper_stop(k);	/* nothing left to signal */
		return false;
	}
	/* our parent's: not ours to renice, signal or stop */
	close(k->pidfd);
	close(k->wfd);
	memset(k, 0, sizeof(*k));
	return false;
}

/* A keeper started ahead is not wanted after all. */
void cprx_keeper_drop(struct cprx_keeper *warm)
{
	struct cprx_keeper k;

	if (cprx_keeper_take(warm, &k))
		cprx_keeper_stop(&k);
}

/*
 * Preflight: the keeper's own system calls, under the caller's seccomp.
 * The keeper that passed is kept in @keep for the exec (NULL: stopped).
 */
int cprx_keeper_probe(struct cprx_keeper *keep, char *why, size_t len)
{
	static const char *const step[CPRX_KEEPER_STEPS] = {
		[CPRX_KEEPER_SIGMASK] = "rt_sigprocmask refused (%s): the keeper "
			"relies on the mask blocked before clone",
		[CPRX_KEEPER_CLOSE_RANGE] = "close_range refused (%s): the keeper "
			"closes fds one by one",
		[CPRX_KEEPER_SCHED] = "sched_setscheduler refused (%s): the old mm "
			"is torn down at normal priority",
	};
	struct cprx_keeper k;
	size_t off = 0;
	int i, ret;

	ret = cprx_keeper_start(&k);
	if (ret) {
		if (k.signo)
			snprintf(why, len, "deferred teardown unavailable: exec will "
				 "tear the old mm down inline (slower); the keeper "
				 "was killed by signal %d (%s)%s", k.signo,
				 strsignal(k.signo), k.signo == SIGSYS ?
				 ", a seccomp filter" : "");
		else
			snprintf(why, len, "deferred teardown unavailable: exec will "
				 "tear the old mm down inline (slower); the keeper "
				 "did not start (%s)", cprx_errname(-ret));
		return 2;
	}
	why[0] = '\0';
	for (i = 0; i < CPRX_KEEPER_STEPS; i++) {
		if (!k.refused[i] || off >= len)
			continue;
		if (off)
			off += snprintf(why + off, len - off, "; ");
		if (off < len)
			off += snprintf(why + off, len - off, step[i],
					cprx_errname(k.refused[i]));
	}
	if (keep) {
		k.ahead = true;
		k.tid = gettid();
		k.filters = seccomp_filters();
	}
	if (keep && ready_add(k.pid, k.owner))
		*keep = k;
	else
		cprx_keeper_stop(&k);
	if (!off) {
		snprintf(why, len, "a clone(CLONE_VM) keeper starts, drops its fds "
			 "and runs at SCHED_IDLE until the exec");
		return 0;
	}
	return 1;
}

/* ---- keepers of earlier images, in the image that inherits them ----------- */

/*
 * After the exec the keeper is a child of the new image, still tearing down
 * the old mm; keepers still busy at the next exec are handed over again.
 * Their pids come from CPRX_INCOMING and are believed only for a child of
 * ours (the kernel says so through a pidfd) with exit signal 0 (what
 * keeper_clone makes); the pidfd is not kept, so the new image's fd table
 * holds only what it reclaimed.  From then on a keeper is its pid and start
 * time, checked again before each step: it is reaped only once seen exited
 * by a WNOWAIT wait, and reniced only while it runs.
 */
struct pending {
	pid_t pid;
	unsigned long long start;	/* with the pid, its identity */
};

static struct pending pending[CPRX_MAX_KEEPERS];
static unsigned int nr_pending;
static pid_t handed[CPRX_MAX_KEEPERS];	/* from the handover, not yet checked */
static unsigned int nr_handed;
/*
 * Keepers preflight left ready in sessions, until taken: the exec ends
 * those of the other sessions too (their write ends are close-on-exec),
 * and the new image must reap them.  A fork's copies are not its own.
 */
static struct {
	pid_t pid, owner;
} ready[CPRX_MAX_KEEPERS];
static unsigned int nr_ready;
static bool reaper_running;
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

struct keeper_stat {
	char state;
	pid_t ppid;
	unsigned long long start;
	int exit_signal;
	int policy;
};

/* /proc/PID/stat fields 3 (state), 4 (ppid), 22 (start), 38, 41 (policy). */
static int keeper_stat(pid_t pid, struct keeper_stat *st)
{
	char path[40], buf[1024], *p, *tok, *save = NULL;
	int fd, field;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	memset(st, 0, sizeof(*st));
	st->exit_signal = -1;
	st->policy = -1;
	for (field = 3, tok = strtok_r(p + 1, " ", &save); tok;
	     field++, tok = strtok_r(NULL, " ", &save)) {
		if (field == 3)
			st->state = tok[0];
		else if (field == 4)
			st->ppid = atoi(tok);
		else if (field == 22)
			st->start = strtoull(tok, NULL, 10);
		else if (field == 38)
			st->exit_signal = atoi(tok);
		else if (field == 41)
			st->policy = atoi(tok);
	}
	return st->policy < 0 ? -1 : 0;
}

static bool is_keeper(pid_t pid, struct keeper_stat *st)
{
	return !keeper_stat(pid, st) && st->ppid == getpid() &&
	       st->exit_signal == 0;
}

static bool still_keeper(const struct pending *e, struct keeper_stat *st)
{
	return is_keeper(e->pid, st) && st->start == e->start;
}

/* Whether @pid is a keeper of ours; its start time in @start. */
static bool adopt_one(pid_t pid, unsigned long long *start)
{
	struct pollfd p = { .events = POLLIN };
	struct keeper_stat st;
	siginfo_t info;
	bool ok;

	if (!is_keeper(pid, &st))
		return false;
	p.fd = syscall(__NR_pidfd_open, pid, 0);
	if (p.fd < 0)
		return false;
	/*
	 * The kernel says whether this pidfd is our child, /proc whether it
	 * is a keeper; unreaped after that look, the pid named it all along.
	 */
	ok = !pidfd_reap(p.fd, WNOHANG | WNOWAIT, &info) && is_keeper(pid, &st) &&
	     !(poll(&p, 1, 0) == 1 && (p.revents & POLLHUP));
	close(p.fd);
	*start = st.start;
	return ok;
}

static int wait_pid(pid_t pid, int options, siginfo_t *info)
{
	memset(info, 0, sizeof(*info));
	return waitid(P_PID, pid, info, WEXITED | __WALL | options) ? -errno : 0;
}

/*
 * The handover's pids are checked after the pause, at the first look at
 * the keepers: a pid taken meanwhile by another child of ours is still
 * refused, its exit signal is not 0.
 */
static void adopt_handed_locked(void)
{
	unsigned long long start;
	unsigned int i, j;

	for (i = 0; i < nr_handed && nr_pending < CPRX_MAX_KEEPERS; i++) {
		for (j = 0; j < nr_pending && pending[j].pid != handed[i]; j++)
			;
		if (j == nr_pending && adopt_one(handed[i], &start))
			pending[nr_pending++] = (struct pending){ handed[i], start };
	}
	nr_handed = 0;
}

/* Reaps the pending keepers that have exited; drops those gone elsewhere. */
static void reap_exited_locked(void)
{
	struct keeper_stat st;
	unsigned int i = 0;
	siginfo_t info;
	int ret;

	adopt_handed_locked();

	while (i < nr_pending) {
		ret = wait_pid(pending[i].pid, WNOHANG | WNOWAIT, &info);
		if (!ret && !info.si_pid) {
			i++;	/* still running */
			continue;
		}
		/* The zombie seen is the keeper: nobody else reaps clone children. */
		if (!ret && still_keeper(&pending[i], &st))
			wait_pid(pending[i].pid, WNOHANG, &info);
		pending[i] = pending[--nr_pending];
	}
}

/*
 * Back to SCHED_OTHER, for a keeper verified just now and still running;
 * and on, if stopped: SIGSTOP is the one signal its mask cannot hold off,
 * and a keeper stopped for good would hold the old address space for good.
 */
static void hurry_locked(void)
{
	struct sched_param param = { 0 };
	struct keeper_stat st;
	unsigned int i;

	for (i = 0; i < nr_pending; i++) {
		if (!still_keeper(&pending[i], &st) || st.state == 'Z')
			continue;
		if (st.state == 'T')
			kill(pending[i].pid, SIGCONT);
		if (st.policy == SCHED_IDLE)
			sched_setscheduler(pending[i].pid, SCHED_OTHER, &param);
	}
}

/* A VMM that exits right after an update still leaves no keeper behind. */
static void wait_keepers(void)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	long long end = now_ms() + KEEPERS_EXIT_MS;
	unsigned int n;

	pthread_mutex_lock(&pending_lock);
	reap_exited_locked();
	hurry_locked();
	pthread_mutex_unlock(&pending_lock);
	for (;;) {
		pthread_mutex_lock(&pending_lock);
		reap_exited_locked();
		n = nr_pending;
		pthread_mutex_unlock(&pending_lock);
		if (!n || now_ms() >= end)
			return;		/* later ones are reaped by init */
		nanosleep(&tick, NULL);
	}
}

/* Takes over the keepers of the images before us (new image, at once). */
void cprx_keepers_adopt(const pid_t *pids, unsigned int n)
{
	static bool at_exit;
	unsigned int i;

	pthread_mutex_lock(&pending_lock);
	for (i = 0; i < n && nr_handed < CPRX_MAX_KEEPERS; i++)
		if (pids[i] > 0)
			handed[nr_handed++] = pids[i];
	n = nr_handed;
	pthread_mutex_unlock(&pending_lock);
	if (n && !at_exit)
		at_exit = !atexit(wait_keepers);
}

/* Waits for each keeper to exit (WNOWAIT: the check comes first), reaps. */
static void *reaper(void *unused)
{
	siginfo_t info;
	pid_t pid;

	(void)unused;
	for (;;) {
		pthread_mutex_lock(&pending_lock);
		reap_exited_locked();
		pid = nr_pending ? pending[0].pid : 0;
		if (!pid)
			reaper_running = false;
		pthread_mutex_unlock(&pending_lock);
		if (!pid)
			return NULL;
		wait_pid(pid, WNOWAIT, &info);
	}
}

/* Ready for the exec; none is kept ahead once every slot is taken. */
static bool ready_add(pid_t pid, pid_t owner)
{
	bool ok;

	pthread_mutex_lock(&pending_lock);
	ok = nr_ready < CPRX_MAX_KEEPERS;
	if (ok) {
		ready[nr_ready].pid = pid;
		ready[nr_ready++].owner = owner;
	}
	pthread_mutex_unlock(&pending_lock);
	return ok;
}

static void ready_del(pid_t pid)
{
	unsigned int i;

	pthread_mutex_lock(&pending_lock);
	for (i = 0; i < nr_ready; i++)
		if (ready[i].pid == pid) {
			ready[i] = ready[--nr_ready];
			break;
		}
	pthread_mutex_unlock(&pending_lock);
}

/*
 * Reaps the keepers that are done; lists the others, and the keepers other
 * sessions' preflights left ready, as "p1:p2" in @buf.
 */
unsigned int cprx_keepers_handover(char *buf, size_t len)
{
	unsigned int i, n;
	size_t off = 0;

	buf[0] = '\0';
	pthread_mutex_lock(&pending_lock);
	reap_exited_locked();
	n = nr_pending;
	for (i = 0; i < n && off < len; i++)
		off += snprintf(buf + off, len - off, "%s%d", off ? ":" : "",
				(int)pending[i].pid);
	for (i = 0; i < nr_ready && n < CPRX_MAX_KEEPERS && off < len; i++) {
		if (ready[i].owner != getpid())
			continue;
		off += snprintf(buf + off, len - off, "%s%d", off ? ":" : "",
				(int)ready[i].pid);
		n++;
	}
	pthread_mutex_unlock(&pending_lock);
	return n;
}

/*
 * The guest runs again: the teardown no longer competes with a pause, but a
 * busy guest would starve a SCHED_IDLE keeper.  Back to normal, and a
 * thread reaps them when they are done (started after the pause).
 */
void cprx_keepers_hurry(void)
{
	pthread_attr_t attr;
	bool start = false;
	pthread_t t;

	pthread_mutex_lock(&pending_lock);
	reap_exited_locked();
	hurry_locked();
	if (nr_pending && !reaper_running)
		start = reaper_running = true;
	pthread_mutex_unlock(&pending_lock);
	if (!start)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&t, &attr, reaper, NULL)) {
		/* the next exec or the atexit wait reaps them */
		pthread_mutex_lock(&pending_lock);
		reaper_running = false;
		pthread_mutex_unlock(&pending_lock);
	}
	pthread_attr_destroy(&attr);
}
