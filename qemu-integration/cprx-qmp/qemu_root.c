// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * QEMU's view of the file system: its paths reached through /proc/PID/root
 * when it runs in another root, its environment and command line, and
 * children started in its mount namespace and root, where cpr-exec's
 * execvp will run the new binary.
 */
#include "cprx-qmp.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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
		/* relative: from QEMU's cwd, as QEMU opens it */
		g_autofree char *p = qemu_path(c, dir);

		return open(p, how.flags);
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

/* The directory of @path opened by qemu_dir_open; *base its last name. */
int qemu_parent_open(struct qmp_ctx *c, const char *path, char **base)
{
	g_autofree char *dn = g_path_get_dirname(path);

	*base = g_path_get_basename(path);
	return qemu_dir_open(c, dn);
}

/* Removes the file at QEMU's @path (the migration file), resolved in its
 * root. */
void qemu_unlink(struct qmp_ctx *c, const char *path)
{
	g_autofree char *base = NULL;
	int dfd = qemu_parent_open(c, path, &base);

	if (dfd >= 0) {
		unlinkat(dfd, base, 0);
		close(dfd);
	}
}

/* A path as QEMU sees it, reachable from here. */
char *host_path(struct qmp_ctx *c, const char *path)
{
	if (!c->other_root || path[0] != '/')
		return g_strdup(path);
	return g_strdup_printf("/proc/%d/root%s", c->pid, path);
}

/* Child side: enter QEMU's mount namespace and root, as cpr-exec's execvp
 * will, and become QEMU's user: what runs is QEMU's choice. */
static void enter_qemu_root(gpointer data)
{
	struct qmp_ctx *c = data;
	char p[64];
	int ns, root;

	if (c->other_root) {
		snprintf(p, sizeof(p), "/proc/%d/ns/mnt", c->pid);
		ns = open(p, O_RDONLY | O_CLOEXEC);
		snprintf(p, sizeof(p), "/proc/%d/root", c->pid);
		root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (ns < 0 || root < 0 || setns(ns, CLONE_NEWNS) || fchdir(root) ||
		    chroot(".") || chdir("/"))
			_exit(126);
	}
	if (!become_qemu(&c->creds))
		_exit(126);
}

GSubprocess *spawn_in_root(struct qmp_ctx *c, GPtrArray *argv, GError **err)
{
	g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(
		G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);

	g_subprocess_launcher_set_child_setup(l, enter_qemu_root, c, NULL);
	return g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, err);
}

/* Waits for the child; its output as valid UTF-8 (never NULL). */
char *communicate_text(GSubprocess *p)
{
	g_autoptr(GBytes) b = NULL;
	gsize n = 0;
	const char *data;

	if (!g_subprocess_communicate(p, NULL, NULL, &b, NULL, NULL) || !b)
		return g_strdup("");
	data = g_bytes_get_data(b, &n);
	return g_utf8_make_valid(data ? data : "", n);
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
