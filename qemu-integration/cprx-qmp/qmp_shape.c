// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What each QMP message cprx-qmp reads must look like, checked once where
 * it arrives.  cprx-qmp runs as root against QEMUs whose guests may own
 * them: an answer of another shape must end the run with an error naming
 * the command, not reach code that takes QMP's documentation on trust.
 *
 * A shape is a small string: s string, i integer, b boolean, * anything,
 * [T] an array of T, {key:T,key?:T} an object with those members (the ?
 * ones may be absent or null; others may be there too).
 */
#include "qmp.h"

#include <string.h>

static const struct {
	const char *cmd, *shape;
} answers[] = {
	{ "human-monitor-command",	"s" },
	{ "qom-list",			"[{name:s,type:s}]" },
	{ "qom-list-get",		"[{properties:[{name:s,type:s}]}]" },
	{ "qom-list-types",		"[{name:s,parent?:s}]" },
	{ "query-memdev",		"[{id?:s,size:i,share?:b}]" },
	{ "query-migrate",		"{status?:s,error-desc?:s}" },
	{ "query-migrate-capabilities",	"[{capability:s,state:b}]" },
	{ "query-migrate-parameters",	"{}" },
	{ "query-status",		"{status:s,running?:b}" },
};

/* Past one type of a shape. */
static const char *skip(const char *t)
{
	int depth = 0;

	do {
		if (*t == '[' || *t == '{')
			depth++;
		else if (*t == ']' || *t == '}')
			depth--;
		t++;
	} while (depth > 0 && *t);
	return t;
}

static gboolean holds(JsonNode *n, GType type)
{
	return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type;
}

static gboolean fits(JsonNode *n, const char *t, GString *where);

/* Says what @where (the path so far) should have been. */
static gboolean unfit(GString *where, const char *should)
{
	g_string_append_printf(where, "%s %s", where->len ? "" : " the message", should);
	return FALSE;
}

static gboolean fits_object(JsonNode *n, const char *t, GString *where)
{
	gsize len = where->len;

	if (!n || !JSON_NODE_HOLDS_OBJECT(n))
		return unfit(where, "is not an object");
	for (t++; *t && *t != '}'; t = skip(t), t += *t == ',') {
		const char *end = t + strcspn(t, "?:");
		g_autofree char *key = g_strndup(t, end - t);
		gboolean optional = *end == '?';
		JsonNode *m = json_object_get_member(json_node_get_object(n), key);

		t = end + optional + 1;
		g_string_append_printf(where, ".%s", key);
		if ((!m || JSON_NODE_HOLDS_NULL(m)) && !optional)
			return unfit(where, "is missing");
		if (m && !JSON_NODE_HOLDS_NULL(m) && !fits(m, t, where))
			return FALSE;
		g_string_truncate(where, len);
	}
	return TRUE;
}

static gboolean fits(JsonNode *n, const char *t, GString *where)
{
	switch (*t) {
	case '*':
		return TRUE;
	case 's':
		return holds(n, G_TYPE_STRING) || unfit(where, "is not a string");
	case 'i':
		return holds(n, G_TYPE_INT64) || unfit(where, "is not an integer");
	case 'b':
		return holds(n, G_TYPE_BOOLEAN) || unfit(where, "is not a boolean");
	case '[': {
		JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
		gsize len = where->len;

		if (!a)
			return unfit(where, "is not an array");
		for (guint i = 0; i < json_array_get_length(a); i++) {
			g_string_append_printf(where, "[%u]", i);
			if (!fits(json_array_get_element(a, i), t + 1, where))
				return FALSE;
			g_string_truncate(where, len);
		}
		return TRUE;
	}
	case '{':
		return fits_object(n, t, where);
	}
	return unfit(where, "has no shape in cprx-qmp");
}

/* @n (@what, for the message) has @shape, or an error says where not. */
static gboolean check(JsonNode *n, const char *shape, const char *what, GError **err)
{
	g_autoptr(GString) where = g_string_new("");
	g_autofree char *got = NULL;

	if (fits(n, shape, where))
		return TRUE;
	got = n ? json_to_string(n, FALSE) : g_strdup("nothing");
	if (strlen(got) > 80)
		strcpy(got + 72, " ...");
	g_set_error(err, QMP_ERROR, QMP_ERROR_IO, "%s is not what QMP documents: %s%s (got %s)",
		    what, where->str[0] == ' ' ? "" : "field ", where->str + (where->str[0] == ' '),
		    got);
	return FALSE;
}

gboolean qmp_answer_fits(const char *cmd, JsonNode *ret, GError **err)
{
	g_autofree char *what = g_strdup_printf("QEMU's answer to %s", cmd);

	for (guint i = 0; i < G_N_ELEMENTS(answers); i++)
		if (!strcmp(answers[i].cmd, cmd))
			return check(ret, answers[i].shape, what, err);
	return TRUE;
}

gboolean qmp_message_fits(JsonNode *msg, GError **err)
{
	JsonObject *o = json_node_get_object(msg);

	if (json_object_has_member(o, "event"))
		return check(msg, "{event:s,timestamp?:{seconds:i,microseconds:i}}",
			     "a QMP event", err);
	if (json_object_has_member(o, "error"))
		return check(msg, "{error:{desc?:s}}", "a QMP error", err);
	return TRUE;
}

gboolean qmp_greeting_fits(JsonNode *msg, GError **err)
{
	return check(msg, "{QMP:{version?:{qemu:{major:i,minor:i,micro:i}}}}",
		     "QEMU's QMP greeting", err);
}

const char *qmp_node_string(JsonNode *n)
{
	return holds(n, G_TYPE_STRING) ? json_node_get_string(n) : NULL;
}

int qmp_node_bool(JsonNode *n)
{
	return holds(n, G_TYPE_BOOLEAN) ? json_node_get_boolean(n) : -1;
}
