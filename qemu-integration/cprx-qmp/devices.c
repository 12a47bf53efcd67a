// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The preflight's "devices" check: every device of the running QEMU must
 * exist in the trial instance of the new command line. The new QEMU loads
 * the state section by section after the exec; a section without its
 * device ("Unknown section or instance") makes it exit and the VM is lost.
 *
 * The devices are read from QOM, in both QEMUs the same way: from
 * /machine down through children that are devices or containers
 * (/machine/peripheral for -device with an id, peripheral-anon without,
 * unattached for the board's own, and devices inside devices), one
 * qom-list-get per level of the tree (QEMU 10.1 or later, as cpr-exec
 * needs 10.2). A device is an object whose type implements "device"
 * (qom-list-types, once per QEMU) and is realized. Memory regions, IRQs
 * and buses are not walked: devices are never their QOM children. Nor
 * are CPUs: reading a CPU's ~540 properties takes 15-100 ms under TCG,
 * so a CPU is taken from its parent's listing, and its own children (the
 * local APIC) come and go with it.
 */
#include "cprx-qmp.h"

#include <string.h>

/* Beyond these the tree is not a machine's: give up rather than wait. */
enum { MAX_DEPTH = 32, MAX_OBJECTS = 100000 };

struct qom_dev {
	char *path;	/* canonical QOM path */
	char *type;
	int devfn;	/* PCI devices' "addr", else -1: part of the state's section name */
	gboolean matched;
};

static void dev_free(gpointer p)
{
	struct qom_dev *d = p;

	g_free(d->path);
	g_free(d->type);
	g_free(d);
}

static GHashTable *device_types(struct qmp *q, GError **err)
{
	g_autoptr(JsonNode) r = qmp_cmd(q, "qom-list-types", qmp_args(
		"implements", str_node("device"), "abstract", json_node_init_boolean(
			json_node_alloc(), TRUE), NULL), 5000, err);
	GHashTable *types;
	JsonArray *a;

	if (!r)
		return NULL;
	types = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	a = json_node_get_array(r);
	for (guint i = 0; i < json_array_get_length(a); i++) {
		JsonObject *t = json_array_get_object_element(a, i);

		g_hash_table_insert(types, g_strdup(json_object_get_string_member_with_default(
			t, "name", "")), g_strdup(json_object_get_string_member_with_default(
			t, "parent", "")));
	}
	return types;
}

/* Whether a device type is a CPU (descends from "cpu"). */
static gboolean is_cpu(GHashTable *types, const char *t)
{
	for (int i = 0; t && *t && i < 32; i++, t = g_hash_table_lookup(types, t))
		if (!strcmp(t, "cpu"))
			return TRUE;
	return FALSE;
}

static void add_dev(GPtrArray *devs, const char *path, const char *type, int devfn)
{
	struct qom_dev *d = g_new0(struct qom_dev, 1);

	d->path = g_strdup(path);
	d->type = g_strdup(type);
	d->devfn = devfn;
	g_ptr_array_add(devs, d);
}

/* "child<T>": T, else NULL. */
static char *child_type(const char *ptype)
{
	if (!g_str_has_prefix(ptype, "child<") || !g_str_has_suffix(ptype, ">"))
		return NULL;
	return g_strndup(ptype + 6, strlen(ptype) - 7);
}

/* A child worth walking into (a device or a container) goes to next; a
 * CPU is kept as it is. */
static void take_child(GHashTable *types, const char *path, const char *ptype,
		       GPtrArray *devs, GPtrArray *next)
{
	g_autofree char *t = child_type(ptype);

	if (!t || (strcmp(t, "container") && !g_hash_table_contains(types, t)))
		return;
	if (is_cpu(types, t))
		add_dev(devs, path, t, -1);
	else
		g_ptr_array_add(next, g_strdup(path));
}

/* One object of qom-list-get: a device to keep, children to walk. */
static void take_object(GHashTable *types, const char *path, JsonObject *o,
			GPtrArray *devs, GPtrArray *next)
{
	JsonArray *props = json_object_get_array_member(o, "properties");
	const char *type = NULL;
	gboolean realized = FALSE;
	int devfn = -1;

	for (guint i = 0; props && i < json_array_get_length(props); i++) {
		JsonObject *p = json_array_get_object_element(props, i);
		const char *name = json_object_get_string_member_with_default(p, "name", "");
		const char *ptype = json_object_get_string_member_with_default(p, "type", "");
		JsonNode *v = json_object_get_member(p, "value");
		gboolean scalar = v && JSON_NODE_HOLDS_VALUE(v);

		if (!strcmp(name, "type") && scalar)
			type = qmp_node_string(v);
		else if (!strcmp(name, "realized") && scalar)
			realized = qmp_node_bool(v) == 1;
		else if (!strcmp(name, "addr") && scalar &&
			 json_node_get_value_type(v) == G_TYPE_INT64)
			devfn = json_node_get_int(v);
		else if (scalar && json_node_get_value_type(v) == G_TYPE_STRING)
			take_child(types, json_node_get_string(v), ptype, devs, next);
	}
	if (type && realized && g_hash_table_contains(types, type))
		add_dev(devs, path, type, devfn);
}

/* The first level: /machine's children (qom-list: names and types only,
 * not the values of the machine's many properties). */
static GPtrArray *machine_children(struct qmp *q, GHashTable *types, GPtrArray *devs,
				   GError **err)
{
	g_autoptr(JsonNode) r = qmp_cmd(q, "qom-list", qmp_args("path", str_node("/machine"),
					NULL), 5000, err);
	GPtrArray *level;
	JsonArray *a;

	if (!r)
		return NULL;
	level = g_ptr_array_new_with_free_func(g_free);
	a = json_node_get_array(r);
	for (guint i = 0; i < json_array_get_length(a); i++) {
		JsonObject *p = json_array_get_object_element(a, i);
		g_autofree char *path = g_strconcat("/machine/", json_object_get_string_member_with_default(
			p, "name", ""), NULL);

		take_child(types, path, json_object_get_string_member_with_default(p, "type", ""),
			   devs, level);
	}
	return level;
}

static JsonNode *paths_node(GPtrArray *level)
{
	JsonArray *a = json_array_sized_new(level->len);

	for (guint i = 0; i < level->len; i++)
		json_array_add_string_element(a, level->pdata[i]);
	return json_node_init_array(json_node_alloc(), a);
}

GPtrArray *qom_devices(struct qmp *q, GError **err)
{
	g_autoptr(GPtrArray) devs = g_ptr_array_new_with_free_func(dev_free);
	g_autoptr(GHashTable) types = device_types(q, err);
	g_autoptr(GPtrArray) level = types ? machine_children(q, types, devs, err) : NULL;
	guint seen = 0;

	for (int depth = 0; level && level->len; depth++) {
		g_autoptr(JsonNode) r = NULL;
		GPtrArray *next;
		JsonArray *a;

		if (depth == MAX_DEPTH || (seen += level->len) > MAX_OBJECTS) {
			g_set_error(err, QMP_ERROR, QMP_ERROR_IO, "the QOM tree is deeper than %d "
				    "or larger than %d objects", MAX_DEPTH, MAX_OBJECTS);
			return NULL;
		}
		r = qmp_cmd(q, "qom-list-get", qmp_args("paths", paths_node(level), NULL), 10000, err);
		if (!r)
			return NULL;
		a = json_node_get_array(r);
		next = g_ptr_array_new_with_free_func(g_free);
		for (guint i = 0; i < json_array_get_length(a) && i < level->len; i++)
			take_object(types, level->pdata[i], json_array_get_object_element(a, i),
				    devs, next);
		g_ptr_array_unref(level);
		level = next;
	}
	return level ? g_steal_pointer(&devs) : NULL;
}

/* A device for a message: its id when it has one. */
static void name_dev(GString *s, const struct qom_dev *d)
{
	if (g_str_has_prefix(d->path, "/machine/peripheral/"))
		g_string_append_printf(s, "id %s (%s, %s)", d->path + strlen("/machine/peripheral/"),
				       d->type, d->path);
	else
		g_string_append_printf(s, "%s (%s)", d->path, d->type);
	if (d->devfn >= 0)
		g_string_append_printf(s, " at PCI %02x.%x", d->devfn >> 3, d->devfn & 7);
}

/* The board's own devices (/machine/unattached/device[N]) are numbered in
 * creation order, which a new QEMU version may change: those match any
 * unmatched device of the same type and PCI address. Devices of the
 * command line match by path only: an id, or the order of -device options
 * (which also sets PCI addresses, part of the state's section names). */
static struct qom_dev *find_match(GPtrArray *trial, GHashTable *by_path, struct qom_dev *d,
				  gboolean exact)
{
	struct qom_dev *t = g_hash_table_lookup(by_path, d->path);

	if (exact)
		return t && !t->matched && !strcmp(t->type, d->type) && t->devfn == d->devfn ?
		       t : NULL;
	if (!g_str_has_prefix(d->path, "/machine/unattached/"))
		return NULL;
	for (guint i = 0; i < trial->len; i++) {
		t = trial->pdata[i];
		if (!t->matched && g_str_has_prefix(t->path, "/machine/unattached/") &&
		    !strcmp(t->type, d->type) && t->devfn == d->devfn)
			return t;
	}
	return NULL;
}

/* Whether an ancestor of d is missing too (then only the ancestor is named). */
static gboolean parent_missing(GPtrArray *missing, struct qom_dev *d)
{
	for (guint i = 0; i < missing->len; i++) {
		struct qom_dev *m = missing->pdata[i];
		size_t n = strlen(m->path);

		if (m != d && !strncmp(d->path, m->path, n) && d->path[n] == '/')
			return TRUE;
	}
	return FALSE;
}

/* A missing device; or one the trial has at another PCI address (the
 * section name holds the address: the state would not load either). */
static void name_missing(GString *s, GHashTable *by_path, const struct qom_dev *d)
{
	const struct qom_dev *t = g_hash_table_lookup(by_path, d->path);

	name_dev(s, d);
	if (t && !strcmp(t->type, d->type) && t->devfn != d->devfn && t->devfn >= 0)
		g_string_append_printf(s, ", at PCI %02x.%x in the new one (give it addr=%02x.%x)",
				       t->devfn >> 3, t->devfn & 7, d->devfn >> 3, d->devfn & 7);
}

/* The running QEMU's devices the trial lacks, named in d; the count. */
static guint compare(GPtrArray *run, GPtrArray *trial, GString *d)
{
	g_autoptr(GHashTable) by_path = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GPtrArray) missing = g_ptr_array_new();
	guint n = 0;

	for (guint i = 0; i < trial->len; i++) {
		struct qom_dev *t = trial->pdata[i];

		t->matched = FALSE;
		g_hash_table_insert(by_path, t->path, t);
	}
	/* Exact paths first, so a board device never takes another's match. */
	for (int pass = 0; pass < 2; pass++) {
		for (guint i = 0; i < run->len; i++) {
			struct qom_dev *r = run->pdata[i], *t;

			if (r->matched)
				continue;
			t = find_match(trial, by_path, r, pass == 0);
			if (t)
				t->matched = r->matched = TRUE;
			else if (pass == 1)
				g_ptr_array_add(missing, r);
		}
	}
	for (guint i = 0; i < missing->len; i++) {
		if (parent_missing(missing, missing->pdata[i]))
			continue;
		g_string_append(d, n++ ? "; " : "");
		name_missing(d, by_path, missing->pdata[i]);
	}
	return n;
}

gboolean check_devices(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autoptr(GPtrArray) run = NULL;
	g_autoptr(GError) e = NULL;
	g_autoptr(GString) lack = g_string_new(NULL);
	gint64 t0 = g_get_monotonic_time();
	guint n, extra = 0;

	if (!c->trial_devs) {
		g_string_printf(d, "cannot list the trial instance's devices: %s",
				c->trial_devs_err ? c->trial_devs_err : "it did not answer");
		*hint = "--no-trial skips the trial instance and this check";
		return FALSE;
	}
	run = qom_devices(c->q, &e);
	if (!run) {
		g_string_printf(d, "cannot list the running QEMU's devices: %s", e->message);
		return FALSE;
	}
	for (guint i = 0; i < run->len; i++)
		((struct qom_dev *)run->pdata[i])->matched = FALSE;
	n = compare(run, c->trial_devs, lack);
	for (guint i = 0; i < c->trial_devs->len; i++)
		extra += !((struct qom_dev *)c->trial_devs->pdata[i])->matched;
	if (n) {
		g_string_printf(d, "the new command line lacks %u device%s of the running QEMU: %s",
				n, n > 1 ? "s" : "", lack->str);
		*hint = "add them to the new command line (-device TYPE,id=ID,... as the running "
			"QEMU has them, hot-plugged ones included): the new QEMU would refuse "
			"the VM's state after the exec (\"Unknown section or instance\") and "
			"the VM would be lost";
		return FALSE;
	}
	g_string_printf(d, "all %u devices of the running QEMU are in the trial instance",
			run->len);
	if (extra)
		g_string_append_printf(d, " (%u more only there, allowed)", extra);
	g_string_append_printf(d, "; QOM walked in %.1f ms here, %.1f ms in the trial",
			       (g_get_monotonic_time() - t0) / 1000.0, c->trial_devs_ms);
	return TRUE;
}
