// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The JSON lines writer of the tools (cprx-vmm, cprx-guard): plain C on a
 * FILE, no allocation, so that it also serves where glib is not linked.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "jsonl.h"

/*
 * The length of the well-formed UTF-8 sequence at @p (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0.
 */
static int utf8_len(const unsigned char *p)
{
	unsigned int c = p[0], lo = 0x80, hi = 0xbf;
	int n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * Paths and command names from the kernel are bytes, not text: a byte
 * that is not part of well-formed UTF-8 becomes U+FFFD, so every line
 * stays valid JSON.
 */
void jsonl_string(FILE *f, const char *s)
{
	const unsigned char *p;
	int n;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p);
		} else if (*p < 0x80) {
			fputc(*p, f);
		} else if ((n = utf8_len(p))) {
			fwrite(p, 1, n, f);
			p += n - 1;
		} else {
			fputs("\\ufffd", f);
		}
	}
	fputc('"', f);
}

void jsonl_key(struct jsonl *w, const char *k)
{
	if (!w->first)
		fputc(',', w->f);
	w->first = false;
	if (k) {
		jsonl_string(w->f, k);
		fputc(':', w->f);
	}
}

void jsonl_begin(struct jsonl *w, FILE *f)
{
	w->f = f;
	w->first = true;
	fputc('{', f);
}

void jsonl_end(struct jsonl *w)
{
	fputs("}\n", w->f);
	fflush(w->f);
}

void jsonl_str(struct jsonl *w, const char *k, const char *v)
{
	jsonl_key(w, k);
	if (v)
		jsonl_string(w->f, v);
	else
		fputs("null", w->f);
}

void jsonl_int(struct jsonl *w, const char *k, long long v)
{
	jsonl_key(w, k);
	fprintf(w->f, "%lld", v);
}

void jsonl_u64(struct jsonl *w, const char *k, uint64_t v)
{
	jsonl_key(w, k);
	fprintf(w->f, "%" PRIu64, v);
}

void jsonl_bool(struct jsonl *w, const char *k, bool v)
{
	jsonl_key(w, k);
	fputs(v ? "true" : "false", w->f);
}

void jsonl_null(struct jsonl *w, const char *k)
{
	jsonl_key(w, k);
	fputs("null", w->f);
}

void jsonl_ms(struct jsonl *w, const char *k, double ms)
{
	jsonl_key(w, k);
	if (isnan(ms))
		fputs("null", w->f);
	else
		fprintf(w->f, "%.3f", ms);
}

void jsonl_double(struct jsonl *w, const char *k, double v)
{
	char buf[32];

	jsonl_key(w, k);
	if (!isfinite(v)) {
		fputs("null", w->f);
		return;
	}
	/* the shortest of the two that reads back as @v */
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, w->f);
}

static void open_nested(struct jsonl *w, const char *k, char c)
{
	jsonl_key(w, k);
	fputc(c, w->f);
	w->first = true;
}

/* After a nested value, its container goes on with a comma. */
static void close_nested(struct jsonl *w, char c)
{
	fputc(c, w->f);
	w->first = false;
}

void jsonl_object_begin(struct jsonl *w, const char *k)
{
	open_nested(w, k, '{');
}

void jsonl_object_end(struct jsonl *w)
{
	close_nested(w, '}');
}

void jsonl_array_begin(struct jsonl *w, const char *k)
{
	open_nested(w, k, '[');
}

void jsonl_array_end(struct jsonl *w)
{
	close_nested(w, ']');
}
