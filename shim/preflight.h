/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What preflight.c and preflight_probe.c (the probe run) share. */
#ifndef CPRX_PREFLIGHT_H
#define CPRX_PREFLIGHT_H

#include "internal.h"

struct preflight {
	struct cprx_session *s;
	struct cprx_preflight_report *rep;
	enum cprx_verdict binary;	/* the binary check's, for the probe */
	unsigned int luo_refused;	/* luo: files LUO cannot preserve */
	int first_err;
	char first_hint[CPRX_MSG_MAX];
};

/*
 * Counts a check with its verdict; the first failure's @err, message and
 * the hint given before it become the session's error.
 */
void cprx_pf_report(struct preflight *pf, const char *name, enum cprx_verdict v,
		    int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The hint of the next failure (the first one's is kept). */
void cprx_pf_hint(struct preflight *pf, const char *h);
/* preflight_probe.c: a probe run of the new binary, within a deadline. */
void cprx_pf_probe(struct preflight *pf, const char *path,
		   char *const probe_argv[]);

#endif
