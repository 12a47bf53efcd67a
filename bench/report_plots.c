/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: the plots, pause vs RAM and where the pause goes, as a
 * gnuplot script (plots.gp) and its data files, rendered when gnuplot is
 * there.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

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
