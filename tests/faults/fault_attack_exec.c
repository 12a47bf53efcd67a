// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The exec path attacked as a hostile VMM environment would: a seccomp
 * supervisor that never answers the keeper, a sandbox that refuses the
 * signals the library kills with, a VMM that ignores SIGCHLD or reaps
 * every child it is told about.  No call may hang, report a pass or a
 * failure it did not see, or touch a process that is not its own.
 */
#include <dirent.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "exec_util.h"

#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif

/*
 * sched_setscheduler waits for a seccomp supervisor that never answers
 * (its listener is kept open and never read); @refused (up to two system
 * calls, -1 for none: 0 is read on x86_64) fail with EPERM.  The keeper can then be stopped
 * only by a signal the library sends it.
 */
static void unanswered_supervisor(int refused1, int refused2)
{
	struct sock_filter f[] = {
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sched_setscheduler, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, refused1, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, refused2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	int listener;

	listener = seccomp_filter(f, ARRAY_SIZE(f),
				  SECCOMP_FILTER_FLAG_NEW_LISTENER);
	CHECK(listener >= 0, "seccomp: %m");
}

static const struct cprx_check *find_check(struct cprx_session *s,
					   const char *probe, const char *name)
{
	static struct cprx_check checks[64];
	static struct cprx_preflight_report rep;
	char *argv[] = { (char *)"probe", (char *)"--version", NULL };

	rep.size = sizeof(rep);
	rep.max_checks = 64;
	rep.checks = checks;
	cprx_preflight(s, probe ? probe : th_self, probe ? argv : NULL, &rep);
	for (unsigned int i = 0; i < rep.nr_checks && i < rep.max_checks; i++)
		if (!strcmp(rep.checks[i].name, name))
			return &rep.checks[i];
	CHECK(0, "preflight has no '%s' check", name);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Preflight's keeper check and a failed exec, each within a bound. */
static void unkillable_keeper(const void *arg)
{
	const int *refused = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	char *argv[] = { (char *)"nope", NULL };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	double t0;
	int ret, fds;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	unanswered_supervisor(refused[0], refused[1]);
	fds = fd_count();
	alarm(15);	/* the old code waits here forever */
	t0 = now_s();
	c = find_check(s, NULL, "keeper");
	printf("# keeper check after %.1f s: %s\n", now_s() - t0, c->reason);
	CHECK(c->verdict == CPRX_WARN, "keeper: %d (%s)", c->verdict, c->reason);
	t0 = now_s();
	ret = cprx_exec(s, "/nonexistent/cprx-vmm", argv);
	printf("# failed exec after %.1f s: %s\n", now_s() - t0, cprx_errmsg(s));
	CHECK(ret == -ENOENT, "cprx_exec: %d (%s)", ret, cprx_errmsg(s));
	alarm(0);
	check_guest(&g);
	CHECK(fd_count() == fds, "%d fds open, %d before", fd_count(), fds);
	cprx_session_close(s);
}

static void reap_all(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

/* A probe that exits 0 must not be reported as hung, nor failed. */
static void probe_reaped_elsewhere(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct sigaction sa = { .sa_handler = reap_all };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	double t0;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	signal(SIGCHLD, SIG_IGN);
	t0 = now_s();
	c = find_check(s, "/bin/true", "probe");
	printf("# SIG_IGN, after %.1f s: %d %s\n", now_s() - t0, c->verdict,
	       c->reason);
	CHECK(c->verdict != CPRX_FAIL, "probe: %s", c->reason);
	sigaction(SIGCHLD, &sa, NULL);
	t0 = now_s();
	c = find_check(s, "/bin/true", "probe");
	printf("# waitpid(-1) in the VMM, after %.1f s: %d %s\n", now_s() - t0,
	       c->verdict, c->reason);
	CHECK(c->verdict != CPRX_FAIL, "probe: %s", c->reason);
	check_guest(&g);
	cprx_session_close(s);
}

/* The new image of a relative state path: the handover names it whole. */
EXEC_CASE(relative_new)
{
	struct cprx_session *s = incoming();
	struct stat st;
	struct guest g;

	CHECK(argc == 1, "no state path");
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!lstat(argv[0], &st), "the state file is not there: %m");
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(lstat(argv[0], &st) < 0, "commit left the state file on disk");
	*strrchr(argv[0], '/') = '\0';
	rmdir(argv[0]);
	cprx_session_close(s);
	wait_no_children();
	return 0;
}

static void update_relative(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = "vm.state" };
	char dir[] = "/tmp/cprx-attack-XXXXXX", path[64];
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	CHECK(mkdtemp(dir), "mkdtemp: %m");
	CHECK(!chdir(dir), "chdir: %m");
	snprintf(path, sizeof(path), "%s/vm.state", dir);
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_preflight(s, th_self, NULL, NULL), "%s", cprx_errmsg(s));
	ret = cprx_exec(s, th_self, EXEC_CASE_ARGV("relative_new", path));
	CHECK(0, "exec failed (%d): %s", ret, cprx_errmsg(s));
}

/* Reached only when the old image exec'd with a preserved fd replaced. */
EXEC_CASE(replaced_new)
{
	struct cprx_session *s;
	int ret = cprx_incoming(&s, NULL);

	printf("# the exec went on with a replaced fd: incoming %d, reclaim "
	       "%d\n", ret, ret == 1 ? cprx_reclaim_fd(s, "dev.eventfd",
						       &(int){ -1 }) : 0);
	printf("# %s\n", cprx_errmsg(s));
	cprx_session_close(s);
	return 1;
}

/*
 * The VMM closed a preserved fd and the number was reused, by a file it
 * must not hand on (a key, a log), without an unpreserve.
 */
static void update_replaced(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int secret, ret, flags;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_save(s), "%s", cprx_errmsg(s));
	secret = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(secret >= 0, "open: %m");
	CHECK(dup3(secret, g.efd, O_CLOEXEC) == g.efd, "dup3: %m");
	close(secret);
	ret = cprx_exec(s, th_self, EXEC_CASE_ARGV("replaced_new"));
	printf("# refused: %s\n", cprx_errmsg(s));
	CHECK(ret == -EBADF, "cprx_exec: %d (%s)", ret, cprx_errmsg(s));
	flags = fcntl(g.efd, F_GETFD);
	CHECK(flags == FD_CLOEXEC, "the fd in the preserved one's place has "
	      "flags %d", flags);
	cprx_session_close(s);
}

/*
 * The new image of an update whose keeper could not be stopped: that
 * keeper goes on (the exec closed the supervisor's listener, so it is
 * answered ENOSYS) and exits; it must be reaped, not left a zombie.
 */
EXEC_CASE(stuck_keeper_new)
{
	struct cprx_session *s = incoming();
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	cprx_session_close(s);
	wait_no_children();
	return 0;
}

static void update_stuck_keeper(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	unanswered_supervisor(__NR_pidfd_send_signal, __NR_kill);
	exec_case(s, "stuck_keeper_new");
}

/* The save fails after the state file was renamed into place. */
static void save_fails_late(const void *arg)
{
	char path[64];
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = path };
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	snprintf(path, sizeof(path), "/tmp/cprx-attack-%d.state", (int)getpid());
	unlink(path);
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	install_filter(__NR_fstat, __NR_newfstatat);
	ret = cprx_save(s);
	printf("# save: %d %s\n", ret, cprx_errmsg(s));
	CHECK(ret < 0, "the save succeeded without fstat");
	cprx_session_close(s);
	ret = access(path, F_OK);
	unlink(path);
	CHECK(ret < 0, "a failed save left the state file %s on disk", path);
}

static void write_str(const char *path, const char *str)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0 && write(fd, str, strlen(str)) == (ssize_t)strlen(str),
	      "%s: %m", path);
	close(fd);
}

/*
 * In a mount namespace whose /dev is an empty tmpfs (a jail that made
 * only the nodes the VMM uses, and not /dev/null).  Exit status 4: no
 * namespaces here.
 */
static void probe_without_dev_null(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	int uid = getuid(), gid = getgid(), ret;
	const struct cprx_check *c;
	struct cprx_session *s;
	char map[64];

	(void)arg;
	if (unshare(CLONE_NEWNS)) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
			_exit(4);
		snprintf(map, sizeof(map), "0 %d 1", uid);
		write_str("/proc/self/uid_map", map);
		write_str("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %d 1", gid);
		write_str("/proc/self/gid_map", map);
	}
	CHECK(!mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "mount: %m");
	CHECK(!mount("tmpfs", "/dev", "tmpfs", 0, NULL), "mount /dev: %m");
	CHECK(cprx_session_open(&s, "jail", &opts) == 0, "%s", cprx_errmsg(NULL));
	c = find_check(s, "/bin/true", "probe");
	ret = cprx_preflight(s, "/bin/true", (char *[]){ "true", NULL }, NULL);
	printf("# probe: %d %s\n", c->verdict, c->reason);
	CHECK(c->verdict == CPRX_PASS && ret == 0, "probe: %s (%d, %s)",
	      c->reason, ret, cprx_errhint(s));
	cprx_session_close(s);
}

/* Reached only when a binary other than the one asked for was exec'd. */
EXEC_CASE(wrong_binary)
{
	struct cprx_session *s;

	printf("# exec'd this binary, not the one asked for\n");
	if (cprx_incoming(&s, NULL) == 1)
		cprx_session_close(s);
	return 1;
}

/*
 * A new binary's path longer than PATH_MAX whose first PATH_MAX - 1 bytes
 * name this (old) binary: "////...<th_self>-new".
 */
static void update_long_path(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	size_t pad = PATH_MAX - 1 - strlen(th_self);
	char *path = malloc(PATH_MAX + 16);
	struct guest g;
	int ret;

	(void)arg;
	CHECK(path, "malloc");
	memset(path, '/', pad);
	snprintf(path + pad, PATH_MAX + 16 - pad, "%s-new", th_self);
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, path, NULL, NULL);
	printf("# preflight: %d %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -ENAMETOOLONG, "preflight: %d (%s)", ret, cprx_errmsg(s));
	ret = cprx_exec(s, path, EXEC_CASE_ARGV("wrong_binary"));
	printf("# exec: %d %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -ENAMETOOLONG, "cprx_exec: %d (%s)", ret, cprx_errmsg(s));
	check_guest(&g);
	cprx_session_close(s);
	free(path);
}

/*
 * A bare name not in PATH, while the cwd holds a file of that name (a
 * link to this binary): execvp would say ENOENT.
 */
static void update_bare_name(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	char dir[] = "/tmp/cprx-attack-XXXXXX";
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	CHECK(mkdtemp(dir), "mkdtemp: %m");
	CHECK(!chdir(dir), "chdir: %m");
	CHECK(!symlink(th_self, "cprx-attack-vmm"), "symlink: %m");
	setenv("PATH", "/nonexistent", 1);
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, "cprx-attack-vmm", NULL, NULL);
	printf("# preflight: %d %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -ENOENT, "preflight: %d (%s)", ret, cprx_errmsg(s));
	ret = cprx_exec(s, "cprx-attack-vmm", EXEC_CASE_ARGV("wrong_binary"));
	unlink("cprx-attack-vmm");
	rmdir(dir);
	printf("# exec: %d %s\n", ret, cprx_errmsg(s));
	CHECK(ret == -ENOENT, "cprx_exec: %d (%s)", ret, cprx_errmsg(s));
	check_guest(&g);
	cprx_session_close(s);
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Test Case: keeper_unkillable_pidfd_signal_refused
 * The keeper waits on a seccomp supervisor that never answers, and the
 * sandbox refuses pidfd_send_signal (an allowlist older than it).  The
 * start's deadline passes; the kill must fall back to kill(2) instead of
 * waiting forever for a keeper that was never signalled, in preflight
 * and in cprx_exec (the guest is stopped there).
 */
TEST_TIMEOUT(keeper_unkillable_pidfd_signal_refused, 60)
{
	int refused[2] = { __NR_pidfd_send_signal, -1 };

	ASSERT_EQ(0, in_child(unkillable_keeper, refused));
}

/*
 * Test Case: keeper_unkillable_every_kill_refused
 * The same with kill(2) refused too: nothing can stop the keeper, so the
 * library must stop waiting for it after a bound and leave it to the
 * reaping of handed-over keepers.
 */
TEST_TIMEOUT(keeper_unkillable_every_kill_refused, 60)
{
	int refused[2] = { __NR_pidfd_send_signal, __NR_kill };

	ASSERT_EQ(0, in_child(unkillable_keeper, refused));
}

/*
 * Test Case: probe_reaped_elsewhere
 * A VMM that ignores SIGCHLD (the kernel reaps its children) or reaps
 * every child in its SIGCHLD handler takes the probe's exit status.
 * Preflight waited the full 10 s for it, reported a probe that exited 0
 * as hung (-ETIMEDOUT) and sent SIGKILL to its pid, which may be another
 * process's by then.
 */
TEST_TIMEOUT(probe_reaped_elsewhere, 60)
{
	ASSERT_EQ(0, in_child(probe_reaped_elsewhere, NULL));
}

/*
 * Test Case: relative_state_path
 * opts.state_path is relative ("vm.state", in the VMM's cwd): preflight
 * passes and the save writes the file, but the handover named the mirror
 * by that relative path, which the new image refuses as malformed; the
 * handover is then not believed, so the update and its rollback are both
 * refused and the guest is lost.  The new image must come up with the
 * guest and remove the file at commit.
 */
TEST_TIMEOUT(relative_state_path, 60)
{
	ASSERT_EQ(0, in_child(update_relative, NULL));
}

/*
 * Test Case: preserved_fd_replaced_before_exec
 * A preserved fd's number now holds another file.  The old image cleared
 * FD_CLOEXEC on it anyway (it checked the file only in a rollback) and
 * exec'd: a file the VMM never preserved crossed into the new image, whose
 * reclaim then refuses the token and whose rollback is refused too (the
 * fd is not the preserved file), so the guest is lost.  cprx_exec must
 * refuse before the exec, -EBADF, and leave that fd as it was.
 */
TEST_TIMEOUT(preserved_fd_replaced_before_exec, 60)
{
	ASSERT_EQ(0, in_child(update_replaced, NULL));
}

/*
 * Test Case: path_longer_than_path_max
 * The new binary's path is longer than PATH_MAX.  It was cut to PATH_MAX
 * - 1 bytes and that prefix was checked and exec'd: here the old binary
 * again, in general any file the prefix names.  Preflight and cprx_exec
 * must refuse it (-ENAMETOOLONG), as execve would.
 */
TEST_TIMEOUT(path_longer_than_path_max, 60)
{
	ASSERT_EQ(0, in_child(update_long_path, NULL));
}

/*
 * Test Case: bare_name_not_in_path
 * cprx_exec and preflight resolve a name without a slash through PATH, as
 * execvp does; when no PATH entry has it they fell back to the name itself,
 * relative to the cwd, and checked and exec'd whatever file of that name
 * the VMM's cwd held.  Both must say -ENOENT.
 */
TEST_TIMEOUT(bare_name_not_in_path, 60)
{
	ASSERT_EQ(0, in_child(update_bare_name, NULL));
}

/*
 * Test Case: stuck_keeper_handed_over
 * A keeper nothing can kill is left to the reaping of handed-over keepers,
 * but the exec's reap= list was made before the keeper started, so the new
 * image never learnt of it and it stayed a zombie there for good.
 */
TEST_TIMEOUT(stuck_keeper_handed_over, 60)
{
	ASSERT_EQ(0, in_child(update_stuck_keeper, NULL));
}

/*
 * Test Case: failed_save_leaves_no_state_file
 * The state file's save fails after the rename into place (here fstat is
 * refused; in life a failed directory fsync): the file stayed on disk,
 * unrecorded, so neither the session's close nor a commit removed it, and
 * the guest's device state stayed there.
 */
TEST_TIMEOUT(failed_save_leaves_no_state_file, 60)
{
	ASSERT_EQ(0, in_child(save_fails_late, NULL));
}

/*
 * Test Case: probe_without_dev_null
 * The probe's stdin was /dev/null, opened in the spawned child.  In a jail
 * without /dev/null the spawn failed ENOENT, and preflight failed the
 * update saying that the new binary could not be exec'd.  The probe must
 * run there, its stdin at EOF all the same.
 */
TEST_TIMEOUT(probe_without_dev_null, 60)
{
	int ret = in_child(probe_without_dev_null, NULL);

	if (ret == 4)
		SKIP(return, "no user and mount namespaces here");
	ASSERT_EQ(0, ret);
}

TEST_HARNESS_MAIN
