/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: the sweep's configurations, from the option lists (pages x
 * vCPUs x backend x teardown x state x devices, and the baselines).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* A comma-separated option list, each item stripped. */
char **split(const char *list)
{
	char **v = g_strsplit(list, ",", -1);
	unsigned int i;

	for (i = 0; v[i]; i++)
		g_strstrip(v[i]);
	return v;
}

static bool one_of(const char *v, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(v, *names))
			return true;
	return false;
}

/* Every item of @list is one of @names; says which is not. */
static bool check_list(const char *opt, const char *list, const char *const *names)
{
	g_auto(GStrv) v = split(list);
	unsigned int i;

	for (i = 0; v[i]; i++)
		if (!one_of(v[i], names)) {
			g_printerr("cprx-bench: --%s: '%s' is not one of %s\n", opt, v[i],
				   g_strjoinv(", ", (char **)names));
			return false;
		}
	return i > 0;
}

static bool parse_uints(const char *opt, const char *list, unsigned int min,
			unsigned int max, GArray *out)
{
	g_auto(GStrv) v = split(list);
	unsigned int i;
	guint64 n;

	for (i = 0; v[i]; i++) {
		if (!g_ascii_string_to_unsigned(v[i], 10, min, max, &n, NULL)) {
			g_printerr("cprx-bench: --%s: '%s' is not a number from %u to %u\n",
				   opt, v[i], min, max);
			return false;
		}
		g_array_append_val(out, (unsigned int){ (unsigned int)n });
	}
	return i > 0;
}

static int cmp_u64(gconstpointer a, gconstpointer b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool parse_sizes(struct bench *b, const struct options *o)
{
	g_auto(GStrv) v = split(o->sizes ? o->sizes : SIZES_DEFAULT);
	unsigned int i;
	uint64_t n;

	for (i = 0; v[i]; i++) {
		if (parse_size(v[i], &n) < 0 || n % 4096) {
			g_printerr("cprx-bench: --sizes: '%s' is not a size (256M, 1G...) "
				   "and a multiple of 4 KiB\n", v[i]);
			return false;
		}
		g_array_append_val(b->sizes, n);
	}
	g_array_sort(b->sizes, cmp_u64);
	return i > 0;
}

static struct config *config_new(enum kind k, const char *pages, const char *be,
				 const char *td, const char *st, unsigned int vcpus,
				 unsigned int devs)
{
	struct config *c = g_new0(struct config, 1);

	c->kind = k;
	g_strlcpy(c->pages, pages, sizeof(c->pages));
	g_strlcpy(c->backend, be, sizeof(c->backend));
	g_strlcpy(c->teardown, td, sizeof(c->teardown));
	g_strlcpy(c->state, st, sizeof(c->state));
	c->vcpus = vcpus;
	c->devices = devs;
	if (k == KIND_CPRX)
		snprintf(c->label, sizeof(c->label), "cprx %s %s %s %s %uvcpu %udev",
			 pages, be, td, st, vcpus, devs);
	else
		snprintf(c->label, sizeof(c->label), "%s %s %uvcpu", kind_names[k],
			 pages, vcpus);
	return c;
}

/* Kinds, backends that cannot run here are dropped with a note. */
static bool backend_usable(struct bench *b, const char *be)
{
	if (strcmp(be, "kmod") || access("/dev/cprx", R_OK | W_OK) == 0)
		return true;
	g_ptr_array_add(b->notes, g_strdup("backend kmod skipped: no /dev/cprx "
		"(insmod cprx.ko; or run with --vm)"));
	return false;
}

static void add_cprx_configs(struct bench *b, const struct options *o, const char *pages,
			     unsigned int vcpus, GArray *devs)
{
	g_auto(GStrv) bes = split(o->backends), tds = split(o->teardowns);
	g_auto(GStrv) sts = split(o->states);
	unsigned int i, j, k, d;

	for (i = 0; bes[i]; i++) {
		if (!backend_usable(b, bes[i]))
			continue;
		for (j = 0; tds[j]; j++)
			for (k = 0; sts[k]; k++)
				for (d = 0; d < devs->len; d++)
					g_ptr_array_add(b->configs, config_new(KIND_CPRX,
						pages, bes[i], tds[j], sts[k], vcpus,
						g_array_index(devs, unsigned int, d)));
	}
}

/* Baselines do not depend on backend, state or devices: one per pages x vCPUs. */
static void add_baselines(struct bench *b, const struct options *o, const char *pages,
			  unsigned int vcpus)
{
	g_auto(GStrv) v = split(o->baselines);
	unsigned int i;

	for (i = 0; v[i]; i++) {
		if (!strcmp(v[i], "none"))
			continue;
		if (!strcmp(v[i], "floor"))
			g_ptr_array_add(b->configs, config_new(KIND_FLOOR, pages, "-",
						"deferred", "-", vcpus, 0));
		else if (!strcmp(v[i], "naive"))
			g_ptr_array_add(b->configs, config_new(KIND_NAIVE, pages, "-",
						"inline", "-", vcpus, 0));
		else
			g_ptr_array_add(b->configs, config_new(KIND_COPY, pages, "-",
						"inline", "file", vcpus, 0));
	}
}

bool build_configs(struct bench *b, const struct options *o)
{
	static const char *const pages[] = { "4k", "thp", "hugetlb", NULL };
	static const char *const bes[] = { "cloexec", "kmod", NULL };
	static const char *const tds[] = { "deferred", "inline", NULL };
	static const char *const sts[] = { "memfd", "file", NULL };
	static const char *const bls[] = { "floor", "naive", "copy", "none", NULL };
	g_autoptr(GArray) vcpus = g_array_new(FALSE, FALSE, sizeof(unsigned int));
	g_autoptr(GArray) devs = g_array_new(FALSE, FALSE, sizeof(unsigned int));
	g_auto(GStrv) pv = NULL;
	unsigned int i, j;

	if (!check_list("pages", o->pages, pages) || !check_list("backends", o->backends, bes) ||
	    !check_list("teardown", o->teardowns, tds) || !check_list("states", o->states, sts) ||
	    !check_list("baselines", o->baselines, bls) ||
	    !parse_uints("vcpus", o->vcpus, 1, 64, vcpus) ||
	    !parse_uints("devices", o->devices, 0, 1000, devs) || !parse_sizes(b, o))
		return false;
	pv = split(o->pages);
	for (i = 0; pv[i]; i++)
		for (j = 0; j < vcpus->len; j++) {
			add_cprx_configs(b, o, pv[i], g_array_index(vcpus, unsigned int, j), devs);
			add_baselines(b, o, pv[i], g_array_index(vcpus, unsigned int, j));
		}
	if (b->configs->len)
		return true;
	for (i = 0; i < b->notes->len; i++)
		g_printerr("cprx-bench: %s\n", (char *)b->notes->pdata[i]);
	g_printerr("cprx-bench: nothing to run\n");
	return false;
}
