// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The live-update tests' guest model and shared plumbing (exec_util.h says
 * how the tests use them).
 */
#include <dirent.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "exec_util.h"

/* ---- the guest ----------------------------------------------------------- */

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

void make_guest(struct guest *g, uint64_t size, int map_flags)
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

struct cprx_session *preserve_guest(struct guest *g,
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
void check_guest(struct guest *g)
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

void reclaim_guest(struct cprx_session *s, struct guest *g)
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
/* ---- processes and fds --------------------------------------------------- */

/* Open fds of this process. */
int fd_count(void)
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

/*
 * Exactly stdio and the guest's fds: nothing stray crossed the exec.  The
 * library's reaper thread may hold an fd for a moment (a keeper's pidfd or
 * /proc entry): a stray one is one still there after a second.
 */
void check_fd_set(struct guest *g)
{
	int want[] = { 0, 1, 2, g->ram_fd, g->efd, g->pipe[0], g->pipe[1],
		       g->file_fd };
	int nwant = (int)(sizeof(want) / sizeof(want[0]));
	int n = fd_count();

	for (int i = 0; i < 100 && n != nwant; i++) {
		usleep(10000);
		n = fd_count();
	}
	for (int i = 0; i < nwant; i++)
		CHECK(fcntl(want[i], F_GETFD) >= 0, "fd %d missing", want[i]);
	CHECK(n == nwant, "%d fds open, expected %d", n, nwant);
}

/*
 * /proc/@pid/stat's state letter and parent; false if @pid is gone.  The
 * name in parentheses may hold anything, so fields count from the last ')'.
 */
bool proc_stat(pid_t pid, char *state, int *ppid)
{
	char path[64], buf[512], *p;
	bool ok = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		ok = sscanf(p + 2, "%c %d", state, ppid) == 2;
	fclose(f);
	return ok;
}

/* Processes whose parent is us: the keeper must not linger. */
int nr_children(void)
{
	struct dirent *d;
	int n = 0, ppid;
	DIR *dir = opendir("/proc");
	char state;

	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		if (proc_stat(atoi(d->d_name), &state, &ppid) &&
		    ppid == getpid())
			n++;
	}
	if (dir)
		closedir(dir);
	return n;
}

void wait_no_children(void)
{
	for (int i = 0; i < 500 && nr_children(); i++)
		usleep(10000);
	CHECK(nr_children() == 0, "%d child process(es) left", nr_children());
}

/* Runs @fn in a child and returns its exit status (128+sig if killed). */
int in_child(void (*fn)(const void *), const void *arg)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		fn(arg);
		exit(0);	/* not _exit(): LeakSanitizer runs at exit */
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Installs a seccomp filter here and in later images, with no_new_privs:
 * system calls of another architecture are allowed, then @body runs with
 * the system call number loaded.  Returns what seccomp() returns (with
 * SECCOMP_FILTER_FLAG_NEW_LISTENER in @flags, the listener).
 */
int seccomp_filter(const struct sock_filter *body, size_t n,
		   unsigned int flags)
{
	struct sock_filter f[32] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	};
	struct sock_fprog prog = { .len = 4 + n, .filter = f };

	CHECK(n <= 28, "a filter of %zu instructions: too long", n);
	memcpy(f + 4, body, n * sizeof(*body));
	CHECK(!prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs: %m");
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* Makes syscalls @a and @b fail with EPERM in this process and its images. */
void install_filter(int a, int b)
{
	struct sock_filter f[] = {
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, b, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};

	CHECK(!seccomp_filter(f, ARRAY_SIZE(f), 0), "seccomp: %m");
}

/* execve and execveat refused, as a sandbox's seccomp policy may. */
void install_exec_filter(void)
{
	install_filter(__NR_execve, __NR_execveat);
}

void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len, "%s: %m", path);
	close(fd);
	chmod(path, mode);
}

/* ---- both halves: out of the old image, into the new one ----------------- */

/* Never returns: the new image runs case @name, or this child fails. */
void exec_case(struct cprx_session *s, const char *name)
{
	int ret = cprx_exec(s, th_self, EXEC_CASE_ARGV(name));

	CHECK(0, "exec of case %s failed (%d): %s; %s", name, ret,
	      cprx_errmsg(s), cprx_errhint(s));
}

/* The new image's session, which must be there and must hide its env. */
struct cprx_session *incoming(void)
{
	struct cprx_session *s;
	int ret = cprx_incoming(&s, NULL);

	CHECK(ret == 1, "cprx_incoming returned %d: %s", ret,
	      s ? cprx_errmsg(s) : cprx_errmsg(NULL));
	CHECK(!getenv(CPRX_ENV), CPRX_ENV " still set in the new image");
	return s;
}

