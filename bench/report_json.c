/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cprx-bench: results.json, the machine, every cell and every sample. */
#include <json-glib/json-glib.h>
#include <math.h>

#include "bench.h"
#include "report_json.h"

void json_num(JsonBuilder *j, const char *key, double v)
{
	json_builder_set_member_name(j, key);
	if (isnan(v) || isinf(v))
		json_builder_add_null_value(j);
	else
		json_builder_add_double_value(j, round(v * 10000) / 10000);
}

void json_str(JsonBuilder *j, const char *key, const char *v)
{
	json_builder_set_member_name(j, key);
	json_builder_add_string_value(j, v);
}

void json_int(JsonBuilder *j, const char *key, gint64 v)
{
	json_builder_set_member_name(j, key);
	json_builder_add_int_value(j, v);
}

static void json_machine(JsonBuilder *j, const struct bench *b)
{
	json_builder_set_member_name(j, "machine");
	json_builder_begin_object(j);
	json_str(j, "kernel", b->m.kernel);
	json_str(j, "cpu", b->m.cpu);
	json_int(j, "cores", b->m.cores);
	json_int(j, "mem_bytes", (gint64)b->m.mem_bytes);
	json_str(j, "host", b->m.host);
	json_builder_end_object(j);
}

void json_named(JsonBuilder *j, const char *key, const char *const *names,
		const double *v, unsigned int n)
{
	unsigned int k;

	json_builder_set_member_name(j, key);
	json_builder_begin_object(j);
	for (k = 0; k < n; k++)
		json_num(j, names[k], v[k]);
	json_builder_end_object(j);
}

static void json_segs(JsonBuilder *j, const char *key, const double *seg)
{
	json_named(j, key, seg_names, seg, NR_SEGS);
}

static void json_samples(JsonBuilder *j, const struct cell *c)
{
	unsigned int i;

	json_builder_set_member_name(j, "samples");
	json_builder_begin_array(j);
	for (i = 0; i < c->samples->len; i++) {
		const struct sample *s = &g_array_index(c->samples, struct sample, i);

		json_builder_begin_object(j);
		json_num(j, "pause_ms", s->pause_ms);
		json_segs(j, "segments_ms", s->seg);
		json_num(j, "kernel_ms", s->kernel_ms);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
}

static void json_cell(JsonBuilder *j, const struct bench *b, const struct cell *c)
{
	const struct config *cf = c->cfg;

	json_builder_begin_object(j);
	json_str(j, "config", cf->label);
	json_str(j, "kind", kind_names[cf->kind]);
	json_str(j, "size", c->size_label);
	json_int(j, "size_bytes", (gint64)c->size);
	json_str(j, "pages", cf->pages);
	json_str(j, "backend", cf->backend);
	json_str(j, "teardown", cf->teardown);
	json_str(j, "state", cf->state);
	json_int(j, "vcpus", cf->vcpus);
	json_int(j, "devices", cf->devices);
	json_int(j, "n", c->samples->len);
	json_num(j, "median_ms", c->median);
	json_num(j, "min_ms", c->min);
	json_num(j, "max_ms", c->max);
	json_num(j, "x_floor", vs_floor(b, c));
	json_segs(j, "segments_median_ms", c->seg_median);
	json_num(j, "kernel_median_ms", c->kernel_median);
	if (c->skipped)
		json_str(j, "skipped", c->skipped);
	json_samples(j, c);
	json_builder_end_object(j);
}

int write_json(const struct bench *b)
{
	g_autoptr(JsonBuilder) j = json_builder_new();
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *path = g_build_filename(b->out, "results.json", NULL);
	g_autoptr(GError) err = NULL;
	unsigned int i;

	json_builder_begin_object(j);
	json_str(j, "tool", "cprx-bench");
	json_str(j, "started", b->started);
	json_str(j, "command", b->command);
	json_num(j, "seconds", b->seconds);
	json_machine(j, b);
	json_builder_set_member_name(j, "segments");
	json_builder_begin_array(j);
	for (i = 0; i < NR_SEGS; i++)
		json_builder_add_string_value(j, seg_names[i]);
	json_builder_end_array(j);
	json_builder_set_member_name(j, "cells");
	json_builder_begin_array(j);
	for (i = 0; i < b->cells->len; i++)
		json_cell(j, b, b->cells->pdata[i]);
	json_builder_end_array(j);
	json_builder_set_member_name(j, "notes");
	json_builder_begin_array(j);
	for (i = 0; i < b->notes->len; i++)
		json_builder_add_string_value(j, b->notes->pdata[i]);
	json_builder_end_array(j);
	json_builder_end_object(j);
	root = json_builder_get_root(j);
	json_generator_set_root(g, root);
	json_generator_set_pretty(g, TRUE);
	if (!json_generator_to_file(g, path, &err)) {
		g_printerr("cprx-bench: %s: %s\n", path, err->message);
		return -1;
	}
	return 0;
}
