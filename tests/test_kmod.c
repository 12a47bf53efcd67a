// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests (kernel/cprx_uapi.h).
 *
 * Every test SKIPs when /dev/cprx is missing, so the host suite runs them as
 * skips; tests/vm/kmod-tests.sh runs them for real in a VM with the module
 * loaded, as root (some tests set module parameters, change uid, try to
 * unload the module or measure /proc/meminfo, so run them one at a time).
 *
 * "After an exec" is tested by exec'ing this binary with
 * "--exec-case NAME A0 A1 A2": a test forks a child that builds the old
 * image's session and execs; the new image (same pid) runs the case and
 * its exit status is what the test checks.  New images and forked children
 * report with "# " lines only, and exit 1 on a failed CHECK().
 *
 * Environment: CPRX_FUZZ_SEED, CPRX_FUZZ_CALLS, CPRX_FUZZ_THREADS (fuzz).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../kernel/cprx_uapi.h"
#include "harness.h"

#define SESS		"kmod-test"
#define TOK_MEM		0x8000000000000001ull	/* all 64 bits count */
#define TOK_EVT		2
#define TOK_PIPE_R	3
#define TOK_PIPE_W	4
#define MEM_SIZE	(1u << 20)
#define EVT_COUNT	42
#define PIPE_MSG	"bytes in flight"
#define NOBODY		65534
#define PAGE		4096u
#define PARAMS		"/sys/module/cprx/parameters/"
#define REFCNT		"/sys/module/cprx/refcnt"
#define PROC_SESSIONS	"/proc/cprx/sessions"
#define SHMEM_SLACK_KB	(16L << 10)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#ifndef offsetofend
#define offsetofend(T, m)	(offsetof(T, m) + sizeof(((T *)0)->m))
#endif

/* The same layout serves both: the fuzzer relies on it. */
_Static_assert(sizeof(struct cprx_ioctl_create_session) ==
	       sizeof(struct cprx_ioctl_retrieve_session), "layout");
_Static_assert(offsetof(struct cprx_ioctl_create_session, fd) ==
	       offsetof(struct cprx_ioctl_retrieve_session, fd), "layout");

/* The smallest CREATE/RETRIEVE_SESSION argument: up to the fd it returns. */
#define SESSION_ARG_MIN	offsetofend(struct cprx_ioctl_create_session, fd)

static char self_exe[PATH_MAX];

/*
 * In forked children and new images: a "# " diagnostic, then exit 1.  The
 * arguments are evaluated before anything is printed.
 */
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		char check_msg[PATH_MAX + 512];				\
									\
		snprintf(check_msg, sizeof(check_msg), __VA_ARGS__);	\
		printf("# %s:%d: %s\n", __FILE__, __LINE__, check_msg);	\
		fflush(stdout);						\
		_exit(1);						\
	}								\
} while (0)

/* --- ioctl helpers: 0, an fd, or -errno ----------------------------------- */

static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static void set_name(__u8 *dst, const char *name)
{
	memset(dst, 0, CPRX_SESSION_NAME_LEN);
	memcpy(dst, name, strnlen(name, CPRX_SESSION_NAME_LEN));
}

static int open_dev(void)
{
	return open(CPRX_DEVICE, O_RDWR | O_CLOEXEC);
}

static int create(int dev, const char *name)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	int ret;

	set_name(a.name, name);
	ret = xioctl(dev, CPRX_IOCTL_CREATE_SESSION, &a);
	return ret ? ret : a.fd;
}

static int retrieve_session(int dev, const char *name)
{
	struct cprx_ioctl_retrieve_session a = { .size = sizeof(a) };
	int ret;

	set_name(a.name, name);
	ret = xioctl(dev, CPRX_IOCTL_RETRIEVE_SESSION, &a);
	return ret ? ret : a.fd;
}

static int preserve(int sfd, int fd, uint64_t token)
{
	struct cprx_session_preserve_fd a = {
		.size = sizeof(a), .fd = fd, .token = token,
	};

	return xioctl(sfd, CPRX_SESSION_PRESERVE_FD, &a);
}

static int unpreserve(int sfd, uint64_t token)
{
	struct cprx_session_unpreserve_fd a = {
		.size = sizeof(a), .token = token,
	};

	return xioctl(sfd, CPRX_SESSION_UNPRESERVE_FD, &a);
}

static int arm(int sfd, uint32_t flags)
{
	struct cprx_session_arm a = { .size = sizeof(a), .flags = flags };

	return xioctl(sfd, CPRX_SESSION_ARM, &a);
}

static int retrieve_fd(int sfd, uint64_t token)
{
	struct cprx_session_retrieve_fd a = {
		.size = sizeof(a), .fd = -1, .token = token,
	};
	int ret = xioctl(sfd, CPRX_SESSION_RETRIEVE_FD, &a);

	return ret ? ret : a.fd;
}

static int finish(int sfd)
{
	struct cprx_session_finish a = { .size = sizeof(a) };

	return xioctl(sfd, CPRX_SESSION_FINISH, &a);
}

/* QUERY with room for @cap entries at @ents. */
static int query(int sfd, struct cprx_session_query *q,
		 struct cprx_query_entry *ents, uint32_t cap)
{
	memset(q, 0, sizeof(*q));
	q->size = sizeof(*q);
	q->nr_entries = cap;
	q->entries = (uintptr_t)ents;
	return xioctl(sfd, CPRX_SESSION_QUERY, q);
}

/* The kind QUERY reports for @token; -1 if it is not pinned. */
static int kind_of(int sfd, uint64_t token)
{
	struct cprx_query_entry ents[64];
	struct cprx_session_query q;

	if (query(sfd, &q, ents, ARRAY_SIZE(ents)))
		return -1;
	for (uint32_t i = 0; i < q.nr_entries && i < ARRAY_SIZE(ents); i++)
		if (ents[i].token == token)
			return ents[i].kind;
	return -1;
}

static int nr_pins(int sfd)
{
	struct cprx_session_query q;
	int ret = query(sfd, &q, NULL, 0);

	return ret ? ret : (int)q.nr_entries;
}

/* --- Process and system helpers ------------------------------------------- */

static int cloexec_of(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	return flags < 0 ? -errno : flags & FD_CLOEXEC;
}

/* The session fd crosses the exec: that is what keeps the session alive. */
static int keep_on_exec(int fd)
{
	return fcntl(fd, F_SETFD, 0) ? -errno : 0;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Unflushed stdio would be printed twice, or lost by an exec. */
static pid_t fork_flushed(void)
{
	fflush(stdout);
	fflush(stderr);
	return fork();
}

/* Exit status of @pid, 128 + the signal that killed it, or -1. */
static int reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* Becomes "--exec-case @ecase a0 a1 a2"; returns -errno if execv failed. */
static int exec_self(const char *ecase, long a0, long a1, long a2)
{
	char args[3][24];
	char *argv[] = { self_exe, "--exec-case", (char *)ecase,
			 args[0], args[1], args[2], NULL };

	snprintf(args[0], sizeof(args[0]), "%ld", a0);
	snprintf(args[1], sizeof(args[1]), "%ld", a1);
	snprintf(args[2], sizeof(args[2]), "%ld", a2);
	fflush(stdout);
	execv(self_exe, argv);
	return -errno;
}

__attribute__((noreturn))
static void exec_or_die(const char *ecase, long a0, long a1, long a2)
{
	int ret = exec_self(ecase, a0, a1, a2);

	CHECK(0, "exec %s: %s", self_exe, strerror(-ret));
	_exit(1);
}

static long read_long(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static int write_long(const char *path, long v)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CLOEXEC), len, ret = 0;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%ld\n", v);
	if (write(fd, buf, len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

/* A /proc/meminfo field in kB, or -1. */
static long meminfo_kb(const char *key)
{
	size_t n = strlen(key);
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static long shmem_kb(void)
{
	return meminfo_kb("Shmem");
}

static long module_refcnt(void)
{
	return read_long(REFCNT);
}

/* Waits up to 5 s for @read() to come down to @limit: fput may be deferred. */
static long settle(long (*read)(void), long limit)
{
	long v = read();

	for (int i = 0; i < 250 && v > limit; i++) {
		usleep(20000);
		v = read();
	}
	return v;
}

/*
 * Visits the lines of /proc/cprx/sessions after the header: @fn gets the
 * line and its pid and name; returns how many lines there were, or -1.
 */
static int proc_lines(void (*fn)(const char *line, int pid, const char *name,
				 void *arg), void *arg)
{
	char line[256], name[CPRX_SESSION_NAME_LEN];
	FILE *f = fopen(PROC_SESSIONS, "re");
	int n = 0, pid;

	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f) || strncmp(line, "pid\tname\t", 9)) {
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (fn && sscanf(line, "%d\t%63[^\t]", &pid, name) == 2)
			fn(line, pid, name, arg);
	}
	fclose(f);
	return n;
}

struct proc_find {
	int pid;
	const char *name;	/* NULL: any */
	int found;
	char line[256];
};

static void proc_find_fn(const char *line, int pid, const char *name,
			 void *arg)
{
	struct proc_find *pf = arg;

	if (pid != pf->pid || (pf->name && strcmp(name, pf->name)))
		return;
	pf->found++;
	snprintf(pf->line, sizeof(pf->line), "%s", line);
}

/* Sessions /proc/cprx/sessions lists for @pid (and @name, unless NULL). */
static int proc_count(int pid, const char *name, char *line, size_t size)
{
	struct proc_find pf = { .pid = pid, .name = name };

	if (proc_lines(proc_find_fn, &pf) < 0)
		return -1;
	if (line)
		snprintf(line, size, "%s", pf.line);
	return pf.found;
}

static long proc_total(void)
{
	return proc_lines(NULL, NULL);
}

/* A memfd of @size bytes, page i filled with (i + @seed): resident. */
static int memfd_pattern(size_t size, unsigned int seed)
{
	static uint8_t chunk[1 << 20];
	int fd = memfd_create("cprx-kmod", MFD_CLOEXEC);
	size_t off, n, i;

	if (fd < 0)
		return -errno;
	for (off = 0; off < size; off += n) {
		n = size - off < sizeof(chunk) ? size - off : sizeof(chunk);
		for (i = 0; i < n; i += PAGE)
			memset(chunk + i, (uint8_t)((off + i) / PAGE + seed),
			       PAGE);
		if (write(fd, chunk, n) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
	}
	return fd;
}

/* Offset of the first page of @fd that lost its pattern, or -1. */
static long long memfd_bad(int fd, size_t size, unsigned int seed)
{
	uint8_t page[PAGE], want[PAGE];

	for (size_t off = 0; off < size; off += PAGE) {
		memset(want, (uint8_t)(off / PAGE + seed), PAGE);
		if (pread(fd, page, PAGE, off) != PAGE ||
		    memcmp(page, want, PAGE))
			return off;
	}
	return -1;
}

/* Raises RLIMIT_NOFILE to at least @n (root may raise the hard limit). */
static int nofile_at_least(rlim_t n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_cur >= n)
		return 0;
	rl.rlim_cur = n;
	if (rl.rlim_max < n)
		rl.rlim_max = n;
	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/* One int from a child through @fd within @ms: 0, -ETIMEDOUT or -EPIPE. */
static int read_report(int fd, int *val, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return -ETIMEDOUT;
	return read(fd, val, sizeof(*val)) == sizeof(*val) ? 0 : -EPIPE;
}

static void report(int fd, int val)
{
	CHECK(write(fd, &val, sizeof(val)) == sizeof(val), "report: %m");
}

static void sleep_forever(void)
{
	for (;;)
		pause();
}

/* --- The fixture: skips without the module, leaves nothing behind --------- */

enum { P_PINS, P_SESSIONS, NR_PARAMS };
static const char *const param_names[NR_PARAMS] = {
	"max_pins", "max_sessions",
};
static long params_at_start[NR_PARAMS] = { -1, -1 };	/* read by main() */

static void param_path(char *path, size_t size, int p)
{
	snprintf(path, size, PARAMS "%s", param_names[p]);
}

/* A test that died before its teardown may have left a parameter set. */
static void restore_params(void)
{
	char path[128];
	long v;

	for (int p = 0; p < NR_PARAMS; p++) {
		param_path(path, sizeof(path), p);
		v = read_long(path);
		if (params_at_start[p] < 0 || v == params_at_start[p])
			continue;
		TH_LOG("%s was left at %ld: back to %ld", param_names[p], v,
		       params_at_start[p]);
		write_long(path, params_at_start[p]);
	}
}

FIXTURE(kmod) {
	int dev;
	long refcnt;			/* module references before the test */
	long saved[NR_PARAMS];		/* to restore; -1: untouched */
	pid_t kids[16];			/* killed and reaped by the teardown */
};

FIXTURE_SETUP(kmod)
{
	self->dev = -1;
	for (int i = 0; i < NR_PARAMS; i++)
		self->saved[i] = -1;
	if (access(CPRX_DEVICE, F_OK))
		SKIP(return, "cprx.ko not loaded (no %s)", CPRX_DEVICE);
	restore_params();
	self->refcnt = module_refcnt();
	self->dev = open_dev();
	ASSERT_GE(self->dev, 0);
	/* orphans of our children come to us, to be reaped */
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
}

FIXTURE_TEARDOWN(kmod)
{
	char path[128];

	if (self->dev < 0)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(self->kids); i++) {
		if (self->kids[i] > 0) {
			kill(self->kids[i], SIGKILL);
			reap(self->kids[i]);
		}
	}
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	for (int i = 0; i < NR_PARAMS; i++) {
		if (self->saved[i] < 0)
			continue;
		param_path(path, sizeof(path), i);
		EXPECT_EQ(0, write_long(path, self->saved[i]));
	}
	close_range(3, ~0U, 0);
	/* every session file, and every pinned /dev/cprx, holds one */
	EXPECT_EQ(self->refcnt, settle(module_refcnt, self->refcnt));
}

/* A child the teardown kills if the test leaves early. */
static void track(FIXTURE_DATA(kmod) *self, pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(self->kids); i++) {
		if (self->kids[i] <= 0) {
			self->kids[i] = pid;
			return;
		}
	}
	ASSERT_TRUE(!"too many children");
}

/* Reaps a tracked child: its exit status, or 128 + signal. */
static int reap_kid(FIXTURE_DATA(kmod) *self, pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(self->kids); i++)
		if (self->kids[i] == pid)
			self->kids[i] = 0;
	return reap(pid);
}

static void kill_kid(FIXTURE_DATA(kmod) *self, pid_t pid)
{
	kill(pid, SIGKILL);
	reap_kid(self, pid);
}

/* Runs @fn(@arg) in a child (dying with us) and returns its exit status. */
static int run_child(FIXTURE_DATA(kmod) *self, void (*fn)(long), long arg)
{
	pid_t pid = fork_flushed();

	if (pid < 0)
		return -1;
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(0);
	}
	track(self, pid);
	return reap_kid(self, pid);
}

/* Sets a module parameter until the teardown. */
static void set_param(FIXTURE_DATA(kmod) *self, int p, long v)
{
	char path[128];

	param_path(path, sizeof(path), p);
	if (self->saved[p] < 0)
		self->saved[p] = read_long(path);
	ASSERT_GE(self->saved[p], 0);
	ASSERT_EQ(0, write_long(path, v));
}

/* --- CREATE_SESSION and RETRIEVE_SESSION arguments ------------------------ */

TEST_F(kmod, create_names)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	char longest[CPRX_SESSION_NAME_LEN];
	struct cprx_session_query q;
	int fd, dup;

	EXPECT_EQ(-EINVAL, create(self->dev, ""));
	/* no NUL within the 64 bytes */
	memset(a.name, 'x', sizeof(a.name));
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));

	memset(longest, 'y', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	fd = create(self->dev, longest);
	ASSERT_GE(fd, 0);
	EXPECT_EQ(FD_CLOEXEC, cloexec_of(fd));
	ASSERT_EQ(0, query(fd, &q, NULL, 0));
	EXPECT_STREQ(longest, (char *)q.name);
	EXPECT_EQ(getpid(), q.owner_pid);
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(0, q.nr_entries);

	dup = create(self->dev, "dup");
	ASSERT_GE(dup, 0);
	EXPECT_EQ(-EEXIST, create(self->dev, "dup"));
	/* bytes after the NUL are not part of the name */
	memcpy(a.name, "dup\0trailing junk", 18);
	EXPECT_EQ(-EEXIST, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(2, proc_count(getpid(), NULL, NULL, 0));
	/* a closed session gives its name back, and so does a finished one */
	close(dup);
	dup = create(self->dev, "dup");
	ASSERT_GE(dup, 0);
	EXPECT_EQ(0, finish(dup));
	EXPECT_GE(create(self->dev, "dup"), 0);
}

static void create_dup_in_child(long dev)
{
	int fd = create(dev, "dup");

	CHECK(fd >= 0, "another process's name is not ours: %d", fd);
}

TEST_F(kmod, create_names_per_process)
{
	ASSERT_GE(create(self->dev, "dup"), 0);
	EXPECT_EQ(0, run_child(self, create_dup_in_child, self->dev));
}

TEST_F(kmod, create_args)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	int sfd;

	set_name(a.name, "args");
	a.flags = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.flags = 0x80000000;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.flags = 0;
	a.reserved = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	a.reserved = 0;
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, NULL));
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION,
				  (void *)16));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));
	/* fd is out only: whatever comes in is ignored */
	a.fd = 12345;
	ASSERT_EQ(0, xioctl(self->dev, CPRX_IOCTL_CREATE_SESSION, &a));
	sfd = a.fd;
	EXPECT_NE(12345, sfd);
	EXPECT_EQ(FD_CLOEXEC, cloexec_of(sfd));
	/* each file takes only its own commands */
	EXPECT_EQ(-ENOTTY, xioctl(sfd, CPRX_IOCTL_CREATE_SESSION, &a));
	EXPECT_EQ(-ENOTTY, xioctl(self->dev, CPRX_SESSION_ARM, &a));
	EXPECT_EQ(-ENOTTY, xioctl(self->dev, _IO(CPRX_IOCTL_TYPE, 0x02), &a));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(CPRX_IOCTL_TYPE, 0x46), &a));
	/* the size is in the struct, not in the command */
	EXPECT_EQ(-ENOTTY, xioctl(self->dev,
				  _IOWR(CPRX_IOCTL_TYPE, 0, typeof(a)), &a));
}

/*
 * CREATE_SESSION with a @size-byte argument, all zero past our struct but
 * byte @size - 1 = @last (if past it).  The fd, or -errno.
 */
static int create_sized(int dev, uint32_t size, uint8_t last, const char *name)
{
	static uint64_t buf[3 * PAGE / 8];
	struct cprx_ioctl_create_session *a = (void *)buf;
	int ret;

	memset(buf, 0, sizeof(buf));
	a->size = size;
	set_name(a->name, name);
	a->fd = -1;
	if (size > sizeof(*a) && size <= sizeof(buf))
		((uint8_t *)buf)[size - 1] = last;
	ret = xioctl(dev, CPRX_IOCTL_CREATE_SESSION, a);
	if (ret)
		return ret;
	/* the kernel writes back no more than it was given */
	if (size > sizeof(*a) && size <= sizeof(buf) &&
	    ((uint8_t *)buf)[size - 1] != last)
		return -EOVERFLOW;
	return a->fd;
}

TEST_F(kmod, create_sizes)
{
	static const uint32_t too_small[] = {
		0, 1, 4, 8, offsetof(struct cprx_ioctl_create_session, name),
		offsetofend(struct cprx_ioctl_create_session, name) - 1,
		/* a session the caller could not learn the fd of */
		offsetofend(struct cprx_ioctl_create_session, name),
		SESSION_ARG_MIN - 1,
	};
	static const uint32_t too_big[] = { PAGE + 1, 2 * PAGE, UINT32_MAX };
	uint32_t ours = sizeof(struct cprx_ioctl_create_session);
	int ok = 0;

	for (size_t i = 0; i < ARRAY_SIZE(too_small); i++) {
		TH_LOG("size %u", too_small[i]);
		EXPECT_EQ(-EINVAL, create_sized(self->dev, too_small[i], 0, "s"));
	}
	for (size_t i = 0; i < ARRAY_SIZE(too_big); i++) {
		TH_LOG("size %u", too_big[i]);
		EXPECT_EQ(-E2BIG, create_sized(self->dev, too_big[i], 0, "b"));
	}
	/* unknown bytes must be zero */
	EXPECT_EQ(-E2BIG, create_sized(self->dev, ours + 1, 1, "t1"));
	EXPECT_EQ(-E2BIG, create_sized(self->dev, PAGE, 0xff, "t2"));
	EXPECT_EQ(0, proc_count(getpid(), NULL, NULL, 0));

	/* older (no reserved), ours, and newer ones with a zero tail */
	EXPECT_GE(create_sized(self->dev, SESSION_ARG_MIN, 0, "ok1"), 0);
	EXPECT_GE(create_sized(self->dev, ours, 0, "ok2"), 0);
	EXPECT_GE(create_sized(self->dev, ours + 1, 0, "ok3"), 0);
	EXPECT_GE(create_sized(self->dev, PAGE, 0, "ok4"), 0);
	for (int i = 1; i <= 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "ok%d", i);
		ok += proc_count(getpid(), name, NULL, 0);
	}
	EXPECT_EQ(4, ok);
	EXPECT_EQ(4, proc_count(getpid(), NULL, NULL, 0));
}

TEST_F(kmod, retrieve_session_args)
{
	struct cprx_ioctl_retrieve_session a = { .size = sizeof(a) };
	int sfd = create(self->dev, SESS);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, arm(sfd, 0));
	set_name(a.name, SESS);
	a.flags = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.flags = 0;
	a.reserved = 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.reserved = 0;
	a.size = SESSION_ARG_MIN - 1;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	a.size = PAGE + 1;
	EXPECT_EQ(-E2BIG, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a));
	EXPECT_EQ(-EINVAL, retrieve_session(self->dev, ""));
	EXPECT_EQ(-ENOENT, retrieve_session(self->dev, "no such session"));
	EXPECT_EQ(-EFAULT, xioctl(self->dev, CPRX_IOCTL_RETRIEVE_SESSION, NULL));
	/* ours, armed, but this is the image that armed it */
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
}

/*
 * Every session command: below its minimum size EINVAL, above a page E2BIG,
 * a non-zero unknown byte E2BIG; a bigger zero-tailed struct works, and the
 * kernel writes back no more than our struct.
 */
static const struct sess_cmd {
	const char *name;
	unsigned long cmd;
	uint32_t min;
	uint32_t size;
} sess_cmds[] = {
	{ "PRESERVE_FD", CPRX_SESSION_PRESERVE_FD,
	  offsetofend(struct cprx_session_preserve_fd, token),
	  sizeof(struct cprx_session_preserve_fd) },
	{ "UNPRESERVE_FD", CPRX_SESSION_UNPRESERVE_FD,
	  offsetofend(struct cprx_session_unpreserve_fd, token),
	  sizeof(struct cprx_session_unpreserve_fd) },
	{ "ARM", CPRX_SESSION_ARM, offsetofend(struct cprx_session_arm, flags),
	  sizeof(struct cprx_session_arm) },
	{ "RETRIEVE_FD", CPRX_SESSION_RETRIEVE_FD,
	  offsetofend(struct cprx_session_retrieve_fd, token),
	  sizeof(struct cprx_session_retrieve_fd) },
	{ "FINISH", CPRX_SESSION_FINISH,
	  offsetofend(struct cprx_session_finish, reserved),
	  sizeof(struct cprx_session_finish) },
	{ "QUERY", CPRX_SESSION_QUERY,
	  offsetofend(struct cprx_session_query, entries),
	  sizeof(struct cprx_session_query) },
};

/* @cmd on @sfd with a zeroed @size-byte argument, byte @size - 1 = @last. */
static int sess_sized(int sfd, const struct sess_cmd *c, uint32_t size,
		      uint8_t last, const void *init)
{
	static uint64_t buf[2 * PAGE / 8];

	memset(buf, 0, sizeof(buf));
	if (init)
		memcpy(buf, init, c->size);
	memcpy(buf, &size, sizeof(size));
	if (size > c->size && size <= sizeof(buf))
		((uint8_t *)buf)[size - 1] = last;
	return xioctl(sfd, c->cmd, buf);
}

TEST_F(kmod, session_arg_sizes)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_preserve_fd p = { .fd = efd, .token = 7 };
	struct cprx_session_unpreserve_fd u = { .token = 7 };
	struct cprx_session_arm cancel = { .flags = CPRX_ARM_CANCEL };

	ASSERT_GE(sfd, 0);
	ASSERT_GE(efd, 0);
	for (size_t i = 0; i < ARRAY_SIZE(sess_cmds); i++) {
		const struct sess_cmd *c = &sess_cmds[i];

		TH_LOG("%s: min %u, ours %u", c->name, c->min, c->size);
		EXPECT_EQ(-EINVAL, sess_sized(sfd, c, 0, 0, NULL));
		EXPECT_EQ(-EINVAL, sess_sized(sfd, c, c->min - 1, 0, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, PAGE + 1, 0, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, c->size + 8, 1, NULL));
		EXPECT_EQ(-E2BIG, sess_sized(sfd, c, PAGE, 0x80, NULL));
		EXPECT_EQ(-EFAULT, xioctl(sfd, c->cmd, NULL));
	}
	/* nothing above did anything */
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));	/* not armed */

	/* bigger zero-tailed structs work; sess_sized() checks the tail */
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[0], PAGE, 0, &p));
	EXPECT_EQ(1, nr_pins(sfd));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[1], PAGE, 0, &u));
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[2], sess_cmds[2].size + 1, 0,
				NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[2], PAGE, 0, &cancel));
	EXPECT_EQ(-EPERM, sess_sized(sfd, &sess_cmds[3], PAGE, 0, NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[5], PAGE, 0, NULL));
	/* QUERY at its minimum: no name comes back, and nothing past it */
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[5], sess_cmds[5].min, 0, NULL));
	EXPECT_EQ(0, sess_sized(sfd, &sess_cmds[4], PAGE, 0, NULL));
	EXPECT_EQ(-ESRCH, preserve(sfd, efd, 1));
}

/* The kernel writes back only what the caller's size covers. */
TEST_F(kmod, query_short_struct)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS);

	ASSERT_GE(sfd, 0);
	memset(&q, 0xa5, sizeof(q));
	q.size = offsetofend(struct cprx_session_query, entries);
	q.flags = 0;
	q.owner_pid = 0;
	q.nr_entries = 0;
	q.entries = 0;
	ASSERT_EQ(0, xioctl(sfd, CPRX_SESSION_QUERY, &q));
	EXPECT_EQ(getpid(), q.owner_pid);
	for (size_t i = 0; i < sizeof(q.name); i++)
		EXPECT_EQ(0xa5, q.name[i]);
}

/* --- PRESERVE_FD / UNPRESERVE_FD ------------------------------------------ */

TEST_F(kmod, preserve_errors)
{
	int sfd = create(self->dev, SESS), other = create(self->dev, "other");
	int efd = eventfd(0, EFD_CLOEXEC), closed, opath;

	ASSERT_GE(sfd, 0);
	ASSERT_GE(other, 0);
	ASSERT_GE(efd, 0);
	closed = dup(efd);
	close(closed);
	opath = open("/", O_PATH | O_CLOEXEC);
	ASSERT_GE(opath, 0);

	EXPECT_EQ(-EBADF, preserve(sfd, -1, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, closed, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, 1 << 20, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, INT_MAX, 1));
	EXPECT_EQ(-EBADF, preserve(sfd, opath, 1));
	/* a session in a session would never die */
	EXPECT_EQ(-EINVAL, preserve(sfd, sfd, 1));
	EXPECT_EQ(-EINVAL, preserve(sfd, other, 1));
	EXPECT_EQ(0, nr_pins(sfd));

	EXPECT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EEXIST, preserve(sfd, efd, 1));
	/* it is the token that is taken, not the file */
	EXPECT_EQ(-EEXIST, preserve(sfd, self->dev, 1));
	EXPECT_EQ(0, preserve(sfd, efd, 2));
	EXPECT_EQ(0, preserve(sfd, efd, 0));
	EXPECT_EQ(0, preserve(sfd, efd, ~0ull));
	/* tokens are 64 bits wide: no truncation, no folding */
	EXPECT_EQ(0, preserve(sfd, efd, (1ull << 63) | 5));
	EXPECT_EQ(-EEXIST, preserve(sfd, efd, ~0ull));
	EXPECT_EQ(5, nr_pins(sfd));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, 1));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, ~0ull));
	EXPECT_EQ(CPRX_KIND_EVENTFD, kind_of(sfd, (1ull << 63) | 5));
	EXPECT_EQ(-1, kind_of(sfd, 5));
	EXPECT_EQ(-1, kind_of(sfd, (1ull << 32) | 5));

	EXPECT_EQ(-ENOENT, unpreserve(sfd, 3));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 5));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, (1ull << 32) | 5));
	EXPECT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 1));
	EXPECT_EQ(4, nr_pins(sfd));
	EXPECT_EQ(0, preserve(sfd, efd, 1));
	/* pins are per session */
	EXPECT_EQ(0, preserve(other, efd, 1));
	EXPECT_EQ(1, nr_pins(other));
	EXPECT_EQ(5, nr_pins(sfd));
}

TEST_F(kmod, unpreserve_reserved)
{
	struct cprx_session_unpreserve_fd u = {
		.size = sizeof(u), .reserved = 1, .token = 1,
	};
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_UNPRESERVE_FD, &u));
	EXPECT_EQ(1, nr_pins(sfd));
}

/* A pin is a reference: the pipe keeps a reader while only the pin has it. */
TEST_F(kmod, pin_holds_the_file)
{
	int sfd = create(self->dev, SESS), p[2];

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_NE(SIG_ERR, signal(SIGPIPE, SIG_IGN));
	ASSERT_EQ(0, preserve(sfd, p[0], 1));
	close(p[0]);
	EXPECT_EQ(1, write(p[1], "x", 1));
	ASSERT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(-1, write(p[1], "x", 1));
	EXPECT_EQ(EPIPE, errno);
}

TEST_F(kmod, finish_drops_pins)
{
	int sfd = create(self->dev, SESS), p[2];

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_NE(SIG_ERR, signal(SIGPIPE, SIG_IGN));
	ASSERT_EQ(0, preserve(sfd, p[0], 1));
	close(p[0]);
	ASSERT_EQ(0, finish(sfd));
	EXPECT_EQ(-1, write(p[1], "x", 1));
	EXPECT_EQ(EPIPE, errno);
	/* finished is dead: nothing more can be pinned or armed */
	EXPECT_EQ(0, nr_pins(sfd));
	EXPECT_EQ(-ESRCH, preserve(sfd, p[1], 2));
	EXPECT_EQ(-ESRCH, arm(sfd, 0));
	EXPECT_EQ(-ENOENT, unpreserve(sfd, 1));
	EXPECT_EQ(0, proc_count(getpid(), SESS, NULL, 0));
}

/* --- QUERY ---------------------------------------------------------------- */

struct kind_case {
	const char *what;
	int fd;
	uint32_t kind;
};

TEST_F(kmod, query_kinds)
{
	struct cprx_query_entry ents[16];
	struct kind_case k[12];
	struct cprx_session_query q;
	char fifo[] = "/tmp/cprx-kmod-fifo-XXXXXX";
	int sfd = create(self->dev, SESS), p[2], sp[2], n = 0, hfd;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
	k[n++] = (struct kind_case){ "memfd", memfd_create("k", MFD_CLOEXEC),
				     CPRX_KIND_MEMFD };
	k[n++] = (struct kind_case){ "eventfd", eventfd(0, EFD_CLOEXEC),
				     CPRX_KIND_EVENTFD };
	k[n++] = (struct kind_case){ "pipe", p[0], CPRX_KIND_PIPE };
	k[n++] = (struct kind_case){ "socket", sp[0], CPRX_KIND_SOCKET };
	/* devtmpfs is a tmpfs: the file type must win over the fs */
	k[n++] = (struct kind_case){ "/dev/null",
				     open("/dev/null", O_RDWR | O_CLOEXEC),
				     CPRX_KIND_CHARDEV };
	k[n++] = (struct kind_case){ "/dev/cprx", self->dev,
				     CPRX_KIND_CHARDEV };
	k[n++] = (struct kind_case){ "regular", open(self_exe,
				     O_RDONLY | O_CLOEXEC), CPRX_KIND_REGULAR };
	k[n++] = (struct kind_case){ "epoll", epoll_create1(EPOLL_CLOEXEC),
				     CPRX_KIND_ANON };
	if (mkdtemp(fifo) && !rmdir(fifo) && !mkfifo(fifo, 0600)) {
		k[n++] = (struct kind_case){ "fifo on /tmp",
			open(fifo, O_RDWR | O_CLOEXEC), CPRX_KIND_PIPE };
		unlink(fifo);
	}
	hfd = memfd_create("k", MFD_CLOEXEC | MFD_HUGETLB);
	if (hfd >= 0)
		k[n++] = (struct kind_case){ "hugetlb memfd", hfd,
					     CPRX_KIND_HUGETLB };
	else
		TH_LOG("no hugetlb memfd (%m): not checked");
	for (int i = 0; i < n; i++) {
		ASSERT_GE(k[i].fd, 0);
		ASSERT_EQ(0, preserve(sfd, k[i].fd, 100 + i));
	}
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	ASSERT_EQ(n, q.nr_entries);
	for (int i = 0; i < n; i++) {
		int kind = kind_of(sfd, 100 + i);

		if (kind != (int)k[i].kind)
			TH_LOG("%s: kind %d, expected %u", k[i].what, kind,
			       k[i].kind);
		EXPECT_EQ(k[i].kind, kind);
		EXPECT_EQ(0, ents[i].reserved);
	}
}

TEST_F(kmod, query_entries)
{
	struct cprx_query_entry ents[8];
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	uint64_t seen = 0;

	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 6; i++)
		ASSERT_EQ(0, preserve(sfd, efd, 10 + i));
	/* fewer places than pins: the count is all of them, two are copied */
	memset(ents, 0xa5, sizeof(ents));
	ASSERT_EQ(0, query(sfd, &q, ents, 2));
	EXPECT_EQ(6, q.nr_entries);
	for (int i = 0; i < 2; i++) {
		EXPECT_GE(ents[i].token, 10);
		EXPECT_LE(ents[i].token, 15);
	}
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, ents[2].token);
	/* enough places: each token exactly once */
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	EXPECT_EQ(6, q.nr_entries);
	for (int i = 0; i < 6; i++)
		seen |= 1ull << (ents[i].token - 10);
	EXPECT_EQ(0x3f, seen);
	/* no room: just the count, even without a pointer */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(6, q.nr_entries);
	EXPECT_STREQ(SESS, (char *)q.name);
	EXPECT_EQ(getpid(), q.owner_pid);
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(-EFAULT, query(sfd, &q, (void *)16, 4));
	EXPECT_EQ(-EFAULT, query(sfd, &q, NULL, 4));
	/* flags and owner_pid are out: must come in as 0 */
	memset(&q, 0, sizeof(q));
	q.size = sizeof(q);
	q.flags = CPRX_SESSION_ARMED;
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_QUERY, &q));
	q.flags = 0;
	q.owner_pid = getpid();
	EXPECT_EQ(-EINVAL, xioctl(sfd, CPRX_SESSION_QUERY, &q));
}

/* --- ARM ------------------------------------------------------------------ */

TEST_F(kmod, arm_rules)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_query q;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 1));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));	/* nothing to undo */
	EXPECT_EQ(-EINVAL, arm(sfd, 2));
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL | 0x80000000));
	ASSERT_EQ(0, arm(sfd, 0));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
	EXPECT_EQ(-EBUSY, arm(sfd, 0));
	/* an armed session is frozen */
	EXPECT_EQ(-EBUSY, preserve(sfd, efd, 2));
	EXPECT_EQ(-EBUSY, unpreserve(sfd, 1));
	EXPECT_EQ(-EBUSY, finish(sfd));
	EXPECT_EQ(1, nr_pins(sfd));
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, 1));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	/* until the arm is undone */
	ASSERT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(0, q.flags);
	EXPECT_EQ(-EINVAL, arm(sfd, CPRX_ARM_CANCEL));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	EXPECT_EQ(0, preserve(sfd, efd, 2));
	EXPECT_EQ(0, unpreserve(sfd, 1));
	EXPECT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	EXPECT_EQ(0, finish(sfd));
}

/* --- Across exec ---------------------------------------------------------- */

/* The old image of "update": pins a memfd, an eventfd and a pipe, execs. */
static void update_old_image(long unused)
{
	int dev = open_dev(), sfd, mfd, efd, p[2];

	(void)unused;
	CHECK(dev >= 0, "open %s: %m", CPRX_DEVICE);
	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(MEM_SIZE, 7);
	CHECK(mfd >= 0, "memfd: %d", mfd);
	efd = eventfd(EVT_COUNT, EFD_CLOEXEC);
	CHECK(efd >= 0, "eventfd: %m");
	CHECK(!pipe2(p, O_CLOEXEC), "pipe: %m");
	CHECK(write(p[1], PIPE_MSG, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG),
	      "pipe write: %m");
	CHECK(!preserve(sfd, mfd, TOK_MEM), "preserve memfd");
	CHECK(!preserve(sfd, efd, TOK_EVT), "preserve eventfd");
	CHECK(!preserve(sfd, p[0], TOK_PIPE_R), "preserve pipe");
	CHECK(!preserve(sfd, p[1], TOK_PIPE_W), "preserve pipe");
	CHECK(!arm(sfd, 0), "arm");
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("update", sfd, 0, 0);
}

static void check_kinds(int sfd)
{
	static const struct { uint64_t token; uint32_t kind; } want[] = {
		{ TOK_MEM, CPRX_KIND_MEMFD }, { TOK_EVT, CPRX_KIND_EVENTFD },
		{ TOK_PIPE_R, CPRX_KIND_PIPE }, { TOK_PIPE_W, CPRX_KIND_PIPE },
	};
	struct cprx_query_entry ents[8];
	struct cprx_session_query q;
	int ret = query(sfd, &q, ents, ARRAY_SIZE(ents));

	CHECK(!ret, "query: %d", ret);
	CHECK(q.nr_entries == 4, "%u pins", q.nr_entries);
	CHECK(q.flags == CPRX_SESSION_RETRIEVED, "flags %#x", q.flags);
	CHECK(q.owner_pid == (uint32_t)getpid(), "owner %u", q.owner_pid);
	CHECK(!strcmp((char *)q.name, SESS), "name %s", q.name);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		int kind = kind_of(sfd, want[i].token);

		CHECK(kind == (int)want[i].kind, "token %#" PRIx64 ": kind %d",
		      want[i].token, kind);
	}
}

/* Takes every pin back and checks what is in it. */
static void check_contents(int sfd)
{
	struct stat a, b;
	char msg[sizeof(PIPE_MSG)];
	uint64_t count;
	int mfd, mfd2, efd, r, w;

	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd >= 0, "retrieve memfd: %d", mfd);
	CHECK(cloexec_of(mfd) == FD_CLOEXEC, "memfd not O_CLOEXEC");
	CHECK(memfd_bad(mfd, MEM_SIZE, 7) < 0, "memfd content lost at %lld",
	      memfd_bad(mfd, MEM_SIZE, 7));
	/* the pin stays until FINISH: the same file again */
	mfd2 = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd2 >= 0 && mfd2 != mfd, "second retrieve: %d", mfd2);
	CHECK(!fstat(mfd, &a) && !fstat(mfd2, &b) && a.st_ino == b.st_ino &&
	      a.st_dev == b.st_dev, "not the same memfd");
	efd = retrieve_fd(sfd, TOK_EVT);
	CHECK(efd >= 0 && cloexec_of(efd) == FD_CLOEXEC, "eventfd: %d", efd);
	CHECK(read(efd, &count, 8) == 8 && count == EVT_COUNT,
	      "eventfd count %" PRIu64, count);
	r = retrieve_fd(sfd, TOK_PIPE_R);
	w = retrieve_fd(sfd, TOK_PIPE_W);
	CHECK(r >= 0 && w >= 0, "pipe: %d %d", r, w);
	CHECK(cloexec_of(r) == FD_CLOEXEC && cloexec_of(w) == FD_CLOEXEC,
	      "pipe fds not O_CLOEXEC");
	CHECK(read(r, msg, sizeof(msg)) == sizeof(msg) &&
	      !memcmp(msg, PIPE_MSG, sizeof(msg)), "pipe bytes lost");
	CHECK(write(w, "!", 1) == 1 && read(r, msg, 1) == 1 && msg[0] == '!',
	      "the two ends are not one pipe");
	CHECK(retrieve_fd(sfd, 99) == -ENOENT, "unknown token");
}

static int case_update(long old, long a1, long a2)
{
	char line[256];
	int dev = open_dev(), sfd, ret, mfd;

	(void)a1;
	(void)a2;
	CHECK(dev >= 0, "open %s: %m", CPRX_DEVICE);
	CHECK(cloexec_of(old) == 0, "the old session fd did not cross the exec");
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	CHECK(cloexec_of(sfd) == FD_CLOEXEC, "session fd not O_CLOEXEC");
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -EPERM, "retrieved twice: %d", ret);
	/* the inherited fd has done its job: closing it keeps the pins */
	CHECK(!close(old), "close: %m");
	check_kinds(sfd);
	CHECK(proc_count(getpid(), SESS, line, sizeof(line)) == 1,
	      "not in " PROC_SESSIONS);
	CHECK(!strncmp(strchr(line, '\t'), "\t" SESS "\t4\t0\t1\t",
		       strlen("\t" SESS "\t4\t0\t1\t")), "%s line: %s",
	      PROC_SESSIONS, line);
	check_contents(sfd);
	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(!finish(sfd), "finish");
	ret = retrieve_fd(sfd, TOK_MEM);
	CHECK(ret < 0, "retrieve_fd after finish: %d", ret);
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -ENOENT, "retrieve_session after finish: %d", ret);
	CHECK(nr_pins(sfd) == 0, "pins after finish");
	CHECK(proc_count(getpid(), SESS, NULL, 0) == 0, "finished but listed");
	/* what was retrieved is ours, pins or not */
	CHECK(memfd_bad(mfd, MEM_SIZE, 7) < 0, "memfd lost after finish");
	return 0;
}

TEST_F(kmod, update)
{
	EXPECT_EQ(0, run_child(self, update_old_image, 0));
}

/* Image 1 pins and arms; image 2 retrieves and re-arms; image 3 gets it. */
static void rearm_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS), mfd;

	(void)unused;
	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(MEM_SIZE, 3);
	CHECK(mfd >= 0 && !preserve(sfd, mfd, TOK_MEM), "preserve");
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	exec_or_die("rearm", sfd, 2, 0);
}

static int case_rearm(long old, long image, long a2)
{
	int dev = open_dev(), sfd, mfd, ret;

	(void)a2;
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "image %ld: retrieve_session: %d", image, sfd);
	CHECK(!close(old), "close: %m");
	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd >= 0, "image %ld: retrieve_fd: %d", image, mfd);
	CHECK(memfd_bad(mfd, MEM_SIZE, 3) < 0, "image %ld: content", image);
	if (image == 3)
		return finish(sfd) ? 1 : 0;
	/* a rollback: arm again, and the next image retrieves anew */
	CHECK(!arm(sfd, 0), "re-arm");
	ret = retrieve_fd(sfd, TOK_MEM);
	CHECK(ret == -EPERM, "retrieve_fd while re-armed: %d", ret);
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("rearm", sfd, 3, 0);
	return 1;
}

TEST_F(kmod, update_twice)
{
	EXPECT_EQ(0, run_child(self, rearm_old_image, 0));
}

/* Old image for "eperm": @how 0 never arms, 1 arms and cancels. */
static void unarmed_old_image(long how)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(1, EFD_CLOEXEC);

	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(!preserve(sfd, efd, TOK_EVT), "preserve");
	if (how)
		CHECK(!arm(sfd, 0) && !arm(sfd, CPRX_ARM_CANCEL), "arm/cancel");
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("eperm", sfd, 0, 0);
}

/* Past an exec, but the session was not armed: nothing to retrieve. */
static int case_eperm(long old, long a1, long a2)
{
	struct cprx_session_query q;
	int dev = open_dev(), ret;

	(void)a1;
	(void)a2;
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -EPERM, "retrieve_session: %d", ret);
	ret = retrieve_fd(old, TOK_EVT);
	CHECK(ret == -EPERM, "retrieve_fd on the inherited fd: %d", ret);
	/* the session itself lives on in the inherited fd */
	CHECK(!query(old, &q, NULL, 0) && q.nr_entries == 1 && !q.flags,
	      "query: %u pins, flags %#x", q.nr_entries, q.flags);
	return 0;
}

TEST_F(kmod, retrieve_unarmed_after_exec)
{
	EXPECT_EQ(0, run_child(self, unarmed_old_image, 0));
}

TEST_F(kmod, retrieve_cancelled_after_exec)
{
	EXPECT_EQ(0, run_child(self, unarmed_old_image, 1));
}

/* Armed, but the session fd stays close-on-exec: the session dies. */
static void cloexec_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(1, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0),
	      "setup");
	exec_or_die("gone", 0, 0, 0);
}

static int case_gone(long a0, long a1, long a2)
{
	int ret = retrieve_session(open_dev(), SESS);

	(void)a0;
	(void)a1;
	(void)a2;
	CHECK(ret == -ENOENT, "retrieve_session: %d", ret);
	CHECK(proc_count(getpid(), NULL, NULL, 0) == 0, "still listed");
	return 0;
}

TEST_F(kmod, exec_closes_cloexec_session)
{
	EXPECT_EQ(0, run_child(self, cloexec_old_image, 0));
}

/* --- Who may use a session ------------------------------------------------ */

/* In another process: the inherited session fd is not its own. */
static void not_owner_ops(long sfd)
{
	struct cprx_session_query q;
	int efd = eventfd(0, EFD_CLOEXEC), ret;

	ret = retrieve_session(open_dev(), SESS);
	CHECK(ret == -EPERM, "retrieve_session: %d", ret);
	ret = preserve(sfd, efd, 2);
	CHECK(ret == -EPERM, "preserve: %d", ret);
	ret = unpreserve(sfd, TOK_EVT);
	CHECK(ret == -EPERM, "unpreserve: %d", ret);
	ret = arm(sfd, CPRX_ARM_CANCEL);
	CHECK(ret == -EPERM, "arm cancel: %d", ret);
	ret = arm(sfd, 0);
	CHECK(ret == -EPERM, "arm: %d", ret);
	ret = retrieve_fd(sfd, TOK_EVT);
	CHECK(ret == -EPERM, "retrieve_fd: %d", ret);
	ret = finish(sfd);
	CHECK(ret == -EPERM, "finish: %d", ret);
	ret = query(sfd, &q, NULL, 0);
	CHECK(ret == -EPERM, "query: %d", ret);
}

static void other_process(long sfd)
{
	not_owner_ops(sfd);
	/* nor after an exec of its own */
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("other", sfd, 0, 0);
}

static int case_other(long sfd, long a1, long a2)
{
	(void)a1;
	(void)a2;
	not_owner_ops(sfd);
	return 0;
}

TEST_F(kmod, other_process)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_query q;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, run_child(self, other_process, sfd));
	/* and ours is untouched, the child's exit included */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
	EXPECT_EQ(1, q.nr_entries);
}

/* A child that became nobody: the inherited session is not its own. */
static void nobody_ops(long sfd)
{
	CHECK(!setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(NOBODY, NOBODY, NOBODY), "setresuid: %m");
	not_owner_ops(sfd);
}

/* The owner itself under another euid: EPERM; back to root, it works. */
static void owner_euid(long dev)
{
	int sfd = create(dev, "euid"), efd = eventfd(0, EFD_CLOEXEC), ret;
	struct cprx_session_query q;

	CHECK(sfd >= 0 && !preserve(sfd, efd, 1), "setup");
	CHECK(!setresuid(-1, NOBODY, -1), "seteuid: %m");
	ret = preserve(sfd, efd, 2);
	CHECK(ret == -EPERM, "preserve: %d", ret);
	ret = unpreserve(sfd, 1);
	CHECK(ret == -EPERM, "unpreserve: %d", ret);
	ret = arm(sfd, 0);
	CHECK(ret == -EPERM, "arm: %d", ret);
	ret = query(sfd, &q, NULL, 0);
	CHECK(ret == -EPERM, "query: %d", ret);
	ret = finish(sfd);
	CHECK(ret == -EPERM, "finish: %d", ret);
	CHECK(!setresuid(-1, 0, -1), "seteuid back: %m");
	CHECK(!preserve(sfd, efd, 2) && nr_pins(sfd) == 2, "as root again");
}

TEST_F(kmod, other_uid)
{
	int sfd, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "changing uid needs root");
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, run_child(self, nobody_ops, sfd));
	EXPECT_EQ(0, run_child(self, owner_euid, self->dev));
	EXPECT_EQ(1, proc_count(getpid(), SESS, NULL, 0));
}

/*
 * This binary where nobody can run it: the build dir may sit under a
 * directory only root can enter (mktemp -d).  Its path becomes self_exe.
 */
static void copy_self_for_nobody(void)
{
	char path[64], buf[65536];
	ssize_t n;
	int in, out;

	snprintf(path, sizeof(path), "/tmp/cprx-test-kmod-%d", getpid());
	in = open(self_exe, O_RDONLY | O_CLOEXEC);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	CHECK(in >= 0 && out >= 0, "copy %s: %m", self_exe);
	/* read/write: copy_file_range cannot cross file systems on 6.1 */
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, n) == n, "copy %s: %m", self_exe);
	CHECK(n == 0, "copy %s: %m", self_exe);
	close(in);
	close(out);
	snprintf(self_exe, sizeof(self_exe), "%s", path);
}

/* Arms as root and execs as euid nobody; exit 4 if nobody may not exec. */
static void euid_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(0, EFD_CLOEXEC), ret;

	(void)unused;
	copy_self_for_nobody();
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	CHECK(!setresuid(-1, NOBODY, -1), "seteuid: %m");
	ret = exec_self("euid", sfd, 0, 0);
	if (ret == -EACCES)
		_exit(4);
	CHECK(0, "exec: %d", ret);
}

static int case_euid(long old, long a1, long a2)
{
	int dev = open_dev(), sfd;

	(void)old;
	(void)a1;
	(void)a2;
	CHECK(geteuid() == NOBODY, "euid %u", geteuid());
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd == -EPERM, "retrieve_session as nobody: %d", sfd);
	/* the real uid is still root: back to euid 0 */
	CHECK(!setresuid(-1, 0, -1), "seteuid: %m");
	unlink(self_exe);	/* the copy made for nobody; root's to remove */
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session as root again: %d", sfd);
	return 0;
}

TEST_F(kmod, retrieve_other_euid)
{
	int ret;

	if (geteuid())
		SKIP(return, "changing uid needs root");
	ret = run_child(self, euid_old_image, 0);
	if (ret == 4)
		SKIP(return, "uid %d may not exec %s", NOBODY, self_exe);
	EXPECT_EQ(0, ret);
}

/* Armed in this image: retrieving is for the next one. */
TEST_F(kmod, retrieve_in_old_image)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));	/* unarmed */
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, TOK_EVT));
	EXPECT_EQ(-ENOENT, retrieve_session(self->dev, "kmod-unknown"));
	/* a refused retrieve leaves the session armed */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
}

/* Old image for "emfile": a pin, armed. */
static void emfile_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(EVT_COUNT, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("emfile", sfd, 0, 0);
}

/* Fills the fd table up to RLIMIT_NOFILE; returns one of the new fds. */
static int fill_fds(int from)
{
	int fd, last = -1;

	while ((fd = dup(from)) >= 0)
		last = fd;
	CHECK(errno == EMFILE && last >= 0, "dup: %m");
	return last;
}

/* A retrieve that fails for want of an fd must leave the session as it was. */
static int case_emfile(long old, long a1, long a2)
{
	struct rlimit rl = { 64, 64 };
	int dev = open_dev(), spare, sfd, fd;

	(void)old;
	(void)a1;
	(void)a2;
	CHECK(dev >= 0 && !setrlimit(RLIMIT_NOFILE, &rl), "setup: %m");
	spare = fill_fds(dev);
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd == -EMFILE, "retrieve_session without a free fd: %d", sfd);
	close(spare);
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session after an EMFILE: %d", sfd);
	/* the new session fd took the last slot */
	CHECK(dup(dev) < 0 && errno == EMFILE, "the fd table is not full");
	fd = retrieve_fd(sfd, TOK_EVT);
	CHECK(fd == -EMFILE, "retrieve_fd without a free fd: %d", fd);
	close(dev);
	fd = retrieve_fd(sfd, TOK_EVT);
	CHECK(fd >= 0, "retrieve_fd after an EMFILE: %d", fd);
	return 0;
}

TEST_F(kmod, retrieve_without_free_fd)
{
	EXPECT_EQ(0, run_child(self, emfile_old_image, 0));
}

/* --- Limits --------------------------------------------------------------- */

TEST_F(kmod, limit_pins)
{
	struct cprx_query_entry ents[16];
	struct cprx_session_query q;
	int sfd, other, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_PINS, 8);
	sfd = create(self->dev, SESS);
	other = create(self->dev, "other");
	ASSERT_GE(sfd, 0);
	ASSERT_GE(other, 0);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 8));
	EXPECT_EQ(8, nr_pins(sfd));
	ASSERT_EQ(0, unpreserve(sfd, 3));
	EXPECT_EQ(0, preserve(sfd, efd, 8));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 9));
	/* per session */
	EXPECT_EQ(0, preserve(other, efd, 0));
	/* lowered under what a session holds: no new pins, old ones stay */
	set_param(self, P_PINS, 4);
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 10));
	memset(ents, 0, sizeof(ents));
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	EXPECT_EQ(8, q.nr_entries);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(CPRX_KIND_EVENTFD, ents[i].kind);
}

static void four_sessions(long dev)
{
	char name[16];

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		CHECK(create(dev, name) >= 0, "session %d", i);
	}
	CHECK(create(dev, "fifth") == -ENOSPC, "a fifth session");
}

TEST_F(kmod, limit_sessions)
{
	char name[16];
	int fds[4];

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_SESSIONS, 4);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		fds[i] = create(self->dev, name);
		ASSERT_GE(fds[i], 0);
	}
	EXPECT_EQ(-ENOSPC, create(self->dev, "fifth"));
	/* per process */
	EXPECT_EQ(0, run_child(self, four_sessions, self->dev));
	close(fds[0]);
	EXPECT_GE(create(self->dev, "fifth"), 0);
	/* finished sessions do not count */
	ASSERT_EQ(0, finish(fds[1]));
	EXPECT_GE(create(self->dev, "sixth"), 0);
	EXPECT_EQ(-ENOSPC, create(self->dev, "seventh"));
}

/* --- /proc/cprx/sessions, the module's lifetime, leaks -------------------- */

static void proc_child(long dev)
{
	int sfd = create(dev, "kmod-child");
	char line[256];

	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(proc_count(getpid(), "kmod-child", line, sizeof(line)) == 1,
	      "a child's session is listed under its pid");
}

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

static int case_victim(long phase, long rep, long old)
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

TEST_F(kmod, pins_die_with_owner_pinned)
{
	kill_victim(self, PH_PINNED, 0);
}

TEST_F(kmod, pins_die_with_owner_armed)
{
	kill_victim(self, PH_ARMED, 0);
}

TEST_F_TIMEOUT(kmod, pins_die_with_owner_in_exec, 300)
{
	static const int delays_us[] = { 0, 50, 200, 1000, 5000, 20000 };

	for (size_t i = 0; i < ARRAY_SIZE(delays_us); i++)
		kill_victim(self, PH_EXEC, delays_us[i]);
}

TEST_F(kmod, pins_die_with_owner_execed)
{
	kill_victim(self, PH_EXECED, 0);
}

TEST_F(kmod, pins_die_with_owner_retrieved)
{
	kill_victim(self, PH_RETRIEVED, 0);
}

TEST_F(kmod, pins_die_with_owner_not_copy)
{
	kill_victim(self, PH_COPY, 0);
}

TEST_F(kmod, pins_die_with_owner_not_copy_armed)
{
	kill_victim(self, PH_COPY_ARMED, 0);
}

/* --- QUERY against a max_pins that changes under it ----------------------- */

__attribute__((noreturn))
static void toggle_max_pins(void)
{
	for (;;) {
		write_long(PARAMS "max_pins", 1);
		write_long(PARAMS "max_pins", 4096);
	}
}

/* Untouched (all 0xa5) or one of the 64 pins: nothing else. */
static bool entry_ok(const struct cprx_query_entry *e)
{
	static const uint8_t untouched[sizeof(*e)] = {
		[0 ... sizeof(*e) - 1] = 0xa5,
	};

	if (!memcmp(e, untouched, sizeof(*e)))
		return true;
	return e->token >= 1 && e->token <= 64 &&
	       e->kind == CPRX_KIND_EVENTFD && !e->reserved;
}

TEST_F_TIMEOUT(kmod, query_races_max_pins, 60)
{
	struct cprx_query_entry ents[64];
	struct cprx_session_query q;
	int sfd, efd = eventfd(0, EFD_CLOEXEC), n = 0, bad = 0, ret;
	long long end;
	pid_t pid;

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_PINS, 4096);
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	for (int i = 1; i <= 64; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		toggle_max_pins();
	}
	track(self, pid);
	for (end = now_ns() + 3000000000LL; now_ns() < end; n++) {
		memset(ents, 0xa5, sizeof(ents));
		ret = query(sfd, &q, ents, ARRAY_SIZE(ents));
		if (ret) {
			EXPECT_EQ(0, ret);
			break;
		}
		for (size_t i = 0; i < ARRAY_SIZE(ents); i++)
			bad += !entry_ok(&ents[i]);
	}
	kill_kid(self, pid);
	TH_LOG("%d queries while max_pins flipped between 1 and 4096", n);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(64, nr_pins(sfd));
}

/* --- A bounded random-ioctl fuzzer ---------------------------------------- */
/*
 * Random commands (mostly real ones), sizes, tails, tokens, fds and flags on
 * /dev/cprx and session fds, from two threads; now and then sessions come
 * and go, a child process forks off and tries its luck, and the fuzzer
 * execs itself with its sessions armed (at most FZ_EXECS times) to carry on
 * with RETRIEVE_SESSION and RETRIEVE_FD.  Calls are counted across images
 * in a shared memfd.  The test passes if nothing crashed; the runner checks
 * the kernel log.  A seed replays exactly with CPRX_FUZZ_THREADS=1.
 */
#define FZ_SESS		8
#define FZ_POOL		16
#define FZ_NERR		160
#define FZ_BUF		(2 * PAGE + 64)
#define FZ_EXECS	8
#define FZ_SWEEP	512

struct fz_stats {		/* on a memfd: shared by forks, kept by execs */
	uint64_t seed, target, threads;
	uint64_t calls, execs, forks;
	uint64_t err[FZ_NERR];	/* [0]: success; [FZ_NERR - 1]: the rest */
	uint64_t ok[8];		/* successes by command, as in fz_cmds[] */
};

struct fz {			/* one image's fds, shared by its threads */
	struct fz_stats *st;
	int stats_fd, dev, nr_ents, stop;
	int sess[FZ_SESS];
	int pool[FZ_POOL];
};

struct fz_thread {
	struct fz *f;
	uint64_t rng;
	uint8_t *buf;		/* FZ_BUF bytes right before a PROT_NONE page */
	struct cprx_query_entry *ents;	/* nr_ents, then PROT_NONE */
	int id;			/* 0: sweeps and execs */
	bool child;		/* a fork: no exec, fork or malloc */
};

static const struct fz_cmd {
	const char *name;
	unsigned long cmd;
	uint32_t size;
	bool dev;		/* for /dev/cprx, else for a session */
	int weight;
} fz_cmds[] = {
	{ "CREATE_SESSION", CPRX_IOCTL_CREATE_SESSION,
	  sizeof(struct cprx_ioctl_create_session), true, 6 },
	{ "RETRIEVE_SESSION", CPRX_IOCTL_RETRIEVE_SESSION,
	  sizeof(struct cprx_ioctl_retrieve_session), true, 6 },
	{ "PRESERVE_FD", CPRX_SESSION_PRESERVE_FD,
	  sizeof(struct cprx_session_preserve_fd), false, 30 },
	{ "UNPRESERVE_FD", CPRX_SESSION_UNPRESERVE_FD,
	  sizeof(struct cprx_session_unpreserve_fd), false, 10 },
	{ "ARM", CPRX_SESSION_ARM, sizeof(struct cprx_session_arm), false,
	  12 },
	{ "RETRIEVE_FD", CPRX_SESSION_RETRIEVE_FD,
	  sizeof(struct cprx_session_retrieve_fd), false, 14 },
	{ "FINISH", CPRX_SESSION_FINISH, sizeof(struct cprx_session_finish),
	  false, 2 },
	{ "QUERY", CPRX_SESSION_QUERY, sizeof(struct cprx_session_query),
	  false, 20 },
};
_Static_assert(ARRAY_SIZE(fz_cmds) == 8, "fz_stats.ok");

/* splitmix64 */
static uint64_t fz_rand(struct fz_thread *t)
{
	uint64_t z = (t->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t fz_below(struct fz_thread *t, uint32_t n)
{
	return fz_rand(t) % n;
}

static bool fz_pct(struct fz_thread *t, uint32_t pct)
{
	return fz_below(t, 100) < pct;
}

/* @size bytes that end right at a PROT_NONE page: overruns fault. */
static void *guarded(size_t size)
{
	size_t len = (size + PAGE - 1) / PAGE * PAGE;
	uint8_t *p = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + len, PAGE, PROT_NONE))
		return NULL;
	return p + len - size;
}

static int fz_call(struct fz_thread *t, int fd, unsigned long cmd, void *a)
{
	int err = ioctl(fd, cmd, a) ? errno : 0;
	struct fz_stats *st = t->f->st;

	__atomic_add_fetch(&st->calls, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&st->err[err < FZ_NERR ? err : FZ_NERR - 1], 1,
			   __ATOMIC_RELAXED);
	for (size_t i = 0; !err && i < ARRAY_SIZE(fz_cmds); i++)
		if (cmd == fz_cmds[i].cmd)
			__atomic_add_fetch(&st->ok[i], 1, __ATOMIC_RELAXED);
	return err;
}

static uint64_t fz_token(struct fz_thread *t)
{
	static const uint64_t odd[] = { 0, ~0ull, 1ull << 63, 1ull << 32 };
	uint32_t r = fz_below(t, 10);

	if (r < 7)
		return fz_below(t, 16);
	if (r < 9)
		return odd[fz_below(t, ARRAY_SIZE(odd))];
	return fz_rand(t);
}

/* A session fd, if there is one: empty slots only make EBADF. */
static int fz_session(struct fz_thread *t)
{
	int fd = -1;

	for (int i = 0; i < 4 && fd < 0; i++)
		fd = __atomic_load_n(&t->f->sess[fz_below(t, FZ_SESS)],
				     __ATOMIC_RELAXED);
	return fd;
}

/* An fd to pin: mostly real files, sometimes sessions or nonsense. */
static int fz_fd(struct fz_thread *t)
{
	static const int bad[] = { -1, -100, INT_MAX, 1 << 20, 1023, 4096 };
	uint32_t r = fz_below(t, 20);

	if (r < 12)
		return t->f->pool[fz_below(t, FZ_POOL)];
	if (r < 15)
		return fz_session(t);
	if (r < 16)
		return t->f->dev;
	return bad[fz_below(t, ARRAY_SIZE(bad))];
}

/* Mostly the few names sessions have here, so that they collide. */
static void fz_name(struct fz_thread *t, uint8_t *name)
{
	uint32_t r = fz_below(t, 10), len;

	memset(name, 0, CPRX_SESSION_NAME_LEN);
	if (r < 7) {
		snprintf((char *)name, CPRX_SESSION_NAME_LEN, "fz-%u",
			 fz_below(t, FZ_SESS + 2));
	} else if (r == 8) {
		memset(name, 'n', CPRX_SESSION_NAME_LEN);	/* no NUL */
	} else if (r == 9) {
		len = fz_below(t, CPRX_SESSION_NAME_LEN);
		for (uint32_t i = 0; i < len; i++)
			name[i] = 1 + fz_below(t, 255);
	}
}

static uint32_t fz_count(struct fz_thread *t)
{
	static const uint32_t odd[] = {
		0, 1, 2, 15, 16, 17, 255, 256, 4095, 4096, 4097,
		1u << 31, UINT32_MAX,
	};

	if (fz_pct(t, 50))
		return fz_below(t, 80);
	return odd[fz_below(t, ARRAY_SIZE(odd))];
}

/* Where QUERY writes: never memory of ours that is not fair game. */
static uint64_t fz_entries(struct fz_thread *t)
{
	switch (fz_below(t, 10)) {
	case 0:
		return 0;
	case 1:
		return (uintptr_t)(t->buf + FZ_BUF);	/* the guard page */
	case 2:
		return 0xffff888000000000ull;		/* the kernel's */
	case 3:
		return (uintptr_t)(t->buf + fz_below(t, FZ_BUF));
	default:
		return (uintptr_t)t->ents;
	}
}

static uint32_t fz_maybe(struct fz_thread *t)
{
	return fz_pct(t, 95) ? 0 : (uint32_t)fz_rand(t);
}

/* A plausible argument for @cmd at @a (zeroed, our size). */
static void fz_fill(struct fz_thread *t, unsigned long cmd, uint8_t *a)
{
	struct cprx_ioctl_create_session *c = (void *)a;
	struct cprx_session_preserve_fd *p = (void *)a;
	struct cprx_session_unpreserve_fd *u = (void *)a;
	struct cprx_session_arm *arm = (void *)a;
	struct cprx_session_retrieve_fd *r = (void *)a;
	struct cprx_session_finish *fin = (void *)a;
	struct cprx_session_query *q = (void *)a;
	uint32_t x;

	switch (cmd) {
	case CPRX_IOCTL_CREATE_SESSION:
	case CPRX_IOCTL_RETRIEVE_SESSION:
		c->flags = fz_maybe(t);
		fz_name(t, c->name);
		c->fd = (int)fz_rand(t);
		c->reserved = fz_maybe(t);
		break;
	case CPRX_SESSION_PRESERVE_FD:
		p->fd = fz_fd(t);
		p->token = fz_token(t);
		break;
	case CPRX_SESSION_UNPRESERVE_FD:
		u->reserved = fz_maybe(t);
		u->token = fz_token(t);
		break;
	case CPRX_SESSION_ARM:
		x = fz_below(t, 10);
		arm->flags = x < 6 ? 0 : x < 9 ? CPRX_ARM_CANCEL : fz_rand(t);
		break;
	case CPRX_SESSION_RETRIEVE_FD:
		r->fd = (int)fz_rand(t);
		r->token = fz_token(t);
		break;
	case CPRX_SESSION_FINISH:
		fin->reserved = fz_maybe(t);
		break;
	case CPRX_SESSION_QUERY:
		q->flags = fz_maybe(t);
		q->nr_entries = fz_count(t);
		q->owner_pid = fz_maybe(t);
		q->entries = fz_entries(t);
		break;
	}
}

static uint32_t fz_size(struct fz_thread *t, uint32_t ours)
{
	static const uint32_t odd[] = {
		0, 1, 3, 4, 7, 8, 15, 16, 17, 23, 24, 25, 71, 72, 75, 76, 79,
		80, 81, 87, 88, 89, 4095, 4096, 4097, 8192, UINT32_MAX,
	};
	uint32_t r = fz_below(t, 10);

	if (r < 7)
		return ours;
	if (r < 9)
		return odd[fz_below(t, ARRAY_SIZE(odd))];
	return fz_below(t, 2 * PAGE + 1);
}

static bool fz_known(struct fz *f, int fd)
{
	if (fd <= 2 || fd == f->dev || fd == f->stats_fd)
		return true;
	for (int i = 0; i < FZ_SESS; i++)
		if (__atomic_load_n(&f->sess[i], __ATOMIC_RELAXED) == fd)
			return true;
	for (int i = 0; i < FZ_POOL; i++)
		if (f->pool[i] == fd)
			return true;
	return false;
}

static void fz_keep_session(struct fz_thread *t, int fd)
{
	int i = fz_below(t, FZ_SESS);
	int old = __atomic_exchange_n(&t->f->sess[i], fd, __ATOMIC_RELAXED);

	if (old >= 0)
		close(old);
}

/* Takes care of the fd a successful call handed out. */
static void fz_result(struct fz_thread *t, unsigned long cmd,
		      const uint8_t *a, uint32_t size)
{
	int fd;

	if (cmd == CPRX_IOCTL_CREATE_SESSION ||
	    cmd == CPRX_IOCTL_RETRIEVE_SESSION) {
		if (size < SESSION_ARG_MIN)
			return;		/* the sweeper finds it */
		memcpy(&fd, a + offsetof(struct cprx_ioctl_create_session, fd),
		       sizeof(fd));
		if (!fz_known(t->f, fd))
			fz_keep_session(t, fd);
	} else if (cmd == CPRX_SESSION_RETRIEVE_FD &&
		   size >= offsetofend(struct cprx_session_retrieve_fd, fd)) {
		memcpy(&fd, a + offsetof(struct cprx_session_retrieve_fd, fd),
		       sizeof(fd));
		if (!fz_known(t->f, fd))
			close(fd);
	}
}

static const struct fz_cmd *fz_pick(struct fz_thread *t)
{
	int total = 0, r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(fz_cmds); i++)
		total += fz_cmds[i].weight;
	r = fz_below(t, total);
	for (i = 0; r >= fz_cmds[i].weight; i++)
		r -= fz_cmds[i].weight;
	return &fz_cmds[i];
}

/* The file a command goes to: mostly the right kind. */
static int fz_target(struct fz_thread *t, bool dev)
{
	uint32_t r = fz_below(t, 20);

	if (r < 17)
		return dev ? t->f->dev : fz_session(t);
	if (r < 18)
		return dev ? fz_session(t) : t->f->dev;
	if (r < 19)
		return -1;
	/* other files only get cprx-typed commands: they answer ENOTTY */
	return t->f->pool[fz_below(t, FZ_POOL)];
}

/* Mostly @a; sometimes NULL, straddling the guard page, or the kernel's. */
static uint8_t *fz_where(struct fz_thread *t, uint8_t *a, uint32_t ours)
{
	uint32_t r = fz_below(t, 50), k;
	uint8_t *end = t->buf + FZ_BUF;

	if (r == 0)
		return NULL;
	if (r == 1)
		return (uint8_t *)0xffff888000000000ull;
	if (r == 2) {
		k = 1 + fz_below(t, ours);
		memmove(end - k, a, k);
		return end - k;
	}
	return a;
}

/* One well-formed-ish command, with a random size and tail now and then. */
static void fz_cmd(struct fz_thread *t)
{
	const struct fz_cmd *c = fz_pick(t);
	uint32_t size = fz_size(t, c->size);
	uint8_t *a = t->buf;
	size_t clear = size < FZ_BUF ? size : FZ_BUF;

	memset(a, 0, clear > c->size ? clear : c->size);
	fz_fill(t, c->cmd, a);
	memcpy(a, &size, sizeof(size));
	if (size > c->size && size <= FZ_BUF && fz_pct(t, 25))
		a[c->size + fz_below(t, size - c->size)] = 1 + fz_below(t, 255);
	a = fz_where(t, a, c->size);
	if (!fz_call(t, fz_target(t, c->dev), c->cmd, a))
		fz_result(t, c->cmd, a, size);
}

/*
 * Any command number on a cprx file.  Types 'X', 'f' and 0x94 are left
 * out: the VFS acts on those itself (FIFREEZE, FS_IOC_SETFLAGS on the
 * devtmpfs inode, FICLONE...), which is not what is under test.
 */
static void fz_random_cmd(struct fz_thread *t)
{
	uint32_t r = fz_below(t, 4), size = fz_size(t, 88), type;
	unsigned long cmd;
	uint8_t *a = t->buf;
	int fd;

	if (r < 2)
		cmd = _IO(CPRX_IOCTL_TYPE, fz_below(t, 256));
	else if (r == 2)
		cmd = _IOC(fz_below(t, 4), CPRX_IOCTL_TYPE, fz_below(t, 256),
			   fz_below(t, 1 << 14));
	else
		cmd = (uint32_t)fz_rand(t);
	type = _IOC_TYPE(cmd);
	if (type == 'X' || type == 'f' || type == 0x94)
		cmd = _IO(CPRX_IOCTL_TYPE, 0xff);
	for (int i = 0; i < 128; i += 8) {
		uint64_t v = fz_pct(t, 50) ? 0 : fz_rand(t);

		memcpy(a + i, &v, 8);
	}
	memcpy(a, &size, sizeof(size));
	fd = fz_pct(t, 70) ? fz_session(t) : t->f->dev;
	if (!fz_call(t, fd, cmd, a))
		fz_result(t, cmd, a, size);
}

/* A new session "fz-@i" in slot @i. */
static void fz_open(struct fz_thread *t, int i)
{
	struct cprx_ioctl_create_session c = { .size = sizeof(c) };
	int old;

	snprintf((char *)c.name, sizeof(c.name), "fz-%d", i);
	if (fz_call(t, t->f->dev, CPRX_IOCTL_CREATE_SESSION, &c))
		return;
	old = __atomic_exchange_n(&t->f->sess[i], c.fd, __ATOMIC_RELAXED);
	if (old >= 0)
		close(old);
}

/* A session goes, maybe another comes. */
static void fz_churn(struct fz_thread *t)
{
	int i = fz_below(t, FZ_SESS);
	int old = __atomic_exchange_n(&t->f->sess[i], -1, __ATOMIC_RELAXED);

	if (old >= 0)
		close(old);
	if (fz_pct(t, 70))
		fz_open(t, i);
}

static void fz_step(struct fz_thread *t);

/* A child with copies of everything: all it may own is its own sessions. */
static void fz_fork(struct fz_thread *t)
{
	struct fz_thread c = *t;
	pid_t pid = fork();

	if (pid < 0)
		return;
	if (!pid) {
		c.child = true;
		c.rng ^= 0xc41d;
		for (int i = 0; i < 64; i++)
			fz_step(&c);
		_exit(0);
	}
	__atomic_add_fetch(&t->f->st->forks, 1, __ATOMIC_RELAXED);
	reap(pid);
}

static void fz_step(struct fz_thread *t)
{
	uint32_t r = fz_below(t, 1000);

	if (r < 15)
		fz_churn(t);
	else if (r < 17 && !t->child)
		fz_fork(t);
	else if (r < 120)
		fz_random_cmd(t);
	else
		fz_cmd(t);
}

/* Closes what calls handed out and nobody kept (sizes too small...). */
static void fz_sweep(struct fz *f)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int fd;

	if (!d)
		return;
	while ((e = readdir(d))) {
		fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d) && !fz_known(f, fd))
			close(fd);
	}
	closedir(d);
}

/* Arms what it has and goes on in a new image. */
static void fz_exec(struct fz_thread *t)
{
	struct cprx_session_arm a = { .size = sizeof(a) };
	struct fz *f = t->f;
	int fd;

	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < FZ_SESS; i++) {
		fd = __atomic_load_n(&f->sess[i], __ATOMIC_RELAXED);
		if (fd < 0)
			continue;
		/* something for the next image to take back */
		for (uint64_t tok = 0; tok < 4; tok++) {
			struct cprx_session_preserve_fd p = {
				.size = sizeof(p), .token = tok,
				.fd = f->pool[fz_below(t, FZ_POOL)],
			};

			fz_call(t, fd, CPRX_SESSION_PRESERVE_FD, &p);
		}
		fz_call(t, fd, CPRX_SESSION_ARM, &a);
		keep_on_exec(fd);
	}
	keep_on_exec(f->stats_fd);
	__atomic_add_fetch(&f->st->execs, 1, __ATOMIC_RELAXED);
	exec_or_die("fuzz", f->stats_fd, 0, 0);
}

static void *fz_loop(void *arg)
{
	struct fz_thread *t = arg;
	struct fz_stats *st = t->f->st;
	uint64_t n, i = 0;

	while (!__atomic_load_n(&t->f->stop, __ATOMIC_RELAXED)) {
		n = __atomic_load_n(&st->calls, __ATOMIC_RELAXED);
		if (n >= st->target)
			break;
		fz_step(t);
		if (t->id)
			continue;
		if (++i % FZ_SWEEP == 0)
			fz_sweep(t->f);
		if (st->execs < FZ_EXECS &&
		    n >= (st->execs + 1) * st->target / (FZ_EXECS + 1))
			fz_exec(t);
	}
	return NULL;
}

/* Files to pin: one of each kind, give or take. */
static void fz_pool(struct fz *f)
{
	int i = 0, p[2], s[2];

	f->pool[i++] = memfd_create("fz", MFD_CLOEXEC);
	f->pool[i++] = memfd_pattern(1 << 16, 0);
	f->pool[i++] = eventfd(1, EFD_CLOEXEC);
	f->pool[i++] = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
	if (!pipe2(p, O_CLOEXEC)) {
		f->pool[i++] = p[0];
		f->pool[i++] = p[1];
	}
	if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s)) {
		f->pool[i++] = s[0];
		f->pool[i++] = s[1];
	}
	f->pool[i++] = open("/dev/null", O_RDWR | O_CLOEXEC);
	f->pool[i++] = open(self_exe, O_RDONLY | O_CLOEXEC);
	f->pool[i++] = open("/", O_PATH | O_CLOEXEC);
	f->pool[i++] = epoll_create1(EPOLL_CLOEXEC);
	f->pool[i++] = f->dev;
	f->pool[i++] = open_dev();
	while (i < FZ_POOL)
		f->pool[i++] = -1;
}

/* After an exec: the sessions the last image armed, and their pins. */
static void fz_adopt(struct fz_thread *t)
{
	struct cprx_ioctl_retrieve_session a;
	struct cprx_session_retrieve_fd r;
	char link[64], path[64];
	struct fz *f = t->f;
	struct dirent *e;
	int fd, n = 0;
	DIR *d = opendir("/proc/self/fd");

	/* the inherited session fds: old files, same sessions */
	while (d && (e = readdir(d))) {
		fd = atoi(e->d_name);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		memset(link, 0, sizeof(link));
		if (fd <= 2 || fz_known(f, fd) ||
		    readlink(path, link, sizeof(link) - 1) < 0)
			continue;
		if (strcmp(link, "anon_inode:[cprx-session]") || n >= FZ_SESS)
			close(fd);
		else
			f->sess[n++] = fd;
	}
	if (d)
		closedir(d);
	for (int i = 0; i < FZ_SESS + 2; i++) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		snprintf((char *)a.name, sizeof(a.name), "fz-%d", i);
		if (fz_call(t, f->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a))
			continue;
		for (uint64_t tok = 0; tok < 16; tok++) {
			r = (struct cprx_session_retrieve_fd){
				.size = sizeof(r), .token = tok };
			if (!fz_call(t, a.fd, CPRX_SESSION_RETRIEVE_FD, &r))
				close(r.fd);
		}
		fz_keep_session(t, a.fd);
	}
}

static int fz_thread_init(struct fz_thread *t, struct fz *f, int id)
{
	uint64_t seed = f->st->seed;

	*t = (struct fz_thread){ .f = f, .id = id };
	t->rng = seed ^ (f->st->execs * 0x9e3779b97f4a7c15ull) ^
		 ((uint64_t)id << 56);
	fz_rand(t);
	t->buf = guarded(FZ_BUF);
	t->ents = guarded(f->nr_ents * sizeof(*t->ents));
	return t->buf && t->ents ? 0 : -ENOMEM;
}

/* One fuzzer image: the first, or one after an exec. */
static int fz_main(int stats_fd)
{
	struct fz f = { .stats_fd = stats_fd };
	struct fz_thread th[2];
	pthread_t tid;
	long max_pins = read_long(PARAMS "max_pins");
	int nr;

	f.st = mmap(NULL, sizeof(*f.st), PROT_READ | PROT_WRITE, MAP_SHARED,
		    stats_fd, 0);
	CHECK(f.st != MAP_FAILED, "mmap: %m");
	CHECK(!fcntl(stats_fd, F_SETFD, FD_CLOEXEC), "fcntl: %m");
	f.dev = open_dev();
	CHECK(f.dev >= 0, "open %s: %m", CPRX_DEVICE);
	f.nr_ents = max_pins > 4096 ? max_pins : 4096;
	for (int i = 0; i < FZ_SESS; i++)
		f.sess[i] = -1;
	fz_pool(&f);
	nr = f.st->threads > 1 ? 2 : 1;
	for (int i = 0; i < nr; i++)
		CHECK(!fz_thread_init(&th[i], &f, i), "no memory");
	if (f.st->execs)
		fz_adopt(&th[0]);
	for (int i = 0; i < FZ_SESS; i++)
		if (f.sess[i] < 0)
			fz_open(&th[0], i);
	if (nr > 1)
		CHECK(!pthread_create(&tid, NULL, fz_loop, &th[1]), "thread");
	fz_loop(&th[0]);
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	if (nr > 1)
		pthread_join(tid, NULL);
	return 0;
}

static int case_fuzz(long stats_fd, long a1, long a2)
{
	(void)a1;
	(void)a2;
	return fz_main(stats_fd);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static void fz_print(const struct fz_stats *st, long long ns)
{
	char buf[2048];
	size_t n = 0;

	TH_LOG("fuzz: %" PRIu64 " calls in %lld ms, %" PRIu64 " execs, %"
	       PRIu64 " forks, %" PRIu64 " thread(s)", st->calls, ns / 1000000,
	       st->execs, st->forks, st->threads);
	for (int i = 0; i < FZ_NERR && n < sizeof(buf) - 64; i++) {
		const char *name = i == FZ_NERR - 1 ? "other" :
				   i ? strerrorname_np(i) : "ok";

		if (st->err[i])
			n += snprintf(buf + n, sizeof(buf) - n, " %s:%" PRIu64,
				      name ? name : "?", st->err[i]);
	}
	TH_LOG("fuzz: results:%s", buf);
	n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(fz_cmds); i++)
		n += snprintf(buf + n, sizeof(buf) - n, " %s:%" PRIu64,
			      fz_cmds[i].name, st->ok[i]);
	TH_LOG("fuzz: successes:%s", buf);
}

TEST_F_TIMEOUT(kmod, fuzz, 900)
{
	struct fz_stats *st;
	long long t0;
	int fd, status;
	pid_t pid;

	fd = memfd_create("fz-stats", MFD_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, sizeof(*st)));
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, st);
	st->seed = env_u64("CPRX_FUZZ_SEED", (uint64_t)now_ns() ^ getpid());
	st->target = env_u64("CPRX_FUZZ_CALLS", 100000);
	st->threads = env_u64("CPRX_FUZZ_THREADS", 2);
	TH_LOG("fuzz: seed %#" PRIx64 " (CPRX_FUZZ_SEED; CPRX_FUZZ_THREADS=1 replays exactly), %" PRIu64 " calls",
	       st->seed, st->target);
	t0 = now_ns();
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fz_main(fd));
	}
	track(self, pid);
	status = reap_kid(self, pid);
	fz_print(st, now_ns() - t0);
	EXPECT_EQ(0, status);
	EXPECT_GE(st->calls, st->target);
	EXPECT_EQ(FZ_EXECS, st->execs);
	/* nothing of the fuzzer's outlives it */
	EXPECT_EQ(0, proc_count(pid, NULL, NULL, 0));
}

/* --- perf: 1000 fds through an update ------------------------------------- */

#define PERF_FDS	1000

static void perf_old_image(long n)
{
	static int efd[PERF_FDS];
	long long t0, t1;
	int dev, sfd;

	CHECK(!nofile_at_least(2 * n + 64), "RLIMIT_NOFILE: %m");
	for (int i = 0; i < n; i++) {
		efd[i] = eventfd(i + 1, EFD_CLOEXEC);
		CHECK(efd[i] >= 0, "eventfd: %m");
	}
	t0 = now_ns();
	dev = open_dev();
	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	for (int i = 0; i < n; i++)
		CHECK(!preserve(sfd, efd[i], i), "preserve %d", i);
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	t1 = now_ns();
	exec_or_die("perf", t0, t1, n);
}

static int case_perf(long t0, long t1, long n)
{
	long long t2 = now_ns(), t3;
	static int fds[PERF_FDS];
	uint64_t v;
	int dev, sfd;

	dev = open_dev();
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	for (int i = 0; i < n; i++)
		fds[i] = retrieve_fd(sfd, i);
	t3 = now_ns();
	for (int i = 0; i < n; i++)
		CHECK(fds[i] >= 0 && read(fds[i], &v, 8) == 8 &&
		      v == (uint64_t)i + 1, "fd %d: %d", i, fds[i]);
	CHECK(!finish(sfd), "finish");
	printf("# perf: %ld fds: %lld ns create+preserve+arm, %lld ns exec, %lld ns retrieve\n",
	       n, (long long)t1 - t0, t2 - t1, t3 - t2);
	printf("# perf: %ld fds: %lld ns in all, %lld ns in cprx ioctls (%lld ns per fd)\n",
	       n, t3 - t0, (long long)(t1 - t0) + (t3 - t2),
	       ((long long)(t1 - t0) + (t3 - t2)) / n);
	fflush(stdout);
	return 0;
}

TEST_F_TIMEOUT(kmod, perf, 300)
{
	EXPECT_EQ(0, run_child(self, perf_old_image, PERF_FDS));
}

/* --- Pins bound to the owner, not to any fd on the session ---------------- */

/*
 * The owner hands a copy of its session fd to a child and closes its own:
 * flush() cannot see the owner's exit, the owner's pid wait queue must.
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

/*
 * The session fd in flight in a unix socket the session pins itself: a
 * cycle neither the owner's exit (no fd of its own left) nor the unix GC
 * (a session is no socket) breaks.  Pins, session and a module reference
 * leak for good: rmmod fails afterwards.
 */
/* Sends its own session fd into a socket the session pins, and exits. */
static void scm_cycle(long unused)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	char c = 0;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	int sfd = create(open_dev(), SESS), mfd = memfd_pattern(64 << 20, 0);
	int s[2];

	(void)unused;
	CHECK(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), "%m");
	CHECK(!preserve(sfd, mfd, 1) && !preserve(sfd, s[1], 2), "preserve");
	memset(&u, 0, sizeof(u));
	u.h.cmsg_level = SOL_SOCKET;
	u.h.cmsg_type = SCM_RIGHTS;
	u.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&u.h), &sfd, sizeof(int));
	CHECK(sendmsg(s[0], &m, 0) == 1, "sendmsg: %m");
	/* no session fd left in our table: flush() will not see the exit */
	close(sfd);
}

/* A session pinning the socket its own fd is in flight in: no fd anywhere. */
TEST_F(kmod, scm_rights_cycle)
{
	long base = shmem_kb(), after;

	EXPECT_EQ(0, run_child(self, scm_cycle, 0));
	after = settle(shmem_kb, base + SHMEM_SLACK_KB);
	TH_LOG("owner gone: Shmem %+ld kB, module refcnt %ld (%ld before)",
	       after - base, module_refcnt(), self->refcnt + 1);
	EXPECT_LE(after, base + SHMEM_SLACK_KB);
}

/* --- New images ----------------------------------------------------------- */

static const struct exec_case {
	const char *name;
	int (*run)(long a0, long a1, long a2);
} exec_cases[] = {
	{ "update", case_update },
	{ "rearm", case_rearm },
	{ "eperm", case_eperm },
	{ "gone", case_gone },
	{ "other", case_other },
	{ "euid", case_euid },
	{ "emfile", case_emfile },
	{ "victim", case_victim },
	{ "fuzz", case_fuzz },
	{ "perf", case_perf },
};

static int run_exec_case(int argc, char **argv)
{
	long a[3] = { 0 };

	for (int i = 0; i < 3 && i + 1 < argc; i++)
		a[i] = strtol(argv[i + 1], NULL, 0);
	for (size_t i = 0; i < ARRAY_SIZE(exec_cases); i++)
		if (!strcmp(argv[0], exec_cases[i].name))
			return exec_cases[i].run(a[0], a[1], a[2]);
	printf("# no exec case '%s'\n", argv[0]);
	return 1;
}

#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);

	if (n <= 0)
		return 1;
	self_exe[n] = '\0';
	if (argc >= 3 && !strcmp(argv[1], "--exec-case"))
		return run_exec_case(argc - 2, argv + 2);
	/* fds a runner leaked to us would cross our execs */
	close_range(3, ~0U, 0);
	for (int p = 0; p < NR_PARAMS; p++) {
		char path[128];

		param_path(path, sizeof(path), p);
		params_at_start[p] = read_long(path);
	}
	return harness_main(argc, argv);
}
