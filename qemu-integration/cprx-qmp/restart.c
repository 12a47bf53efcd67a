// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp restart, the baseline: a normal migration to a file, quit, and
 * QEMU started again with -incoming (RAM copied, a new PID), its pause
 * reported the way update reports it.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* QEMU's namespace, root and cwd, kept open across its exit for the
 * restart, and the new QEMU's stdout and stderr. */
struct root_fds {
	struct qemu_place pl;
	int log;
};

static GSubprocess *spawn_restart(struct qmp_ctx *c, struct root_fds *rf, GError **err)
{
	g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);

	if (rf->log >= 0) {
		g_subprocess_launcher_take_stderr_fd(l, dup(rf->log));
		g_subprocess_launcher_take_stdout_fd(l, rf->log);
		rf->log = -1;
	}
	return spawn_as_qemu(c, l, &rf->pl, c->new_argv, err);
}

static const char *migration_status(struct qmp_ctx *c)
{
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-migrate", NULL, 5000, NULL);
	static char st[32];

	g_strlcpy(st, r ? json_object_get_string_member_with_default(json_node_get_object(r),
			"status", "?") : "?", sizeof(st));
	return st;
}

/* Migrates to the file, quits QEMU and starts the new argv in its root;
 * the pause from QEMU's STOP to the new QEMU's RESUME. */
static int restart(struct qmp_ctx *c, struct root_fds *rf)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)c->o->timeout * G_USEC_PER_SEC;
	g_autofree char *uri = g_strdup_printf("file:%s", c->o->state);
	g_autoptr(JsonNode) r = NULL, stop = NULL, resume = NULL;
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;
	JsonObject *ph = json_object_new();
	gint64 u_saved, u_spawn, u_qmp;
	int attempts;

	json_object_set_object_member(c->report, "phases", ph);
	r = qmp_cmd(c->q, "migrate", qmp_args("uri", str_node(uri), NULL), 10000, &e);
	if (!r)
		return fail(c, EXIT_FAILED, "migrate", e->message, NULL);
	while (strcmp(migration_status(c), "completed")) {
		if (!strcmp(migration_status(c), "failed") || g_get_monotonic_time() > deadline)
			return fail(c, EXIT_FAILED, "migrate", "migration to the file failed", NULL);
		g_usleep(2000);
	}
	u_saved = g_get_real_time();
	stop = qmp_event(c->q, "STOP", 1000, NULL);
	g_clear_pointer(&r, json_node_unref);
	r = qmp_cmd(c->q, "quit", NULL, 5000, NULL);
	qmp_wait_eof(c->q, 10000, NULL);
	qmp_close(c->q);
	c->q = NULL;
	u_spawn = g_get_real_time();
	p = spawn_restart(c, rf, &e);
	if (!p)
		return fail(c, EXIT_LOST, "restart", e->message, NULL);
	set_qemu_pid(c, atoi(g_subprocess_get_identifier(p)));
	c->q = follow(c, deadline, &attempts);
	if (!c->q)
		return fail(c, EXIT_LOST, "restart", "the restarted QEMU never served QMP", NULL);
	u_qmp = g_get_real_time();
	resume = qmp_event(c->q, "RESUME", (int)((deadline - g_get_monotonic_time()) / 1000), &e);
	if (!resume || !stop)
		return fail(c, EXIT_FAILED, "restart", "no STOP or RESUME event seen", NULL);
	json_object_set_int_member(c->report, "new_pid", c->pid);
	json_object_set_double_member(ph, "stop_to_saved_ms", (u_saved - qmp_event_usec(stop)) / 1000.0);
	json_object_set_double_member(ph, "saved_to_spawn_ms", (u_spawn - u_saved) / 1000.0);
	json_object_set_double_member(ph, "spawn_to_qmp_ms", (u_qmp - u_spawn) / 1000.0);
	json_object_set_double_member(ph, "spawn_to_resume_ms", (qmp_event_usec(resume) - u_spawn) / 1000.0);
	json_object_set_double_member(c->report, "pause_ms",
		(qmp_event_usec(resume) - qmp_event_usec(stop)) / 1000.0);
	json_object_set_string_member(c->report, "guest_status", guest_status(c));
	json_object_set_string_member(c->report, "result", "ok");
	return 0;
}

/* STATE.qemu.log, emptied: not through a link or into a file of another
 * user (its name is as easy to guess as the migration file's). */
static int open_log(struct qmp_ctx *c, const char *path)
{
	g_autofree char *base = NULL;
	int dfd = qemu_parent_open(c, path, &base), fd = -1;
	const char *why = NULL;
	struct stat st;

	if (dfd >= 0) {
		fd = openat(dfd, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
			    0644);
		close(dfd);
	}

	if (fd >= 0 && (fstat(fd, &st) || (why = state_foreign(c, &st)) || ftruncate(fd, 0))) {
		say("%s: %s", path, why ? why : g_strerror(errno));
		close(fd);
		return -1;
	}
	if (fd < 0)
		say("%s: %s", path, g_strerror(errno));
	return fd;
}

int do_restart(struct qmp_opts *o)
{
	struct qmp_ctx c = { .o = o };
	struct root_fds rf = { { -1, -1, -1 }, -1 };
	g_autofree char *log = NULL;
	int ret = prepare_update(&c);

	if (ret)
		return ret;
	json_object_set_string_member(c.report, "mode", "restart");
	/* Opened now: once QEMU exits, /proc/PID/root leads nowhere. */
	if (!qemu_place_open(&c, &rf.pl)) {
		say("cannot open QEMU's namespace, root and cwd (pid %d)", c.pid);
		ctx_free(&c);
		return EXIT_USAGE;
	}
	log = g_strdup_printf("%s.qemu.log", o->state);
	rf.log = open_log(&c, log);
	if (rf.log < 0)
		ret = fail(&c, EXIT_USAGE, "restart", "cannot use the log next to the migration file",
			   "remove it, or give --state a file in a directory only QEMU's user "
			   "can write");
	json_object_set_string_member(c.report, "qemu_log", log);
	if (rf.log >= 0)
		ret = restart(&c, &rf);
	if (!ret) {
		write_report(&c);
		if (!o->json)
			printf("restart ok: pid %" G_GINT64_FORMAT " -> %d, pause %.1f ms "
			       "(migrate to a file, quit, start with -incoming)\n",
			       json_object_get_int_member(c.report, "pid"), c.pid,
			       json_object_get_double_member(c.report, "pause_ms"));
	}
	/* Nothing was migrated when the log was refused; when the VM is lost,
	 * the file is all of it (its RAM too), and the report says it is kept. */
	if (ret != EXIT_USAGE && ret != EXIT_LOST)
		state_unlink(&c);
	qemu_place_close(&rf.pl);
	if (rf.log >= 0)
		close(rf.log);
	ctx_free(&c);
	return ret;
}
