/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: a one-line progress bar on stderr, only on a terminal, so
 * that logs and pipes get plain lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "bench.h"

#define BAR_WIDTH 30

static struct {
	bool on;
	unsigned int done, total;
	gint64 t0;
	char what[80];
} bar;

static void draw(void)
{
	unsigned int fill = bar.total ? bar.done * BAR_WIDTH / bar.total : 0;
	double el = (g_get_monotonic_time() - bar.t0) / 1e6;
	char line[BAR_WIDTH + 1];
	unsigned int i;

	for (i = 0; i < BAR_WIDTH; i++)
		line[i] = i < fill ? '#' : '.';
	line[BAR_WIDTH] = '\0';
	fprintf(stderr, "\r\033[K[%s] %u/%u %5.0fs %s", line, bar.done, bar.total,
		el, bar.what);
	fflush(stderr);
}

void progress_start(bool on, unsigned int total)
{
	bar.on = on && isatty(STDERR_FILENO) && g_strcmp0(g_getenv("TERM"), "dumb");
	bar.done = 0;
	bar.total = total;
	bar.t0 = g_get_monotonic_time();
	bar.what[0] = '\0';
	if (bar.on)
		draw();
}

/* One sample done; @what: the cell now running. */
void progress_step(const char *what)
{
	if (what)
		g_strlcpy(bar.what, what, sizeof(bar.what));
	else
		bar.done++;
	if (bar.on)
		draw();
}

/* A message that must not be overwritten by the bar. */
void progress_note(const char *fmt, ...)
{
	va_list ap;

	if (bar.on)
		fputs("\r\033[K", stderr);
	fputs("cprx-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (bar.on)
		draw();
}

void progress_end(void)
{
	if (bar.on)
		fputs("\r\033[K", stderr);
	bar.on = false;
}
