/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: the results table, on the terminal and as table.md, with the
 * ratios and the notes.
 */
#include <math.h>
#include <stdio.h>

#include "bench.h"

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
	if (b->timeline)
		fprintf(f, md ? " | %s" : "  %7s", "kernel");
	fputs(md ? " |\n|---|---|---|---|---|" : "\n", f);
	if (md) {
		for (j = 0; j < NR_SEGS + (b->timeline ? 1u : 0u); j++)
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
		if (b->timeline) {
			fmt_ms(seg, sizeof(seg), c->kernel_median);
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
	if (b->timeline)
		printf("kernel: the guard's kernel timestamps, exec check -> exec "
		       "commit (beside exec: libcprx's execve -> new image running).\n");
	print_ratios(stdout, b, false);
	print_notes(stdout, b, false);
	printf("%.0f s; results in %s/\n", b->seconds, b->out);
	fflush(stdout);
}

int write_table_md(const struct bench *b)
{
	g_autofree char *m = machine_line(&b->m);
	FILE *f = out_open(b, "table.md");

	if (!f)
		return -1;
	fprintf(f, "Machine: %s  \nCommand: `%s`  \nRun: %s, %.0f s\n\n", m, b->command,
		b->started, b->seconds);
	print_table(f, b, true);
	fputs("\nPause: STOP to RESUMED (cprx-vmm's RAM check excluded). Phase columns: "
	      "medians in ms; prepare is state written -> execve.\n", f);
	if (b->timeline)
		fputs("kernel: the bpf/ guard's kernel timestamps, exec check -> exec "
		      "commit, beside exec (libcprx: execve -> new image running).\n", f);
	fputc('\n', f);
	print_ratios(f, b, true);
	print_notes(f, b, true);
	return out_close(f);
}
