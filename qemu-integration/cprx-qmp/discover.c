// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The host's running QEMUs, for update --all: every process whose binary is
 * a qemu-system-*, the QMP server socket its command line names, and
 * whether its binary was replaced on disk since it started (a package
 * upgrade: the file at its path is no longer the image it runs).
 */
#include "cprx-qmp.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void vm_free(struct vm *v)
{
	g_free(v->exe);
	g_free(v->qmp);
	g_free(v->host_qmp);
	g_free(v->skip);
	g_free(v->result);
	g_free(v->detail);
	if (v->report)
		json_object_unref(v->report);
	g_free(v);
}

/* "server", "server=on|yes|true" among a socket's options. */
static gboolean is_server(char **items)
{
	for (guint i = 1; items[i]; i++)
		if (!strcmp(items[i], "server") || !strcmp(items[i], "server=on") ||
		    !strcmp(items[i], "server=yes") || !strcmp(items[i], "server=true"))
			return TRUE;
	return FALSE;
}

/* The value of KEY= among items[1..], or NULL. */
static const char *item(char **items, const char *key)
{
	gsize n = strlen(key);

	for (guint i = 1; items[i]; i++)
		if (!strncmp(items[i], key, n) && items[i][n] == '=')
			return items[i] + n + 1;
	return NULL;
}

/* A -chardev socket,id=ID,path=PATH,server=on: PATH, or NULL. */
static char *chardev_path(GPtrArray *argv, const char *id)
{
	for (guint i = 0; i + 2 < argv->len; i++) {
		const char *a = argv->pdata[i];
		g_auto(GStrv) it = NULL;

		if (strcmp(a + (a[1] == '-'), "-chardev"))
			continue;
		it = g_strsplit(argv->pdata[i + 1], ",", -1);
		if (!g_strcmp0(it[0], "socket") && !g_strcmp0(item(it, "id"), id) &&
		    item(it, "path") && is_server(it))
			return g_strdup(item(it, "path"));
	}
	return NULL;
}

/*
 * The QMP server socket on a QEMU command line: -qmp unix:PATH,server=on,
 * or -mon chardev=ID,mode=control on a -chardev socket server. QEMU's path
 * (in its root, from its cwd), or NULL with *why saying what was seen.
 */
static char *qmp_socket_of(GPtrArray *argv, const char **why)
{
	*why = "no -qmp unix:PATH,server=on or control -mon on its command line";
	for (guint i = 0; i + 2 < argv->len; i++) {
		const char *a = argv->pdata[i], *opt = a + (a[0] == '-' && a[1] == '-');
		g_auto(GStrv) it = g_strsplit(argv->pdata[i + 1], ",", -1);
		const char *dev;

		if (!strcmp(opt, "-qmp") || !strcmp(opt, "-qmp-pretty")) {
			if (!g_str_has_prefix(it[0], "unix:")) {
				*why = "its QMP is not a unix socket";
				continue;
			}
			if (is_server(it))
				return g_strdup(it[0] + 5);
			*why = "its QMP socket is a client (no server=on): it connects out";
		} else if (!strcmp(opt, "-mon")) {
			dev = it[0] && !strchr(it[0], '=') ? it[0] : item(it, "chardev");
			if (dev && !g_strcmp0(item(it, "mode"), "control")) {
				char *p = chardev_path(argv, dev);

				if (p)
					return p;
				*why = "its control monitor is not on a unix socket server";
			}
		}
	}
	return NULL;
}

/* Whether the file the binary's path names now is not the running image. */
static gboolean binary_replaced(struct qmp_ctx *c, const char *exe)
{
	g_autofree char *proc = g_strdup_printf("/proc/%d/exe", c->pid);
	g_autofree char *path = qemu_exec_path(c, exe);
	char link[PATH_MAX];
	ssize_t n = readlink(proc, link, sizeof(link) - 1);
	struct stat run, disk;

	if (n > 0) {
		link[n] = 0;
		if (g_str_has_suffix(link, " (deleted)"))
			return TRUE;
	}
	if (!path || stat(proc, &run) || stat(path, &disk))
		return path == NULL;	/* gone from its path: replaced */
	return run.st_dev != disk.st_dev || run.st_ino != disk.st_ino;
}

/* Whether /proc/PID runs a qemu-system-* binary. */
static gboolean is_qemu(pid_t pid)
{
	g_autofree char *proc = g_strdup_printf("/proc/%d/exe", pid);
	g_autofree char *link = g_file_read_link(proc, NULL);
	g_autofree char *base = link ? g_path_get_basename(link) : NULL;

	return base && g_str_has_prefix(base, "qemu-system-");
}

static struct vm *examine(pid_t pid, const char *under)
{
	struct qmp_ctx c = { .pid = pid, .other_root = !same_root(pid) };
	g_autoptr(GPtrArray) argv = read_cmdline(pid, NULL);
	const char *why;
	struct vm *v;

	if (!argv || argv->len < 2)
		return NULL;	/* exited, or a kernel thread */
	v = g_new0(struct vm, 1);
	v->pid = pid;
	v->exe = g_strdup(argv->pdata[0]);
	v->replaced = binary_replaced(&c, v->exe);
	v->qmp = qmp_socket_of(argv, &why);
	if (v->qmp) {
		v->host_qmp = qemu_path(&c, v->qmp);
		if (under && !g_str_has_prefix(v->host_qmp, under) &&
		    !g_str_has_prefix(v->qmp, under)) {
			vm_free(v);
			return NULL;
		}
	} else if (under) {
		vm_free(v);	/* not selected: only sockets under DIR are */
		return NULL;
	} else {
		v->skip = g_strdup(why);
	}
	return v;
}

static gint by_pid(gconstpointer a, gconstpointer b)
{
	const struct vm *x = *(struct vm *const *)a, *y = *(struct vm *const *)b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* The running QEMUs, by PID; with @under, only those whose QMP socket is
 * under that directory. */
GPtrArray *discover_qemus(const char *under)
{
	GPtrArray *vms = g_ptr_array_new_with_free_func((GDestroyNotify)vm_free);
	g_autoptr(GDir) d = g_dir_open("/proc", 0, NULL);
	const char *n;

	while (d && (n = g_dir_read_name(d))) {
		pid_t pid = isdigit((unsigned char)n[0]) ? atoi(n) : 0;
		struct vm *v;

		if (pid <= 0 || pid == getpid() || !is_qemu(pid))
			continue;
		v = examine(pid, under);
		if (v)
			g_ptr_array_add(vms, v);
	}
	g_ptr_array_sort(vms, by_pid);
	return vms;
}
