// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp update: the preflight, then cpr-exec (migrate-set-parameters,
 * migrate), following QEMU across its exec, and the pause from QEMU's own
 * STOP and RESUME event timestamps.
 */
#include "cprx-qmp.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A NULL-terminated argv as a JSON array (the report's "new_argv"). */
static JsonArray *strv_array(GPtrArray *a)
{
	JsonArray *j = json_array_new();

	for (guint i = 0; i + 1 < a->len; i++)
		json_array_add_string_element(j, a->pdata[i]);
	return j;
}

/* Waits for the old QEMU to exec (its QMP connection closes), or for the
 * migration to fail (then QEMU says why and keeps the guest). */
static gboolean wait_exec(struct qmp_ctx *c, gint64 deadline, char **why)
{
	while (g_get_monotonic_time() < deadline) {
		g_autoptr(GError) e = NULL;
		g_autoptr(JsonNode) r = NULL;
		JsonObject *o;

		if (qmp_wait_eof(c->q, 100, &e))
			return TRUE;
		if (!g_error_matches(e, QMP_ERROR, QMP_ERROR_TIMEOUT))
			return *why = g_strdup(e->message), FALSE;
		g_clear_error(&e);
		r = qmp_cmd(c->q, "query-migrate", NULL, 5000, &e);
		if (!r)
			return g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF) ? TRUE :
			       (*why = g_strdup(e->message), FALSE);
		o = json_node_get_object(r);
		if (!g_strcmp0(json_object_get_string_member_with_default(o, "status", ""), "failed")) {
			*why = g_strdup(json_object_get_string_member_with_default(o, "error-desc",
								"migration failed"));
			return FALSE;
		}
	}
	*why = g_strdup("QEMU did not exec in time");
	return FALSE;
}

/* How the new QEMU ended, for the report. */
static const char *died(struct qmp_ctx *c, const char *when)
{
	static char s[128];

	g_snprintf(s, sizeof(s), "the new QEMU (pid %d) died %s", c->pid, when);
	return s;
}

/* cpr-exec itself: from the migrate command to the guest running again in
 * the new QEMU, with the pause's phases in the report. */
static int migrate(struct qmp_ctx *c)
{
	struct qmp_opts *o = c->o;
	gint64 deadline = g_get_monotonic_time() + (gint64)o->timeout * G_USEC_PER_SEC;
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = NULL, stop = NULL, resume = NULL;
	g_autofree char *why = NULL, *uri = g_strdup_printf("file:%s", o->state);
	g_autofree char *rb = NULL, *msg = NULL;
	g_autoptr(JsonBuilder) b = json_builder_new();
	JsonObject *ph = json_object_new();
	gint64 t_mig, t_exec, t_qmp, usec_exec, usec_qmp;
	gboolean served = FALSE;	/* a QEMU in that PID answered QMP */
	int attempts;
	const char *st;

	json_object_set_object_member(c->report, "phases", ph);
	json_builder_begin_array(b);
	for (guint i = 0; i < c->new_argv->len - 1; i++)
		json_builder_add_string_value(b, c->new_argv->pdata[i]);
	json_builder_end_array(b);
	r = qmp_cmd(c->q, "migrate-set-parameters",
		    qmp_args("mode", str_node("cpr-exec"),
			     "cpr-exec-command", json_builder_get_root(b), NULL), 5000, &e);
	if (!r)
		return fail(c, EXIT_FAILED, "migrate-set-parameters", e->message,
			    "this QEMU has no cpr-exec mode (QEMU 10.2 or later has it)");
	g_clear_pointer(&r, json_node_unref);
	t_mig = g_get_monotonic_time();
	r = qmp_cmd(c->q, "migrate", qmp_args("uri", str_node(uri), NULL), 10000, &e);
	if (!r && !g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF))
		return fail(c, EXIT_FAILED, "migrate", e->message,
			    "QEMU refused before stopping the guest (a migration blocker?)");
	if (!wait_exec(c, deadline, &why)) {
		g_autoptr(JsonNode) stopped = qmp_event(c->q, "STOP", 0, NULL);

		return fail(c, EXIT_FAILED, "cpr-exec", why, stopped ?
			    "QEMU's own error; a failed exec leaves the old QEMU running" :
			    "QEMU's own error, before the guest stopped (a QEMU built "
			    "with --enable-cprx runs libcprx's preflight there)");
	}
	t_exec = g_get_monotonic_time();
	usec_exec = g_get_real_time();
	stop = qmp_event(c->q, "STOP", 0, NULL);
	for (;;) {
		qmp_close(c->q);
		c->q = follow(c, deadline, &attempts);
		/* Its pidfd turns readable only after its sockets closed. */
		if (!c->q && !qemu_alive(c))
			return rescue(c, died(c, served ? "after it served QMP, before the guest ran" :
					      "before it served QMP"));
		if (!c->q)
			return fail(c, EXIT_LOST, "the new QEMU", "the new QEMU did not serve QMP "
				    "on its socket in time", "see QEMU's stderr");
		served = TRUE;
		t_qmp = g_get_monotonic_time();
		usec_qmp = g_get_real_time();
		st = guest_status(c);
		g_clear_error(&e);
		resume = qmp_event(c->q, "RESUME", strcmp(st, "running") ?
				   (int)((deadline - g_get_monotonic_time()) / 1000) : 0, &e);
		if (resume || !strcmp(st, "running") ||
		    !g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF))
			break;
		/* QMP gone, the PID alive: libcprx restarted the previous QEMU */
		if (!qemu_alive(c))
			return rescue(c, died(c, "after it served QMP, before the guest ran"));
	}
	if (!resume && strcmp(st, "running") && !qemu_alive(c))
		return rescue(c, died(c, "before the guest ran"));
	json_object_set_int_member(c->report, "new_pid", qmp_pid(c->q));
	json_object_set_boolean_member(c->report, "same_pid", qmp_pid(c->q) == c->pid);
	json_object_set_string_member(c->report, "new_qemu_version", qmp_version(c->q));
	json_object_set_int_member(c->report, "qmp_attempts", attempts);
	if (!resume && strcmp(st, "running"))
		return fail(c, EXIT_FAILED, "resume", "the new QEMU did not resume the guest",
			    "query-status on the new QEMU tells its state");
	/* Client clocks for what only the client sees, QEMU's event
	 * timestamps (same wall clock) for the pause itself. */
	json_object_set_double_member(ph, "migrate_to_exec_ms", (t_exec - t_mig) / 1000.0);
	json_object_set_double_member(ph, "exec_to_qmp_ms", (t_qmp - t_exec) / 1000.0);
	if (stop && resume) {
		gint64 s = qmp_event_usec(stop), rs = qmp_event_usec(resume);

		json_object_set_double_member(ph, "stop_to_exec_ms", (usec_exec - s) / 1000.0);
		json_object_set_double_member(ph, "exec_to_resume_ms", (rs - usec_exec) / 1000.0);
		json_object_set_double_member(c->report, "pause_ms", (rs - s) / 1000.0);
		/* QEMU's clock, for its traces' timestamps (pause-breakdown.py) */
		json_object_set_int_member(c->report, "stop_usec", s);
		json_object_set_int_member(c->report, "resume_usec", rs);
	} else {
		/* RESUME came before we could listen: bound the pause from above. */
		json_object_set_boolean_member(c->report, "resume_event_missed", TRUE);
		json_object_set_double_member(c->report, "pause_ms_at_most",
			(usec_qmp - (stop ? qmp_event_usec(stop) : usec_exec)) / 1000.0);
	}
	keep_drop(c);	/* the guest runs: nothing to rescue any more */
	rb = rollback_reason(c->pid);
	if (rb) {
		json_object_set_boolean_member(c->report, "rolled_back", TRUE);
		json_object_set_string_member(c->report, "rollback_reason", rb);
		msg = g_strdup_printf("rolled back: the new QEMU failed (%s); the previous "
				      "QEMU resumed the guest in the same PID", rb);
		return fail(c, EXIT_FAILED, "rolled back", msg,
			    "see QEMU's stderr for why the new QEMU failed");
	}
	json_object_set_string_member(c->report, "guest_status", guest_status(c));
	json_object_set_string_member(c->report, "result", "ok");
	return 0;
}

/* The text report of an update that went through. */
static void summary(struct qmp_ctx *c)
{
	JsonObject *r = c->report, *ph = json_object_get_object_member(r, "phases");
	g_autofree char *g = printable(json_object_get_string_member(r, "guest_status"));

	if (c->o->json)
		return;
	printf("update ok: pid %" G_GINT64_FORMAT " %s, QEMU %s -> %s, guest %s\n",
	       json_object_get_int_member(r, "pid"),
	       json_object_get_boolean_member(r, "same_pid") ? "kept" : "CHANGED",
	       json_object_get_string_member(r, "old_version"),
	       json_object_get_string_member(r, "new_qemu_version"), g);
	if (json_object_has_member(r, "pause_ms"))
		printf("  pause %.1f ms (STOP->RESUME): stop->exec %.1f, exec->resume %.1f; "
		       "QMP back %.1f ms after the exec; preflight %.0f ms before the stop\n",
		       json_object_get_double_member(r, "pause_ms"),
		       json_object_get_double_member(ph, "stop_to_exec_ms"),
		       json_object_get_double_member(ph, "exec_to_resume_ms"),
		       json_object_get_double_member(ph, "exec_to_qmp_ms"),
		       json_object_get_double_member_with_default(r, "preflight_ms", 0));
	else
		printf("  pause at most %.1f ms (RESUME came before QMP was back)\n",
		       json_object_get_double_member(r, "pause_ms_at_most"));
}

/* cprx-qmp update: also each round of the demo. */
int do_update(struct qmp_opts *o)
{
	struct qmp_ctx c = { .o = o };
	int ret = prepare_update(&c);

	if (ret)
		return ret;
	json_object_set_array_member(c.report, "new_argv", strv_array(c.new_argv));
	json_object_set_array_member(c.report, "preflight", c.checks);
	if (!o->json)
		printf("update pid %d (QEMU %s%s)\n", c.pid, qmp_version(c.q),
		       c.other_root ? ", in a chroot" : "");
	if (!preflight(&c)) {
		ret = fail(&c, EXIT_REFUSED, "preflight", "a preflight check failed; nothing was stopped",
			   NULL);
	} else if (o->preflight_only) {
		json_object_set_string_member(c.report, "result", "preflight-ok");
		write_report(&c);
	} else {
		ret = migrate(&c);
		if (!ret) {
			write_report(&c);
			summary(&c);
		}
	}
	/* Consumed, or of no use; kept when the VM is lost (it has the
	 * devices' state), and when it was not ours to begin with. */
	if (ret != EXIT_LOST && (c.state_created || (ret != EXIT_REFUSED && !o->preflight_only)))
		state_unlink(&c);
	ctx_free(&c);
	return ret;
}
