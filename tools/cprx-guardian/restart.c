// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Starting the VMM with its end of the guardian socket, and restarting the
 * previous binary after the VMM died in the middle of an update: a child
 * of ours (libcprx believes a restart only from the guardian, its parent)
 * with every held fd at the number the VMM had it, the state named in
 * CPRX_INCOMING as a rollback, "restart=" the pid that died.  kmod: the
 * session is adopted from cprx.ko first and handed to the child, which
 * retrieves it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/cprx.h>
#include "guardian.h"
#include "cprx.h"
#include "handover.h"

extern char **environ;

/* Our end and the child's, a new pair per child: the old peer is gone. */
static int new_socket(struct guardian *g, int *child_end)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (g->sock >= 0)
		close(g->sock);
	g->sock = sv[0];
	*child_end = sv[1];
	return 0;
}

static int watch(struct guardian *g, pid_t pid)
{
	if (g->pidfd >= 0)
		close(g->pidfd);
	g->pid = pid;
	g->pidfd = syscall(SYS_pidfd_open, pid, 0);
	return g->pidfd < 0 ? -errno : 0;
}

/* In the child: @fd at number @num, inherited by the exec. */
static void place(int fd, int num)
{
	if (dup2(fd, num) < 0) {
		fprintf(stderr, "cprx-guardian: dup2 %d to %d: %m\n", fd, num);
		_exit(127);
	}
	if (fd == num)
		fcntl(num, F_SETFD, 0);
}

/* Notes the file at @fd, ours from now on (or closed, noted already). */
static void note_ran(struct guardian *g, int fd)
{
	struct stat st;
	unsigned int i, slot = g->nr_ran % MAX_RAN;

	if (fd < 0)
		return;
	if (fstat(fd, &st)) {
		close(fd);
		return;
	}
	for (i = 0; i < g->nr_ran && i < MAX_RAN; i++)
		if (g->ran[i].dev == st.st_dev && g->ran[i].ino == st.st_ino) {
			close(fd);
			return;
		}
	if (g->nr_ran >= MAX_RAN)
		close(g->ran[slot].fd);
	g->ran[slot] = (struct ran){ st.st_dev, st.st_ino, fd };
	/* past UINT_MAX: still full, still the oldest slot next */
	g->nr_ran = g->nr_ran + 1 ?: MAX_RAN;
}

void vmm_note_exe(struct guardian *g)
{
	char link[32];

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)g->pid);
	note_ran(g, open(link, O_PATH | O_CLOEXEC));
}

/*
 * The file execvp will run for @name, noted before the start: the VMM may
 * be gone (killed early in its first update) before /proc/PID/exe is read.
 * Searched as execvp searches: no $PATH is the C library's default path,
 * an empty entry (a set but empty $PATH too) the working directory; an
 * entry too long to join is skipped, not cut to another file.
 */
static void note_start_binary(struct guardian *g, const char *name)
{
	const char *path = getenv("PATH"), *p, *end;
	char file[PATH_MAX], cs_path[256];
	struct stat st;
	int n;

	if (strchr(name, '/')) {
		note_ran(g, open(name, O_PATH | O_CLOEXEC));
		return;
	}
	if (!path) {
		if (!confstr(_CS_PATH, cs_path, sizeof(cs_path)))
			snprintf(cs_path, sizeof(cs_path), "/bin:/usr/bin");
		path = cs_path;
	}
	for (p = path;; p = end + 1) {
		end = strchrnul(p, ':');
		n = end == p ? snprintf(file, sizeof(file), "%s", name) :
			snprintf(file, sizeof(file), "%.*s/%s", (int)(end - p),
				 p, name);
		if (n < (int)sizeof(file) && !access(file, X_OK) &&
		    !stat(file, &st) && S_ISREG(st.st_mode)) {
			note_ran(g, open(file, O_PATH | O_CLOEXEC));
			return;
		}
		if (!*end)
			return;
	}
}

static bool ran_it(const struct guardian *g, int fd)
{
	struct stat st;
	unsigned int i;

	if (fd < 0 || fstat(fd, &st) < 0)
		return false;
	for (i = 0; i < g->nr_ran && i < MAX_RAN; i++)
		if (g->ran[i].dev == st.st_dev && g->ran[i].ino == st.st_ino)
			return true;
	return false;
}

/*
 * Waits for @pid, our child, to exec (@gate's other end is close-on-exec
 * there), then notes the binary it runs: the interpreter, for a script.
 */
static void note_after_exec(struct guardian *g, int gate)
{
	char c;

	while (read(gate, &c, 1) < 0 && errno == EINTR)
		;
	close(gate);
	vmm_note_exe(g);
}

int vmm_start(struct guardian *g)
{
	char val[16];
	int end, ret, gate[2];
	pid_t pid;

	ret = new_socket(g, &end);
	if (ret)
		return ret;
	if (pipe2(gate, O_CLOEXEC) < 0)
		return -errno;
	note_start_binary(g, g->argv[0]);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		/* any number will do: the VMM learns it from the environment */
		int fd = fcntl(end, F_DUPFD, 3);

		close(gate[0]);
		snprintf(val, sizeof(val), "%d", fd);
		setenv(CPRX_ENV_GUARDIAN, val, 1);
		execvp(g->argv[0], g->argv);
		fprintf(stderr, "cprx-guardian: %s: %m\n", g->argv[0]);
		_exit(127);
	}
	close(end);
	close(gate[1]);
	say("event=start pid=%d", (int)pid);
	ret = watch(g, pid);
	note_after_exec(g, gate[0]);
	return ret;
}

/* kmod: the dead VMM's session, armed anew for our next child. */
static int adopt(struct held *h)
{
	struct cprx_ioctl_adopt_session arg = { .size = sizeof(arg) };
	int dev, ret;

	dev = open(CPRX_DEVICE, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	snprintf((char *)arg.name, sizeof(arg.name), "%s", h->session);
	ret = ioctl(dev, CPRX_IOCTL_ADOPT_SESSION, &arg) < 0 ? -errno : 0;
	close(dev);
	if (ret == -ENOENT && h->adopted >= 0)
		return 0;	/* adopted before: our last child died early */
	if (ret)
		return ret;
	if (h->adopted >= 0)
		close(h->adopted);
	h->adopted = arg.fd;
	return 0;
}

/*
 * In the child: every held fd at its number, clear of each other (cloexec;
 * kmod: only the session crosses, the kernel holds the rest).  Our copy of
 * the binary, *exe_fd, moves out of the way too: at a number the VMM used,
 * it would be replaced by what the VMM had there (its RAM...) before the
 * execveat.
 */
static void place_all(const struct held *h, int end, int *kmod_fd,
		      int *exe_fd)
{
	int above = h->guardian_fd + 1;
	unsigned int i;

	for (i = 0; i < h->nr; i++)
		if (h->num[i] >= above)
			above = h->num[i] + 1;
	if (*exe_fd >= 0)
		*exe_fd = fcntl(*exe_fd, F_DUPFD_CLOEXEC, above);
	end = fcntl(end, F_DUPFD_CLOEXEC, above);
	if (h->adopted >= 0) {
		*kmod_fd = fcntl(h->adopted, F_DUPFD, above);
	} else {
		int tmp[MAX_HELD];

		/* all out of the way first: a copy may sit at a number wanted */
		for (i = 0; i < h->nr; i++)
			tmp[i] = fcntl(h->fd[i], F_DUPFD_CLOEXEC, above);
		for (i = 0; i < h->nr; i++)
			place(tmp[i], h->num[i]);
	}
	place(end, h->guardian_fd);
}

static void __attribute__((noreturn))
restart_child(struct guardian *g, int end, const char *exe, char **argv,
	      const char *why)
{
	struct held *h = &g->held;
	char env[CPRX_MSG_MAX + 256], esc[CPRX_MSG_MAX];
	char val[16];
	int kmod_fd = -1, exe_fd = -1;

	/* ours, close-on-exec: execveat needs no number of the VMM's */
	exe_fd = held_exe(h);
	place_all(h, end, &kmod_fd, &exe_fd);
	cprx_handover_escape(esc, sizeof(esc), why);
	if (kmod_fd >= 0)
		snprintf(env, sizeof(env), "v=1,kmod=%d", kmod_fd);
	else
		snprintf(env, sizeof(env), "v=1,fd=%d", h->state_fd);
	snprintf(env + strlen(env), sizeof(env) - strlen(env),
		 ",rb=1,restart=%d,guardian=%d,why=%s", (int)h->pid,
		 h->guardian_fd, esc);
	setenv(CPRX_ENV, env, 1);
	snprintf(val, sizeof(val), "%d", h->guardian_fd);
	setenv(CPRX_ENV_GUARDIAN, val, 1);
	/*
	 * The binary the VMM was, even if another is at its path by now;
	 * never the path, which the VMM names (vmm_restart checked the fd).
	 */
	syscall(SYS_execveat, exe_fd, "", argv, environ, AT_EMPTY_PATH);
	fprintf(stderr, "cprx-guardian: exec %s: %m\n", exe);
	_exit(127);
}

int vmm_restart(struct guardian *g, const char *why)
{
	struct held *h = &g->held;
	char *exe = NULL, **argv = NULL;
	int end, ret;
	pid_t pid;

	ret = held_origin(h, &exe, &argv);
	if (!ret && !ran_it(g, held_exe(h))) {
		say("event=error what=\"the binary the VMM sent for its restart "
		    "is none the kernel showed it running: not restarted\"");
		ret = -EPERM;
	}
	if (!ret && h->backend == CPRX_BACKEND_KMOD)
		ret = adopt(h);
	if (!ret)
		ret = new_socket(g, &end);
	if (ret)
		goto out;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(end);
		goto out;
	}
	if (!pid)
		restart_child(g, end, exe, argv, why);
	close(end);
	say("event=restart pid=%d dead=%d exe=%s", (int)pid, (int)h->pid, exe);
	ret = watch(g, pid);
out:
	if (argv)
		for (char **a = argv; *a; a++)
			free(*a);
	free(argv);
	free(exe);
	return ret;
}
