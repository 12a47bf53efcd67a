// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of races: CREATE_SESSION refused (EEXIST, ENOSPC) in a
 * loop on several threads while the owner's pid wait queue is woken.  A
 * stock kernel may not crash on a use-after-free, so the test also reads
 * the kernel log it caused (root: /dev/kmsg).
 */
#include <stdatomic.h>
#include <sys/ptrace.h>
#include "kmod_util.h"

#define WORKERS		4
#define ROUNDS		300
#define ROUND_SECS	40

static atomic_int started;

/* Refused creates, forever: EEXIST on even rounds, ENOSPC on odd ones. */
static void *refused_creates(void *arg)
{
	long round = (long)arg >> 16, dev = (long)arg & 0xffff;
	const char *name = round % 2 ? "race-free-name" : "race-taken";
	int ret, want = round % 2 ? -ENOSPC : -EEXIST;

	for (;;) {
		ret = create(dev, name);
		CHECK(ret == want, "create %s: %d, not %d", name, ret, want);
		atomic_fetch_add(&started, 1);
	}
	return NULL;
}

/*
 * The owner: holds the sessions that make every create fail, starts the
 * workers, says so, and on "go" its main thread exits - which wakes the
 * pid wait queue (on 6.1 only for a traced main thread: the parent traces
 * it) while the workers' creates go on.
 */
__attribute__((noreturn))
static void owner(long round, int rep, int go)
{
	int dev = open_dev(), c;
	pthread_t t;

	CHECK(dev >= 0 && create(dev, "race-taken") >= 0, "setup");
	if (round % 2)
		CHECK(create(dev, "race-taken-2") >= 0, "setup");
	for (long i = 0; i < WORKERS; i++)
		CHECK(!pthread_create(&t, NULL, refused_creates,
				      (void *)(round << 16 | dev)), "thread");
	while (atomic_load(&started) < 2 * WORKERS)
		sched_yield();
	report(rep, 0);
	CHECK(read(go, &c, sizeof(c)) == sizeof(c), "go: %m");
	pthread_exit(NULL);
}

/* One round: the owner traced, its main thread gone, then all of it. */
static int race_round(long round, int delay_us)
{
	int rep[2], go[2], v, val, c = 0, status;
	pid_t pid;

	if (pipe2(rep, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		return -errno;
	pid = fork_flushed();
	if (pid < 0)
		return -errno;
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(60);
		close(rep[0]);
		close(go[1]);
		owner(round, rep[1], go[0]);
	}
	close(rep[1]);
	close(go[0]);
	v = read_report(rep[0], &val, 30000);
	if (!v && ptrace(PTRACE_SEIZE, pid, 0, 0))
		v = -errno;
	if (!v && write(go[1], &c, sizeof(c)) != sizeof(c))
		v = -EPIPE;
	usleep(delay_us);
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, __WALL) >= 0 || errno == EINTR)
		if (WIFEXITED(status) && WEXITSTATUS(status))
			v = v ? v : -EPROTO;	/* a worker's CHECK failed */
	close(rep[0]);
	close(go[1]);
	return v;
}

/* The kernel log from the end as it is now; -1 without /dev/kmsg. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Lines logged since kmsg_open() that mean a kernel bug; printed. */
static int kmsg_trouble(int fd)
{
	static const char *const bad[] = {
		"BUG", "Oops", "WARNING", "general protection",
		"corruption", "KASAN", "refcount_t", "Unable to handle",
		"invalid opcode", "stack segment",
	};
	char rec[2048];
	ssize_t n;
	int found = 0;

	while ((n = read(fd, rec, sizeof(rec) - 1)) != 0) {
		if (n < 0) {
			if (errno == EPIPE)
				continue;	/* overwritten: go on */
			break;
		}
		rec[n] = 0;
		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			if (strstr(rec, bad[i])) {
				if (found++ < 20)
					TH_LOG("kernel: %s", strtok(rec, "\n"));
				break;
			}
		}
	}
	return found;
}

/*
 * Test Case: create_refused_while_owner_exits
 * As root: rounds of a process whose 4 threads loop on refused creates
 * (EEXIST, then ENOSPC, alternately) while its traced main thread exits
 * (which wakes its pid wait queue on 6.1 and 7.x) and then it is killed:
 * every refusal is the right errno, no session leaks, and the kernel logs
 * no BUG, Oops, WARNING or corruption.
 */
TEST_F_TIMEOUT(kmod, create_refused_while_owner_exits, 300)
{
	static const int delays_us[] = { 0, 100, 1000, 5000 };
	long long end = now_ns() + ROUND_SECS * 1000000000LL;
	int kmsg, rounds = 0, ret;

	if (geteuid())
		SKIP(return, "module parameters and /dev/kmsg need root");
	kmsg = kmsg_open();
	ASSERT_GE(kmsg, 0);
	set_param(self, P_SESSIONS, 2);
	for (; rounds < ROUNDS && now_ns() < end; rounds++) {
		ret = race_round(rounds, delays_us[rounds % 4]);
		ASSERT_EQ(0, ret);
	}
	TH_LOG("%d rounds of %d threads refused while the owner exits",
	       rounds, WORKERS);
	/* the last work items and fputs run late */
	usleep(500000);
	EXPECT_EQ(0, proc_total());
	EXPECT_EQ(0, kmsg_trouble(kmsg));
	close(kmsg);
}

TEST_HARNESS_MAIN
