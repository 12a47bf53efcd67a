// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The preflight's "incoming" check: the new command line's -incoming must
 * name the file cprx-qmp migrates to. The trial instance cannot see it
 * (it runs with -incoming defer), and a new QEMU that waits on another
 * file, another transport or "defer" after the exec loses the VM.
 *
 * QEMU's own rules, followed here: "-incoming" or "--incoming"; the last
 * main channel wins; "defer"; a URI ("file:PATH[,offset=N]", "unix:...");
 * or a MigrationChannel as JSON ({"channel-type": "main", "addr":
 * {"transport": "file", "filename": ..., "offset": ...}}) or as keyval
 * (main,addr.transport=file,addr.filename=...).
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* What a new command line waits for. */
struct incoming {
	const char *arg;	/* the option's value as given (NULL: none) */
	char *file;		/* a file transport's path, else NULL */
	char *other;		/* why it is not a plain file at offset 0 */
	gboolean side;		/* another channel type (cpr), not the main one */
};

/* QEMU's size syntax (digits, 0x..., a k/M/G/T/P/E suffix) for an offset:
 * only offset 0 matches cprx-qmp's migrate, which writes at the start. */
static gboolean offset_is_zero(const char *s)
{
	char *end;
	guint64 v;

	errno = 0;
	v = g_ascii_strtoull(s, &end, 0);
	if (errno || end == s)
		return FALSE;
	if (*end && strchr("kKmMgGtTpPeEbB", *end))
		end++;
	return !*end && v == 0;
}

/* "file:PATH[,offset=N]" and the other URIs QEMU accepts. */
static void parse_uri(const char *v, struct incoming *in)
{
	const char *off;

	if (!g_str_has_prefix(v, "file:")) {
		in->other = g_strdup_printf("%.*s transport, not a file", (int)strcspn(v, ":"), v);
		return;
	}
	v += strlen("file:");
	off = strstr(v, ",offset=");
	in->file = off ? g_strndup(v, off - v) : g_strdup(v);
	if (off && !offset_is_zero(off + strlen(",offset=")))
		in->other = g_strdup_printf("offset %s, but the state is written at offset 0",
					    off + strlen(",offset="));
}

/* The fields of a MigrationChannel that matter here. */
static void parse_channel(const char *type, const char *transport, const char *file,
			  const char *offset, struct incoming *in)
{
	if (!type) {
		in->other = g_strdup("no channel-type (QEMU would refuse it)");
		return;
	}
	if (strcmp(type, "main")) {
		in->side = TRUE;
		return;
	}
	if (g_strcmp0(transport, "file")) {
		in->other = g_strdup_printf("%s transport, not a file",
					    transport ? transport : "no");
		return;
	}
	in->file = g_strdup(file ? file : "");
	if (offset && !offset_is_zero(offset))
		in->other = g_strdup_printf("offset %s, but the state is written at offset 0",
					    offset);
}

static void parse_json(const char *v, struct incoming *in)
{
	g_autoptr(JsonParser) p = json_parser_new();
	g_autofree char *offset = NULL;
	JsonObject *o, *addr;
	JsonNode *n;

	if (!json_parser_load_from_data(p, v, -1, NULL) ||
	    !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
		in->other = g_strdup("not valid JSON");
		return;
	}
	o = json_node_get_object(json_parser_get_root(p));
	n = json_object_get_member(o, "addr");
	addr = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
	n = addr ? json_object_get_member(addr, "offset") : NULL;
	if (n && JSON_NODE_HOLDS_VALUE(n))
		offset = json_node_get_value_type(n) == G_TYPE_STRING ?
			 g_strdup(json_node_get_string(n)) :
			 g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
	parse_channel(json_object_get_string_member_with_default(o, "channel-type", NULL),
		      addr ? json_object_get_string_member_with_default(addr, "transport", NULL) : NULL,
		      addr ? json_object_get_string_member_with_default(addr, "filename", NULL) : NULL,
		      offset, in);
}

/* keyval: "key=value" pairs split at single commas (",," is a comma), the
 * first may be a bare value of the implied key channel-type. */
static void parse_keyval(const char *v, struct incoming *in)
{
	g_autoptr(GHashTable) kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_autoptr(GString) cur = g_string_new(NULL);
	gboolean first = TRUE;

	for (const char *s = v;; s++) {
		if (*s == ',' && s[1] == ',') {
			g_string_append_c(cur, ',');
			s++;
			continue;
		}
		if (*s && *s != ',') {
			g_string_append_c(cur, *s);
			continue;
		}
		char *eq = strchr(cur->str, '=');

		if (eq)
			g_hash_table_replace(kv, g_strndup(cur->str, eq - cur->str), g_strdup(eq + 1));
		else if (first)
			g_hash_table_replace(kv, g_strdup("channel-type"), g_strdup(cur->str));
		first = FALSE;
		g_string_truncate(cur, 0);
		if (!*s)
			break;
	}
	parse_channel(g_hash_table_lookup(kv, "channel-type"),
		      g_hash_table_lookup(kv, "addr.transport"),
		      g_hash_table_lookup(kv, "addr.filename"),
		      g_hash_table_lookup(kv, "addr.offset"), in);
}

/* A value is a URI when letters up to the first ':' make its scheme
 * (QEMU's rule; "unknown:" is one too, and QEMU exits on it). */
static gboolean is_uri(const char *v)
{
	while (g_ascii_isalpha(*v))
		v++;
	return *v == ':';
}

/* Main-channel -incoming options of argv; the last one is what QEMU uses. */
static void find_incoming(GPtrArray *argv, struct incoming *in)
{
	for (guint i = 1; i + 2 < argv->len; i++) {
		const char *a = argv->pdata[i], *v = argv->pdata[i + 1];
		struct incoming one = { .arg = v };

		if (strcmp(a, "-incoming") && strcmp(a, "--incoming"))
			continue;
		i++;
		if (!strcmp(v, "defer"))
			one.other = g_strdup("defer: cprx-qmp does not send migrate-incoming "
					     "after the exec, the new QEMU would wait forever");
		else if (is_uri(v))
			parse_uri(v, &one);
		else if (v[0] == '{')
			parse_json(v, &one);
		else
			parse_keyval(v, &one);
		/* Other channel types (cpr) sit beside the main one. */
		if (one.side)
			continue;
		g_free(in->file);
		g_free(in->other);
		*in = one;
	}
}

/* A path as QEMU opens it, reachable from here (relative: QEMU's cwd,
 * which the exec keeps). */
static char *reach(struct qmp_ctx *c, const char *path)
{
	if (path[0] == '/')
		return host_path(c, path);
	return g_strdup_printf("/proc/%d/cwd/%s", c->pid, path);
}

/* Same file: the same name in the same directory (by inode, so symlinked
 * directories and relative paths compare right), or the same path. */
static gboolean same_file(struct qmp_ctx *c, const char *a, const char *b)
{
	g_autofree char *ha = reach(c, a), *hb = reach(c, b);
	g_autofree char *da = g_path_get_dirname(ha), *db = g_path_get_dirname(hb);
	g_autofree char *ba = g_path_get_basename(ha), *bb = g_path_get_basename(hb);
	g_autofree char *ca = g_canonicalize_filename(ha, "/");
	g_autofree char *cb = g_canonicalize_filename(hb, "/");
	struct stat sa, sb;

	if (!strcmp(ca, cb))
		return TRUE;
	return !strcmp(ba, bb) && !stat(da, &sa) && !stat(db, &sb) &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

gboolean check_incoming(struct qmp_ctx *c, GString *d, const char **hint)
{
	const char *state = c->o->state;
	struct incoming in = { 0 };
	gboolean ok = FALSE;
	g_autofree char *h = NULL;

	find_incoming(c->new_argv, &in);
	if (!in.arg) {
		g_string_printf(d, "the new command line has no -incoming: the new QEMU "
				"would boot the guest afresh instead of loading file:%s", state);
		h = g_strdup_printf("add -incoming file:%s to the new command line", state);
	} else if (in.other) {
		g_string_printf(d, "the new command line's -incoming %s: %s; cprx-qmp migrates "
				"to file:%s", in.arg, in.other, state);
		h = g_strdup_printf("use -incoming file:%s in the new command line", state);
	} else if (!same_file(c, in.file, state)) {
		g_string_printf(d, "the new command line's -incoming names %s, but cprx-qmp "
				"migrates to %s: the new QEMU would not find this VM's state",
				in.file, state);
		h = g_strdup_printf("make them the same file: -incoming file:%s in the new "
				    "command line, or --state %s", state, in.file);
	} else {
		g_string_printf(d, "-incoming %s is the migration file", in.arg);
		ok = TRUE;
	}
	if (h)
		*hint = g_intern_string(h);
	g_free(in.file);
	g_free(in.other);
	return ok;
}
