// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What cprx-qmp tells: messages on stderr, a line per preflight check, the
 * JSON report (stdout with --json, a file with --json-out), and the report
 * of an update or restart that failed, with the guest's status.
 */
#include "cprx-qmp.h"

#include <stdarg.h>
#include <stdio.h>

/*
 * @s as it may reach a terminal or a log line: a control character (C0,
 * DEL, C1), a format character (bidi overrides), a line separator or a
 * byte that is not UTF-8 written as an escape.  QEMU's error messages,
 * device ids and status, a binary's output and a command line's paths are
 * any process's to choose: printed as they are, an escape sequence would
 * move the cursor over another VM's line, a newline forge a line.
 */
char *printable(const char *s)
{
	GString *out = g_string_new(NULL);

	while (s && *s) {
		gunichar ch = g_utf8_get_char_validated(s, -1);

		if (ch == (gunichar)-1 || ch == (gunichar)-2) {
			g_string_append_printf(out, "\\x%02x", (unsigned char)*s++);
			continue;
		}
		if (ch == '\n' || ch == '\t')
			g_string_append(out, ch == '\n' ? "\\n" : "\\t");
		else if (ch < 0x100 && g_unichar_iscntrl(ch))
			g_string_append_printf(out, "\\x%02x", ch);
		else if (g_unichar_iscntrl(ch) || g_unichar_type(ch) == G_UNICODE_FORMAT ||
			 g_unichar_type(ch) == G_UNICODE_LINE_SEPARATOR ||
			 g_unichar_type(ch) == G_UNICODE_PARAGRAPH_SEPARATOR)
			g_string_append_printf(out, "\\u%04x", ch);
		else
			g_string_append_len(out, s, g_utf8_next_char(s) - s);
		s = g_utf8_next_char(s);
	}
	return g_string_free(out, FALSE);
}

/* One line on stderr; what it quotes is made printable. */
void say(const char *fmt, ...)
{
	g_autofree char *msg = NULL, *shown = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	shown = printable(msg);
	fprintf(stderr, "cprx-qmp: %s\n", shown);
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
	if (!c->o->json) {
		g_autofree char *d = printable(detail), *h = printable(hint);

		printf("  preflight %-9s %s  %s (%.1f ms)\n", name,
		       !ok ? "FAIL" : warn ? "warn" : "ok  ", d, ms);
		if ((!ok || warn) && hint)
			printf("  %-19s hint: %s\n", "", h);
	}
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

	if (!r && !g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF))
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
		g_autofree char *w = printable(what), *m = printable(msg), *h = printable(hint);
		g_autofree char *g = printable(st), *f = printable(c->o->state);

		printf("update %s: %s\n", code == EXIT_REFUSED ? "refused" :
		       code == EXIT_RESCUED ? "FAILED, guest rescued" : "FAILED", w);
		printf("  error: %s\n", m);
		if (hint)
			printf("  hint: %s\n", h);
		printf("  guest: %s (query-status on pid %d)\n", g, c->pid);
		if (code == EXIT_LOST)
			printf("  state: kept in %s (the lost VM's devices; remove it when "
			       "done)\n", f);
	}
	return code;
}
