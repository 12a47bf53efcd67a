// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The keeper (deferred teardown) under faults: a seccomp filter that kills
 * it or refuses its system calls, a VMM that reaps every child it sees or
 * ignores SIGCHLD, a forged keeper pid in the handover, signals to the
 * process group while it starts.  None of them may hang the update, lose
 * the guest, leave a zombie or touch a process that is not a keeper.
 *
 * Kept in one file: one test binary per fault area, and its exec cases
 * must live in the binary whose tests exec into them.
 */
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <sys/mount.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "exec_util.h"

#ifndef __NR_close_range
#define __NR_close_range 436
#endif

/* System call @nr gets @action (a SECCOMP_RET_*) here and in later images. */
static void filter(int nr, unsigned int action)
{
	struct sock_filter f[] = {
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};

	CHECK(!seccomp_filter(f, ARRAY_SIZE(f), 0), "seccomp: %m");
}

struct fault {
	int nr;			/* the system call the filter acts on */
	unsigned int action;
};

/* ---- new-image halves ---------------------------------------------------- */

/* The guest came through, and no keeper is left once it committed. */
EXEC_CASE(intact)
{
	struct cprx_session *s = incoming();
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	cprx_session_close(s);
	return 0;	/* exit(): the library's atexit wait must not block */
}

/* A VMM that reaps every child it is told about must not get the keeper. */
EXEC_CASE(waitpid_any)
{
	struct cprx_session *s = incoming();
	struct guest g;
	int status;
	pid_t pid;

	pid = waitpid(-1, &status, 0);
	CHECK(pid < 0 && errno == ECHILD, "waitpid(-1) returned %d: the VMM "
	      "reaped a keeper of the library", (int)pid);
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	cprx_session_close(s);
	wait_no_children();
	return 0;
}

/*
 * Forges the handover: puts VICTIM first in CPRX_INCOMING's reap= list (a
 * key given twice is refused outright) and re-execs into forged_commit with
 * the same fds, which commits the update.
 */
EXEC_CASE(forge)
{
	const char *env = getenv(CPRX_ENV), *reap;
	char *forged;
	int at;

	CHECK(env && argc == 1, "no handover to forge");
	reap = strstr(env, ",reap=");
	CHECK(reap, "no reap= in '%s'", env);
	at = (int)(reap - env) + 6;
	CHECK(asprintf(&forged, "%.*s%s%s%s", at, env, argv[0],
		       env[at] && env[at] != ',' ? ":" : "", env + at) > 0,
	      "asprintf");
	setenv(CPRX_ENV, forged, 1);
	execv(th_self, EXEC_CASE_ARGV("forged_commit", argv[0]));
	CHECK(0, "re-exec: %m");
	return 1;
}

EXEC_CASE(forged_commit)
{
	struct cprx_session *s = incoming();
	pid_t victim = atoi(argv[0]);
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(sched_getscheduler(victim) == SCHED_IDLE, "commit changed the "
	      "scheduling of pid %d, named as a keeper by a forged handover",
	      (int)victim);
	cprx_session_close(s);
	wait_no_children();
	return 0;
}

/* Where the library's keeper went: its pid, from the handover. */
static pid_t handover_keeper(void)
{
	const char *env = getenv(CPRX_ENV), *k = env ? strstr(env, "keeper=") : NULL;

	CHECK(k && atoi(k + 7) > 0, "no keeper in the handover");
	return atoi(k + 7);
}

/* A child of ours with pid @pid (free now) that sets itself SCHED_IDLE. */
static pid_t idle_child_at(pid_t pid)
{
	struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal,
		 stack, stack_size, tls, set_tid, set_tid_size; } ca = {
		.exit_signal = SIGCHLD, .set_tid = (uintptr_t)&pid,
		.set_tid_size = 1 };
	struct sched_param param = { 0 };
	long ret;

	/* The number may stay taken for a moment after the process is gone. */
	for (int i = 0; i < 200; i++) {
		ret = syscall(SYS_clone3, &ca, sizeof(ca));
		if (ret >= 0 || errno != EEXIST)
			break;
		usleep(10000);
	}
	if (ret == 0) {
		sched_setscheduler(0, SCHED_IDLE, &param);
		for (;;)
			pause();
	}
	CHECK(ret == pid, "clone3 with set_tid %d: %ld (%m)", (int)pid, ret);
	for (int i = 0; i < 100 && sched_getscheduler(pid) != SCHED_IDLE; i++)
		usleep(10000);
	CHECK(sched_getscheduler(pid) == SCHED_IDLE, "victim not SCHED_IDLE");
	return pid;
}

/*
 * SIGCHLD is ignored: the keeper is reaped by the kernel as it exits, and
 * its pid goes to a new child of ours.  Commit must not take that child
 * for the keeper.
 */
EXEC_CASE(recycled)
{
	pid_t keeper = handover_keeper(), victim;
	struct cprx_session *s = incoming();
	struct guest g;

	for (int i = 0; i < 500 && !kill(keeper, 0); i++)
		usleep(10000);
	CHECK(kill(keeper, 0) && errno == ESRCH, "keeper %d not reaped by the "
	      "kernel under SIG_IGN", (int)keeper);
	victim = idle_child_at(keeper);
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	usleep(100000);
	CHECK(sched_getscheduler(victim) == SCHED_IDLE, "commit changed the "
	      "scheduling of pid %d, which took the keeper's pid", (int)victim);
	kill(victim, SIGKILL);
	cprx_session_close(s);
	wait_no_children();
	return 0;
}

/*
 * One link of a chain of updates that never lets a keeper finish: two
 * spinners keep both CPUs busy and commit cannot raise a keeper from
 * SCHED_IDLE (no CAP_SYS_NICE).  argv: step, spinner pids.
 */
#define CHAIN_STEPS	11
#define CHAIN_RAM	(256ull << 20)

EXEC_CASE(chain)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s = incoming();
	int step = atoi(argv[0]);
	char next[16];
	struct guest g;

	volatile uint64_t sum = 0;

	reclaim_guest(s, &g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	cprx_session_close(s);
	/* Page tables for all of RAM: this image's keeper has work to do. */
	for (uint64_t i = 0; i < g.size / 8; i += 4096 / 8)
		sum += g.ram[i];
	printf("# step %d: %d children (2 spinners, the rest keepers)\n", step,
	       nr_children());
	fflush(stdout);
	if (step < CHAIN_STEPS) {
		snprintf(next, sizeof(next), "%d", step + 1);
		CHECK(!cprx_exec(preserve_guest(&g, &opts), th_self,
				 EXEC_CASE_ARGV("chain", next, argv[1], argv[2])),
		      "exec failed");
	}
	kill(atoi(argv[1]), SIGKILL);
	kill(atoi(argv[2]), SIGKILL);
	waitpid(atoi(argv[1]), NULL, 0);
	waitpid(atoi(argv[2]), NULL, 0);
	check_guest(&g);
	wait_no_children();
	return 0;
}

/* The keeper preflight started is the one the exec handed over. */
EXEC_CASE(ahead)
{
	pid_t keeper = handover_keeper();
	struct cprx_session *s = incoming();
	struct guest g;

	CHECK(keeper == atoi(argv[0]), "the handover names keeper %d, not %s, "
	      "the one preflight started", (int)keeper, argv[0]);
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	cprx_session_close(s);
	return 0;
}

/* ---- old-image halves ---------------------------------------------------- */

/* @pid is a zombie: dead, not yet reaped. */
static bool keeper_zombie(pid_t pid)
{
	char state;
	int ppid;

	return proc_stat(pid, &state, &ppid) && state == 'Z';
}

/* Our one child: the keeper preflight left ready. */
static pid_t only_child(void)
{
	char path[64], buf[64];
	pid_t pid = 0;
	FILE *f;

	CHECK(nr_children() == 1, "%d children after preflight, want its "
	      "keeper alone", nr_children());
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)gettid());
	f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f))
		pid = atoi(buf);
	if (f)
		fclose(f);
	CHECK(pid > 0, "no child listed in %s", path);
	return pid;
}

/* Preflight, then the update: with the keeper alive, or killed first. */
static void update_after_preflight(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_preflight_report rep = { .size = sizeof(rep) };
	struct cprx_session *s;
	struct guest g;
	char pid[16];
	pid_t keeper;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_preflight(s, th_self, NULL, &rep), "%s", cprx_errmsg(s));
	keeper = only_child();
	snprintf(pid, sizeof(pid), "%d", (int)keeper);
	if (!arg) {
		CHECK(!cprx_exec(s, th_self, EXEC_CASE_ARGV("ahead", pid)),
		      "exec failed: %s", cprx_errmsg(s));
		return;
	}
	/* killed, not reaped: the exec must reap it and start its own */
	kill(keeper, SIGKILL);
	for (int i = 0; i < 200 && !keeper_zombie(keeper); i++)
		usleep(10000);
	CHECK(keeper_zombie(keeper), "keeper %d did not die", (int)keeper);
	exec_case(s, "intact");
}

/* Updates into @arg's exec case under a filter on the keeper's calls. */
static void update_filtered(const void *arg)
{
	const struct fault *f = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	filter(f->nr, f->action);
	exec_case(s, "intact");
}

/* An exec the kernel refuses: cprx_exec comes back, guest intact, no keeper. */
static void refused_filtered(const void *arg)
{
	const struct fault *f = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	char *argv[] = { "/nonexistent/cprx-next", NULL };
	struct cprx_session *s;
	struct guest g;
	int ret;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	filter(f->nr, f->action);
	ret = cprx_exec(s, argv[0], argv);
	CHECK(ret == -ENOENT, "cprx_exec returned %d: %s", ret, cprx_errmsg(s));
	CHECK(nr_children() == 0, "keeper still alive after a failed exec");
	check_guest(&g);
	cprx_session_close(s);
}

static void update_to(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), arg);
}

static void update_forged(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", *(const pid_t *)arg);
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	CHECK(!cprx_exec(preserve_guest(&g, &opts), th_self,
			 EXEC_CASE_ARGV("forge", pid)), "exec failed");
}

/* SIGCHLD with SA_NOCLDWAIT and a handler: none may come from a keeper. */
static volatile sig_atomic_t nr_sigchld;

static void on_sigchld(int sig)
{
	(void)sig;
	nr_sigchld++;
}

static void refused_nocldwait(const void *arg)
{
	struct sigaction sa = { .sa_handler = on_sigchld,
				.sa_flags = SA_NOCLDWAIT | SA_RESTART };
	struct cprx_options opts = { .size = sizeof(opts) };
	char *argv[] = { "/nonexistent/cprx-next", NULL };
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!sigaction(SIGCHLD, &sa, NULL), "sigaction: %m");
	for (int i = 0; i < 5; i++) {
		ret = cprx_exec(s, argv[0], argv);
		CHECK(ret == -ENOENT, "cprx_exec returned %d: %s", ret,
		      cprx_errmsg(s));
	}
	usleep(100000);
	CHECK(nr_sigchld == 0, "the VMM got %d SIGCHLD for keepers",
	      (int)nr_sigchld);
	CHECK(nr_children() == 0, "a keeper is left");
	check_guest(&g);
	cprx_session_close(s);
}

/* Where a handler of the VMM ran in another process than the VMM. */
static pid_t *foreign_handler;

static void on_usr1(int sig)
{
	pid_t self = (pid_t)syscall(SYS_getpid);

	(void)sig;
	if (self != foreign_handler[1])
		foreign_handler[0] = self;
}

static void pgrp_signals(const void *arg)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	struct cprx_options opts = { .size = sizeof(opts) };
	char *argv[] = { "/nonexistent/cprx-next", NULL };
	struct cprx_session *s;
	struct guest g;
	pid_t spammer;
	int ret;

	(void)arg;
	foreign_handler = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(foreign_handler != MAP_FAILED, "mmap: %m");
	foreign_handler[1] = getpid();
	CHECK(!setpgid(0, 0), "setpgid: %m");
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!sigaction(SIGUSR1, &sa, NULL), "sigaction: %m");
	spammer = fork();
	if (spammer == 0) {
		time_t end = time(NULL) + 30;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGUSR1, SIG_IGN);
		while (time(NULL) < end)
			kill(0, SIGUSR1);
		_exit(0);
	}
	for (int i = 0; i < 300 && !foreign_handler[0]; i++) {
		ret = cprx_exec(s, argv[0], argv);
		CHECK(ret == -ENOENT, "cprx_exec returned %d: %s", ret,
		      cprx_errmsg(s));
	}
	kill(spammer, SIGKILL);
	waitpid(spammer, NULL, 0);
	CHECK(!foreign_handler[0], "a signal handler of the VMM ran in pid %d, "
	      "a keeper", (int)foreign_handler[0]);
	CHECK(nr_children() == 0, "a keeper is left");
	check_guest(&g);
	cprx_session_close(s);
}

/* No CAP_SYS_NICE here nor after an exec, and no RLIMIT_NICE to use instead. */
static void drop_sys_nice(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct rlimit rl = { 0, 0 };

	prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0);
	if (!syscall(SYS_capget, &h, d)) {
		d[0].effective &= ~(1u << CAP_SYS_NICE);
		d[0].permitted &= ~(1u << CAP_SYS_NICE);
		d[0].inheritable &= ~(1u << CAP_SYS_NICE);
		syscall(SYS_capset, &h, d);
	}
	setrlimit(RLIMIT_NICE, &rl);
}

static void keepers_pile_up(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	char spin[2][16];
	struct guest g;
	pid_t pid;

	(void)arg;
	for (int i = 0; i < 2; i++) {
		pid = fork();
		if (pid == 0) {
			time_t end = time(NULL) + 60;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			while (time(NULL) < end)
				;
			_exit(0);
		}
		CHECK(pid > 0, "fork: %m");
		snprintf(spin[i], sizeof(spin[i]), "%d", (int)pid);
	}
	drop_sys_nice();
	make_guest(&g, CHAIN_RAM, MAP_SHARED);
	CHECK(!cprx_exec(preserve_guest(&g, &opts), th_self,
			 EXEC_CASE_ARGV("chain", "1", spin[0], spin[1])),
	      "exec failed");
}

static void write_str(const char *path, const char *str)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0 && write(fd, str, strlen(str)) == (ssize_t)strlen(str),
	      "%s: %m", path);
	close(fd);
}

/*
 * In a pid namespace of our own, where a pid can be asked for (set_tid):
 * pid 1 mounts its /proc and waits; pid 2 is the VMM.  Exit status 4:
 * no namespaces here.
 */
static void recycled_pid(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	int uid = getuid(), gid = getgid(), status;
	struct guest g;
	char map[64];
	pid_t vmm;

	(void)arg;
	/*
	 * Without a user namespace where we may: root in one is not root for
	 * the scheduler, and only root may renice a process from SCHED_IDLE.
	 */
	if (unshare(CLONE_NEWPID | CLONE_NEWNS)) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS))
			_exit(4);
		snprintf(map, sizeof(map), "0 %d 1", uid);
		write_str("/proc/self/uid_map", map);
		write_str("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %d 1", gid);
		write_str("/proc/self/gid_map", map);
	}
	if (fork() != 0) {
		wait(&status);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	CHECK(!mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "mount: %m");
	CHECK(!mount("proc", "/proc", "proc", 0, NULL), "mount /proc: %m");
	vmm = fork();
	if (vmm == 0) {
		signal(SIGCHLD, SIG_IGN);	/* kept across the exec */
		make_guest(&g, RAM_SIZE, MAP_SHARED);
		exec_case(preserve_guest(&g, &opts), "recycled");
	}
	while (waitpid(vmm, &status, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static const struct cprx_check *keeper_check(struct cprx_session *s)
{
	static struct cprx_check checks[64];
	static struct cprx_preflight_report rep;

	rep.size = sizeof(rep);
	rep.max_checks = 64;
	rep.checks = checks;
	cprx_preflight(s, th_self, NULL, &rep);
	for (unsigned int i = 0; i < rep.nr_checks && i < rep.max_checks; i++)
		if (!strcmp(rep.checks[i].name, "keeper"))
			return &rep.checks[i];
	CHECK(0, "preflight has no 'keeper' check");
	return NULL;
}

static void preflight_keeper(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	c = keeper_check(s);
	printf("# %s\n", c->reason);
	CHECK(c->verdict == CPRX_PASS, "keeper: %d (%s)", c->verdict, c->reason);
	CHECK(nr_children() == 1, "%d children: preflight keeps its keeper "
	      "ready, and only it", nr_children());
	filter(__NR_close_range, SECCOMP_RET_ERRNO | ENOSYS);
	c = keeper_check(s);
	printf("# %s\n", c->reason);
	CHECK(c->verdict == CPRX_WARN && strstr(c->reason, "close_range"),
	      "keeper: %d (%s)", c->verdict, c->reason);
	filter(__NR_sched_setscheduler, SECCOMP_RET_KILL_PROCESS);
	c = keeper_check(s);
	printf("# %s\n", c->reason);
	CHECK(c->verdict == CPRX_WARN &&
	      strstr(c->reason, "deferred teardown unavailable"),
	      "keeper: %d (%s)", c->verdict, c->reason);
	CHECK(nr_children() == 0, "a probe keeper is left");
	check_guest(&g);
	cprx_session_close(s);
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Test Case: preflight_keeper_is_used
 * Preflight leaves its keeper ready (one child, nothing else) and the exec
 * takes it: the handover names that pid, so its start is not in the pause.
 */
TEST_TIMEOUT(preflight_keeper_is_used, 30)
{
	ASSERT_EQ(0, in_child(update_after_preflight, NULL));
}

/*
 * Test Case: preflight_keeper_killed
 * The keeper preflight left is SIGKILLed before the exec: the exec reaps
 * it (no zombie is left) and goes on with one of its own.
 */
TEST_TIMEOUT(preflight_keeper_killed, 30)
{
	ASSERT_EQ(0, in_child(update_after_preflight, "kill"));
}

/*
 * Test Case: keeper_killed_on_sched_setscheduler
 * A seccomp filter kills the keeper (SECCOMP_RET_KILL_PROCESS) at its
 * sched_setscheduler, before it reports ready.  cprx_exec must not wait
 * for it forever: the update goes on without a keeper, guest intact.
 */
TEST_TIMEOUT(keeper_killed_on_sched_setscheduler, 30)
{
	struct fault f = { __NR_sched_setscheduler, SECCOMP_RET_KILL_PROCESS };

	ASSERT_EQ(0, in_child(update_filtered, &f));
}

/*
 * Test Case: keeper_killed_on_close_range
 * The same with SECCOMP_RET_KILL_THREAD on close_range, the keeper's
 * first step after it blocks signals.
 */
TEST_TIMEOUT(keeper_killed_on_close_range, 30)
{
	struct fault f = { __NR_close_range, SECCOMP_RET_KILL_THREAD };

	ASSERT_EQ(0, in_child(update_filtered, &f));
}

/*
 * Test Case: close_range_enosys_update
 * close_range fails with ENOSYS (a seccomp profile, a kernel before 5.9):
 * the keeper must still drop its copy of the write end, so it exits after
 * the exec, and the new image exits without blocking in its atexit wait.
 */
TEST_TIMEOUT(close_range_enosys_update, 30)
{
	struct fault f = { __NR_close_range, SECCOMP_RET_ERRNO | ENOSYS };

	ASSERT_EQ(0, in_child(update_filtered, &f));
}

/*
 * Test Case: close_range_eperm_failed_exec
 * close_range fails with EPERM and the exec is refused: stopping the keeper
 * must not wait forever for a keeper that still holds the write end.
 */
TEST_TIMEOUT(close_range_eperm_failed_exec, 30)
{
	struct fault f = { __NR_close_range, SECCOMP_RET_ERRNO | EPERM };

	ASSERT_EQ(0, in_child(refused_filtered, &f));
}

/*
 * Test Case: vmm_waitpid_any
 * The new image calls waitpid(-1, 0) as a VMM reaping its own children
 * does: it must not get (and so steal) the keeper, which the library
 * still reaps itself.
 */
TEST_TIMEOUT(vmm_waitpid_any, 30)
{
	ASSERT_EQ(0, in_child(update_to, "waitpid_any"));
}

/*
 * Test Case: vmm_sa_nocldwait
 * A VMM with a SIGCHLD handler and SA_NOCLDWAIT: failed execs start and
 * stop keepers, and the VMM must get no SIGCHLD for them, nor a zombie.
 */
TEST_TIMEOUT(vmm_sa_nocldwait, 30)
{
	ASSERT_EQ(0, in_child(refused_nocldwait, NULL));
}

/*
 * Test Case: sigchld_ignored_recycled_pid
 * SIGCHLD=SIG_IGN in the VMM: the kernel reaps the keeper as it exits and
 * its pid goes to a new child of the VMM (at SCHED_IDLE).  No zombie, no
 * hang, and commit must not renice that child as if it were the keeper.
 */
TEST_TIMEOUT(sigchld_ignored_recycled_pid, 30)
{
	int ret = in_child(recycled_pid, NULL);

	if (ret == 4)
		SKIP(return, "no user and pid namespaces here");
	ASSERT_EQ(0, ret);
}

/*
 * Test Case: forged_keeper_pid
 * A handover with reap=PID of a process that is not our child (it set
 * itself SCHED_IDLE): commit must not touch its scheduling.
 */
TEST_TIMEOUT(forged_keeper_pid, 30)
{
	struct sched_param param = { 0 };
	pid_t victim = fork();

	if (victim == 0) {
		sched_setscheduler(0, SCHED_IDLE, &param);
		pause();
		_exit(0);
	}
	ASSERT_GT(victim, 0);
	for (int i = 0; i < 100 && sched_getscheduler(victim) != SCHED_IDLE; i++)
		usleep(10000);
	ASSERT_EQ(SCHED_IDLE, sched_getscheduler(victim));
	EXPECT_EQ(0, in_child(update_forged, &victim));
	EXPECT_EQ(SCHED_IDLE, sched_getscheduler(victim));
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
}

/*
 * Test Case: pgrp_signal_during_start
 * SIGUSR1 sent to the VMM's process group, over and over, while failed
 * execs start and stop keepers: the VMM's handler must never run in a
 * keeper (on its stack, with the VMM's TLS), and nothing hangs.
 */
TEST_TIMEOUT(pgrp_signal_during_start, 60)
{
	ASSERT_EQ(0, in_child(pgrp_signals, NULL));
}

/*
 * Test Case: preflight_keeper_check
 * Preflight runs the keeper's system calls under the VMM's own filter:
 * PASS without one, WARN naming close_range when it is refused, WARN
 * "deferred teardown unavailable" when the keeper is killed; the VMM
 * itself survives.
 */
TEST_TIMEOUT(preflight_keeper_check, 30)
{
	ASSERT_EQ(0, in_child(preflight_keeper, NULL));
}

/*
 * Test Case: keepers_pile_up
 * Eleven updates in a row, each before the last keeper could finish (busy
 * CPUs, no right to raise a keeper from SCHED_IDLE): more keepers are
 * pending than a handover names.  None may be dropped and left a zombie:
 * the last image reaps every one.
 */
TEST_TIMEOUT(keepers_pile_up, 120)
{
	ASSERT_EQ(0, in_child(keepers_pile_up, NULL));
}

TEST_HARNESS_MAIN
