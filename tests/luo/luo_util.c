// SPDX-License-Identifier: LGPL-2.1-or-later
/* The luo tests' own cprx-luod and its clients (luo_util.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <grp.h>
#include <sys/wait.h>
#include "luo_util.h"
#include "luod_proto.h"

int luod_start(struct luod_run *r, const char *const extra[])
{
	const char *bin = getenv("CPRX_LUOD");
	const char *argv[16];
	char log[128];
	unsigned int i, n = 0;
	int tries;

	if (!bin)
		return -1;
	if (!r->dir[0]) {
		snprintf(r->dir, sizeof(r->dir), "/tmp/cprx-luo.XXXXXX");
		if (!mkdtemp(r->dir))
			return -1;
		chmod(r->dir, 0755);	/* other uids connect to the socket */
	}
	snprintf(r->sock, sizeof(r->sock), "%s/sock", r->dir);
	snprintf(r->state, sizeof(r->state), "%s/state", r->dir);
	snprintf(log, sizeof(log), "%s/log", r->dir);
	unlink(r->sock);
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = r->sock;
	argv[n++] = "--state-dir";
	argv[n++] = r->state;
	for (i = 0; extra && extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	r->pid = fork();
	if (r->pid < 0)
		return -1;
	if (!r->pid) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* a test that fails half-way must not leave it, nor its stdout */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(bin, (char **)argv);
		_exit(127);
	}
	setenv(CPRX_LUOD_ENV, r->sock, 1);
	for (tries = 0; tries < 200; tries++) {
		int fd = luod_connect(r);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		usleep(10000);
	}
	luod_stop(r);
	return -1;
}

/*
 * A daemon must stop on SIGTERM at once.  One that does not is a failure
 * said as such, not the harness's timeout of the whole test later.
 */
void luod_stop(struct luod_run *r)
{
	int i;

	if (r->pid <= 0)
		return;
	kill(r->pid, SIGTERM);
	for (i = 0; i < 1000 && waitpid(r->pid, NULL, WNOHANG) != r->pid; i++)
		usleep(10000);
	if (i == 1000) {
		printf("# cprx-luod (pid %d) did not stop on SIGTERM in 10 s\n",
		       (int)r->pid);
		fflush(stdout);
		kill(r->pid, SIGKILL);
		waitpid(r->pid, NULL, 0);
		abort();
	}
	r->pid = 0;
}

void luod_cleanup(struct luod_run *r)
{
	char cmd[128];

	luod_stop(r);
	if (r->dir[0] && !strncmp(r->dir, "/tmp/cprx-luo.", 14)) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
		if (system(cmd))
			fprintf(stderr, "# could not remove %s\n", r->dir);
	}
}

int luod_connect(const struct luod_run *r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->sock);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int luod_ask(int fd, const char *req, int pass, char *out, size_t len,
	     int *got)
{
	int rfd = -1, ret = cprx_luod_send(fd, req, pass);

	if (!ret)
		ret = cprx_luod_recv(fd, out, len, &rfd);
	if (got)
		*got = rfd;
	else if (rfd >= 0)
		close(rfd);
	return ret;
}

int luod_open_vm(const struct luod_run *r, int mfd)
{
	static const char *const steps[] = { "CREATE vm",
					     "PRESERVE ffffffffffffffff" };
	char out[CPRX_LUOD_MSG_MAX] = "";
	int fd = luod_connect(r);
	size_t i;

	if (fd < 0 || mfd < 0) {
		fprintf(stderr, "# luod_open_vm: connect %d, memfd %d\n", fd,
			mfd);
		goto fail;
	}
	for (i = 0; i < 2; i++) {
		if (luod_ask(fd, steps[i], i ? mfd : -1, out, sizeof(out),
			     NULL) <= 0 || strcmp(out, "OK")) {
			fprintf(stderr, "# luod_open_vm: %s: %s\n", steps[i],
				out);
			goto fail;
		}
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

bool has(const char *hay, const char *needle)
{
	if (hay && strstr(hay, needle))
		return true;
	fprintf(stderr, "# '%s' not in '%s'\n", needle, hay ? hay : "(null)");
	return false;
}

int luod_ask1(const struct luod_run *r, const char *req, char *out, size_t len)
{
	int fd = luod_connect(r), ret;

	if (fd < 0)
		return -errno;
	ret = luod_ask(fd, req, -1, out, len, NULL);
	close(fd);
	return ret;
}

double luod_secs(const struct luod_run *r, const char *req, int secs,
		 char *out, size_t len)
{
	struct timeval tv = { .tv_sec = secs };
	struct timespec a, b;
	int fd = luod_connect(r), ret;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	clock_gettime(CLOCK_MONOTONIC, &a);
	ret = luod_ask(fd, req, -1, out, len, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	close(fd);
	if (ret <= 0)
		return -1;
	return (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}

int proc_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* The fourth field of /proc/PID/stat, after the command in parentheses. */
static pid_t parent_of(const char *pid)
{
	char path[64], buf[512], *p;
	int fd, ppid = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	p = strrchr(buf, ')');
	if (!p || sscanf(p, ") %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

int proc_children(pid_t pid)
{
	struct dirent *e;
	DIR *dir = opendir("/proc");
	int n = 0;

	while (dir && (e = readdir(dir)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
			n += parent_of(e->d_name) == pid;
	if (dir)
		closedir(dir);
	return n;
}

int luo_memfd(const char *name, size_t size, int byte)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	void *p;

	if (fd < 0 || ftruncate(fd, size) < 0)
		return -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, byte, size);
	munmap(p, size);
	return fd;
}

int as_uid(uid_t uid, int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (!pid) {
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(99);
		_exit(fn(arg));
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}
