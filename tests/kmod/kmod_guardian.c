// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of a session's guardian: SET_GUARDIAN and who may use
 * it; a session whose owner dies in the middle of an update kept for the
 * guardian, adopted (ADOPT_SESSION) and retrieved by the guardian's child,
 * pins and contents intact; no orphan outside an update, none past the
 * guardian's exit, none left once everything exits; owner death racing the
 * guardian's adopt and the guardian's own death.
 *
 * The test process is the guardian unless a test says otherwise: it makes
 * the socket pair (both ends name it as peer) and forks the owner.
 */
#include "kmod_util.h"

#define GSESS		"kmod-guarded"
#define GTOK		7
#define GSEED		11

static int set_guardian(int sfd, int sock)
{
	struct cprx_session_set_guardian a = { .size = sizeof(a), .fd = sock };

	return xioctl(sfd, CPRX_SESSION_SET_GUARDIAN, &a);
}

static int adopt(int dev, const char *name)
{
	struct cprx_ioctl_adopt_session a = { .size = sizeof(a) };
	int ret;

	set_name(a.name, name);
	ret = xioctl(dev, CPRX_IOCTL_ADOPT_SESSION, &a);
	return ret < 0 ? ret : a.fd;
}

static int flags_of(int sfd)
{
	struct cprx_session_query q = { .size = sizeof(q) };

	return query(sfd, &q, NULL, 0) < 0 ? -1 : (int)q.flags;
}

/* Until the orphan @name can be adopted (the owner's exit is async). */
static int adopt_wait(int dev, const char *name)
{
	int fd = -ENOENT;

	for (int i = 0; i < 500 && fd == -ENOENT; i++) {
		fd = adopt(dev, name);
		if (fd == -ENOENT)
			usleep(10000);
	}
	return fd;
}

enum stage { ST_GUARDED, ST_ARMED, ST_RETRIEVED, ST_FINISHED };

/*
 * The owner: a session guarded by the peer of @sock holding a patterned
 * memfd, taken to @stage (across an exec from ST_RETRIEVED on), then it
 * reports on @rep and waits to be killed.
 */
static pid_t start_owner(FIXTURE_DATA(kmod) *self, int sock, int stage,
			 int *rep)
{
	int p[2], val = -1;
	pid_t pid;

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		int dev = open_dev(), sfd, mem, ret;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		sfd = create(dev, GSESS);
		CHECK(sfd >= 0, "create: %d", sfd);
		mem = memfd_pattern(MEM_SIZE, GSEED);
		CHECK(mem >= 0, "memfd: %d", mem);
		CHECK(!preserve(sfd, mem, GTOK), "preserve");
		close(mem);
		ret = set_guardian(sfd, sock);
		CHECK(!ret, "set_guardian: %d", ret);
		if (stage >= ST_ARMED)
			CHECK(!arm(sfd, 0), "arm");
		if (stage < ST_RETRIEVED) {
			report(p[1], 0);
			sleep_forever();
		}
		CHECK(!keep_on_exec(sfd) && !keep_on_exec(p[1]), "fcntl");
		exec_or_die("owner_after_exec", p[1], stage, 0);
	}
	close(p[1]);
	track(self, pid);
	ASSERT_EQ(0, read_report(p[0], &val, 60000));
	ASSERT_EQ(0, val);
	*rep = p[0];
	return pid;
}

/* The owner's next image: retrieves, maybe finishes, waits to be killed. */
KMOD_EXEC_CASE(owner_after_exec, rep, stage, unused)
{
	int dev = open_dev(), sfd = retrieve_session(dev, GSESS);

	(void)unused;
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	if (stage >= ST_FINISHED)
		CHECK(!finish(sfd), "finish");
	report(rep, 0);
	sleep_forever();
}

/*
 * The guardian's child, after its exec: the adopted session is its own by
 * name, and holds the owner's memfd as it was.  @want is what
 * RETRIEVE_SESSION must give (0 or -errno).
 */
KMOD_EXEC_CASE(adopted, want, finish_it, unused)
{
	int dev = open_dev(), sfd = retrieve_session(dev, GSESS), mem;
	struct cprx_session_query q = { .size = sizeof(q) };
	long long bad;

	(void)unused;
	if (want) {
		CHECK(sfd == want, "retrieve_session: %d, want %ld", sfd, want);
		return 0;
	}
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	CHECK(!query(sfd, &q, NULL, 0), "query");
	CHECK(q.owner_pid == (uint32_t)getpid(), "owner %u, we are %d",
	      q.owner_pid, getpid());
	CHECK(q.flags & CPRX_SESSION_RETRIEVED, "flags 0x%x", q.flags);
	mem = retrieve_fd(sfd, GTOK);
	CHECK(mem >= 0, "retrieve_fd: %d", mem);
	bad = memfd_bad(mem, MEM_SIZE, GSEED);
	CHECK(bad < 0, "the owner's memfd differs at offset %lld", bad);
	if (finish_it)
		CHECK(!finish(sfd), "finish");
	return 0;
}

/* A child of ours that execs into "adopted" with @sfd inherited. */
static int run_adopted(FIXTURE_DATA(kmod) *self, int sfd, long want)
{
	pid_t pid = fork_flushed();

	ASSERT_GE(pid, 0);
	if (!pid) {
		CHECK(!keep_on_exec(sfd), "fcntl");
		exec_or_die("adopted", want, 1, 0);
	}
	track(self, pid);
	return reap_kid(self, pid);
}

static long sessions_left(void)
{
	return proc_total();
}

/* A socket pair whose peer is a child of ours: it is the guardian. */
static pid_t child_guardian(FIXTURE_DATA(kmod) *self, int *sock)
{
	int st[2], fd;
	pid_t pid;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		int sv[2];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		CHECK(!socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), "%m");
		CHECK(!send_fd(st[1], sv[1]), "send_fd");
		sleep_forever();
	}
	track(self, pid);
	close(st[1]);
	fd = recv_fd(st[0]);
	close(st[0]);
	ASSERT_GE(fd, 0);
	*sock = fd;
	return pid;
}

/*
 * Test Case: set_guardian_checks
 * SET_GUARDIAN: EBADF, ENOTSOCK, EINVAL for a non-AF_UNIX socket and for a
 * peer that is the owner itself, EPERM from a process that is not the
 * owner and for a peer of another euid, EEXIST the second time, EBUSY
 * once armed; QUERY shows CPRX_SESSION_GUARDED.
 */
TEST_F(kmod, set_guardian_checks)
{
	int sfd = create(self->dev, GSESS), sv[2], inet, sock, sfd2, nul;
	pid_t pid;

	ASSERT_GE(sfd, 0);
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	EXPECT_EQ(-EBADF, set_guardian(sfd, -1));
	EXPECT_EQ(-ENOTSOCK, set_guardian(sfd, nul));
	inet = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(inet, 0);
	EXPECT_EQ(-EINVAL, set_guardian(sfd, inet));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	EXPECT_EQ(-EINVAL, set_guardian(sfd, sv[0]));	/* our own pair */
	EXPECT_EQ(0, flags_of(sfd) & CPRX_SESSION_GUARDED);
	child_guardian(self, &sock);
	/* a forked child holds the session fd, but is not its owner */
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(set_guardian(sfd, sock) == -EPERM ? 0 : 1);
	EXPECT_EQ(0, reap(pid));
	EXPECT_EQ(0, set_guardian(sfd, sock));
	EXPECT_TRUE(flags_of(sfd) & CPRX_SESSION_GUARDED);
	EXPECT_EQ(-EEXIST, set_guardian(sfd, sock));
	/* armed: too late for a guardian */
	sfd2 = create(self->dev, "kmod-guarded-2");
	ASSERT_GE(sfd2, 0);
	ASSERT_EQ(0, arm(sfd2, 0));
	EXPECT_EQ(-EBUSY, set_guardian(sfd2, sock));
	ASSERT_EQ(0, arm(sfd2, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, finish(sfd2));
	close(sfd2);
	if (!geteuid()) {
		/* a peer running under another euid */
		int st[2], other;

		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
					st));
		pid = fork_flushed();
		ASSERT_GE(pid, 0);
		if (!pid) {
			CHECK(!setresuid(NOBODY, NOBODY, NOBODY), "%m");
			CHECK(!socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), "%m");
			CHECK(!send_fd(st[1], sv[1]), "send_fd");
			_exit(0);
		}
		other = recv_fd(st[0]);
		ASSERT_GE(other, 0);
		EXPECT_EQ(0, reap(pid));
		sfd2 = create(self->dev, "kmod-guarded-3");
		ASSERT_GE(sfd2, 0);
		EXPECT_EQ(-EPERM, set_guardian(sfd2, other));
		close(sfd2);
		close(other);
		close(st[0]);
		close(st[1]);
	}
	ASSERT_EQ(0, finish(sfd));
	close(sfd);
	close(sock);
	close(inet);
	close(nul);
	close(sv[0]);
	close(sv[1]);
}

/*
 * Our child retrieves the adopted session @afd after its exec and finishes
 * it; then nothing of the test is left.
 */
static void resume_and_end(FIXTURE_DATA(kmod) *self, int afd, int rep,
			   int sv[2])
{
	EXPECT_EQ(0, run_adopted(self, afd, 0));
	close(afd);
	close(rep);
	close(sv[0]);
	close(sv[1]);
	EXPECT_EQ(0, settle(sessions_left, 0));
}

/*
 * The owner dies at @stage: we adopt (QUERY: ORPHAN and ARMED), a second
 * ADOPT finds nothing, our child retrieves it and finds the memfd intact.
 */
static void adopt_at(FIXTURE_DATA(kmod) *self, int stage)
{
	int sv[2], rep, afd;
	pid_t owner;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	owner = start_owner(self, sv[1], stage, &rep);
	/* the owner lives: nothing to adopt */
	EXPECT_EQ(-ENOENT, adopt(self->dev, GSESS));
	kill_kid(self, owner);
	afd = adopt_wait(self->dev, GSESS);
	ASSERT_GE(afd, 0);
	EXPECT_TRUE(flags_of(afd) & CPRX_SESSION_ORPHAN);
	EXPECT_TRUE(flags_of(afd) & CPRX_SESSION_ARMED);
	EXPECT_EQ(-ENOENT, adopt(self->dev, GSESS));
	resume_and_end(self, afd, rep, sv);
}

/*
 * Test Case: adopt_after_arm
 * The owner dies armed: the guardian adopts the session, its child
 * retrieves it after an exec, finds the memfd as the owner pinned it and
 * becomes the owner.
 */
TEST_F(kmod, adopt_after_arm)
{
	adopt_at(self, ST_ARMED);
}

/*
 * Test Case: adopt_after_retrieve
 * The owner's next image retrieved the session and dies before FINISH:
 * still in the update, so kept and adopted as well.
 */
TEST_F(kmod, adopt_after_retrieve)
{
	adopt_at(self, ST_RETRIEVED);
}

/*
 * Test Case: not_kept_outside_update
 * Guarded but never armed, or finished: the session dies with its owner,
 * and ADOPT finds nothing.
 */
TEST_F(kmod, not_kept_outside_update)
{
	int stages[] = { ST_GUARDED, ST_FINISHED };

	for (size_t i = 0; i < ARRAY_SIZE(stages); i++) {
		int sv[2], rep;
		pid_t owner;

		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
					0, sv));
		owner = start_owner(self, sv[1], stages[i], &rep);
		kill_kid(self, owner);
		EXPECT_EQ(0, settle(sessions_left, 0));
		EXPECT_EQ(-ENOENT, adopt(self->dev, GSESS));
		close(rep);
		close(sv[0]);
		close(sv[1]);
	}
}

/*
 * Test Case: adopt_permissions
 * Only the guardian, under the session's euid, adopts: another process
 * (a child of the guardian) and the guardian under another euid do not;
 * only a child of the guardian retrieves the adopted session, not a
 * grandchild.
 */
TEST_F(kmod, adopt_permissions)
{
	int sv[2], rep, afd;
	pid_t owner, pid;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	owner = start_owner(self, sv[1], ST_ARMED, &rep);
	kill_kid(self, owner);
	/* wait for the orphan by our own failing attempts as another euid */
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid)	/* not the guardian: nothing there for it */
		_exit(adopt(open_dev(), GSESS) == -ENOENT ? 0 : 1);
	EXPECT_EQ(0, reap(pid));
	if (!geteuid()) {
		int ret = -ENOENT;

		ASSERT_EQ(0, seteuid(NOBODY));
		for (int i = 0; i < 500 && ret == -ENOENT; i++) {
			ret = adopt(self->dev, GSESS);
			if (ret == -ENOENT)
				usleep(10000);
		}
		ASSERT_EQ(0, seteuid(0));
		EXPECT_EQ(-EPERM, ret);
	}
	afd = adopt_wait(self->dev, GSESS);
	ASSERT_GE(afd, 0);
	/* a grandchild: its parent is not the guardian */
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		pid_t g = fork_flushed();

		CHECK(g >= 0, "fork: %m");
		if (!g) {
			CHECK(!keep_on_exec(afd), "fcntl");
			exec_or_die("adopted", -ENOENT, 0, 0);
		}
		_exit(reap(g));
	}
	EXPECT_EQ(0, reap(pid));
	/* still there for our own child */
	resume_and_end(self, afd, rep, sv);
}

/*
 * Test Case: orphan_freed_with_guardian
 * The owner dies armed while its guardian (a child of ours) lives: the
 * session is kept (listed); the guardian's exit ends it, pins and charge,
 * without an adopt.  A guardian gone before the owner keeps nothing.
 */
TEST_F(kmod, orphan_freed_with_guardian)
{
	int sock, rep;
	pid_t guardian, owner;

	guardian = child_guardian(self, &sock);
	owner = start_owner(self, sock, ST_ARMED, &rep);
	kill_kid(self, owner);
	usleep(100000);
	EXPECT_EQ(1, sessions_left());
	kill_kid(self, guardian);
	EXPECT_EQ(0, settle(sessions_left, 0));
	close(sock);
	close(rep);

	/* the guardian first, then the owner: nothing kept */
	guardian = child_guardian(self, &sock);
	owner = start_owner(self, sock, ST_ARMED, &rep);
	kill_kid(self, guardian);
	usleep(50000);
	kill_kid(self, owner);
	EXPECT_EQ(0, settle(sessions_left, 0));
	close(sock);
	close(rep);
}

/*
 * Test Case: orphan_counted
 * A kept session still counts against max_sessions of its user until it
 * ends: here with the adopted fd closed and no child retrieving it.
 */
TEST_F(kmod, orphan_counted)
{
	int sv[2], rep, afd, sfd;
	pid_t owner;

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_SESSIONS, 1);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	owner = start_owner(self, sv[1], ST_ARMED, &rep);
	kill_kid(self, owner);
	afd = adopt_wait(self->dev, GSESS);
	ASSERT_GE(afd, 0);
	sfd = create(self->dev, "kmod-one-too-many");
	EXPECT_EQ(-ENOSPC, sfd);
	close(afd);	/* adopted, not retrieved: gone with its last file */
	EXPECT_EQ(0, settle(sessions_left, 0));
	sfd = create(self->dev, "kmod-one-too-many");
	EXPECT_GE(sfd, 0);
	close(sfd);
	close(rep);
	close(sv[0]);
	close(sv[1]);
}

/*
 * Test Case: owner_death_races
 * 40 rounds each: the guardian adopts while the owner's death is still
 * being processed (retrying from the moment the SIGKILL is sent), and the
 * owner and the guardian are killed at the same moment.  No session, pin
 * or charge is left, and nothing the kernel logs (kmod-tests.sh checks).
 */
TEST_F_TIMEOUT(kmod, owner_death_races, 900)
{
	for (int i = 0; i < 40; i++) {
		int sv[2], rep, afd = -ENOENT;
		pid_t owner;

		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
					0, sv));
		owner = start_owner(self, sv[1], ST_ARMED, &rep);
		kill(owner, SIGKILL);
		for (int j = 0; j < 100000 && afd == -ENOENT; j++)
			afd = adopt(self->dev, GSESS);
		reap_kid(self, owner);
		ASSERT_GE(afd, 0);
		close(afd);
		close(rep);
		close(sv[0]);
		close(sv[1]);
		ASSERT_EQ(0, settle(sessions_left, 0));
	}
	for (int i = 0; i < 40; i++) {
		int sock, rep;
		pid_t guardian, owner;

		guardian = child_guardian(self, &sock);
		owner = start_owner(self, sock, ST_ARMED, &rep);
		kill(guardian, SIGKILL);
		kill(owner, SIGKILL);
		reap_kid(self, owner);
		reap_kid(self, guardian);
		close(sock);
		close(rep);
		ASSERT_EQ(0, settle(sessions_left, 0));
	}
}

TEST_HARNESS_MAIN
