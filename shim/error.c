// SPDX-License-Identifier: LGPL-2.1-or-later
/* Error messages that name the problem and the fix. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "internal.h"

/* Errors from calls that have no session (cprx_session_open, a NULL one). */
static __thread char tls_msg[CPRX_MSG_MAX];
static __thread char tls_hint[CPRX_MSG_MAX];

int cprx_fail(struct cprx_session *s, int err, const char *hint,
	      const char *fmt, ...)
{
	char *msg = s ? s->msg : tls_msg;
	char *h = s ? s->hint : tls_hint;
	char m[CPRX_MSG_MAX], t[CPRX_MSG_MAX];
	va_list ap;

	/* an argument may be the old message or hint (cprx_errmsg(s)) */
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	snprintf(t, sizeof(t), "%s", hint ? hint : "");
	memcpy(msg, m, sizeof(m));
	memcpy(h, t, sizeof(t));
	return -err;
}

int cprx_null_arg(struct cprx_session *s, const char *call, const char *what)
{
	/* in both places: the caller may not know which one to read */
	if (s)
		cprx_fail(s, EINVAL, "pass a valid pointer", "%s: %s is NULL",
			  call, what);
	return cprx_fail(NULL, EINVAL, "pass a valid pointer", "%s: %s is NULL",
			 call, what);
}

CPRX_EXPORT const char *cprx_errmsg(const struct cprx_session *s)
{
	return s ? s->msg : tls_msg;
}

CPRX_EXPORT const char *cprx_errhint(const struct cprx_session *s)
{
	return s ? s->hint : tls_hint;
}

/* The active LSMs, comma separated, or why they could not be read. */
void cprx_describe_lsm(char *buf, size_t len)
{
	FILE *f = fopen("/sys/kernel/security/lsm", "re");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	if (!n) {
		snprintf(buf, len, "unknown (securityfs not readable)");
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

/* Seccomp mode from /proc/self/status: 0 none, 1 strict, 2 filter. */
int cprx_seccomp_mode(unsigned int *nr_filters)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	int mode = -1;

	*nr_filters = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Seccomp:", 8))
			mode = atoi(line + 8);
		else if (!strncmp(line, "Seccomp_filters:", 16))
			*nr_filters = strtoul(line + 16, NULL, 10);
	}
	fclose(f);
	return mode;
}
