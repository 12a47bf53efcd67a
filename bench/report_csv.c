/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cprx-bench: samples.csv (every sample) and summary.csv (every cell). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "bench.h"

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

int write_samples_csv(const struct bench *b)
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

int write_summary_csv(const struct bench *b)
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
