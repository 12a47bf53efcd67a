// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The handover string in CPRX_INCOMING (handover.h has its form).  It comes
 * from the environment, which anyone who starts the process can set, so the
 * parser believes nothing it has not checked whole: a half-parsed number or
 * a second fd= would make the new image act on an fd the old one never
 * named.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "handover.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int cprx_handover_escape(char *out, size_t len, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (!len)
		return -ENAMETOOLONG;
	for (; *in; in++) {
		unsigned char c = *in;

		if (c == ',' || c == '%' || c < ' ' || c == 0x7f) {
			if (o + 3 >= len)
				break;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			if (o + 1 >= len)
				break;
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return *in ? -ENAMETOOLONG : 0;
}

/* The @n bytes at @in, which need not end in a NUL. */
static int unescape_n(char *out, size_t len, const char *in, size_t n)
{
	size_t i, o = 0;
	int hi, lo, ret = 0;

	if (!len)
		return -ENAMETOOLONG;
	for (i = 0; i < n; i++) {
		char c = in[i];

		if (c == '%') {
			/* both digits inside the field, never past its end */
			if (n - i < 3 || (hi = hexval(in[i + 1])) < 0 ||
			    (lo = hexval(in[i + 2])) < 0 || !(hi | lo)) {
				ret = -EINVAL;
				break;
			}
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (o + 1 >= len) {
			ret = -ENAMETOOLONG;
			break;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return ret;
}

int cprx_handover_unescape(char *out, size_t len, const char *in)
{
	return unescape_n(out, len, in, strlen(in));
}

__attribute__((format(printf, 3, 4)))
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* A whole decimal number of at most @max: digits only, no sign, no space. */
static bool number(const char *p, size_t n, unsigned long long max,
		   unsigned long long *v)
{
	unsigned long long x = 0;
	size_t i;

	if (!n || n > 20)
		return false;
	for (i = 0; i < n; i++) {
		unsigned int d = (unsigned char)p[i] - '0';

		if (d > 9 || d > max || x > (max - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	return true;
}

/* "p1:p2:..."; 0 is "no keeper".  Past CPRX_MAX_KEEPERS, checked only. */
static bool add_keepers(struct cprx_handover *h, const char *p, size_t n)
{
	unsigned long long pid;
	size_t len;

	while (n) {
		len = strcspn(p, ":");
		if (len > n)
			len = n;
		if (!number(p, len, INT_MAX, &pid))
			return false;
		if (pid && h->nr_keepers < CPRX_MAX_KEEPERS)
			h->keepers[h->nr_keepers++] = (pid_t)pid;
		if (len == n)
			break;
		p += len + 1;
		n -= len + 1;
		if (!n)
			return false;	/* a trailing ':' */
	}
	return true;
}

enum key { K_V, K_FD, K_KMOD, K_RB, K_SAVE, K_EXEC, K_WHY, K_KEEPER, K_REAP,
	   K_MIRROR, K_GUARDIAN, K_RESTART, K_MAX };

static const char *const keys[K_MAX] = {
	[K_V] = "v", [K_FD] = "fd", [K_KMOD] = "kmod", [K_RB] = "rb",
	[K_SAVE] = "save", [K_EXEC] = "exec", [K_WHY] = "why",
	[K_KEEPER] = "keeper", [K_REAP] = "reap", [K_MIRROR] = "mirror",
	[K_GUARDIAN] = "guardian", [K_RESTART] = "restart",
};

static int field(struct cprx_handover *h, enum key k, const char *val,
		 size_t n, char *err, size_t errlen)
{
	unsigned long long v = 0;
	int ret;

	switch (k) {
	case K_V:
		if (!number(val, n, INT_MAX, &v) || v != 1)
			return bad(err, errlen, "version '%.*s' is not 1, the "
				   "one this library reads", (int)n, val);
		h->version = (int)v;
		return 0;
	case K_FD:
	case K_KMOD:
	case K_GUARDIAN:
		if (!number(val, n, INT_MAX, &v))
			return bad(err, errlen, "%s='%.*s' is not an fd number",
				   keys[k], (int)n, val);
		*(k == K_FD ? &h->fd : k == K_KMOD ? &h->kmod :
		  &h->guardian) = (int)v;
		return 0;
	case K_RESTART:
		if (!number(val, n, INT_MAX, &v) || !v)
			return bad(err, errlen, "restart='%.*s' is not a pid",
				   (int)n, val);
		h->restart = (pid_t)v;
		return 0;
	case K_RB:
		if (!number(val, n, 1, &v))
			return bad(err, errlen, "rb='%.*s' is not 0 or 1",
				   (int)n, val);
		h->rollback = (int)v;
		return 0;
	case K_SAVE:
	case K_EXEC:
		if (!number(val, n, ~0ull, &v))
			return bad(err, errlen, "%s='%.*s' is not a time in ns",
				   keys[k], (int)n, val);
		*(k == K_SAVE ? &h->save_ns : &h->exec_ns) = v;
		return 0;
	case K_KEEPER:
	case K_REAP:
		if (!add_keepers(h, val, n))
			return bad(err, errlen, "%s='%.*s' is not a list of "
				   "pids", keys[k], (int)n, val);
		return 0;
	case K_WHY:
		/* a reason cut short is still a reason */
		ret = unescape_n(h->why, sizeof(h->why), val, n);
		if (ret == -EINVAL)
			return bad(err, errlen, "why= has a bad %%XX escape");
		return 0;
	case K_MIRROR:
		ret = unescape_n(h->mirror, sizeof(h->mirror), val, n);
		if (ret == -EINVAL)
			return bad(err, errlen, "mirror= has a bad %%XX escape");
		if (ret || h->mirror[0] != '/')
			return bad(err, errlen, "mirror= is not an absolute "
				   "path shorter than PATH_MAX");
		return 0;
	case K_MAX:
		break;
	}
	return 0;
}

int cprx_handover_parse(const char *value, struct cprx_handover *h,
			char *err, size_t errlen)
{
	bool seen[K_MAX] = { false };
	const char *tok = value, *eq;
	size_t len, klen;
	unsigned int k;
	int ret;

	memset(h, 0, sizeof(*h));
	h->fd = -1;
	h->kmod = -1;
	h->guardian = -1;
	if (errlen)
		err[0] = '\0';
	for (;;) {
		len = strcspn(tok, ",");
		eq = memchr(tok, '=', len);
		if (!len)
			return bad(err, errlen, "empty field at offset %zu",
				   (size_t)(tok - value));
		if (!eq || eq == tok)
			return bad(err, errlen, "field '%.*s' is not key=value",
				   (int)(len > 64 ? 64 : len), tok);
		klen = eq - tok;
		for (k = 0; k < K_MAX; k++)
			if (strlen(keys[k]) == klen && !memcmp(tok, keys[k], klen))
				break;
		if (k < K_MAX) {	/* unknown keys: from a newer library */
			if (seen[k])
				return bad(err, errlen, "key %s= given twice",
					   keys[k]);
			seen[k] = true;
			ret = field(h, k, eq + 1, len - klen - 1, err, errlen);
			if (ret)
				return ret;
		}
		if (!tok[len])
			break;
		tok += len + 1;
	}
	if (!seen[K_V])
		return bad(err, errlen, "no version (v=)");
	if (seen[K_FD] == seen[K_KMOD])
		return bad(err, errlen, seen[K_FD] ? "both fd= and kmod= given" :
			   "neither fd= nor kmod= given");
	return 0;
}

/* /proc/PID/environ whole, NUL-terminated; NULL and errno on failure. */
static char *read_environ(pid_t pid, size_t *lenp)
{
	size_t cap = 16384, n = 0;
	char path[40], *buf = NULL, *p;
	ssize_t got;
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	for (;;) {
		if (!buf || n + 1 >= cap) {
			p = realloc(buf, buf ? cap *= 2 : cap);
			if (!p) {
				err = ENOMEM;
				break;
			}
			buf = p;
		}
		got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			err = got < 0 ? errno : 0;
			break;
		}
		n += got;
	}
	close(fd);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	buf[n] = '\0';
	*lenp = n;
	return buf;
}

int cprx_handover_of_pid(pid_t pid, struct cprx_handover *h, char *err,
			 size_t errlen)
{
	static const char key[] = CPRX_ENV "=";
	size_t len = 0, off;
	char *env = read_environ(pid, &len);
	int ret = -ENOENT;

	memset(h, 0, sizeof(*h));
	if (errlen)
		err[0] = '\0';
	if (!env)
		return errno == ENOENT ? -ESRCH : -errno;
	for (off = 0; off < len; off += strlen(env + off) + 1) {
		if (!strncmp(env + off, key, sizeof(key) - 1)) {
			ret = cprx_handover_parse(env + off + sizeof(key) - 1, h,
						  err, errlen);
			break;
		}
	}
	free(env);
	return ret;
}
