// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The cprx.ko selftests' shared helpers and "kmod" fixture (kmod_util.h
 * says what each file uses them for).
 */
#include "kmod_util.h"

/* The same layout serves both: the fuzzer relies on it. */
_Static_assert(sizeof(struct cprx_ioctl_create_session) ==
	       sizeof(struct cprx_ioctl_retrieve_session), "layout");
_Static_assert(offsetof(struct cprx_ioctl_create_session, fd) ==
	       offsetof(struct cprx_ioctl_retrieve_session, fd), "layout");

/* --- ioctl helpers: 0, an fd, or -errno ---------------------------------- */

int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

void set_name(__u8 *dst, const char *name)
{
	memset(dst, 0, CPRX_SESSION_NAME_LEN);
	memcpy(dst, name, strnlen(name, CPRX_SESSION_NAME_LEN));
}

int open_dev(void)
{
	return open(CPRX_DEVICE, O_RDWR | O_CLOEXEC);
}

int create(int dev, const char *name)
{
	struct cprx_ioctl_create_session a = { .size = sizeof(a) };
	int ret;

	set_name(a.name, name);
	ret = xioctl(dev, CPRX_IOCTL_CREATE_SESSION, &a);
	return ret ? ret : a.fd;
}

int retrieve_session(int dev, const char *name)
{
	struct cprx_ioctl_retrieve_session a = { .size = sizeof(a) };
	int ret;

	set_name(a.name, name);
	ret = xioctl(dev, CPRX_IOCTL_RETRIEVE_SESSION, &a);
	return ret ? ret : a.fd;
}

int preserve(int sfd, int fd, uint64_t token)
{
	struct cprx_session_preserve_fd a = {
		.size = sizeof(a), .fd = fd, .token = token,
	};

	return xioctl(sfd, CPRX_SESSION_PRESERVE_FD, &a);
}

/* PRESERVE_FDS; *@failed is what the kernel left in the field. */
int preserve_fds(int sfd, const struct cprx_preserve_entry *ents, uint32_t nr,
		 uint32_t *failed)
{
	struct cprx_session_preserve_fds a = {
		.size = sizeof(a), .nr = nr, .entries = (uintptr_t)ents,
		.failed = *failed,
	};
	int ret = xioctl(sfd, CPRX_SESSION_PRESERVE_FDS, &a);

	*failed = a.failed;
	return ret;
}

int unpreserve(int sfd, uint64_t token)
{
	struct cprx_session_unpreserve_fd a = {
		.size = sizeof(a), .token = token,
	};

	return xioctl(sfd, CPRX_SESSION_UNPRESERVE_FD, &a);
}

int arm(int sfd, uint32_t flags)
{
	struct cprx_session_arm a = { .size = sizeof(a), .flags = flags };

	return xioctl(sfd, CPRX_SESSION_ARM, &a);
}

int retrieve_fd(int sfd, uint64_t token)
{
	struct cprx_session_retrieve_fd a = {
		.size = sizeof(a), .fd = -1, .token = token,
	};
	int ret = xioctl(sfd, CPRX_SESSION_RETRIEVE_FD, &a);

	return ret ? ret : a.fd;
}

int finish(int sfd)
{
	struct cprx_session_finish a = { .size = sizeof(a) };

	return xioctl(sfd, CPRX_SESSION_FINISH, &a);
}

/* QUERY with room for @cap entries at @ents. */
int query(int sfd, struct cprx_session_query *q,
		 struct cprx_query_entry *ents, uint32_t cap)
{
	memset(q, 0, sizeof(*q));
	q->size = sizeof(*q);
	q->nr_entries = cap;
	q->entries = (uintptr_t)ents;
	return xioctl(sfd, CPRX_SESSION_QUERY, q);
}

/* The kind QUERY reports for @token; -1 if it is not pinned. */
int kind_of(int sfd, uint64_t token)
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

int nr_pins(int sfd)
{
	struct cprx_session_query q;
	int ret = query(sfd, &q, NULL, 0);

	return ret ? ret : (int)q.nr_entries;
}

/* --- Process and system helpers ------------------------------------------- */

int cloexec_of(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	return flags < 0 ? -errno : flags & FD_CLOEXEC;
}

/* The session fd crosses the exec: that is what keeps the session alive. */
int keep_on_exec(int fd)
{
	return fcntl(fd, F_SETFD, 0) ? -errno : 0;
}

long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Unflushed stdio would be printed twice, or lost by an exec. */
pid_t fork_flushed(void)
{
	fflush(stdout);
	fflush(stderr);
	return fork();
}

/* Exit status of @pid, 128 + the signal that killed it, or -1. */
int reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/*
 * A copy of this binary at @path, mode 0755, or setgid @gid (root-owned,
 * 02755) if @gid >= 0: 0 or -errno.  For tests that exec another file
 * (a setgid copy, one with file capabilities, one nobody may run).
 */
int copy_self(const char *path, int gid)
{
	char buf[65536];
	ssize_t n;
	int in, out, ret = 0;

	in = open(th_self, O_RDONLY | O_CLOEXEC);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (in < 0 || out < 0)
		ret = -errno;
	while (!ret && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			ret = -EIO;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (!ret && gid >= 0 && (chown(path, 0, gid) || chmod(path, 02755)))
		ret = -errno;
	return ret;
}

/* Becomes "--exec-case @ecase a0 a1 a2"; returns -errno if execv failed. */
int exec_self(const char *ecase, long a0, long a1, long a2)
{
	char args[3][24];

	snprintf(args[0], sizeof(args[0]), "%ld", a0);
	snprintf(args[1], sizeof(args[1]), "%ld", a1);
	snprintf(args[2], sizeof(args[2]), "%ld", a2);
	fflush(stdout);
	execv(th_self, EXEC_CASE_ARGV(ecase, args[0], args[1], args[2]));
	return -errno;
}

__attribute__((noreturn))
void exec_or_die(const char *ecase, long a0, long a1, long a2)
{
	int ret = exec_self(ecase, a0, a1, a2);

	CHECK(0, "exec %s: %s", th_self, strerror(-ret));
	_exit(1);
}

long read_long(const char *path)
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

int write_long(const char *path, long v)
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
long meminfo_kb(const char *key)
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

long shmem_kb(void)
{
	return meminfo_kb("Shmem");
}

long module_refcnt(void)
{
	return read_long(REFCNT);
}

/* Waits up to 5 s for @read() to come down to @limit: fput may be deferred. */
long settle(long (*read)(void), long limit)
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
int proc_lines(void (*fn)(const char *line, int pid, const char *name,
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
int proc_count(int pid, const char *name, char *line, size_t size)
{
	struct proc_find pf = { .pid = pid, .name = name };

	if (proc_lines(proc_find_fn, &pf) < 0)
		return -1;
	if (line)
		snprintf(line, size, "%s", pf.line);
	return pf.found;
}

long proc_total(void)
{
	return proc_lines(NULL, NULL);
}

/* A memfd of @size bytes, page i filled with (i + @seed): resident. */
int memfd_pattern(size_t size, unsigned int seed)
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
long long memfd_bad(int fd, size_t size, unsigned int seed)
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
int nofile_at_least(rlim_t n)
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
int read_report(int fd, int *val, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return -ETIMEDOUT;
	return read(fd, val, sizeof(*val)) == sizeof(*val) ? 0 : -EPIPE;
}

void report(int fd, int val)
{
	CHECK(write(fd, &val, sizeof(val)) == sizeof(val), "report: %m");
}

/* Sends @fd over the unix socket @sock (one byte with it): 0 or -errno. */
int send_fd(int sock, int fd)
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

	memset(&u, 0, sizeof(u));
	u.h.cmsg_level = SOL_SOCKET;
	u.h.cmsg_type = SCM_RIGHTS;
	u.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&u.h), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -errno;
}

/* The fd send_fd() sent over @sock, close-on-exec, or -errno. */
int recv_fd(int sock)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *h;
	ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	int fd;

	if (n < 0)
		return -errno;
	if (n != 1)
		return -EPIPE;
	h = CMSG_FIRSTHDR(&m);
	if (!h || h->cmsg_type != SCM_RIGHTS)
		return -EBADMSG;
	memcpy(&fd, CMSG_DATA(h), sizeof(int));
	return fd;
}

void sleep_forever(void)
{
	for (;;)
		pause();
}

/* --- The fixture: skips without the module, leaves nothing behind --------- */

static const char *const param_names[NR_PARAMS] = {
	"max_pins", "max_sessions", "max_user_pins", "max_total_sessions",
	"max_total_pins",
};
static long params_at_start[NR_PARAMS] = {	/* HARNESS_SETUP's */
	[0 ... NR_PARAMS - 1] = -1,
};

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

void kmod_setup(FIXTURE_DATA(kmod) *self)
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

void kmod_teardown(FIXTURE_DATA(kmod) *self)
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
void track(FIXTURE_DATA(kmod) *self, pid_t pid)
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
int reap_kid(FIXTURE_DATA(kmod) *self, pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(self->kids); i++)
		if (self->kids[i] == pid)
			self->kids[i] = 0;
	return reap(pid);
}

void kill_kid(FIXTURE_DATA(kmod) *self, pid_t pid)
{
	kill(pid, SIGKILL);
	reap_kid(self, pid);
}

/* Runs @fn(@arg) in a child (dying with us) and returns its exit status. */
int run_child(FIXTURE_DATA(kmod) *self, void (*fn)(long), long arg)
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
void set_param(FIXTURE_DATA(kmod) *self, int p, long v)
{
	char path[128];

	param_path(path, sizeof(path), p);
	if (self->saved[p] < 0)
		self->saved[p] = read_long(path);
	ASSERT_GE(self->saved[p], 0);
	ASSERT_EQ(0, write_long(path, v));
}

/* Argument @i of an exec case, as exec_self() wrote it; 0 if missing. */
long exec_arg(int argc, char **argv, int i)
{
	return i < argc ? strtol(argv[i], NULL, 0) : 0;
}

/*
 * Before the tests: the parameters as the module had them.  (The harness
 * then closes any fd a runner leaked to us, so every test starts from the
 * same fds.)
 */
HARNESS_SETUP(argc, argv)
{
	char path[128];

	for (int p = 0; p < NR_PARAMS; p++) {
		param_path(path, sizeof(path), p);
		params_at_start[p] = read_long(path);
	}
}
