/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench outputs: statistics, the terminal table, samples.csv,
 * summary.csv, results.json, table.md, and the gnuplot plots.
 */
#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

/* Statistics --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of @n values at @stride doubles apart; NANs are left out. */
static double median_of(const double *v, unsigned int n, size_t stride)
{
	g_autofree double *t = g_new(double, n ? n : 1);
	unsigned int i, m = 0;

	for (i = 0; i < n; i++)
		if (!isnan(v[i * stride]))
			t[m++] = v[i * stride];
	if (!m)
		return NAN;
	qsort(t, m, sizeof(*t), cmp_double);
	return m % 2 ? t[m / 2] : (t[m / 2 - 1] + t[m / 2]) / 2;
}

void cell_stats(struct cell *c)
{
	const struct sample *s = (const struct sample *)c->samples->data;
	const size_t stride = sizeof(struct sample) / sizeof(double);
	unsigned int i, n = c->samples->len;

	c->median = c->min = c->max = c->kernel_median = NAN;
	for (i = 0; i < NR_SEGS; i++)
		c->seg_median[i] = NAN;
	if (!n)
		return;
	c->median = median_of(&s->pause_ms, n, stride);
	c->kernel_median = median_of(&s->kernel_ms, n, stride);
	c->min = c->max = s[0].pause_ms;
	for (i = 1; i < n; i++) {
		c->min = fmin(c->min, s[i].pause_ms);
		c->max = fmax(c->max, s[i].pause_ms);
	}
	for (i = 0; i < NR_SEGS; i++)
		c->seg_median[i] = median_of(&s->seg[i], n, stride);
}

/* The floor cell the library's cell @c is compared with, if it ran. */
static const struct cell *floor_of(const struct bench *b, const struct cell *c)
{
	unsigned int i;

	for (i = 0; i < b->cells->len; i++) {
		const struct cell *f = b->cells->pdata[i];

		if (f->cfg->kind == KIND_FLOOR && f->size == c->size &&
		    !strcmp(f->cfg->pages, c->cfg->pages) &&
		    f->cfg->vcpus == c->cfg->vcpus && f->samples->len)
			return f;
	}
	return NULL;
}

static double vs_floor(const struct bench *b, const struct cell *c)
{
	const struct cell *f = floor_of(b, c);

	return c->cfg->kind == KIND_CPRX && f && c->samples->len ?
	       c->median / f->median : NAN;
}

/* The smallest and largest sizes at which @cfg ran. */
static void size_span(const struct bench *b, const struct config *cfg,
		      const struct cell **lo, const struct cell **hi)
{
	unsigned int i;

	*lo = *hi = NULL;
	for (i = 0; i < b->cells->len; i++) {
		const struct cell *c = b->cells->pdata[i];

		if (c->cfg != cfg || !c->samples->len)
			continue;
		if (!*lo || c->size < (*lo)->size)
			*lo = c;
		if (!*hi || c->size > (*hi)->size)
			*hi = c;
	}
}

/* Terminal ----------------------------------------------------------------- */

static void fmt_ms(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v);
}

/* "1.23 (1.01–2.40)" */
static void fmt_pause(char *buf, size_t len, const struct cell *c)
{
	char a[16], l[16], h[16];

	fmt_ms(a, sizeof(a), c->median);
	fmt_ms(l, sizeof(l), c->min);
	fmt_ms(h, sizeof(h), c->max);
	snprintf(buf, len, "%s (%s–%s)", a, l, h);
}

static void print_ratios(FILE *f, const struct bench *b, bool md)
{
	unsigned int i;

	for (i = 0; i < b->configs->len; i++) {
		const struct config *cf = b->configs->pdata[i];
		const struct cell *lo, *hi;
		double r;

		if (cf->kind != KIND_CPRX)
			continue;
		size_span(b, cf, &lo, &hi);
		if (!lo)
			continue;
		fprintf(f, "%s%s: median %.2f ms at %s", md ? "- " : "", cf->label,
			hi->median, hi->size_label);
		if (lo != hi)
			fprintf(f, "; pause(%s)/pause(%s) = %.2f", hi->size_label,
				lo->size_label, hi->median / lo->median);
		r = vs_floor(b, hi);
		if (!isnan(r))
			fprintf(f, "; %.2fx the floor at %s", r, hi->size_label);
		fputc('\n', f);
	}
}

/* One table, Markdown or aligned text; samples with NAN print "-". */
static void print_table(FILE *f, const struct bench *b, bool md)
{
	const char *sep = md ? " | " : "  ";
	char pause[64], x[16], seg[16];
	unsigned int i, j;

	fprintf(f, md ? "| RAM | configuration | n | pause ms: median (min–max) | "
		"× floor" : "%-5s  %-40s  %3s  %-24s  %7s", "RAM", "configuration", "n",
		"pause ms: median (min-max)", "x floor");
	for (j = 0; j < NR_SEGS; j++)
		fprintf(f, md ? " | %s" : "  %7s", seg_names[j]);
	fputs(md ? " |\n|---|---|---|---|---|" : "\n", f);
	if (md) {
		for (j = 0; j < NR_SEGS; j++)
			fputs("---|", f);
		fputc('\n', f);
	}
	for (i = 0; i < b->cells->len; i++) {
		const struct cell *c = b->cells->pdata[i];
		double r = vs_floor(b, c);

		if (!c->samples->len)
			continue;
		fmt_pause(pause, sizeof(pause), c);
		if (isnan(r))
			snprintf(x, sizeof(x), "-");
		else
			snprintf(x, sizeof(x), "%.2f", r);
		if (md)
			fprintf(f, "| %s | %s | %u | %s | %s", c->size_label, c->cfg->label,
				c->samples->len, pause, x);
		else
			fprintf(f, "%-5s  %-40s  %3u  %-24s  %7s", c->size_label,
				c->cfg->label, c->samples->len, pause, x);
		for (j = 0; j < NR_SEGS; j++) {
			fmt_ms(seg, sizeof(seg), c->seg_median[j]);
			fprintf(f, md ? "%s%s" : "%s%7s", sep, seg);
		}
		fputs(md ? " |\n" : "\n", f);
	}
}

static void print_notes(FILE *f, const struct bench *b, bool md)
{
	unsigned int i;

	for (i = 0; i < b->notes->len; i++)
		fprintf(f, "%s%s\n", md ? "- " : "note: ", (char *)b->notes->pdata[i]);
}

void report_terminal(const struct bench *b)
{
	g_autofree char *m = machine_line(&b->m);

	printf("Machine: %s\n", m);
	printf("Command: %s\n\n", b->command);
	print_table(stdout, b, false);
	printf("\nPhase columns: medians in ms (prepare: state written -> execve).\n");
	print_ratios(stdout, b, false);
	print_notes(stdout, b, false);
	printf("%.0f s; results in %s/\n", b->seconds, b->out);
	fflush(stdout);
}

/* Files -------------------------------------------------------------------- */

static FILE *out_open(const struct bench *b, const char *name)
{
	g_autofree char *path = g_build_filename(b->out, name, NULL);
	FILE *f = fopen(path, "w");

	if (!f)
		g_printerr("cprx-bench: %s: %s\n", path, g_strerror(errno));
	return f;
}

static int out_close(FILE *f)
{
	return fclose(f) ? -1 : 0;
}

/* "nan" is no CSV number: an empty field instead. */
static void csv_num(FILE *f, double v)
{
	if (isnan(v))
		fputs(",", f);
	else
		fprintf(f, ",%.4f", v);
}

static void csv_head(FILE *f, const struct bench *b)
{
	g_autofree char *m = machine_line(&b->m);

	fprintf(f, "# cprx-bench %s; machine: %s\n# command: %s\n", b->started, m,
		b->command);
}

static void csv_cfg(FILE *f, const struct cell *c)
{
	const struct config *cf = c->cfg;

	fprintf(f, "%s,%s,%s,%" G_GUINT64_FORMAT ",%s,%s,%s,%s,%u,%u", cf->label,
		kind_names[cf->kind], c->size_label, c->size, cf->pages, cf->backend,
		cf->teardown, cf->state, cf->vcpus, cf->devices);
}

static int write_samples_csv(const struct bench *b)
{
	FILE *f = out_open(b, "samples.csv");
	unsigned int i, j, k;

	if (!f)
		return -1;
	csv_head(f, b);
	fputs("config,kind,size,size_bytes,pages,backend,teardown,state,vcpus,devices,"
	      "rep,pause_ms", f);
	for (k = 0; k < NR_SEGS; k++)
		fprintf(f, ",%s_ms", seg_names[k]);
	fputs(",kernel_ms\n", f);
	for (i = 0; i < b->cells->len; i++) {
		const struct cell *c = b->cells->pdata[i];

		for (j = 0; j < c->samples->len; j++) {
			const struct sample *s = &g_array_index(c->samples, struct sample, j);

			csv_cfg(f, c);
			fprintf(f, ",%u", j + 1);
			csv_num(f, s->pause_ms);
			for (k = 0; k < NR_SEGS; k++)
				csv_num(f, s->seg[k]);
			csv_num(f, s->kernel_ms);
			fputc('\n', f);
		}
	}
	return out_close(f);
}

static int write_summary_csv(const struct bench *b)
{
	FILE *f = out_open(b, "summary.csv");
	unsigned int i, k;

	if (!f)
		return -1;
	csv_head(f, b);
	fputs("config,kind,size,size_bytes,pages,backend,teardown,state,vcpus,devices,"
	      "n,median_ms,min_ms,max_ms,x_floor", f);
	for (k = 0; k < NR_SEGS; k++)
		fprintf(f, ",%s_ms", seg_names[k]);
	fputs(",kernel_ms,skipped\n", f);
	for (i = 0; i < b->cells->len; i++) {
		const struct cell *c = b->cells->pdata[i];
		g_autofree char *why = g_strdup(c->skipped ? c->skipped : "");

		csv_cfg(f, c);
		fprintf(f, ",%u", c->samples->len);
		csv_num(f, c->median);
		csv_num(f, c->min);
		csv_num(f, c->max);
		csv_num(f, vs_floor(b, c));
		for (k = 0; k < NR_SEGS; k++)
			csv_num(f, c->seg_median[k]);
		csv_num(f, c->kernel_median);
		g_strdelimit(why, ",\"\n", ';');
		fprintf(f, ",%s\n", why);
	}
	return out_close(f);
}

static void json_num(JsonBuilder *j, const char *key, double v)
{
	json_builder_set_member_name(j, key);
	if (isnan(v))
		json_builder_add_null_value(j);
	else
		json_builder_add_double_value(j, round(v * 10000) / 10000);
}

static void json_str(JsonBuilder *j, const char *key, const char *v)
{
	json_builder_set_member_name(j, key);
	json_builder_add_string_value(j, v);
}

static void json_int(JsonBuilder *j, const char *key, gint64 v)
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

static void json_segs(JsonBuilder *j, const char *key, const double *seg)
{
	unsigned int k;

	json_builder_set_member_name(j, key);
	json_builder_begin_object(j);
	for (k = 0; k < NR_SEGS; k++)
		json_num(j, seg_names[k], seg[k]);
	json_builder_end_object(j);
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

static int write_json(const struct bench *b)
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

static int write_table_md(const struct bench *b)
{
	g_autofree char *m = machine_line(&b->m);
	FILE *f = out_open(b, "table.md");

	if (!f)
		return -1;
	fprintf(f, "Machine: %s  \nCommand: `%s`  \nRun: %s, %.0f s\n\n", m, b->command,
		b->started, b->seconds);
	print_table(f, b, true);
	fputs("\nPause: STOP to RESUMED (cprx-vmm's RAM check excluded). Phase columns: "
	      "medians in ms; prepare is state written -> execve.\n\n", f);
	print_ratios(f, b, true);
	print_notes(f, b, true);
	return out_close(f);
}

int report_files(const struct bench *b)
{
	int r = 0;

	r |= write_samples_csv(b);
	r |= write_summary_csv(b);
	r |= write_json(b);
	r |= write_table_md(b);
	return r ? 1 : 0;
}

/* Plots -------------------------------------------------------------------- */

/* pause.dat: one block per configuration (size, median, min, max). */
static unsigned int write_pause_dat(const struct bench *b, FILE *gp)
{
	g_autofree char *path = g_build_filename(b->out, "pause.dat", NULL);
	FILE *f = fopen(path, "w");
	unsigned int i, j, blocks = 0;

	if (!f)
		return 0;
	fputs("plot", gp);
	for (i = 0; i < b->configs->len; i++) {
		const struct config *cf = b->configs->pdata[i];
		bool any = false;

		for (j = 0; j < b->cells->len; j++) {
			const struct cell *c = b->cells->pdata[j];

			if (c->cfg != cf || !c->samples->len)
				continue;
			if (!any)
				fprintf(f, "# %s\n", cf->label);
			fprintf(f, "%" G_GUINT64_FORMAT " %.4f %.4f %.4f\n", c->size,
				c->median, c->min, c->max);
			any = true;
		}
		if (!any)
			continue;
		fputs("\n\n", f);
		fprintf(gp, "%s 'pause.dat' index %u using ($1/1048576):2:3:4 with "
			"yerrorlines lw 2 %s title '%s'", blocks ? ", \\\n    " : " ",
			blocks, cf->kind == KIND_CPRX ? "pt 7" : "dt 2 pt 6", cf->label);
		blocks++;
	}
	fputc('\n', gp);
	fclose(f);
	return blocks;
}

/* Deferred teardown and the floor; inline, naive and copy would dwarf them. */
static bool in_breakdown(const struct cell *c, bool all)
{
	if (!c->samples->len)
		return false;
	return all || (c->cfg->kind == KIND_FLOOR ||
		       (c->cfg->kind == KIND_CPRX && !strcmp(c->cfg->teardown, "deferred")));
}

static unsigned int write_breakdown_dat(const struct bench *b)
{
	g_autofree char *path = g_build_filename(b->out, "breakdown.dat", NULL);
	FILE *f = fopen(path, "w");
	unsigned int i, k, rows = 0;
	bool all;

	if (!f)
		return 0;
	for (i = 0; i < b->cells->len && !rows; i++)
		rows += in_breakdown(b->cells->pdata[i], false);
	all = !rows;
	rows = 0;
	fputs("label", f);
	for (k = 0; k < NR_SEGS; k++)
		fprintf(f, " %s", seg_names[k]);
	fputc('\n', f);
	for (i = 0; i < b->cells->len; i++) {
		const struct cell *c = b->cells->pdata[i];

		if (!in_breakdown(c, all))
			continue;
		fprintf(f, "\"%s %s\"", c->size_label, c->cfg->label);
		for (k = 0; k < NR_SEGS; k++)
			fprintf(f, " %.4f", isnan(c->seg_median[k]) ? 0 : c->seg_median[k]);
		fputc('\n', f);
		rows++;
	}
	fclose(f);
	return rows;
}

static void gp_render(FILE *gp, const char *name, const char *plot)
{
	fprintf(gp, "set terminal pngcairo size 1100,700 font 'sans,10'\n"
		"set output '%s.png'\n%sset terminal svg size 1100,700 dynamic "
		"font 'sans,10'\nset output '%s.svg'\nreplot\nunset output\n",
		name, plot, name);
}

static void gp_pause(FILE *gp, const struct bench *b, const char *m)
{
	g_autofree char *plot = NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	unsigned int i;

	fprintf(mem, "set title \"cprx-vmm pause vs guest RAM (median, min-max)\\n"
		"{/*0.8 %s}\"\nset logscale xy\nset xlabel 'guest RAM'\n"
		"set ylabel 'pause (ms)'\nset grid xtics ytics mytics\n"
		"set key outside bottom center horizontal maxrows 4 font ',9'\nset xtics (", m);
	for (i = 0; i < b->sizes->len; i++) {
		uint64_t s = g_array_index(b->sizes, uint64_t, i);
		char l[16];

		size_label(s, l, sizeof(l));
		fprintf(mem, "%s'%s' %.6g", i ? ", " : "", l, s / 1048576.0);
	}
	fputs(")\n", mem);
	write_pause_dat(b, mem);
	fclose(mem);
	plot = buf;
	gp_render(gp, "pause", plot);
}

static void gp_breakdown(FILE *gp, const char *m)
{
	g_autoptr(GString) p = g_string_new(NULL);
	unsigned int k;

	g_string_append_printf(p, "reset\nset title \"where the pause goes (medians; "
		"deferred teardown and floor)\\n{/*0.8 %s}\"\n"
		"set style data histogram\nset style histogram rowstacked\n"
		"set style fill solid 0.85 border -1\nset boxwidth 0.7\n"
		"set ylabel 'ms'\nset grid ytics\nset key outside right top\n"
		"set xtics rotate by -35 font ',8' nomirror\nset bmargin 12\nplot ", m);
	for (k = 0; k < NR_SEGS; k++)
		g_string_append_printf(p, "%s'breakdown.dat' using %u%s title '%s'",
			k ? ", " : "", k + 2, k ? "" : ":xtic(1)", seg_names[k]);
	g_string_append_c(p, '\n');
	gp_render(gp, "breakdown", p->str);
}

/* Writes plots.gp and runs gnuplot in --out; says so when it is missing. */
int report_plots(const struct bench *b)
{
	g_autofree char *m = machine_line(&b->m);
	g_autofree char *gnuplot = g_find_program_in_path("gnuplot");
	g_autofree char *path = g_build_filename(b->out, "plots.gp", NULL);
	char *argv[] = { gnuplot, "plots.gp", NULL };
	g_autoptr(GError) err = NULL;
	int status = 0;
	FILE *gp = fopen(path, "w");

	if (!gp)
		return 1;
	g_strdelimit(m, "'\"", ' ');
	gp_pause(gp, b, m);
	if (write_breakdown_dat(b))
		gp_breakdown(gp, m);
	fclose(gp);
	if (!gnuplot) {
		g_printerr("cprx-bench: gnuplot not found (apt-get install gnuplot-nox): "
			   "no plots; %s is ready for it\n", path);
		return 0;
	}
	if (!g_spawn_sync(b->out, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
			  &status, &err) || !g_spawn_check_wait_status(status, &err)) {
		g_printerr("cprx-bench: gnuplot %s: %s\n", path, err ? err->message : "failed");
		return 1;
	}
	return 0;
}
