// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Between preflight and the update, with preflight's keeper ready: a fork
 * of the VMM that uses its copy of the session, another session's
 * preflight, a keeper stopped by SIGSTOP.  Nothing may hang the update,
 * leave a keeper or a zombie behind, or touch what is not ours.
 *
 * Kept in one file: one test binary per fault area, and its exec cases
 * must live in the binary whose tests exec into them.
 */
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "exec_util.h"

/* ---- helpers ------------------------------------------------------------- */

/* Our one child: the keeper preflight left ready. */
static pid_t warm_keeper(void)
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

static void preflight(struct cprx_session *s)
{
	struct cprx_preflight_report rep = { .size = sizeof(rep) };

	CHECK(!cprx_preflight(s, th_self, NULL, &rep), "%s", cprx_errmsg(s));
}

/* @pid's state letter in /proc (R, S, T, Z...), 0 when it is gone. */
static char proc_state(pid_t pid)
{
	char path[64], buf[256], *p;
	char state = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		state = p[2];
	if (f)
		fclose(f);
	return state;
}

/* Where the library's keeper went: its pid, from the handover. */
static pid_t handover_keeper(void)
{
	const char *env = getenv(CPRX_ENV), *k = env ? strstr(env, "keeper=") : NULL;

	CHECK(k && atoi(k + 7) > 0, "no keeper in the handover");
	return atoi(k + 7);
}

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
	return 0;
}

/* The parent's update, after its fork's: it took its own keeper, argv[0]. */
EXEC_CASE(after_fork)
{
	pid_t keeper = handover_keeper();
	struct cprx_session *s;
	struct guest g;

	alarm(0);	/* the old image's deadline: it did not hang */
	s = incoming();
	CHECK(keeper == atoi(argv[0]), "the handover names keeper %d, not %s, "
	      "the one preflight started", (int)keeper, argv[0]);
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	cprx_session_close(s);
	return 0;
}

/*
 * The keeper came through stopped (SIGSTOP): once committed it must go on
 * and exit.  If not, it is killed here, never left to hold the old mm.
 */
EXEC_CASE(stopped)
{
	pid_t keeper = handover_keeper();
	struct cprx_session *s = incoming();
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	for (int i = 0; i < 500 && nr_children(); i++)
		usleep(10000);
	if (proc_state(keeper) == 'T') {
		kill(keeper, SIGKILL);
		CHECK(0, "keeper %d is still stopped, holding the old mm, after "
		      "commit", (int)keeper);
	}
	wait_no_children();
	cprx_session_close(s);
	return 0;
}

/* ---- old-image halves ---------------------------------------------------- */

/*
 * Preflight, then a fork of the VMM updates with its copy of the session;
 * then the VMM updates.  Exit status 142 (SIGALRM): its cprx_exec hung.
 */
static void fork_updates_first(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	char pid[16];
	int status;
	pid_t child;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	preflight(s);
	snprintf(pid, sizeof(pid), "%d", (int)warm_keeper());
	child = fork();
	if (child == 0)
		exec_case(s, "intact");
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	      !WEXITSTATUS(status), "the fork's update failed: 0x%x", status);
	check_guest(&g);
	alarm(10);
	CHECK(!cprx_exec(s, th_self, EXEC_CASE_ARGV("after_fork", pid)),
	      "exec failed: %s", cprx_errmsg(s));
}

/* Another session preflighted, left open: the update is this one's. */
static void other_session_preflighted(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *other;
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	CHECK(!cprx_session_open(&other, "other", &opts), "%s",
	      cprx_errmsg(NULL));
	preflight(other);
	warm_keeper();
	exec_case(preserve_guest(&g, &opts), "intact");
}

/* Preflight's keeper is stopped (SIGSTOP, not blockable), then the update. */
static void stopped_keeper(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	pid_t keeper;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	preflight(s);
	keeper = warm_keeper();
	kill(keeper, SIGSTOP);
	for (int i = 0; i < 200 && proc_state(keeper) != 'T'; i++)
		usleep(10000);
	CHECK(proc_state(keeper) == 'T', "keeper %d did not stop", (int)keeper);
	exec_case(s, "stopped");
}

static void write_str(const char *path, const char *str)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0 && write(fd, str, strlen(str)) == (ssize_t)strlen(str),
	      "%s: %m", path);
	close(fd);
}

/* A new pid namespace, with a user namespace if we need one; else exit 4. */
static void new_pid_ns(void)
{
	int uid = getuid(), gid = getgid();
	char map[64];

	if (!unshare(CLONE_NEWPID | CLONE_NEWNS))
		return;
	if (unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS))
		_exit(4);
	snprintf(map, sizeof(map), "0 %d 1", uid);
	write_str("/proc/self/uid_map", map);
	write_str("/proc/self/setgroups", "deny");
	snprintf(map, sizeof(map), "0 %d 1", gid);
	write_str("/proc/self/gid_map", map);
}

/* A child of ours at pid @pid (free) that sets itself SCHED_IDLE. */
static pid_t idle_child_at(pid_t pid)
{
	struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal,
		 stack, stack_size, tls, set_tid, set_tid_size; } ca = {
		.exit_signal = SIGCHLD, .set_tid = (uintptr_t)&pid,
		.set_tid_size = 1 };
	struct sched_param param = { 0 };
	long ret;

	ret = syscall(SYS_clone3, &ca, sizeof(ca));
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
 * pid 1 of a pid namespace (as a VMM in a container is) preflights, then
 * forks into a pid namespace of its own: the fork is pid 1 too.  There,
 * a process of the fork's has the number the keeper has outside.  The
 * fork closes its copy of the session.
 */
static void pid1_forks_into_pidns(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	int status, ret;
	struct guest g;
	pid_t keeper, victim, child;

	(void)arg;
	new_pid_ns();
	if (fork() != 0) {
		wait(&status);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	CHECK(!mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "mount: %m");
	CHECK(!mount("proc", "/proc", "proc", 0, NULL), "mount /proc: %m");
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	preflight(s);
	keeper = warm_keeper();
	CHECK(getpid() == 1, "the VMM is pid %d, not 1", (int)getpid());
	CHECK(!unshare(CLONE_NEWPID), "unshare: %m");
	child = fork();
	if (child == 0) {
		victim = idle_child_at(keeper);
		cprx_session_close(s);
		ret = waitpid(victim, &status, WNOHANG) == victim ? 1 :
		      sched_getscheduler(victim) != SCHED_IDLE ? 2 : 0;
		kill(victim, SIGKILL);
		waitpid(victim, NULL, 0);
		CHECK(ret != 1, "closing a fork's copy of the session killed pid "
		      "%d of the fork's, which has the number of the keeper "
		      "of its parent", (int)victim);
		CHECK(ret != 2, "closing a fork's copy of the session reniced pid "
		      "%d of the fork's", (int)victim);
		_exit(0);	/* LeakSanitizer cannot run as a pid 1 */
	}
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	      !WEXITSTATUS(status), "the fork failed: 0x%x", status);
	CHECK(proc_state(keeper) && proc_state(keeper) != 'Z', "the fork "
	      "stopped its parent's keeper");
	cprx_session_close(s);
	CHECK(nr_children() == 0, "the keeper outlived the session");
	_exit(0);	/* pid 1 too */
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Test Case: fork_updates_before_vmm
 * Between preflight and the update the VMM forks, and the fork updates with
 * its copy of the session (its save goes through the session's io_uring,
 * which the fork shares).  The VMM's own update must then neither hang in
 * its save (the guest is stopped) nor lose the keeper preflight left it.
 */
TEST_TIMEOUT(fork_updates_before_vmm, 30)
{
	ASSERT_EQ(0, in_child(fork_updates_first, NULL));
}

/*
 * Test Case: other_session_preflighted
 * A session is preflighted and left open; the update goes by another one.
 * The first one's keeper ends with the exec (its write end is
 * close-on-exec): the new image must reap it, not keep it a zombie.
 */
TEST_TIMEOUT(other_session_preflighted, 30)
{
	ASSERT_EQ(0, in_child(other_session_preflighted, NULL));
}

/*
 * Test Case: stopped_keeper_update
 * Preflight's keeper is stopped by SIGSTOP (its blocked signals cannot
 * stop that) before the update.  After commit it must go on, exit and be
 * reaped: a keeper stopped for good holds the old address space forever.
 */
TEST_TIMEOUT(stopped_keeper_update, 30)
{
	ASSERT_EQ(0, in_child(stopped_keeper, NULL));
}

/*
 * Test Case: pid1_fork_in_new_pidns
 * A VMM that is pid 1 (in a container) preflights and forks into a new
 * pid namespace, where the fork is pid 1 too and one of its processes has
 * the keeper's number.  The fork's session close must take the keeper for
 * its parent's, not its own: renice or kill nothing of the fork's.
 */
TEST_TIMEOUT(pid1_fork_in_new_pidns, 30)
{
	int ret = in_child(pid1_forks_into_pidns, NULL);

	if (ret == 4)
		SKIP(return, "no user and pid namespaces here");
	ASSERT_EQ(0, ret);
}

TEST_HARNESS_MAIN
