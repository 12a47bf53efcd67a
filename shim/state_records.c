// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state decoder's payload parsers, one per record type, over a reader
 * of untrusted payload bytes (the payload layouts are in state_wire.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state_decode.h"
#include "state_wire.h"

__attribute__((format(printf, 2, 3)))
static void rd_bad(struct rd *r, const char *fmt, ...)
{
	va_list ap;

	if (r->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

static const uint8_t *rd_take(struct rd *r, uint32_t n, const char *what)
{
	const uint8_t *p;

	if (r->why[0])
		return NULL;
	if (r->len - r->pos < n) {
		rd_bad(r, "payload too short for %s", what);
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

static uint32_t rd_u32(struct rd *r, const char *what)
{
	const uint8_t *p = rd_take(r, 4, what);

	return p ? get_le32(p) : 0;
}

static uint64_t rd_u64(struct rd *r, const char *what)
{
	const uint8_t *p = rd_take(r, 8, what);

	return p ? get_le64(p) : 0;
}

/* A string of at most @max bytes, no NUL inside; returns NULL on error. */
static const char *rd_str(struct rd *r, const char *what, uint32_t max,
			  uint32_t *np)
{
	uint32_t n = rd_u32(r, what), i;
	const uint8_t *s, *pad;

	if (r->why[0])
		return NULL;
	if (n > max) {
		rd_bad(r, "%s length %u exceeds %u", what, n, max);
		return NULL;
	}
	s = rd_take(r, n, what);
	pad = rd_take(r, (4 - n % 4) % 4, what);
	if (!s || !pad)
		return NULL;
	if (memchr(s, 0, n)) {
		rd_bad(r, "%s contains a NUL byte", what);
		return NULL;
	}
	for (i = 0; i < (4 - n % 4) % 4; i++)
		if (pad[i]) {
			rd_bad(r, "nonzero padding after %s", what);
			return NULL;
		}
	*np = n;
	return (const char *)s;
}

/* Reports the reader's failure, or stray bytes when @exact. */
static int rd_end(struct dec *d, const struct rd *r, bool exact)
{
	if (r->why[0])
		return cprx_rec_err(d, -EBADMSG, ": %s", r->why);
	if (exact && r->pos != r->len)
		return cprx_rec_err(d, -EBADMSG,
				    ": %u stray bytes after the last field",
				    r->len - r->pos);
	return 0;
}

static char *dup_str(const char *s, uint32_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/*
 * @strict: this build's own state.  Otherwise the record may come from any
 * version: ORIGIN never changes layout, but a later one may append fields or
 * backends.
 */
int cprx_parse_origin(struct dec *d, struct rd *r, struct cprx_state *st,
		      bool strict)
{
	const char *sess, *path, *arg;
	uint32_t n, argc, i;
	char what[24];

	st->exe_fd = (int32_t)rd_u32(r, "exe_fd");
	st->pid = (int32_t)rd_u32(r, "pid");
	st->keeper_pid = (int32_t)rd_u32(r, "keeper_pid");
	st->backend = rd_u32(r, "backend");
	st->generation = rd_u32(r, "generation");
	sess = rd_str(r, "session", CPRX_NAME_MAX, &n);
	if (!sess)
		return rd_end(d, r, strict);
	memcpy(st->session, sess, n);
	st->session[n] = '\0';
	path = rd_str(r, "exe_path", PATH_LEN_MAX, &n);
	argc = rd_u32(r, "argc");
	if (r->why[0])
		return rd_end(d, r, strict);
	if (strict && st->backend > CPRX_BACKEND_LUO)
		return cprx_rec_err(d, -EBADMSG, ": backend %u out of range",
				    st->backend);
	/* every string takes 4 bytes at least: bound argc before calloc */
	if (argc > CPRX_STATE_MAX_ARGS || argc > (r->len - r->pos) / 4)
		return cprx_rec_err(d, -EBADMSG,
				    ": argc %u exceeds %u or the %u bytes left",
				    argc, CPRX_STATE_MAX_ARGS, r->len - r->pos);
	/* an empty path means none: NULL, as the encoder took it */
	if (n && !(st->exe_path = dup_str(path, n)))
		return cprx_rec_err(d, -ENOMEM, ": out of memory");
	st->argv = calloc(argc + 1, sizeof(*st->argv));
	if (!st->argv)
		return cprx_rec_err(d, -ENOMEM, ": out of memory");
	st->argc = argc;
	for (i = 0; i < argc; i++) {
		snprintf(what, sizeof(what), "argv[%u]", i);
		arg = rd_str(r, what, ARG_LEN_MAX, &n);
		if (!arg)
			return rd_end(d, r, strict);
		st->argv[i] = dup_str(arg, n);
		if (!st->argv[i])
			return cprx_rec_err(d, -ENOMEM, ": out of memory");
	}
	return rd_end(d, r, strict);
}

int cprx_parse_times(struct dec *d, struct rd *r, struct cprx_state *st)
{
	uint32_t count = rd_u32(r, "count"), zero = rd_u32(r, "reserved");
	uint32_t left = r->len - r->pos, i;
	uint64_t v;

	if (r->why[0])
		return rd_end(d, r, true);
	if (zero)
		return cprx_rec_err(d, -EBADMSG,
				    ": reserved field is 0x%x, not zero", zero);
	if (left % 8 || left / 8 != count)
		return cprx_rec_err(d, -EBADMSG,
				    ": count %u does not match %u bytes of timestamps",
				    count, left);
	/* from a build with more phases the extra are dropped; fewer: 0 */
	for (i = 0; i < count; i++) {
		v = rd_u64(r, "ts");
		if (i < CPRX_PH_MAX)
			st->ts[i] = v;
	}
	return rd_end(d, r, true);
}

/* Token first in FD and BLOB: peek_token and messages rely on it. */
static int parse_token(struct dec *d, struct rd *r, char *tok)
{
	uint32_t n;
	const char *s = rd_str(r, "token", CPRX_NAME_MAX, &n);

	if (!s)
		return rd_end(d, r, true);
	if (!n)
		return cprx_rec_err(d, -EBADMSG, ": empty token");
	memcpy(tok, s, n);
	tok[n] = '\0';
	cprx_rec_tok(d, s, n);
	return 0;
}

int cprx_parse_fd(struct dec *d, struct rd *r, struct cprx_rec_fd *f)
{
	uint32_t zero;
	int ret;

	ret = parse_token(d, r, f->token);
	if (ret)
		return ret;
	f->kind = rd_u32(r, "kind");
	f->page_kind = rd_u32(r, "page_kind");
	f->fd = (int32_t)rd_u32(r, "fd");
	zero = rd_u32(r, "reserved");
	f->size = rd_u64(r, "size");
	f->handle = rd_u64(r, "handle");
	/* absent in records from before it was added */
	f->dev = r->len - r->pos >= 8 ? rd_u64(r, "dev") : 0;
	if (r->why[0])
		return rd_end(d, r, true);
	if (f->kind > CPRX_FD_INTERNAL)
		return cprx_rec_err(d, -EBADMSG, ": kind %u out of range",
				    f->kind);
	if (f->page_kind > CPRX_PAGE_HUGETLB)
		return cprx_rec_err(d, -EBADMSG, ": page_kind %u out of range",
				    f->page_kind);
	if (zero)
		return cprx_rec_err(d, -EBADMSG,
				    ": reserved field is 0x%x, not zero", zero);
	return rd_end(d, r, true);
}

int cprx_parse_blob(struct dec *d, struct rd *r, struct cprx_rec_blob *b)
{
	const uint8_t *data;
	uint32_t len;
	int ret;

	ret = parse_token(d, r, b->token);
	if (ret)
		return ret;
	len = rd_u32(r, "length");
	data = rd_take(r, len, "data");		/* bounds len before malloc */
	if (!data || r->pos != r->len)
		return rd_end(d, r, true);
	/* never NULL, so callers need not special-case an empty blob */
	b->data = malloc(len ? len : 1);
	if (!b->data)
		return cprx_rec_err(d, -ENOMEM, ": out of memory");
	memcpy(b->data, data, len);
	b->len = len;
	return 0;
}
