/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench outputs in --out: samples.csv and summary.csv (report_csv.c),
 * results.json (report_json.c), table.md (report_text.c); the plots are
 * report_plots.c's.
 */
#include <errno.h>
#include <stdio.h>

#include "bench.h"

FILE *out_open(const struct bench *b, const char *name)
{
	g_autofree char *path = g_build_filename(b->out, name, NULL);
	FILE *f = fopen(path, "w");

	if (!f)
		g_printerr("cprx-bench: %s: %s\n", path, g_strerror(errno));
	return f;
}

int out_close(FILE *f)
{
	return fclose(f) ? -1 : 0;
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
