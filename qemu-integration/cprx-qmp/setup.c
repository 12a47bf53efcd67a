// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Setting up a run: connecting to the running QEMU (its PID, root and
 * command line), the new command line, and following QEMU to the new
 * QMP socket once it has exec'd or restarted.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

JsonNode *str_node(const char *s)
{
	return json_node_init_string(json_node_alloc(), s);
}

/* The machine type QEMU really runs ("pc" is an alias that every version
 * resolves to its own newest type; the state only loads into the same). */
char *machine_type(struct qmp *q)
{
	g_autoptr(JsonNode) r = qmp_cmd(q, "qom-get", qmp_args(
		"path", str_node("/machine"), "property", str_node("type"), NULL), 5000, NULL);
	const char *t = r && JSON_NODE_HOLDS_VALUE(r) ? json_node_get_string(r) : NULL;

	return t ? g_strndup(t, strlen(t) - (g_str_has_suffix(t, "-machine") ? 8 : 0)) : NULL;
}

/* -machine pc,opts -> -machine pc-i440fx-10.2,opts (the running type). */
static void pin_machine(struct qmp_ctx *c, GPtrArray *a)
{
	g_autofree char *type = machine_type(c->q);

	for (guint i = 1; type && i + 1 < a->len; i++) {
		const char *arg = a->pdata[i], *v = a->pdata[i + 1];
		const char *end = v + strcspn(v, ","), *eq = strchr(v, '=');

		if (strcmp(arg, "-machine") && strcmp(arg, "-M"))
			continue;
		if (end == v || (eq && eq < end))
			continue;	/* only the positional form is rewritten */
		a->pdata[i + 1] = g_strconcat(type, end, NULL);
		g_free((char *)v);
	}
}

/* Old argv with -incoming replaced, or the one after --. */
static GPtrArray *make_new_argv(struct qmp_ctx *c)
{
	struct qmp_opts *o = c->o;
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	guint n = c->old_argv->len - 1;

	if (o->argv && o->argv[0]) {
		for (guint i = 0; o->argv[i]; i++)
			g_ptr_array_add(a, g_strdup(o->argv[i]));
	} else {
		for (guint i = 0; i < n; i++) {
			if (!strcmp(c->old_argv->pdata[i], "-incoming") && i + 1 < n) {
				i++;
				continue;
			}
			g_ptr_array_add(a, g_strdup(c->old_argv->pdata[i]));
		}
		for (guint i = 0; o->add_args && o->add_args[i]; i++)
			g_ptr_array_add(a, g_strdup(o->add_args[i]));
		g_ptr_array_add(a, g_strdup("-incoming"));
		g_ptr_array_add(a, g_strdup_printf("file:%s", o->state));
	}
	if (o->new_binary) {
		g_free(a->pdata[0]);
		a->pdata[0] = g_strdup(o->new_binary);
	}
	if (o->pin_machine)
		pin_machine(c, a);
	g_ptr_array_add(a, NULL);
	return a;
}

/* The QEMU this run follows, and a pidfd that says whether it lives
 * (whatever reaps it, whoever gets its PID next). */
void set_qemu_pid(struct qmp_ctx *c, pid_t pid)
{
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pid = pid;
	c->pidfd = syscall(SYS_pidfd_open, pid, 0);
	c->pidfd_errno = errno;
}

/* Connects to the running QEMU: its PID, its root, its command line; starts
 * the report. */
int connect_qemu(struct qmp_ctx *c)
{
	g_autoptr(GString) d = g_string_new(NULL);
	g_autoptr(GError) e = NULL;

	c->pidfd = c->state_dir = -1;
	c->q = qmp_open_peer(c->o->socket, c->o->pid, &e);
	if (!c->q) {
		say("cannot talk QMP on %s: %s", c->o->socket, e->message);
		return EXIT_USAGE;
	}
	set_qemu_pid(c, qmp_pid(c->q));
	if (qmp_pidfd(c->q) >= 0) {
		/* the listener itself, not whoever has its pid now */
		close(c->pidfd);
		c->pidfd = fcntl(qmp_pidfd(c->q), F_DUPFD_CLOEXEC, 0);
		c->pidfd_errno = errno;
	}
	c->other_root = !same_root(c->pid);
	c->old_argv = read_cmdline(c->pid, &e);
	if (!c->old_argv) {
		say("cannot read QEMU's command line (pid %d): %s", c->pid, e->message);
		return EXIT_USAGE;
	}
	if (!read_creds(c->pid, &c->creds, d)) {
		say("%s", d->str);
		return EXIT_USAGE;
	}
	/* QEMU lived after we read /proc/PID: what we read was its */
	if (!qemu_alive(c)) {
		say("QEMU (pid %d) exited while we connected", c->pid);
		return EXIT_USAGE;
	}
	c->report = json_object_new();
	c->checks = json_array_new();
	json_object_set_int_member(c->report, "pid", c->pid);
	json_object_set_string_member(c->report, "old_version", qmp_version(c->q));
	json_object_set_boolean_member(c->report, "chroot", c->other_root);
	return 0;
}

/* Connects, and settles what update and restart both need: the migration
 * file, the new QMP socket (the same path by default) and the new argv. */
int prepare_update(struct qmp_ctx *c)
{
	struct qmp_opts *o = c->o;
	g_autofree char *base = NULL;
	int ret = connect_qemu(c);

	if (ret)
		return ret;
	if (!o->state)
		o->state = g_strdup_printf("/tmp/cprx-qmp-%d.state", c->pid);
	if (!o->new_qmp)
		o->new_qmp = g_strdup(o->socket);
	c->new_argv = make_new_argv(c);
	c->state_dir = qemu_parent_open(c, o->state, &base);
	if (c->state_dir >= 0 && !qemu_alive(c)) {
		say("QEMU (pid %d) exited while we connected", c->pid);
		return EXIT_USAGE;
	}
	return 0;
}

/* Whether QEMU (c->pid) still runs: its pidfd turns readable when it
 * exits, a zombie included. */
gboolean qemu_alive(struct qmp_ctx *c)
{
	g_autofree char *proc = g_strdup_printf("/proc/%d", c->pid);
	struct pollfd p = { .fd = c->pidfd, .events = POLLIN };

	if (c->pidfd < 0)
		return g_file_test(proc, G_FILE_TEST_EXISTS);
	return poll(&p, 1, 0) == 0;
}

/* Connects to QEMU's QMP socket @sock (QEMU's path) as soon as it listens. */
struct qmp *follow_at(struct qmp_ctx *c, const char *sock, gint64 deadline, int *attempts)
{
	g_autofree char *hp = host_path(c, sock);

	for (*attempts = 1; g_get_monotonic_time() < deadline; (*attempts)++) {
		g_autoptr(GError) e = NULL;
		struct qmp *q = qmp_open_peer(hp, c->pid, &e);

		/* Its pid is QEMU's only while QEMU lives (checked after the
		 * listener's own pidfd said it lives). */
		if (q && qemu_alive(c))
			return q;
		if (q) {
			qmp_close(q);
			return NULL;
		}
		/* Another process of QEMU's uid may bind the path while QEMU
		 * execs or dies, and answer "running" for a lost guest. */
		if (g_error_matches(e, QMP_ERROR, QMP_ERROR_PEER) &&
		    !json_object_has_member(c->report, "qmp_stand_in")) {
			say("%s", e->message);
			json_object_set_string_member(c->report, "qmp_stand_in", e->message);
		}
		if (!qemu_alive(c))
			return NULL;
		g_usleep(1000);
	}
	return NULL;
}

/* The new QEMU's socket, after an exec or a restart. */
struct qmp *follow(struct qmp_ctx *c, gint64 deadline, int *attempts)
{
	return follow_at(c, c->o->new_qmp, deadline, attempts);
}

/* What a run holds (not its options). */
void ctx_free(struct qmp_ctx *c)
{
	keep_drop(c);
	qmp_close(c->q);
	if (c->pidfd >= 0)
		close(c->pidfd);
	if (c->state_dir >= 0)
		close(c->state_dir);
	if (c->old_argv)
		g_ptr_array_unref(c->old_argv);
	if (c->new_argv)
		g_ptr_array_unref(c->new_argv);
	if (c->report)
		json_object_unref(c->report);
	if (c->trial_devs)
		g_ptr_array_unref(c->trial_devs);
	g_free(c->trial_devs_err);
	creds_clear(&c->creds);
}
