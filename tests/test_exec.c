// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Host tier: live updates of this very test binary through libcprx.
 *
 * A test forks a child that sets up "guest" RAM and devices and calls
 * cprx_exec() on this binary into the harness's exec case NAME: the new image
 * runs the case's second half (the EXEC_CASE()s below) and its exit status,
 * in the same PID, is what the test checks.  Exec refusals are checked in the child
 * itself: it must come back with the guest intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "cprx.h"
#include "harness.h"

#define RAM_SIZE	(64ull << 20)
#define SEED		0x5eedc0ffeeull
#define PIPE_MSG	"unread pipe bytes"
#define EVENT_COUNT	5
#define FILE_OFFSET	3

/* Failures in a new image are reported as diagnostics and the exit status. */
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		printf("# %s:%d: ", __FILE__, __LINE__);		\
		printf(__VA_ARGS__);					\
		printf("\n");						\
		fflush(stdout);						\
		_exit(1);						\
	}								\
} while (0)

struct guest {
	int ram_fd;
	uint64_t *ram;
	uint64_t size;
	int efd;
	int pipe[2];
	int file_fd;
};

static void install_filter(int a, int b);

static uint64_t pattern(uint64_t i, uint64_t seed)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;

	return x ^ (x >> 29);
}

static void fill_ram(struct guest *g)
{
	for (uint64_t i = 0; i < g->size / 8; i++)
		g->ram[i] = pattern(i, SEED);
}

/* Offset of the first word that lost its content, or -1. */
static long long bad_ram(const uint64_t *ram, uint64_t size)
{
	for (uint64_t i = 0; i < size / 8; i++)
		if (ram[i] != pattern(i, SEED))
			return (long long)i * 8;
	return -1;
}

static void make_guest(struct guest *g, uint64_t size, int map_flags)
{
	char tmpl[] = "/tmp/cprx-test-XXXXXX";

	g->size = size;
	g->ram_fd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHECK(g->ram_fd >= 0, "memfd_create: %m");
	CHECK(!ftruncate(g->ram_fd, size), "ftruncate: %m");
	g->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, map_flags, g->ram_fd, 0);
	CHECK(g->ram != MAP_FAILED, "mmap: %m");
	fill_ram(g);
	g->efd = eventfd(EVENT_COUNT, EFD_CLOEXEC);
	CHECK(g->efd >= 0, "eventfd: %m");
	CHECK(!pipe2(g->pipe, O_CLOEXEC), "pipe: %m");
	CHECK(write(g->pipe[1], PIPE_MSG, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG),
	      "pipe write");
	g->file_fd = mkostemp(tmpl, O_CLOEXEC);
	CHECK(g->file_fd >= 0, "mkostemp: %m");
	unlink(tmpl);
	CHECK(write(g->file_fd, "0123456789", 10) == 10, "file write");
	CHECK(lseek(g->file_fd, FILE_OFFSET, SEEK_SET) == FILE_OFFSET, "lseek");
	/* open, close-on-exec and not preserved: must not reach the new image */
	CHECK(open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0, "open: %m");
}

static struct cprx_session *preserve_guest(struct guest *g,
					   const struct cprx_options *opts)
{
	struct cprx_session *s;
	int ret;

	ret = cprx_session_open(&s, "test", opts);
	CHECK(!ret, "session_open: %s", cprx_errmsg(NULL));
	CHECK(!cprx_preserve_ram(s, "ram0", g->ram_fd, g->ram, g->size,
				 CPRX_PAGE_4K), "%s", cprx_errmsg(s));
	CHECK(!cprx_preserve_fd(s, "dev.eventfd", g->efd), "%s", cprx_errmsg(s));
	CHECK(!cprx_preserve_fd(s, "dev.pipe.r", g->pipe[0]), "%s", cprx_errmsg(s));
	CHECK(!cprx_preserve_fd(s, "dev.pipe.w", g->pipe[1]), "%s", cprx_errmsg(s));
	CHECK(!cprx_preserve_fd(s, "dev.file", g->file_fd), "%s", cprx_errmsg(s));
	CHECK(!cprx_add_blob(s, "vmm", "blob-payload", 12), "%s", cprx_errmsg(s));
	return s;
}

/* Checks everything preserve_guest preserved, in whatever image holds it. */
static void check_guest(struct guest *g)
{
	char buf[64];
	uint64_t v;
	long long bad;

	bad = bad_ram(g->ram, g->size);
	CHECK(bad < 0, "RAM differs at offset %lld", bad);
	CHECK(read(g->efd, &v, 8) == 8 && v == EVENT_COUNT,
	      "eventfd count lost");
	CHECK(write(g->efd, &v, 8) == 8, "eventfd rearm");
	CHECK(read(g->pipe[0], buf, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG) &&
	      !memcmp(buf, PIPE_MSG, sizeof(PIPE_MSG)), "pipe bytes lost");
	CHECK(write(g->pipe[1], PIPE_MSG, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG),
	      "pipe rearm");
	CHECK(lseek(g->file_fd, 0, SEEK_CUR) == FILE_OFFSET, "file offset lost");
}

static void reclaim_guest(struct cprx_session *s, struct guest *g)
{
	const void *blob;
	size_t len;
	void *p;

	CHECK(!cprx_reclaim_ram(s, "ram0", &p, &g->size, &g->ram_fd), "%s",
	      cprx_errmsg(s));
	g->ram = p;
	CHECK(!cprx_reclaim_fd(s, "dev.eventfd", &g->efd), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.r", &g->pipe[0]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.w", &g->pipe[1]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.file", &g->file_fd), "%s", cprx_errmsg(s));
	CHECK(!cprx_get_blob(s, "vmm", &blob, &len), "%s", cprx_errmsg(s));
	CHECK(len == 12 && !memcmp(blob, "blob-payload", 12), "blob differs");
}

static int fd_count(void)
{
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	while (dir && (d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	if (dir)
		closedir(dir);
	return n - 1;	/* the directory's own fd */
}

/* Exactly stdio and the guest's fds: nothing stray crossed the exec. */
static void check_fd_set(struct guest *g)
{
	int want[] = { 0, 1, 2, g->ram_fd, g->efd, g->pipe[0], g->pipe[1],
		       g->file_fd };
	int n = fd_count();

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK(fcntl(want[i], F_GETFD) >= 0, "fd %d missing", want[i]);
	CHECK(n == (int)(sizeof(want) / sizeof(want[0])),
	      "%d fds open, expected %zu", n, sizeof(want) / sizeof(want[0]));
}

/* Processes whose parent is us: the keeper must not linger. */
static int nr_children(void)
{
	char path[300], buf[512], *p;
	struct dirent *d;
	int n = 0, ppid;
	DIR *dir = opendir("/proc");
	FILE *f;

	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
		    sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == getpid())
			n++;
		fclose(f);
	}
	if (dir)
		closedir(dir);
	return n;
}

static void wait_no_children(void)
{
	for (int i = 0; i < 500 && nr_children(); i++)
		usleep(10000);
	CHECK(nr_children() == 0, "%d child process(es) left", nr_children());
}

static void exec_case(struct cprx_session *s, const char *name)
{
	int ret = cprx_exec(s, th_self, EXEC_CASE_ARGV(name));

	CHECK(0, "exec of case %s failed (%d): %s; %s", name, ret,
	      cprx_errmsg(s), cprx_errhint(s));
}

/* Runs @fn in a child and returns its exit status (128+sig if killed). */
static int in_child(void (*fn)(const void *), const void *arg)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- old-image halves ---------------------------------------------------- */

static void update_to(const void *arg)
{
	const char *name = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), name);
}

/* io_uring refused (as some sandboxes do): the state moves with pwrite. */
static void update_without_io_uring(const void *arg)
{
	install_filter(__NR_io_uring_setup, __NR_io_uring_enter);
	update_to(arg);
}

static void update_inline_teardown(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .no_deferred_teardown = true };
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), "devices");
}

/* The child first becomes exec case NAME itself, so rollback returns there. */
static void become_case(const void *arg)
{
	execv(th_self, EXEC_CASE_ARGV(arg));
	_exit(97);
}

struct damage {
	const char *path;
	bool truncate;
};

static void update_damaged(const void *arg)
{
	const struct damage *d = arg;
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = d->path };
	struct cprx_session *s;
	struct guest g;
	struct stat st;
	char c;
	int fd;

	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_save(s), "%s", cprx_errmsg(s));
	fd = open(d->path, O_RDWR);
	CHECK(fd >= 0 && !fstat(fd, &st), "state file: %m");
	if (d->truncate) {
		CHECK(!ftruncate(fd, st.st_size / 2), "truncate: %m");
	} else {
		CHECK(pread(fd, &c, 1, st.st_size / 2) == 1, "read");
		c ^= 0x40;
		CHECK(pwrite(fd, &c, 1, st.st_size / 2) == 1, "write");
	}
	close(fd);
	exec_case(s, "damaged");
}

/* ---- new-image halves ---------------------------------------------------- */

static struct cprx_session *incoming(void)
{
	struct cprx_session *s;
	int ret = cprx_incoming(&s, NULL);

	CHECK(ret == 1, "cprx_incoming returned %d: %s", ret,
	      s ? cprx_errmsg(s) : cprx_errmsg(NULL));
	CHECK(!getenv(CPRX_ENV), CPRX_ENV " still set in the new image");
	return s;
}

EXEC_CASE(devices)
{
	struct cprx_session *s = incoming();
	uint64_t ts[CPRX_PH_MAX];
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	CHECK(cprx_generation(s) == 1, "generation %u", cprx_generation(s));
	CHECK(!cprx_is_rollback(s), "marked as rollback");
	cprx_timeline(s, ts);
	CHECK(ts[CPRX_PH_SAVE_START] && ts[CPRX_PH_SAVE_END] >= ts[CPRX_PH_SAVE_START] &&
	      ts[CPRX_PH_EXEC] >= ts[CPRX_PH_SAVE_END] &&
	      ts[CPRX_PH_INCOMING] >= ts[CPRX_PH_EXEC] &&
	      ts[CPRX_PH_COMMIT] >= ts[CPRX_PH_INCOMING], "timeline out of order");
	wait_no_children();
	cprx_session_close(s);
	_exit(0);
}

/* Old image of the rollback cases: first a fresh start, then the rollback. */
__attribute__((noreturn))
static void case_rollback_old(const char *next)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int ret = cprx_incoming(&s, NULL);

	if (ret == 0) {
		make_guest(&g, RAM_SIZE, MAP_SHARED);
		exec_case(preserve_guest(&g, &opts), next);
	}
	CHECK(ret == 1, "rollback image rejected the state: %s", cprx_errmsg(s));
	CHECK(cprx_is_rollback(s), "not marked as rollback");
	CHECK(cprx_generation(s) == 0, "generation %u after rollback",
	      cprx_generation(s));
	CHECK(cprx_rollback_reason(s) &&
	      !strcmp(cprx_rollback_reason(s), "simulated start failure, 100%"),
	      "rollback reason: %s", cprx_rollback_reason(s));
	reclaim_guest(s, &g);
	check_guest(&g);
	if (!strcmp(next, "rb_twice_new")) {
		ret = cprx_rollback(s, "second failure");
		CHECK(ret == -ELOOP, "second rollback returned %d", ret);
		CHECK(strstr(cprx_errmsg(s), "second rollback"), "message: %s",
		      cprx_errmsg(s));
	}
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	wait_no_children();
	_exit(0);
}

/* New image that cannot start: it rolls back to the previous binary. */
__attribute__((noreturn))
static void case_rollback_new(bool missing_token)
{
	struct cprx_session *s = incoming();
	int fd, ret;

	if (missing_token) {
		ret = cprx_reclaim_fd(s, "dev.extra", &fd);
		CHECK(ret == -ENOENT, "reclaim of a missing token: %d", ret);
		CHECK(strstr(cprx_errmsg(s), "dev.extra"), "message: %s",
		      cprx_errmsg(s));
	}
	ret = cprx_rollback(s, "simulated start failure, 100%");
	CHECK(0, "rollback returned %d: %s", ret, cprx_errmsg(s));
}

/* The state was damaged on disk: refused, by name, never a crash. */
EXEC_CASE(damaged)
{
	struct cprx_session *s;
	int ret = cprx_incoming(&s, NULL);

	CHECK(ret == -EBADMSG, "damaged state gave %d: %s", ret, cprx_errmsg(s));
	CHECK(strstr(cprx_errmsg(s), "checksum") ||
	      strstr(cprx_errmsg(s), "truncated"), "message: %s", cprx_errmsg(s));
	CHECK(strstr(cprx_errhint(s), "cprx_rollback"), "hint: %s",
	      cprx_errhint(s));
	printf("# new image: %s\n", cprx_errmsg(s));
	_exit(0);
}

EXEC_CASE(rb_old)
{
	case_rollback_old("rb_new");
}

EXEC_CASE(rb_new)
{
	case_rollback_new(false);
}

EXEC_CASE(rb_twice_old)
{
	case_rollback_old("rb_twice_new");
}

EXEC_CASE(rb_twice_new)
{
	case_rollback_new(false);
}

EXEC_CASE(rb_token_old)
{
	case_rollback_old("rb_token_new");
}

EXEC_CASE(rb_token_new)
{
	case_rollback_new(true);
}

/* ---- tests ---------------------------------------------------------------- */

TEST(ram_and_devices_survive)
{
	ASSERT_EQ(0, in_child(update_to, "devices"));
}

TEST(inline_teardown_update)
{
	ASSERT_EQ(0, in_child(update_inline_teardown, NULL));
}

TEST(update_without_io_uring)
{
	ASSERT_EQ(0, in_child(update_without_io_uring, "devices"));
}

TEST(rollback_resumes_previous_binary)
{
	ASSERT_EQ(0, in_child(become_case, "rb_old"));
}

TEST(rollback_on_missing_token)
{
	ASSERT_EQ(0, in_child(become_case, "rb_token_old"));
}

TEST(second_rollback_refused)
{
	ASSERT_EQ(0, in_child(become_case, "rb_twice_old"));
}

TEST(corrupted_state_rejected)
{
	struct damage d = { .path = "/tmp/cprx-test-corrupt.state" };

	ASSERT_EQ(0, in_child(update_damaged, &d));
	unlink(d.path);
}

TEST(truncated_state_rejected)
{
	struct damage d = { .path = "/tmp/cprx-test-trunc.state",
			    .truncate = true };

	ASSERT_EQ(0, in_child(update_damaged, &d));
	unlink(d.path);
}

/* ---- exec refused: the guest resumes intact -------------------------------- */

struct refusal {
	const char *path;
	int err;
	const char *word;	/* the message must name the cause */
	bool seccomp;
	bool huge_argv;
	bool inline_teardown;
};

/* Makes syscalls @a and @b fail with EPERM in this process and its images. */
static void install_filter(int a, int b)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, b, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHECK(!prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs: %m");
	CHECK(!syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog),
	      "seccomp: %m");
}

static void install_exec_filter(void)
{
	install_filter(__NR_execve, __NR_execveat);
}

static char **huge_argv(void)
{
	/* 64 x 128 KiB: past the 6 MiB the kernel allows even with no stack limit */
	char **argv = calloc(66, sizeof(char *));

	argv[0] = th_self;
	for (int i = 1; i <= 64; i++) {
		argv[i] = malloc(128 * 1024);
		memset(argv[i], 'x', 128 * 1024 - 1);
		argv[i][128 * 1024 - 1] = '\0';
	}
	return argv;
}

static void refused_exec(const void *arg)
{
	const struct refusal *r = arg;
	struct cprx_options opts = { .size = sizeof(opts),
				     .no_deferred_teardown = r->inline_teardown };
	char *argv[] = { (char *)r->path, NULL };
	struct cprx_session *s;
	struct guest g;
	int ret;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	if (r->seccomp)
		install_exec_filter();
	ret = cprx_exec(s, r->path, r->huge_argv ? huge_argv() : argv);
	printf("# %s\n# hint: %s\n", cprx_errmsg(s), cprx_errhint(s));
	CHECK(ret == -r->err, "cprx_exec returned %d, expected %d", ret, -r->err);
	CHECK(strstr(cprx_errmsg(s), r->word), "message lacks '%s'", r->word);
	CHECK(*cprx_errhint(s), "no hint");
	/* Every fd flag back as it was: close-on-exec again. */
	CHECK(fcntl(g.ram_fd, F_GETFD) == FD_CLOEXEC, "ram fd flags");
	CHECK(fcntl(g.efd, F_GETFD) == FD_CLOEXEC, "eventfd flags");
	CHECK(fcntl(g.pipe[0], F_GETFD) == FD_CLOEXEC, "pipe flags");
	/* The keeper is gone already and the guest is intact. */
	CHECK(nr_children() == 0, "keeper still alive after a failed exec");
	check_guest(&g);
	cprx_session_close(s);
}

static void write_file(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len, "%s: %m", path);
	close(fd);
	chmod(path, mode);
}

TEST(refused_enoent)
{
	struct refusal r = { .path = "/nonexistent/cprx-next", .err = ENOENT,
			     .word = "ENOENT" };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

TEST(refused_eacces)
{
	struct refusal r = { .path = "/tmp/cprx-test-noexec", .err = EACCES,
			     .word = "EACCES" };

	write_file(r.path, "\177ELF", 4, 0644);
	ASSERT_EQ(0, in_child(refused_exec, &r));
	unlink(r.path);
}

TEST(refused_enoexec)
{
	struct refusal r = { .path = "/tmp/cprx-test-garbage", .err = ENOEXEC,
			     .word = "ENOEXEC" };
	char junk[4096];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	write_file(r.path, junk, sizeof(junk), 0755);
	ASSERT_EQ(0, in_child(refused_exec, &r));
	unlink(r.path);
}

TEST(refused_e2big)
{
	struct refusal r = { .path = th_self, .err = E2BIG, .word = "E2BIG",
			     .huge_argv = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

TEST(refused_eperm_seccomp)
{
	struct refusal r = { .path = th_self, .err = EPERM, .word = "seccomp",
			     .seccomp = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

TEST(refused_eperm_inline_teardown)
{
	struct refusal r = { .path = th_self, .err = EPERM, .word = "seccomp",
			     .seccomp = true, .inline_teardown = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

/* ---- preflight ------------------------------------------------------------ */

static const struct cprx_check *find_check(const struct cprx_preflight_report *r,
					   const char *name)
{
	for (unsigned int i = 0; i < r->nr_checks; i++)
		if (!strcmp(r->checks[i].name, name))
			return &r->checks[i];
	return NULL;
}

static void preflight_private(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_preflight_report rep = { .size = sizeof(rep) };
	char *probe[] = { th_self, "--version", NULL };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_PRIVATE);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, th_self, probe, &rep);
	CHECK(ret == -EINVAL, "preflight returned %d", ret);
	c = find_check(&rep, "ram:ram0");
	CHECK(c && c->verdict == CPRX_FAIL, "ram check did not fail");
	CHECK(strstr(c->reason, "MAP_PRIVATE"), "reason: %s", c->reason);
	CHECK(strstr(cprx_errmsg(s), "ram0"), "message: %s", cprx_errmsg(s));
	CHECK(strstr(cprx_errhint(s), "MAP_SHARED"), "hint: %s", cprx_errhint(s));
	c = find_check(&rep, "probe");
	CHECK(c && c->verdict == CPRX_PASS, "probe: %s", c ? c->reason : "none");
	check_guest(&g);
}

TEST(preflight_refuses_private_ram)
{
	ASSERT_EQ(0, in_child(preflight_private, NULL));
}

static void preflight_ok(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_preflight_report rep = { .size = sizeof(rep) };
	char *probe[] = { th_self, "--version", NULL };
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, th_self, probe, &rep);
	for (unsigned int i = 0; i < rep.nr_checks; i++)
		printf("# %-10s %s %s\n", rep.checks[i].name,
		       rep.checks[i].verdict == CPRX_PASS ? "pass" :
		       rep.checks[i].verdict == CPRX_WARN ? "warn" : "FAIL",
		       rep.checks[i].reason);
	CHECK(ret == 0, "preflight failed: %s", cprx_errmsg(s));
	CHECK(find_check(&rep, "probe") &&
	      strstr(find_check(&rep, "probe")->reason, "test_exec 0"),
	      "probe output missing");
	CHECK(find_check(&rep, "ram:ram0")->verdict == CPRX_PASS, "ram check");
	CHECK(strstr(find_check(&rep, "state")->reason, ", io_uring"),
	      "state check does not say how the state is written");
	/* preflight changes nothing */
	CHECK(fcntl(g.ram_fd, F_GETFD) == FD_CLOEXEC, "ram fd flags changed");
	CHECK(nr_children() == 0, "probe not reaped");
	check_guest(&g);
}

TEST(preflight_passes_good_setup)
{
	ASSERT_EQ(0, in_child(preflight_ok, NULL));
}

struct pf_bad {
	const char *path;
	int err;
	const char *check;
	const char *word;
	bool seccomp;
};

static void preflight_bad(const void *arg)
{
	const struct pf_bad *b = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_preflight_report rep = { .size = sizeof(rep) };
	char *probe[] = { (char *)b->path, "--version", NULL };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	int ret;

	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	if (b->seccomp)
		install_exec_filter();
	ret = cprx_preflight(s, b->path, probe, &rep);
	printf("# %s\n", cprx_errmsg(s));
	CHECK(ret == -b->err, "preflight returned %d, expected %d", ret, -b->err);
	c = find_check(&rep, b->check);
	CHECK(c && c->verdict == CPRX_FAIL, "check %s did not fail", b->check);
	CHECK(strstr(c->reason, b->word), "reason: %s", c->reason);
}

TEST(preflight_refuses_garbage_binary)
{
	struct pf_bad b = { .path = "/tmp/cprx-test-pf-garbage", .err = ENOEXEC,
			    .check = "binary", .word = "ELF" };

	write_file(b.path, "garbage!", 8, 0755);
	ASSERT_EQ(0, in_child(preflight_bad, &b));
	unlink(b.path);
}

TEST(preflight_refuses_missing_binary)
{
	struct pf_bad b = { .path = "/nonexistent/qemu", .err = ENOENT,
			    .check = "binary", .word = "not exist" };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

TEST(preflight_probe_sees_seccomp)
{
	struct pf_bad b = { .path = th_self, .err = EPERM, .check = "probe",
			    .word = "seccomp", .seccomp = true };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

TEST(preflight_probe_failing_binary)
{
	struct pf_bad b = { .path = "/bin/false", .err = ELIBBAD,
			    .check = "probe", .word = "exited with 1" };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

/* ---- API errors ------------------------------------------------------------ */

TEST(api_rejects_bad_input)
{
	struct cprx_session *s;
	char longname[80];
	int fd = memfd_create("x", MFD_CLOEXEC);

	ASSERT_EQ(0, cprx_session_open(&s, "api", NULL));
	EXPECT_EQ(-EBADF, cprx_preserve_fd(s, "bad", 12345));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "12345"));
	EXPECT_EQ(0, cprx_preserve_fd(s, "a", fd));
	EXPECT_EQ(-EEXIST, cprx_preserve_fd(s, "a", fd));
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, longname, fd));
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, "", fd));
	EXPECT_EQ(-EINVAL, cprx_preserve_ram(s, "r", fd, NULL, 0, CPRX_PAGE_4K));
	EXPECT_EQ(0, cprx_add_blob(s, "b", "x", 1));
	EXPECT_EQ(-EEXIST, cprx_add_blob(s, "b", "y", 1));
	EXPECT_EQ(0, cprx_unpreserve(s, "a"));
	EXPECT_EQ(-ENOENT, cprx_unpreserve(s, "a"));
	EXPECT_EQ(-EINVAL, cprx_session_open(&s, longname, NULL));
	EXPECT_NE(NULL, strstr(cprx_errmsg(NULL), "longer than 63"));
	cprx_session_close(s);
	close(fd);
}

TEST(incoming_without_update)
{
	struct cprx_session *s;

	unsetenv(CPRX_ENV);
	ASSERT_EQ(0, cprx_incoming(&s, NULL));
	ASSERT_EQ(NULL, s);
}

TEST(incoming_malformed_env)
{
	struct cprx_session *s;

	setenv(CPRX_ENV, "garbage", 1);
	ASSERT_EQ(-EINVAL, cprx_incoming(&s, NULL));
	ASSERT_NE(NULL, strstr(cprx_errmsg(s), CPRX_ENV));
	ASSERT_EQ(NULL, getenv(CPRX_ENV));
	cprx_session_close(s);
}

TEST(backend_env_forcing)
{
	struct cprx_session *s;

	setenv(CPRX_ENV_BACKEND, "cloexec", 1);
	ASSERT_EQ(0, cprx_session_open(&s, "b", NULL));
	ASSERT_STREQ("cloexec", cprx_backend_name(s));
	cprx_session_close(s);
	setenv(CPRX_ENV_BACKEND, "bogus", 1);
	ASSERT_EQ(-EINVAL, cprx_session_open(&s, "b", NULL));
	ASSERT_NE(NULL, strstr(cprx_errmsg(NULL), "bogus"));
	unsetenv(CPRX_ENV_BACKEND);
}

/* The preflight probe runs "test_exec --version", as it would a VMM. */
HARNESS_SETUP(argc, argv)
{
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("test_exec 0\n");
		exit(0);
	}
}

TEST_HARNESS_MAIN
