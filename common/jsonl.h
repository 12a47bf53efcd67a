/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON lines: one object per line, written as it goes to a FILE (an
 * open_memstream one where a string is wanted).  Keys come out in the
 * order they are written; every value function takes the member's key,
 * NULL for an element of an array.
 */
#ifndef CPRX_JSONL_H
#define CPRX_JSONL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct jsonl {
	FILE *f;
	bool first;		/* nothing yet in the current object or array */
};

/* '{' on @f; jsonl_end() closes the object, ends the line and flushes. */
void jsonl_begin(struct jsonl *w, FILE *f);
void jsonl_end(struct jsonl *w);

/* A member's key (or an array's comma), for a value printed by hand. */
void jsonl_key(struct jsonl *w, const char *k);

void jsonl_str(struct jsonl *w, const char *k, const char *v); /* NULL: null */
void jsonl_int(struct jsonl *w, const char *k, long long v);
void jsonl_u64(struct jsonl *w, const char *k, uint64_t v);
void jsonl_bool(struct jsonl *w, const char *k, bool v);
void jsonl_null(struct jsonl *w, const char *k);
/* Milliseconds, "%.3f" (microseconds); NaN (not measured) is null. */
void jsonl_ms(struct jsonl *w, const char *k, double ms);
/* Any other number, as short as reads back exact; NaN, infinities: null. */
void jsonl_double(struct jsonl *w, const char *k, double v);

void jsonl_object_begin(struct jsonl *w, const char *k);
void jsonl_object_end(struct jsonl *w);
void jsonl_array_begin(struct jsonl *w, const char *k);
void jsonl_array_end(struct jsonl *w);

/*
 * @s as a JSON string, quotes included: '"' and '\' escaped, newline as
 * \n, other control characters and DEL as \u00XX; other bytes (UTF-8) as
 * they are.
 */
void jsonl_string(FILE *f, const char *s);

#endif /* CPRX_JSONL_H */
