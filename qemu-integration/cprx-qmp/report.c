// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What cprx-qmp tells: messages on stderr, a line per preflight check, the
 * JSON report (stdout with --json, a file with --json-out), and the report
 * of an update or restart that failed, with the guest's status.
 */
#include "cprx-qmp.h"

#include <stdarg.h>
#include <stdio.h>

void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("cprx-qmp: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* warn: passed, but says something the user should know (not a refusal). */
void add_check(struct qmp_ctx *c, const char *name, gboolean ok, gboolean warn, double ms,
	       const char *detail, const char *hint)
{
	JsonObject *o = json_object_new();

	warn &= ok;
	json_object_set_string_member(o, "check", name);
	json_object_set_boolean_member(o, "ok", ok);
	json_object_set_boolean_member(o, "warn", warn);
	json_object_set_double_member(o, "ms", ms);
	json_object_set_string_member(o, "detail", detail);
	if (hint)
		json_object_set_string_member(o, "hint", hint);
	json_array_add_object_element(c->checks, o);
	if (!c->o->json)
		printf("  preflight %-9s %s  %s (%.1f ms)\n", name,
		       !ok ? "FAIL" : warn ? "warn" : "ok  ", detail, ms);
	if ((!ok || warn) && hint && !c->o->json)
		printf("  %-19s hint: %s\n", "", hint);
}

void write_report(struct qmp_ctx *c)
{
	g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), c->report);
	g_autofree char *s = json_to_string(n, TRUE);

	if (c->o->json)
		printf("%s\n", s);
	if (c->o->json_out && !g_file_set_contents(c->o->json_out, s, -1, NULL))
		say("cannot write %s", c->o->json_out);
}

/* query-status on the running QEMU: the proof the guest still runs. */
const char *guest_status(struct qmp_ctx *c)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-status", NULL, 5000, &e);
	static char st[256];

	if (!r && g_error_matches(e, QMP_ERROR, QMP_ERROR_IO))
		g_snprintf(st, sizeof(st), "unknown (%s)", e->message);
	else if (!r)
		return "unknown (QMP gone)";
	else	/* qmp_cmd checked that it is a string */
		g_strlcpy(st, json_object_get_string_member(json_node_get_object(r), "status"),
			  sizeof(st));
	return st;
}

/* An update or restart that failed or was refused: the report says why and
 * whether the guest still runs; returns code, the exit status. */
int fail(struct qmp_ctx *c, int code, const char *what, const char *msg, const char *hint)
{
	const char *st = code == EXIT_LOST ? "lost" : guest_status(c);

	keep_drop(c);	/* whatever happens next, nothing more to keep */
	json_object_set_string_member(c->report, "result", code == EXIT_REFUSED ? "refused" :
				      code == EXIT_LOST ? "lost" :
				      code == EXIT_RESCUED ? "rescued" : "failed");
	json_object_set_string_member(c->report, "error", msg);
	if (hint)
		json_object_set_string_member(c->report, "hint", hint);
	json_object_set_string_member(c->report, "guest_status", st);
	/* update() keeps it for a lost VM: the one copy of its devices' state */
	if (code == EXIT_LOST)
		json_object_set_string_member(c->report, "state_kept", c->o->state);
	write_report(c);
	if (!c->o->json) {
		printf("update %s: %s\n", code == EXIT_REFUSED ? "refused" :
		       code == EXIT_RESCUED ? "FAILED, guest rescued" : "FAILED", what);
		printf("  error: %s\n", msg);
		if (hint)
			printf("  hint: %s\n", hint);
		printf("  guest: %s (query-status on pid %d)\n", st, c->pid);
		if (code == EXIT_LOST)
			printf("  state: kept in %s (the lost VM's devices; remove it when "
			       "done)\n", c->o->state);
	}
	return code;
}
