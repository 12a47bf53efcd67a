// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The handover under hostile input: a forged CPRX_INCOMING with an fd that
 * holds a well-formed state (made here with the codec), fds the handover or
 * the state names that are not ours, a setuid-like image, a reused fd number
 * at commit, and the rollback reason that is the session's own message.
 */
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/capability.h>

#include "exec_util.h"
#include "handover.h"
#include "state.h"

/* ---- a forged handover ---------------------------------------------------- */

enum forge {
	FORGE_MEMFD,		/* a memfd without the seals */
	FORGE_FILE,		/* a regular file of ours */
	FORGE_PID,		/* the sealed memfd, but another pid's state */
	FORGE_SEALED,		/* what the old image makes, ours */
};

static char *const forged_argv[] = { "sh", "-c", "exit 42", NULL };

/* A state the codec itself wrote, naming /bin/sh as the previous binary. */
static int forged_state(enum forge how, const struct cprx_rec_fd *fds,
			unsigned int nr_fds)
{
	struct cprx_state st = {
		.session = "forged", .exe_path = "/bin/sh", .argc = 3,
		.argv = (char **)forged_argv, .exe_fd = -1,
		.pid = how == FORGE_PID ? getpid() + 1 : getpid(),
		.backend = CPRX_BACKEND_CLOEXEC,
		.fds = (struct cprx_rec_fd *)fds, .nr_fds = nr_fds,
	};
	char path[] = "/tmp/cprx-forged-XXXXXX";
	size_t len;
	void *buf;
	int fd;

	CHECK(!cprx_state_encode(&st, &buf, &len), "encode");
	if (how == FORGE_FILE) {
		fd = mkstemp(path);
		unlink(path);
	} else {
		fd = memfd_create("cprx-state", MFD_ALLOW_SEALING);
	}
	CHECK(fd >= 0, "state fd: %m");
	CHECK(write(fd, buf, len) == (ssize_t)len, "write: %m");
	CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %m");
	free(buf);
	if (how == FORGE_PID || how == FORGE_SEALED)
		CHECK(!fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
			     F_SEAL_WRITE | F_SEAL_SEAL), "seal: %m");
	return fd;
}

static void set_handover(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	CHECK(!setenv(CPRX_ENV, buf, 1), "setenv");
}

/* A process in SCHED_BATCH posing as a keeper: commit must leave it so. */
static pid_t fake_keeper(void)
{
	struct sched_param p = { 0 };
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		/* gone with the test, even if it failed before our prctl */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		pause();
		_exit(0);
	}
	CHECK(pid > 0, "fork: %m");
	CHECK(!sched_setscheduler(pid, SCHED_BATCH, &p), "SCHED_BATCH: %m");
	return pid;
}

/*
 * In a child: the forged handover must be refused with @what in the
 * message; then commit must not re-nice the fake keeper and rollback must
 * not exec the forged state's /bin/sh (which would exit 42).
 */
static void forged_refused(const void *arg)
{
	enum forge how = *(const enum forge *)arg;
	static const char *const what[] = {
		[FORGE_MEMFD] = "seal", [FORGE_FILE] = "memfd",
		[FORGE_PID] = "pid",
	};
	struct cprx_session *s;
	pid_t keeper = fake_keeper();
	int fd = forged_state(how, NULL, 0), ret, policy;

	set_handover("v=1,fd=%d,rb=0,keeper=%d,reap=,save=1,exec=2", fd,
		     (int)keeper);
	ret = cprx_incoming(&s, NULL);
	printf("# incoming: %d: %s\n", ret, s ? cprx_errmsg(s) : "");
	CHECK(ret < 0, "forged handover accepted (%d)", ret);
	CHECK(strstr(cprx_errmsg(s), what[how]), "message: %s", cprx_errmsg(s));
	CHECK(fcntl(fd, F_GETFD) == 0, "the forged fd was changed or closed");
	cprx_commit(s);
	policy = sched_getscheduler(keeper);
	kill(keeper, SIGKILL);
	waitpid(keeper, NULL, 0);
	CHECK(policy == SCHED_BATCH, "commit changed pid %d's policy to %d",
	      (int)keeper, policy);
	ret = cprx_rollback(s, "forged");
	CHECK(ret < 0, "rollback returned %d", ret);
	printf("# rollback: %s\n", cprx_errmsg(s));
	cprx_session_close(s);
}

/*
 * Test Case: forged_unsealed_memfd_refused
 * A memfd holding a well-formed state but without the old image's seals
 * is not the old image's: refused by name, nothing re-niced or exec'd.
 */
TEST(forged_unsealed_memfd_refused)
{
	enum forge how = FORGE_MEMFD;

	ASSERT_EQ(0, in_child(forged_refused, &how));
}

/*
 * Test Case: forged_regular_file_refused
 * The state crosses the exec in the sealed memfd only; a regular file
 * named by fd= is refused.
 */
TEST(forged_regular_file_refused)
{
	enum forge how = FORGE_FILE;

	ASSERT_EQ(0, in_child(forged_refused, &how));
}

/*
 * Test Case: forged_wrong_pid_refused
 * A sealed state written by another process (ORIGIN.pid is not ours): an
 * exec keeps the pid, so this is not our update.
 */
TEST(forged_wrong_pid_refused)
{
	enum forge how = FORGE_PID;

	ASSERT_EQ(0, in_child(forged_refused, &how));
}

/* A pipe without FD_CLOEXEC at @fd; returns the other end. */
static int plain_pipe_at(int fd)
{
	int p[2];

	CHECK(!pipe(p), "pipe: %m");
	CHECK(dup2(p[0], fd) == fd, "dup2: %m");
	close(p[0]);
	CHECK(fcntl(fd, F_GETFD) == 0, "flags");
	return p[1];
}

static void session_fd_refused(const void *arg)
{
	struct cprx_session *s;
	int efd = eventfd(0, 0), ret;

	(void)arg;
	CHECK(efd >= 0, "eventfd: %m");
	set_handover("v=1,kmod=%d,rb=0,keeper=0,reap=,save=1,exec=2", efd);
	ret = cprx_incoming(&s, NULL);
	printf("# incoming: %d: %s\n", ret, s ? cprx_errmsg(s) : "");
	CHECK(ret < 0, "accepted");
	CHECK(strstr(cprx_errmsg(s), "not a cprx session"), "message: %s",
	      cprx_errmsg(s));
	CHECK(fcntl(efd, F_GETFD) == 0, "fd %d's flags changed to %d", efd,
	      fcntl(efd, F_GETFD));
	cprx_session_close(s);
	CHECK(fcntl(efd, F_GETFD) == 0, "fd %d closed", efd);
}

/*
 * Test Case: forged_session_fd_refused
 * kmod= naming an eventfd: refused as not a cprx session, and proven so
 * before the fd is touched (its flags stay, it stays open).
 */
TEST(forged_session_fd_refused)
{
	ASSERT_EQ(0, in_child(session_fd_refused, NULL));
}

static void stdin_untouched(const void *arg)
{
	const char *key = arg;
	struct cprx_session *s;
	int ret;

	plain_pipe_at(0);
	set_handover("v=1,%s=0,rb=0,keeper=0,reap=,save=1,exec=2", key);
	ret = cprx_incoming(&s, NULL);
	printf("# %s=0: %d: %s\n", key, ret, s ? cprx_errmsg(s) : "");
	CHECK(ret < 0, "accepted");
	CHECK(fcntl(0, F_GETFD) == 0, "stdin's flags changed to %d",
	      fcntl(0, F_GETFD));
	cprx_session_close(s);
	CHECK(fcntl(0, F_GETFD) == 0, "stdin closed");
}

/*
 * Test Case: handover_fd0_leaves_stdin
 * fd=0 or kmod=0: stdin is not a state or a session; its flags are left
 * alone (it used to become close-on-exec).
 */
TEST(handover_fd0_leaves_stdin)
{
	ASSERT_EQ(0, in_child(stdin_untouched, "fd"));
	ASSERT_EQ(0, in_child(stdin_untouched, "kmod"));
}

static void record_fd_untouched(const void *arg)
{
	struct cprx_rec_fd r = { .token = "ram0", .kind = CPRX_FD_RAM,
				 .fd = 0, .size = 4096, .handle = 1 };
	struct cprx_session *s;
	int fd, ret, dummy;

	(void)arg;
	plain_pipe_at(0);
	fd = forged_state(FORGE_SEALED, &r, 1);
	set_handover("v=1,fd=%d,rb=0,keeper=0,reap=,save=1,exec=2", fd);
	ret = cprx_incoming(&s, NULL);
	CHECK(ret == 1, "incoming %d: %s", ret, s ? cprx_errmsg(s) : "");
	CHECK(fcntl(0, F_GETFD) == 0, "stdin's flags changed to %d",
	      fcntl(0, F_GETFD));
	ret = cprx_reclaim_fd(s, "ram0", &dummy);
	printf("# reclaim: %s\n", cprx_errmsg(s));
	CHECK(ret == -EBADF, "reclaim of a foreign fd gave %d", ret);
	CHECK(!cprx_commit(s), "commit: %s", cprx_errmsg(s));
	CHECK(fcntl(0, F_GETFD) == 0, "commit closed or changed stdin");
	cprx_session_close(s);
}

/*
 * Test Case: state_fd_record_checked_first
 * A record naming fd 0 (a pipe, not the recorded file): stdin keeps its
 * flags at incoming, reclaim refuses it, commit leaves it open.
 */
TEST(state_fd_record_checked_first)
{
	ASSERT_EQ(0, in_child(record_fd_untouched, NULL));
}

/* ---- secure_getenv -------------------------------------------------------- */

/* The image that got AT_SECURE: CPRX_INCOMING must not be believed. */
EXEC_CASE(secure_incoming)
{
	struct cprx_session *s;
	int ret;

	if (!getauxval(AT_SECURE))
		return 3;
	ret = cprx_incoming(&s, NULL);
	printf("# cprx_incoming under AT_SECURE: %d%s%s\n", ret,
	       s ? ": " : "", s ? cprx_errmsg(s) : "");
	return ret == 0 ? 0 : 1;
}

/*
 * Test Case: secure_getenv_used
 * An image started with privilege (AT_SECURE: here a file capability run
 * by an unprivileged user) must not believe CPRX_INCOMING from whoever
 * started it: cprx_incoming says "not an update".
 */
TEST(secure_getenv_used)
{
	struct vfs_cap_data cap = {
		.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
		.data[0].permitted = 1u << CAP_NET_BIND_SERVICE,
	};
	char dir[] = "/tmp/cprx-secure-XXXXXX", copy[PATH_MAX], cmd[2 * PATH_MAX + 16];
	int status;
	pid_t pid;

	if (geteuid() != 0)
		SKIP(return, "needs root to give a copy of the test a file "
		     "capability");
	ASSERT_NE_NULL(mkdtemp(dir));
	chmod(dir, 0755);
	/*
	 * A tmpfs of our own in a mount namespace of our own: /tmp may be
	 * mounted nosuid (the VM tier's is), which ignores file capabilities.
	 */
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE,
					  NULL) ||
	    mount("tmpfs", dir, "tmpfs", 0, "mode=0755")) {
		rmdir(dir);
		SKIP(return, "a tmpfs without nosuid: %s", strerror(errno));
	}
	snprintf(copy, sizeof(copy), "%s/fault_handover", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", th_self, copy);
	ASSERT_EQ(0, system(cmd));
	chmod(copy, 0755);
	if (setxattr(copy, "security.capability", &cap, sizeof(cap), 0)) {
		unlink(copy);
		umount(dir);
		rmdir(dir);
		SKIP(return, "setxattr security.capability: %s", strerror(errno));
	}
	pid = fork();
	if (pid == 0) {
		int fd = memfd_create("x", 0);

		/* a pid and fd the new image would otherwise act on */
		setenv(CPRX_ENV, "v=1,fd=0,rb=0,keeper=0,reap=,save=1,exec=2", 1);
		if (fd < 0 || setgid(65534) || setuid(65534))
			_exit(5);
		execv(copy, EXEC_CASE_ARGV("secure_incoming"));
		_exit(6);
	}
	ASSERT_GT(pid, 0);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	unlink(copy);
	umount(dir);
	rmdir(dir);
	ASSERT_TRUE(WIFEXITED(status));
	if (WEXITSTATUS(status) == 3)
		SKIP(return, "the kernel did not set AT_SECURE for a file "
		     "capability");
	ASSERT_EQ(0, WEXITSTATUS(status));
}

/* ---- commit and a reused fd number --------------------------------------- */

static void update_to_reuse(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .backend = CPRX_BACKEND_CLOEXEC };
	struct guest g;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), "reuse");
}

/* The new image closes dev.file unreclaimed and opens another file there. */
EXEC_CASE(reuse)
{
	struct cprx_session *s = incoming();
	struct guest g;
	int fd, mine;

	CHECK(!cprx_reclaim_ram(s, "ram0", (void **)&g.ram, &g.size, &g.ram_fd),
	      "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.eventfd", &g.efd), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.r", &g.pipe[0]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.w", &g.pipe[1]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.file", &fd), "%s", cprx_errmsg(s));
	close(fd);
	mine = eventfd(0, EFD_CLOEXEC);
	CHECK(mine == fd, "the number was not reused (%d, %d)", mine, fd);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(fcntl(mine, F_GETFD) >= 0, "commit closed fd %d, opened after "
	      "the update", mine);
	cprx_session_close(s);
	return 0;
}

/* The same, but dev.file is never reclaimed: the image closes its number. */
static void update_to_reuse_unreclaimed(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .backend = CPRX_BACKEND_CLOEXEC };
	struct guest g;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	CHECK(dup2(g.file_fd, 100) == 100, "dup2");
	close(g.file_fd);
	g.file_fd = 100;
	exec_case(preserve_guest(&g, &opts), "reuse_unreclaimed");
}

EXEC_CASE(reuse_unreclaimed)
{
	struct cprx_session *s = incoming();
	int mine;

	/* dev.file (fd 100) is not taken back; the image reuses the number */
	CHECK(!close(100), "fd 100 was not inherited: %m");
	mine = eventfd(0, EFD_CLOEXEC);
	CHECK(mine >= 0 && dup2(mine, 100) == 100, "dup2: %m");
	close(mine);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(fcntl(100, F_GETFD) >= 0, "commit closed fd 100, which the new "
	      "image opened after the update");
	cprx_session_close(s);
	return 0;
}

/*
 * Test Case: commit_keeps_reused_fd
 * The new image closed an inherited, unreclaimed fd and opened another at
 * its number: commit closes only what still is the preserved file.
 */
TEST(commit_keeps_reused_fd)
{
	ASSERT_EQ(0, in_child(update_to_reuse_unreclaimed, NULL));
	ASSERT_EQ(0, in_child(update_to_reuse, NULL));
}

/* ---- unescape ------------------------------------------------------------- */

/*
 * Test Case: unescape_stops_at_nul
 * A '%X' or '%' at the very end of an escaped field, right before an
 * unmapped page: unescape stops at the NUL (it read past it).
 */
TEST(unescape_stops_at_nul)
{
	static const char *const tails[] = { "ab%4", "ab%", "%", "%4" };
	long page = sysconf(_SC_PAGESIZE);
	char out[64];
	char *p;

	p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, mprotect(p + page, page, PROT_NONE));
	for (unsigned int i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		size_t n = strlen(tails[i]) + 1;
		char *in = p + page - n;

		memcpy(in, tails[i], n);
		EXPECT_EQ(-EINVAL, cprx_handover_unescape(out, sizeof(out), in));
		TH_LOG("'%s' -> '%s' (refused)", tails[i], out);
	}
	memcpy(p + page - 6, "a%2Cb", 6);
	EXPECT_EQ(0, cprx_handover_unescape(out, sizeof(out), p + page - 6));
	EXPECT_STREQ("a,b", out);
	munmap(p, 2 * page);
}

/* ---- cprx_rollback(s, cprx_errmsg(s)) ------------------------------------- */

static void rollback_own_message(const void *arg)
{
	struct cprx_session *s;
	int fd, ret, dummy;

	(void)arg;
	fd = forged_state(FORGE_SEALED, NULL, 0);
	/* a rollback image: a second rollback is refused */
	set_handover("v=1,fd=%d,rb=1,why=first,keeper=0,reap=,save=1,exec=2",
		     fd);
	ret = cprx_incoming(&s, NULL);
	CHECK(ret == 1, "incoming %d: %s", ret, s ? cprx_errmsg(s) : "");
	CHECK(cprx_reclaim_fd(s, "nope", &dummy) == -ENOENT, "reclaim");
	ret = cprx_rollback(s, cprx_errmsg(s));
	printf("# %s\n", cprx_errmsg(s));
	CHECK(ret == -ELOOP, "rollback gave %d", ret);
	CHECK(strstr(cprx_errmsg(s), "refusing a second rollback") &&
	      strstr(cprx_errmsg(s), "token 'nope' is not in the state (it "
		     "holds: nothing)"), "garbled: %s", cprx_errmsg(s));
	CHECK(!strstr(strstr(cprx_errmsg(s), "rollback") + 1,
		      "refusing a second"), "garbled: %s", cprx_errmsg(s));
	cprx_session_close(s);
}

/*
 * Test Case: rollback_with_own_errmsg
 * cprx_rollback(s, cprx_errmsg(s)), as the README's example does, when the
 * rollback is refused: the message is the refusal with the reason in it,
 * not an overlapping copy of itself.
 */
TEST(rollback_with_own_errmsg)
{
	ASSERT_EQ(0, in_child(rollback_own_message, NULL));
}

TEST_HARNESS_MAIN
