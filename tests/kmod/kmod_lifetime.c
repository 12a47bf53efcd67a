// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of what outlives what: /proc/cprx/sessions, the module
 * held while sessions exist, 1000 sessions without growth, and pins freed
 * when their owner is SIGKILLed at each phase of an update, with a copy of
 * the session fd alive elsewhere or in flight in a socket.
 */
#include <sched.h>
#include <sys/mount.h>
#include "kmod_util.h"

/* --- /proc/cprx/sessions, the module's lifetime, leaks -------------------- */

static void proc_child(long dev)
{
	int sfd = create(dev, "kmod-child");
	char line[256];

	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(proc_count(getpid(), "kmod-child", line, sizeof(line)) == 1,
	      "a child's session is listed under its pid");
}

/*
 * Test Case: proc_sessions
 * /proc/cprx/sessions: a line per session with pid, name, pins, armed,
 * retrieved and age, gone once finished or closed; a child's session is
 * listed under the child's pid.
 */
TEST_F(kmod, proc_sessions)
{
	int sfd = create(self->dev, "kmod-proc"), efd = eventfd(0, EFD_CLOEXEC);
	char line[256], want[128];
	long long age;

	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	ASSERT_EQ(1, proc_count(getpid(), "kmod-proc", line, sizeof(line)));
	snprintf(want, sizeof(want), "%d\tkmod-proc\t3\t0\t0\t", getpid());
	EXPECT_EQ(0, strncmp(line, want, strlen(want)));
	ASSERT_EQ(0, arm(sfd, 0));
	ASSERT_EQ(1, proc_count(getpid(), "kmod-proc", line, sizeof(line)));
	snprintf(want, sizeof(want), "%d\tkmod-proc\t3\t1\t0\t", getpid());
	ASSERT_EQ(0, strncmp(line, want, strlen(want)));
	age = strtoll(line + strlen(want), NULL, 10);
	EXPECT_GE(age, 0);
	EXPECT_LT(age, 60000);
	TH_LOG("%s", strtok(line, "\n"));
	ASSERT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, finish(sfd));
	EXPECT_EQ(0, proc_count(getpid(), "kmod-proc", NULL, 0));
	sfd = create(self->dev, "kmod-closed");
	ASSERT_GE(sfd, 0);
	EXPECT_EQ(1, proc_count(getpid(), "kmod-closed", NULL, 0));
	close(sfd);
	EXPECT_EQ(0, proc_count(getpid(), "kmod-closed", NULL, 0));
	EXPECT_EQ(0, run_child(self, proc_child, self->dev));
}

/*
 * In a new pid and mount namespace, with a /proc of its own: our session
 * under pid 1, the parent's not at all.
 */
static void in_pid_ns(long dev)
{
	char line[256];
	int sfd, n;

	CHECK(getpid() == 1, "pid %d in the new namespace", getpid());
	CHECK(!mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "%m");
	CHECK(!mount("proc", "/proc", "proc", 0, NULL), "mount proc: %m");
	sfd = create(dev, "kmod-ns-inner");
	CHECK(sfd >= 0, "create: %d", sfd);
	n = proc_count(1, "kmod-ns-inner", line, sizeof(line));
	CHECK(n == 1, "our session under pid 1: %d lines", n);
	n = proc_total();
	CHECK(n == 1, "%d lines in the namespace's %s (1 ours)", n,
	      PROC_SESSIONS);
}

static void pid_ns_parent(long dev)
{
	pid_t pid;

	CHECK(!unshare(CLONE_NEWPID | CLONE_NEWNS), "unshare: %m");
	pid = fork_flushed();
	CHECK(pid >= 0, "fork: %m");
	if (!pid) {
		in_pid_ns(dev);
		_exit(0);
	}
	_exit(reap(pid));
}

/*
 * Test Case: proc_sessions_pid_ns
 * As root: /proc/cprx/sessions read through a /proc of another pid
 * namespace lists only the sessions whose owner is in it, under the pid it
 * knows (1); the outer /proc lists ours under our pid.
 */
TEST_F(kmod, proc_sessions_pid_ns)
{
	int sfd = create(self->dev, "kmod-ns-outer");

	if (geteuid())
		SKIP(return, "pid and mount namespaces need root");
	ASSERT_GE(sfd, 0);
	EXPECT_EQ(0, run_child(self, pid_ns_parent, self->dev));
	EXPECT_EQ(1, proc_count(getpid(), "kmod-ns-outer", NULL, 0));
}

/*
 * Test Case: unload_refused
 * As root: the module does not unload while a session file holds it, nor
 * while a pinned /dev/cprx does; its refcount comes back once they go.
 */
TEST_F(kmod, unload_refused)
{
	int sfd, dev2;

	if (geteuid())
		SKIP(return, "delete_module needs root");
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, close(self->dev));
	/* only the session file holds the module now */
	ASSERT_EQ(self->refcnt + 1, module_refcnt());
	errno = 0;
	EXPECT_EQ(-1, syscall(SYS_delete_module, "cprx", O_NONBLOCK));
	TH_LOG("delete_module with a session open: %m");
	EXPECT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	ASSERT_EQ(0, access("/sys/module/cprx", F_OK));
	ASSERT_EQ(0, access(CPRX_DEVICE, F_OK));
	/* a pinned /dev/cprx holds it as well */
	dev2 = open_dev();
	ASSERT_GE(dev2, 0);
	ASSERT_EQ(0, preserve(sfd, dev2, 1));
	close(dev2);
	EXPECT_EQ(self->refcnt + 2, module_refcnt());
	EXPECT_EQ(0, close(sfd));
	EXPECT_EQ(self->refcnt, settle(module_refcnt, self->refcnt));
}

/* @n sessions with a pin each, created and destroyed three ways. */
static void churn(FIXTURE_DATA(kmod) *self, int efd, int n)
{
	for (int i = 0; i < n; i++) {
		int sfd = create(self->dev, "churn");

		ASSERT_GE(sfd, 0);
		ASSERT_EQ(0, preserve(sfd, efd, i));
		if (i % 3 == 1)
			ASSERT_EQ(0, arm(sfd, 0));
		else if (i % 3 == 2)
			ASSERT_EQ(0, finish(sfd));
		ASSERT_EQ(0, close(sfd));
	}
}

/*
 * Test Case: sessions_no_growth
 * 1000 sessions with a pin each, ended by close, after an ARM and after
 * FINISH: /proc lines and module refcount as before, Slab and MemAvailable
 * within what one leaked session each would exceed.
 */
TEST_F(kmod, sessions_no_growth)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	long slab, avail, refs, lines;

	ASSERT_GE(efd, 0);
	churn(self, efd, 100);		/* warm the slab caches */
	lines = proc_total();
	refs = module_refcnt();
	slab = meminfo_kb("Slab");
	avail = meminfo_kb("MemAvailable");
	churn(self, efd, 1000);
	TH_LOG("1000 sessions: Slab %+ld kB, MemAvailable %+ld kB",
	       meminfo_kb("Slab") - slab, meminfo_kb("MemAvailable") - avail);
	EXPECT_EQ(lines, proc_total());
	EXPECT_EQ(refs, module_refcnt());
	/* a leaked session is over 4 kB: 1000 of them would show */
	EXPECT_LE(meminfo_kb("Slab"), slab + 2048);
	EXPECT_GE(meminfo_kb("MemAvailable"), avail - 8192);
}

/* --- Pins never outlive their owner --------------------------------------- */

enum phase {
	PH_PINNED,	/* preserved, not armed */
	PH_ARMED,	/* armed, fd kept over exec, no exec yet */
	PH_EXEC,	/* about to execve: killed in it or right after */
	PH_EXECED,	/* the new image, before RETRIEVE_SESSION */
	PH_RETRIEVED,	/* the new image, retrieved, before FINISH */
	PH_COPY,	/* forked a child holding a copy of the session fd */
	PH_COPY_ARMED,	/* the same, armed */
};

/* 256 MiB, or a third of what is available. */
static size_t victim_size(void)
{
	long avail = meminfo_kb("MemAvailable");
	size_t size = 256u << 20;

	if (avail > 0 && (size_t)avail * 1024 / 3 < size)
		size = ((size_t)avail * 1024 / 3) & ~(size_t)(MEM_SIZE - 1);
	return size < (16u << 20) ? 16u << 20 : size;
}

/* Pins @size bytes of memfd, reaches @phase, reports, waits to be killed. */
__attribute__((noreturn))
static void victim(int phase, int rep, size_t size)
{
	int dev = open_dev(), sfd = create(dev, SESS), mfd;
	pid_t kid;

	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(size, 1);
	CHECK(mfd >= 0, "memfd: %d", mfd);
	CHECK(!preserve(sfd, mfd, TOK_MEM), "preserve");
	close(mfd);		/* the pin is all that holds it now */
	close(dev);
	if (phase != PH_PINNED && phase != PH_COPY)
		CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	if (phase >= PH_COPY) {
		kid = fork();
		CHECK(kid >= 0, "fork: %m");
		if (!kid) {
			alarm(120);
			sleep_forever();
		}
		report(rep, kid);
		sleep_forever();
	}
	if (phase == PH_PINNED || phase == PH_ARMED) {
		report(rep, 0);
		sleep_forever();
	}
	CHECK(!keep_on_exec(rep), "fcntl: %m");
	report(rep, 0);
	exec_or_die("victim", phase, rep, sfd);
	_exit(1);
}

KMOD_EXEC_CASE(victim, phase, rep, old)
{
	int dev, sfd, mfd;

	(void)old;
	if (phase == PH_RETRIEVED) {
		dev = open_dev();
		sfd = retrieve_session(dev, SESS);
		CHECK(sfd >= 0, "retrieve_session: %d", sfd);
		mfd = retrieve_fd(sfd, TOK_MEM);
		CHECK(mfd >= 0, "retrieve_fd: %d", mfd);
	}
	if (phase != PH_EXEC)
		report(rep, 0);
	sleep_forever();
	return 1;
}

/* Where @pid is: in execve (syscall 59), in the old image or the new. */
static const char *where_is(pid_t pid)
{
	char path[64], buf[256] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n > 0 && !strncmp(buf, "59 ", 3))
		return "in execve";
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return "unknown";
	/* NUL-separated: the second word tells */
	return memmem(buf, n, "--exec-case", 11) ? "in the new image" :
	       "in the old image (or running in execve)";
}

/* SIGKILLs a victim in @phase (@delay_us after it said so): pins go too. */
static void kill_victim(FIXTURE_DATA(kmod) *self, int phase, int delay_us)
{
	size_t size = victim_size();
	long base = shmem_kb(), held = -1, after;
	int rep[2], kid = -1;
	pid_t pid;

	ASSERT_GE(base, 0);
	ASSERT_EQ(0, pipe2(rep, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(120);		/* survives the exec */
		close(rep[0]);
		victim(phase, rep[1], size);
	}
	track(self, pid);
	close(rep[1]);
	ASSERT_EQ(0, read_report(rep[0], &kid, 60000));
	if (kid > 0)
		track(self, kid);
	if (phase == PH_EXEC) {
		if (delay_us)
			usleep(delay_us);
		TH_LOG("killed %s", where_is(pid));
	} else {
		/* the pin alone holds the memfd, and holds it */
		held = shmem_kb();
		EXPECT_GE(held, base + (long)(size >> 10) * 3 / 4);
	}
	kill_kid(self, pid);
	after = settle(shmem_kb, base + SHMEM_SLACK_KB);
	TH_LOG("phase %d, delay %d us: Shmem %ld kB before, %ld pinned, %ld after the kill (%zu MiB pinned)",
	       phase, delay_us, base, held, after, size >> 20);
	EXPECT_LE(after, base + SHMEM_SLACK_KB);
	EXPECT_EQ(0, proc_count(pid, NULL, NULL, 0));
	if (kid > 0) {
		/* the copy is still there, the pins are not */
		EXPECT_EQ(0, kill(kid, 0));
		kill_kid(self, kid);
	}
	close(rep[0]);
}

/*
 * Test Case: pins_die_with_owner_pinned
 * The owner of a pinned memfd (256 MiB or a third of free memory, only the
 * pin holding it) SIGKILLed after PRESERVE_FD: Shmem back to its baseline,
 * no session listed (kill_victim()).
 */
TEST_F(kmod, pins_die_with_owner_pinned)
{
	kill_victim(self, PH_PINNED, 0);
}

/*
 * Test Case: pins_die_with_owner_armed
 * The same, killed after ARM with the session fd kept over exec.
 */
TEST_F(kmod, pins_die_with_owner_armed)
{
	kill_victim(self, PH_ARMED, 0);
}

/*
 * Test Case: pins_die_with_owner_in_exec
 * The same, killed inside execve or just after it: 0 to 20 ms after it
 * says it execs.
 */
TEST_F_TIMEOUT(kmod, pins_die_with_owner_in_exec, 300)
{
	static const int delays_us[] = { 0, 50, 200, 1000, 5000, 20000 };

	for (size_t i = 0; i < ARRAY_SIZE(delays_us); i++)
		kill_victim(self, PH_EXEC, delays_us[i]);
}

/*
 * Test Case: pins_die_with_owner_execed
 * The same, killed in the new image before RETRIEVE_SESSION.
 */
TEST_F(kmod, pins_die_with_owner_execed)
{
	kill_victim(self, PH_EXECED, 0);
}

/*
 * Test Case: pins_die_with_owner_retrieved
 * The same, killed in the new image after RETRIEVE_SESSION and
 * RETRIEVE_FD, before FINISH.
 */
TEST_F(kmod, pins_die_with_owner_retrieved)
{
	kill_victim(self, PH_RETRIEVED, 0);
}

/*
 * Test Case: pins_die_with_owner_not_copy
 * The same, with a forked child holding a copy of the session fd: the child
 * lives on, the pins go with the owner.
 */
TEST_F(kmod, pins_die_with_owner_not_copy)
{
	kill_victim(self, PH_COPY, 0);
}

/*
 * Test Case: pins_die_with_owner_not_copy_armed
 * The same, armed.
 */
TEST_F(kmod, pins_die_with_owner_not_copy_armed)
{
	kill_victim(self, PH_COPY_ARMED, 0);
}

/* --- Pins bound to the owner, not to any fd on the session ---------------- */

/*
 * Test Case: owner_closed_its_fd
 * The owner hands a copy of its session fd to a child and closes its own:
 * flush() cannot see the owner's exit, the owner's pid wait queue must;
 * killed, its 64 MiB pinned go (Shmem back to its baseline).
 */
TEST_F(kmod, owner_closed_its_fd)
{
	long base = shmem_kb(), after;
	int rep[2], kid = -1;
	pid_t pid;

	ASSERT_EQ(0, pipe2(rep, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		int sfd = create(open_dev(), SESS);
		int mfd = memfd_pattern(64 << 20, 0);

		CHECK(sfd >= 0 && mfd >= 0 && !preserve(sfd, mfd, 1), "setup");
		close(mfd);
		kid = fork();
		if (!kid) {
			alarm(60);
			sleep_forever();
		}
		close(sfd);
		report(rep[1], kid);
		sleep_forever();
	}
	track(self, pid);
	close(rep[1]);
	ASSERT_EQ(0, read_report(rep[0], &kid, 60000));
	track(self, kid);
	kill_kid(self, pid);
	after = settle(shmem_kb, base + SHMEM_SLACK_KB);
	TH_LOG("owner dead, copy alive: Shmem %+ld kB", after - base);
	EXPECT_LE(after, base + SHMEM_SLACK_KB);
	kill_kid(self, kid);
}

/* --- Threads with fd tables of their own ---------------------------------- */

/* A thread that takes a table of its own (a copy: the session fd in it). */
static void *own_table(void *arg)
{
	long stay = (long)arg;

	if (unshare(CLONE_FILES))
		return (void *)(long)-errno;
	if (stay)
		sleep_forever();
	return NULL;
}

/*
 * Test Case: thread_own_table_exit
 * A thread that unshares its fd table (with a copy of the session fd in it)
 * and exits is no process exit: the session keeps its pin, unarmed and
 * armed.
 */
TEST_F(kmod, thread_own_table_exit)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	pthread_t t;
	void *ret;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	for (int armed = 0; armed < 2; armed++) {
		if (armed)
			ASSERT_EQ(0, arm(sfd, 0));
		ASSERT_EQ(0, pthread_create(&t, NULL, own_table, NULL));
		ASSERT_EQ(0, pthread_join(t, &ret));
		ASSERT_EQ(NULL, ret);
		ASSERT_EQ(0, query(sfd, &q, NULL, 0));
		EXPECT_EQ(1, q.nr_entries);
		EXPECT_EQ(armed ? CPRX_SESSION_ARMED : 0, q.flags);
	}
}

/* Pins 64 MiB, leaves a thread with its own table, reports, waits. */
static void own_table_owner(long rep)
{
	int sfd = create(open_dev(), SESS), mfd = memfd_pattern(64 << 20, 0);
	pthread_t t;

	CHECK(sfd >= 0 && mfd >= 0 && !preserve(sfd, mfd, 1), "setup");
	close(mfd);
	CHECK(!pthread_create(&t, NULL, own_table, (void *)1L), "thread");
	usleep(100000);
	report(rep, 0);
	sleep_forever();
}

/*
 * Test Case: process_with_own_table_thread_killed
 * The owner has a thread with a table of its own when it is SIGKILLed: the
 * process exit still ends the session (Shmem back to its baseline).
 */
TEST_F(kmod, process_with_own_table_thread_killed)
{
	long base = shmem_kb(), after;
	int rep[2], v;
	pid_t pid;

	ASSERT_EQ(0, pipe2(rep, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		own_table_owner(rep[1]);
	}
	track(self, pid);
	close(rep[1]);
	ASSERT_EQ(0, read_report(rep[0], &v, 60000));
	EXPECT_GE(shmem_kb(), base + (48 << 10));
	kill_kid(self, pid);
	after = settle(shmem_kb, base + SHMEM_SLACK_KB);
	TH_LOG("owner killed: Shmem %+ld kB", after - base);
	EXPECT_LE(after, base + SHMEM_SLACK_KB);
	EXPECT_EQ(0, proc_count(pid, NULL, NULL, 0));
	close(rep[0]);
}

/*
 * The session fd in flight in a unix socket the session pins itself: a
 * cycle neither the owner's exit (no fd of its own left) nor the unix GC
 * (a session is no socket) breaks.  Pins, session and a module reference
 * leak for good: rmmod fails afterwards.
 */
/* Sends its own session fd into a socket the session pins, and exits. */
static void scm_cycle(long unused)
{
	int sfd = create(open_dev(), SESS), mfd = memfd_pattern(64 << 20, 0);
	int s[2], ret;

	(void)unused;
	CHECK(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), "%m");
	CHECK(!preserve(sfd, mfd, 1) && !preserve(sfd, s[1], 2), "preserve");
	ret = send_fd(s[0], sfd);
	CHECK(!ret, "sendmsg: %s", strerror(-ret));
	/* no session fd left in our table: flush() will not see the exit */
	close(sfd);
}

/*
 * Test Case: scm_rights_cycle
 * A session pinning the socket its own fd is in flight in, no fd of it in
 * any table once the owner exits: Shmem comes back to its baseline.
 */
TEST_F(kmod, scm_rights_cycle)
{
	long base = shmem_kb(), after;

	EXPECT_EQ(0, run_child(self, scm_cycle, 0));
	after = settle(shmem_kb, base + SHMEM_SLACK_KB);
	TH_LOG("owner gone: Shmem %+ld kB, module refcnt %ld (%ld before)",
	       after - base, module_refcnt(), self->refcnt + 1);
	EXPECT_LE(after, base + SHMEM_SLACK_KB);
}

TEST_HARNESS_MAIN
