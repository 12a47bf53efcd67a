/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers every part of cprx-vmm uses: clocks, sleeping, dying and
 * warning, libcprx's messages, sizes and /proc values.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm.h"

uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

void sleep_ms(unsigned int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
		;
}

void __attribute__((noreturn, format(printf, 2, 3)))
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs(VMM_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

void __attribute__((format(printf, 1, 2)))
warn_msg(const char *fmt, ...)
{
	va_list ap;

	fputs(VMM_NAME ": warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The session's message, or strerror when there is no session or message. */
const char *sess_msg(const struct cprx_session *s, int err)
{
	const char *m = s ? cprx_errmsg(s) : NULL;

	return m && *m ? m : strerror(err < 0 ? -err : err);
}

const char *sess_hint(const struct cprx_session *s)
{
	const char *h = s ? cprx_errhint(s) : NULL;

	return h ? h : "";
}

const char *page_kind_name(uint32_t kind)
{
	switch (kind) {
	case CPRX_PAGE_THP:
		return "thp";
	case CPRX_PAGE_HUGETLB:
		return "hugetlb";
	default:
		return "4k";
	}
}

void fmt_bytes(char *buf, size_t len, uint64_t n)
{
	if (n >= (1ull << 30))
		snprintf(buf, len, "%.1f GiB", (double)n / (1ull << 30));
	else if (n >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)n / (1ull << 20));
	else
		snprintf(buf, len, "%.1f KiB", (double)n / (1ull << 10));
}

/* Reads "Key:   value kB" from a /proc file; -1 if absent. */
long long proc_kb(const char *path, const char *key)
{
	size_t klen = strlen(key);
	long long v = -1;
	char line[256];
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

uint64_t hugepage_bytes(void)
{
	long long kb = proc_kb("/proc/meminfo", "Hugepagesize");

	return kb > 0 ? (uint64_t)kb << 10 : 2ull << 20;
}
