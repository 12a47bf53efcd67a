/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cprx-bench: JSON members for every JSON output (report_json.c). */
#ifndef CPRX_BENCH_REPORT_JSON_H
#define CPRX_BENCH_REPORT_JSON_H

#include <json-glib/json-glib.h>

/* null for a NAN (or infinity); rounded to 1e-4 */
void json_num(JsonBuilder *j, const char *key, double v);
void json_str(JsonBuilder *j, const char *key, const char *v);
void json_int(JsonBuilder *j, const char *key, gint64 v);
/* an object of @n numbers named @names */
void json_named(JsonBuilder *j, const char *key, const char *const *names,
		const double *v, unsigned int n);

#endif
