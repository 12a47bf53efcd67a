// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * QEMU's view of the file system: its paths reached through /proc/PID/root
 * when it runs in another root, its environment and command line, and
 * children started in its mount namespace and root, where cpr-exec's
 * execvp will run the new binary.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixinputstream.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Whether PID has our root (also when its /proc/PID/root cannot be read). */
gboolean same_root(pid_t pid)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/root", pid);
	struct stat a, b;

	return stat(p, &a) || stat("/", &b) || (a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/*
 * The directory @dir of QEMU's, opened as QEMU resolves it: in its root,
 * its links resolved there too (RESOLVE_IN_ROOT).  A path through
 * /proc/PID/root follows an absolute link in QEMU's root out of it, into
 * ours: a root whose /tmp its user may replace by a link would have root's
 * cprx-qmp create, give away or remove files anywhere.  What cprx-qmp
 * creates or removes in QEMU's root goes through this fd.
 */
int qemu_dir_open(struct qmp_ctx *c, const char *dir)
{
	struct open_how how = { .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	g_autofree char *root = g_strdup_printf("/proc/%d/root", c->pid);
	int rfd, fd, err;

	if (!c->other_root)
		return open(dir, how.flags);
	if (dir[0] != '/') {
		/* relative: from QEMU's cwd, as QEMU opens it; a link or ".."
		 * out of it is refused, not followed in our root */
		g_free(root);
		root = g_strdup_printf("/proc/%d/cwd", c->pid);
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	}
	rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		return -1;
	fd = syscall(SYS_openat2, rfd, dir, &how, sizeof(how));
	err = errno;
	close(rfd);
	errno = err;
	return fd;
}

/* Whether QEMU's user may make a file in @dfd: asked as that user, in a
 * child (its ACLs, its groups), as cpr-exec's QEMU would make it. */
static gboolean qemu_may_create(struct qmp_ctx *c, int dfd)
{
	pid_t pid;
	int st;

	if (geteuid())
		return TRUE;	/* we are no more than QEMU's user */
	pid = fork();
	if (pid == 0)
		_exit(!become_qemu(&c->creds) ||
		      faccessat(dfd, ".", W_OK | X_OK, AT_EACCESS));
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	       !WEXITSTATUS(st);
}

/*
 * The directory of @path opened by qemu_dir_open; *base its last name.
 * Only one QEMU's user may write: what we make there (the migration file,
 * restart's log) is made in a place QEMU's user chose (a link on the way),
 * as root, and given to it or filled by it; a directory of root's would
 * get a file of QEMU's user's.  EACCES otherwise.
 */
int qemu_parent_open(struct qmp_ctx *c, const char *path, char **base)
{
	g_autofree char *dn = g_path_get_dirname(path);
	int fd;

	*base = g_path_get_basename(path);
	fd = qemu_dir_open(c, dn);
	if (fd >= 0 && !qemu_may_create(c, fd)) {
		close(fd);
		errno = EACCES;
		return -1;
	}
	return fd;
}

/* Removes the migration file, in the directory opened while QEMU lived:
 * by the time it is removed QEMU may be gone, its PID another process's,
 * with another root. */
void state_unlink(struct qmp_ctx *c)
{
	g_autofree char *base = g_path_get_basename(c->o->state);

	if (c->state_dir >= 0)
		unlinkat(c->state_dir, base, 0);
}

/* A path as QEMU sees it, reachable from here. */
char *host_path(struct qmp_ctx *c, const char *path)
{
	if (!c->other_root || path[0] != '/')
		return g_strdup(path);
	return g_strdup_printf("/proc/%d/root%s", c->pid, path);
}

/* QEMU's mount namespace, root and cwd, opened while it lives (its pidfd
 * says so after): where cpr-exec's execvp runs the new binary, and where
 * what we start on its behalf runs. */
gboolean qemu_place_open(struct qmp_ctx *c, struct qemu_place *pl)
{
	static const char *const what[] = { "ns/mnt", "root", "cwd" };
	int *fd[] = { &pl->ns, &pl->root, &pl->cwd };

	for (guint i = 0; i < G_N_ELEMENTS(fd); i++) {
		g_autofree char *p = g_strdup_printf("/proc/%d/%s", c->pid, what[i]);

		*fd[i] = open(p, O_RDONLY | O_CLOEXEC);
	}
	if (pl->ns >= 0 && pl->root >= 0 && pl->cwd >= 0 && qemu_alive(c))
		return TRUE;
	qemu_place_close(pl);
	return FALSE;
}

void qemu_place_close(struct qemu_place *pl)
{
	int *fd[] = { &pl->ns, &pl->root, &pl->cwd };

	for (guint i = 0; i < G_N_ELEMENTS(fd); i++) {
		if (*fd[i] >= 0)
			close(*fd[i]);
		*fd[i] = -1;
	}
}

/* The child's copies of a qemu_place's fds: ns, root, cwd. */
#define PLACE_FD0 100

/* Child side: enter QEMU's mount namespace and root, as cpr-exec's execvp
 * will, its cwd, and become QEMU's user: what runs is QEMU's choice.  A
 * session of its own: it outlives us like the QEMU it stands for, and is
 * killed with what it started when it overruns. */
static void enter_qemu(gpointer data)
{
	struct qmp_ctx *c = data;

	if (c->other_root &&
	    (setns(PLACE_FD0, CLONE_NEWNS) || fchdir(PLACE_FD0 + 1) || chroot(".")))
		_exit(126);
	if (fchdir(PLACE_FD0 + 2) || close_range(PLACE_FD0, PLACE_FD0 + 2, 0) ||
	    !become_qemu(&c->creds))
		_exit(126);
	setsid();
}

/* Starts @argv at @pl, with QEMU's environment, user and limits; no fd of
 * ours but what @l was given. */
GSubprocess *spawn_as_qemu(struct qmp_ctx *c, GSubprocessLauncher *l,
			   const struct qemu_place *pl, GPtrArray *argv, GError **err)
{
	g_subprocess_launcher_set_environ(l, (char **)c->creds.env->pdata);
	g_subprocess_launcher_take_fd(l, dup(pl->ns), PLACE_FD0);
	g_subprocess_launcher_take_fd(l, dup(pl->root), PLACE_FD0 + 1);
	g_subprocess_launcher_take_fd(l, dup(pl->cwd), PLACE_FD0 + 2);
	g_subprocess_launcher_set_child_setup(l, enter_qemu, c, NULL);
	return g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, err);
}

/* A short-lived child (-version, the trial) where QEMU is; its output
 * piped. */
GSubprocess *spawn_in_root(struct qmp_ctx *c, GPtrArray *argv, GError **err)
{
	g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(
		G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);
	struct qemu_place pl;
	GSubprocess *p;

	if (!qemu_place_open(c, &pl)) {
		g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "QEMU (pid %d) is gone", c->pid);
		return NULL;
	}
	p = spawn_as_qemu(c, l, &pl, argv, err);
	qemu_place_close(&pl);
	return p;
}

/* What a child may print that we keep. */
#define OUTPUT_MAX (64 * 1024)

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1UL << 2)
#endif

/*
 * Kills the child's session (its process group: setsid made it one) by
 * its pidfd: a child that exited was reaped (GSubprocess reaps), and its
 * number may then be another process's group, root's even, once those
 * it started left that group.  Before Linux 6.9, by number, and only
 * while the child lives, holding it.
 */
static void kill_session(int pfd, pid_t pid, gboolean exited)
{
	if (pfd >= 0 && !syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL,
				 PIDFD_SIGNAL_PROCESS_GROUP))
		return;
	if (pfd >= 0 && errno == EINVAL && !exited)
		kill(-pid, SIGKILL);
}

/*
 * Waits for the child until @deadline (monotonic), reading its output;
 * then kills it and whatever it started (its session): a binary QEMU's
 * user chose that never ends must not hold this update up, nor update
 * --all's other VMs.  Its output as valid UTF-8 (never NULL); *killed
 * says whether it overran (then it was not waited for).
 */
char *communicate_until(GSubprocess *p, gint64 deadline, gboolean *killed)
{
	int out = g_unix_input_stream_get_fd(G_UNIX_INPUT_STREAM(g_subprocess_get_stdout_pipe(p)));
	const char *id = g_subprocess_get_identifier(p);
	pid_t pid = id ? atoi(id) : -1;
	int pfd = pid > 0 ? syscall(SYS_pidfd_open, pid, 0) : -1;
	gboolean exited = pfd < 0;	/* already reaped */
	g_autoptr(GString) text = g_string_new(NULL);

	while (out >= 0 || !exited) {
		struct pollfd f[2] = { { .fd = out, .events = POLLIN },
				       { .fd = exited ? -1 : pfd, .events = POLLIN } };
		gint64 left = deadline - g_get_monotonic_time();
		char buf[4096];
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(f, 2, left / 1000 + 1) < 0 && errno != EINTR)
			break;
		exited |= !!f[1].revents;
		if (!f[0].revents)
			continue;
		n = read(out, buf, sizeof(buf));
		if (n <= 0 && !(n < 0 && errno == EINTR))
			out = -1;
		else if (n > 0 && text->len < OUTPUT_MAX)
			g_string_append_len(text, buf, MIN((gsize)n, OUTPUT_MAX - text->len));
	}
	*killed = out >= 0 || !exited;
	if (*killed)
		kill_session(pfd, pid, exited);
	if (*killed)
		g_subprocess_force_exit(p);
	else
		g_subprocess_wait(p, NULL, NULL);
	if (pfd >= 0)
		close(pfd);
	return g_utf8_make_valid(text->str, text->len);
}

GPtrArray *read_cmdline(pid_t pid, GError **err)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/cmdline", pid);
	g_autofree char *buf = NULL;
	GPtrArray *a;
	gsize len;

	if (!g_file_get_contents(p, &buf, &len, err))
		return NULL;
	a = g_ptr_array_new_with_free_func(g_free);
	for (gsize off = 0; off < len; off += strlen(buf + off) + 1)
		g_ptr_array_add(a, g_strdup(buf + off));
	g_ptr_array_add(a, NULL);
	return a;
}

/* A variable of QEMU's environment (/proc/PID/environ), or NULL. */
char *qemu_getenv(struct qmp_ctx *c, const char *name)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/environ", c->pid), *buf = NULL;
	gsize len, n = strlen(name);

	if (!g_file_get_contents(p, &buf, &len, NULL))
		return NULL;
	for (gsize off = 0; off < len; off += strlen(buf + off) + 1)
		if (!strncmp(buf + off, name, n) && buf[off + n] == '=')
			return g_strdup(buf + off + n + 1);
	return NULL;
}

/* A path QEMU would resolve (in its root, from its cwd), reachable from here. */
char *qemu_path(struct qmp_ctx *c, const char *path)
{
	if (path[0] == '/')
		return host_path(c, path);
	return g_strdup_printf("/proc/%d/cwd/%s", c->pid, path);
}

/* The new binary where cpr-exec's execvp will find it (a bare name is
 * looked up in QEMU's PATH), as a path reachable from here; NULL if none. */
char *qemu_exec_path(struct qmp_ctx *c, const char *bin)
{
	g_autofree char *path = NULL;
	g_auto(GStrv) dirs = NULL;

	if (strchr(bin, '/'))
		return qemu_path(c, bin);
	path = qemu_getenv(c, "PATH");
	dirs = g_strsplit(path ? path : "/bin:/usr/bin", ":", -1);
	for (guint i = 0; dirs[i]; i++) {
		g_autofree char *f = g_build_filename(*dirs[i] ? dirs[i] : ".", bin, NULL);
		g_autofree char *hp = qemu_path(c, f);

		if (!access(hp, X_OK))
			return g_steal_pointer(&hp);
	}
	return NULL;
}

/* Removes a flat directory we made (a trial's in QEMU's /tmp, the demo's). */
void rm_dir(const char *dir)
{
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	const char *n;

	while (d && (n = g_dir_read_name(d))) {
		g_autofree char *f = g_build_filename(dir, n, NULL);

		unlink(f);
	}
	rmdir(dir);
}
