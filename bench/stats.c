/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: statistics of the cells, for every output: medians, min and
 * max, the ratio to the floor baseline.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of @n values at @stride doubles apart; NANs are left out. */
double median_of(const double *v, unsigned int n, size_t stride)
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

double vs_floor(const struct bench *b, const struct cell *c)
{
	const struct cell *f = floor_of(b, c);

	return c->cfg->kind == KIND_CPRX && f && c->samples->len ?
	       c->median / f->median : NAN;
}

/* The smallest and largest sizes at which @cfg ran. */
void size_span(const struct bench *b, const struct config *cfg,
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
