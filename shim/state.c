// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The precreate state: encoder, decoder and CRC32C.  The layout is in
 * state.h; payloads are:
 *
 *   ORIGIN  i32 exe_fd, i32 pid, i32 keeper_pid, u32 backend, u32 generation,
 *           str session, str exe_path, u32 argc, str argv[argc]
 *   TIMES   u32 count, u32 zero, u64 ts[count]
 *   FD      str token, u32 kind, u32 page_kind, i32 fd, u32 zero,
 *           u64 size, u64 handle
 *   BLOB    str token, u32 len, u8 data[len]
 *
 * where str is { u32 len; char bytes[len]; zero pad to 4 } without a NUL.
 * Every payload must be consumed exactly and every pad and reserved field
 * must be zero, so one state has exactly one encoding and a flipped bit
 * anywhere is caught: the header CRC covers the header, the record CRC the
 * payload, the zero checks the rest.  A flipped type bit turns a record
 * into another known type only as origin<->fd and times<->fd, and those
 * leave a missing or second ORIGIN/TIMES, a NUL in a token or a nonzero
 * reserved field behind.
 *
 * The decoder takes hostile bytes: it first walks the records checking
 * framing and CRCs only, so that it allocates arrays for counts of records
 * that really exist, then parses each payload.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

#define HDR_LEN		32u
#define REC_HDR_LEN	16u
#define PATH_LEN_MAX	4095u		/* exe_path: PATH_MAX less the NUL */
#define ARG_LEN_MAX	131072u		/* one argv string: MAX_ARG_STRLEN */

/* Header field offsets. */
#define H_VERSION	8
#define H_HEADER_LEN	12
#define H_TOTAL_LEN	16
#define H_NR_RECORDS	24
#define H_CRC		28

static inline uint64_t align8(uint64_t v)
{
	return (v + 7) & ~(uint64_t)7;
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, v);
	put_le32(p + 4, v >> 32);
}

/* CRC32C --------------------------------------------------------------- */

/* Slicing-by-8: eight bytes per step, tables built once on first use. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	unsigned int i, k;

	for (i = 0; i < 256; i++) {
		uint32_t c = i;

		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & -(c & 1));
		crc_tab[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^
					crc_tab[0][crc_tab[k - 1][i] & 0xff];
}

uint32_t cprx_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint32_t lo = get_le32(p) ^ crc, hi = get_le32(p + 4);

		crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		      crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
		      crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
		      crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
	}
	while (len--)
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint32_t header_crc(const uint8_t *hdr)
{
	uint8_t tmp[HDR_LEN];

	memcpy(tmp, hdr, HDR_LEN);
	put_le32(tmp + H_CRC, 0);
	return cprx_crc32c(0, tmp, HDR_LEN);
}

/* Tokens --------------------------------------------------------------- */

struct tokref {
	const char *tok;
	uint32_t rec;		/* record index (array index when encoding) */
};

static int tokref_cmp(const void *a, const void *b)
{
	const struct tokref *x = a, *y = b;
	int c = strcmp(x->tok, y->tok);

	if (c)
		return c;
	return x->rec < y->rec ? -1 : x->rec > y->rec;
}

/* Sorts @refs; returns the index of the later of a duplicate pair, or 0. */
static uint32_t find_dup(struct tokref *refs, uint32_t n)
{
	uint32_t i;

	/* sorting, not n^2 compares: this runs while the guest is stopped */
	qsort(refs, n, sizeof(*refs), tokref_cmp);
	for (i = 1; i < n; i++)
		if (!strcmp(refs[i - 1].tok, refs[i].tok))
			return i;
	return 0;
}

/* Encoder -------------------------------------------------------------- */

/*
 * Runs twice: with p == NULL to measure, then into a zeroed buffer, which
 * makes every pad zero without writing it.
 */
struct wr {
	uint8_t *p;
	uint64_t pos;
};

static void wr_u32(struct wr *w, uint32_t v)
{
	if (w->p)
		put_le32(w->p + w->pos, v);
	w->pos += 4;
}

static void wr_u64(struct wr *w, uint64_t v)
{
	if (w->p)
		put_le64(w->p + w->pos, v);
	w->pos += 8;
}

static void wr_bytes(struct wr *w, const void *src, size_t n)
{
	if (w->p && n)
		memcpy(w->p + w->pos, src, n);
	w->pos += n;
}

static void wr_str(struct wr *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	wr_u32(w, n);
	wr_bytes(w, s, n);
	w->pos = (w->pos + 3) & ~(uint64_t)3;
}

static uint64_t rec_begin(struct wr *w, uint32_t type)
{
	uint64_t at = w->pos;

	wr_u32(w, type);
	w->pos += REC_HDR_LEN - 4;	/* len, crc, zero: filled by rec_end */
	return at;
}

static void rec_end(struct wr *w, uint64_t at)
{
	uint64_t len = w->pos - at - REC_HDR_LEN;

	if (w->p) {
		put_le32(w->p + at + 4, len);
		put_le32(w->p + at + 8,
			 cprx_crc32c(0, w->p + at + REC_HDR_LEN, len));
	}
	w->pos = align8(w->pos);
}

static void encode_into(const struct cprx_state *st, struct wr *w)
{
	uint64_t at;
	uint32_t i;

	w->pos = HDR_LEN;
	at = rec_begin(w, CPRX_REC_ORIGIN);
	wr_u32(w, st->exe_fd);
	wr_u32(w, st->pid);
	wr_u32(w, st->keeper_pid);
	wr_u32(w, st->backend);
	wr_u32(w, st->generation);
	wr_str(w, st->session);
	wr_str(w, st->exe_path);
	wr_u32(w, st->argc);
	for (i = 0; i < st->argc; i++)
		wr_str(w, st->argv[i]);
	rec_end(w, at);

	at = rec_begin(w, CPRX_REC_TIMES);
	wr_u32(w, CPRX_PH_MAX);
	wr_u32(w, 0);
	for (i = 0; i < CPRX_PH_MAX; i++)
		wr_u64(w, st->ts[i]);
	rec_end(w, at);

	for (i = 0; i < st->nr_fds; i++) {
		const struct cprx_rec_fd *f = &st->fds[i];

		at = rec_begin(w, CPRX_REC_FD);
		wr_str(w, f->token);
		wr_u32(w, f->kind);
		wr_u32(w, f->page_kind);
		wr_u32(w, f->fd);
		wr_u32(w, 0);
		wr_u64(w, f->size);
		wr_u64(w, f->handle);
		rec_end(w, at);
	}
	for (i = 0; i < st->nr_blobs; i++) {
		const struct cprx_rec_blob *b = &st->blobs[i];

		at = rec_begin(w, CPRX_REC_BLOB);
		wr_str(w, b->token);
		wr_u32(w, b->len);
		wr_bytes(w, b->data, b->len);
		rec_end(w, at);
	}
}

static bool bad_token(const char *tok, bool may_be_empty)
{
	size_t n = strnlen(tok, CPRX_NAME_MAX + 1);

	return n > CPRX_NAME_MAX || (!n && !may_be_empty);
}

/* Duplicate tokens would be refused by the decoder: refuse them here. */
static int check_dups(const struct cprx_state *st)
{
	uint32_t n = st->nr_fds > st->nr_blobs ? st->nr_fds : st->nr_blobs;
	struct tokref *refs;
	uint32_t i;
	int ret = 0;

	if (n < 2)
		return 0;
	refs = calloc(n, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	for (i = 0; i < st->nr_fds; i++)
		refs[i] = (struct tokref){ st->fds[i].token, i };
	if (find_dup(refs, st->nr_fds))
		ret = -EINVAL;
	for (i = 0; i < st->nr_blobs; i++)
		refs[i] = (struct tokref){ st->blobs[i].token, i };
	if (find_dup(refs, st->nr_blobs))
		ret = -EINVAL;
	free(refs);
	return ret;
}

static int check_input(const struct cprx_state *st)
{
	uint32_t i;

	if (bad_token(st->session, true) || st->backend > CPRX_BACKEND_KMOD)
		return -EINVAL;
	if (st->exe_path && strnlen(st->exe_path, PATH_LEN_MAX + 1) >
			    PATH_LEN_MAX)
		return -EINVAL;
	if (st->argc > CPRX_STATE_MAX_ARGS || (st->argc && !st->argv))
		return -EINVAL;
	for (i = 0; i < st->argc; i++)
		if (!st->argv[i] ||
		    strnlen(st->argv[i], ARG_LEN_MAX + 1) > ARG_LEN_MAX)
			return -EINVAL;
	if (st->nr_fds > CPRX_STATE_MAX_FDS || (st->nr_fds && !st->fds))
		return -EINVAL;
	for (i = 0; i < st->nr_fds; i++) {
		const struct cprx_rec_fd *f = &st->fds[i];

		if (bad_token(f->token, false) || f->kind > CPRX_FD_INTERNAL ||
		    f->page_kind > CPRX_PAGE_HUGETLB)
			return -EINVAL;
	}
	if (st->nr_blobs > CPRX_STATE_MAX_BLOBS ||
	    (st->nr_blobs && !st->blobs))
		return -EINVAL;
	for (i = 0; i < st->nr_blobs; i++) {
		const struct cprx_rec_blob *b = &st->blobs[i];

		if (bad_token(b->token, false) || (b->len && !b->data))
			return -EINVAL;
		/* keeps every record length within its u32 */
		if (b->len > CPRX_STATE_MAX)
			return -E2BIG;
	}
	return check_dups(st);
}

int cprx_state_encode(const struct cprx_state *st, void **bufp, size_t *lenp)
{
	struct wr w = { 0 };
	int ret;

	if (!st || !bufp || !lenp)
		return -EINVAL;
	*bufp = NULL;
	*lenp = 0;
	ret = check_input(st);
	if (ret)
		return ret;
	encode_into(st, &w);
	if (w.pos > CPRX_STATE_MAX)
		return -E2BIG;
	w.p = calloc(1, w.pos);
	if (!w.p)
		return -ENOMEM;
	encode_into(st, &w);

	memcpy(w.p, CPRX_STATE_MAGIC, 8);
	put_le32(w.p + H_VERSION, CPRX_STATE_VERSION);
	put_le32(w.p + H_HEADER_LEN, HDR_LEN);
	put_le64(w.p + H_TOTAL_LEN, w.pos);
	put_le32(w.p + H_NR_RECORDS, 2 + st->nr_fds + st->nr_blobs);
	put_le32(w.p + H_CRC, header_crc(w.p));
	*bufp = w.p;
	*lenp = w.pos;
	return 0;
}

/* Decoder -------------------------------------------------------------- */

struct dec {
	const uint8_t *buf;
	uint64_t end;		/* total_len */
	uint32_t hdr_len;
	uint32_t nr;		/* nr_records */
	char *err;
	size_t errlen;
	/* the record being looked at, for messages */
	uint32_t idx;
	uint32_t type;
	char tok[CPRX_NAME_MAX + 1];
};

struct rec {
	uint32_t type, len, crc, zero;
	const uint8_t *payload;
};

__attribute__((format(printf, 4, 5)))
static int set_err(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static const char *const rec_names[] = {
	[CPRX_REC_ORIGIN] = "origin",
	[CPRX_REC_TIMES] = "times",
	[CPRX_REC_FD] = "fd",
	[CPRX_REC_BLOB] = "blob",
};

static bool known_type(uint32_t type)
{
	return type >= CPRX_REC_ORIGIN && type <= CPRX_REC_BLOB;
}

/* Messages quote tokens: keep terminal escapes and the like out of them. */
static void set_tok(struct dec *d, const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i;

	for (i = 0; i < n && i < CPRX_NAME_MAX; i++)
		d->tok[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
	d->tok[i] = '\0';
}

/* "record 3 (fd 'ram0')" followed by @fmt. */
__attribute__((format(printf, 3, 4)))
static int rec_err(struct dec *d, int ret, const char *fmt, ...)
{
	char label[CPRX_NAME_MAX + 32];
	va_list ap;
	int off;

	if (!d->err || !d->errlen)
		return ret;
	if (!known_type(d->type))
		snprintf(label, sizeof(label), "type %u", d->type);
	else if (d->tok[0])
		snprintf(label, sizeof(label), "%s '%s'", rec_names[d->type],
			 d->tok);
	else
		snprintf(label, sizeof(label), "%s", rec_names[d->type]);
	off = snprintf(d->err, d->errlen, "record %u (%s)", d->idx, label);
	if (off >= 0 && (size_t)off < d->errlen) {
		va_start(ap, fmt);
		vsnprintf(d->err + off, d->errlen - off, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* For a record whose CRC failed: name its token if it looks like one. */
static void peek_token(struct dec *d, const struct rec *r)
{
	uint32_t n, i;

	if ((r->type != CPRX_REC_FD && r->type != CPRX_REC_BLOB) || r->len < 4)
		return;
	n = get_le32(r->payload);
	if (!n || n > CPRX_NAME_MAX || n > r->len - 4)
		return;
	for (i = 0; i < n; i++)
		if (r->payload[4 + i] < 0x20 || r->payload[4 + i] >= 0x7f)
			return;
	set_tok(d, r->payload + 4, n);
}

static bool rec_at(const struct dec *d, uint64_t pos, struct rec *r)
{
	const uint8_t *p = d->buf + pos;

	if (pos > d->end || d->end - pos < REC_HDR_LEN)
		return false;
	r->type = get_le32(p);
	r->len = get_le32(p + 4);
	r->crc = get_le32(p + 8);
	r->zero = get_le32(p + 12);
	r->payload = p + REC_HDR_LEN;
	return true;
}

static void rec_enter(struct dec *d, uint32_t idx, uint32_t type)
{
	d->idx = idx;
	d->type = type;
	d->tok[0] = '\0';
}

/*
 * Header checks, in the order the messages promise.  @strict: this build's
 * version and header size only (else: any version, any sane header_len).
 */
static int read_header(struct dec *d, const uint8_t *b, size_t len,
		       bool strict, uint32_t *version)
{
	uint64_t total;

	if (len < HDR_LEN)
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state truncated: %zu bytes, header needs %u",
			       len, HDR_LEN);
	if (memcmp(b, CPRX_STATE_MAGIC, 8))
		return set_err(d->err, d->errlen, -EBADMSG,
			       "not a cprx state (bad magic)");
	if (header_crc(b) != get_le32(b + H_CRC))
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state header checksum mismatch");
	*version = get_le32(b + H_VERSION);
	if (strict && *version != CPRX_STATE_VERSION)
		return set_err(d->err, d->errlen, -EPROTO,
			       "state version %u, this build reads %u",
			       *version, (unsigned int)CPRX_STATE_VERSION);
	total = get_le64(b + H_TOTAL_LEN);
	/* a truncated state may still hold a whole ORIGIN record: rollback */
	if (!strict && total > len)
		total = len;
	if (total > len)
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state truncated: header says %llu bytes, got %zu",
			       (unsigned long long)total, len);
	if (total > CPRX_STATE_MAX)
		return set_err(d->err, d->errlen, -E2BIG,
			       "state of %llu bytes exceeds the %u byte limit",
			       (unsigned long long)total, CPRX_STATE_MAX);
	d->hdr_len = get_le32(b + H_HEADER_LEN);
	if (strict ? d->hdr_len != HDR_LEN :
		     d->hdr_len < HDR_LEN || d->hdr_len % 8)
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state header_len %u, expected %u",
			       d->hdr_len, HDR_LEN);
	if (total < d->hdr_len)
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state total_len %llu is less than its %u byte header",
			       (unsigned long long)total, d->hdr_len);
	d->buf = b;
	d->end = total;
	d->nr = get_le32(b + H_NR_RECORDS);
	return 0;
}

/* Pass 1: framing, CRCs, zero fields and record counts.  Allocates nothing. */
static int scan(struct dec *d, uint32_t *cnt)
{
	uint64_t pos = d->hdr_len, e, i;
	struct rec r;
	uint32_t idx;

	for (idx = 0; idx < d->nr; idx++) {
		rec_enter(d, idx, 0);
		if (!rec_at(d, pos, &r))
			return set_err(d->err, d->errlen, -EBADMSG,
				       "record %u truncated: header at offset %llu, state ends at %llu",
				       idx, (unsigned long long)pos,
				       (unsigned long long)d->end);
		d->type = r.type;
		if (r.len > d->end - pos - REC_HDR_LEN)
			return rec_err(d, -EBADMSG,
				       " truncated: %u byte payload at offset %llu, state ends at %llu",
				       r.len,
				       (unsigned long long)pos + REC_HDR_LEN,
				       (unsigned long long)d->end);
		if (cprx_crc32c(0, r.payload, r.len) != r.crc) {
			peek_token(d, &r);
			return rec_err(d, -EBADMSG, " checksum mismatch");
		}
		if (r.zero)
			return rec_err(d, -EBADMSG,
				       ": reserved header field is 0x%x, not zero",
				       r.zero);
		e = pos + REC_HDR_LEN + r.len;
		if (align8(e) > d->end)
			return rec_err(d, -EBADMSG,
				       ": padding runs past the end of the state");
		for (i = e; i < align8(e); i++)
			if (d->buf[i])
				return rec_err(d, -EBADMSG,
					       ": nonzero padding byte at offset %llu",
					       (unsigned long long)i);
		if (!known_type(r.type))
			return rec_err(d, -EBADMSG, ": unknown record type");
		cnt[r.type]++;
		if (r.type == CPRX_REC_ORIGIN && cnt[r.type] > 1)
			return rec_err(d, -EBADMSG, ": second ORIGIN record");
		if (r.type == CPRX_REC_TIMES && cnt[r.type] > 1)
			return rec_err(d, -EBADMSG, ": second TIMES record");
		if (r.type == CPRX_REC_FD && cnt[r.type] > CPRX_STATE_MAX_FDS)
			return rec_err(d, -EBADMSG, ": more than %u fd records",
				       CPRX_STATE_MAX_FDS);
		if (r.type == CPRX_REC_BLOB &&
		    cnt[r.type] > CPRX_STATE_MAX_BLOBS)
			return rec_err(d, -EBADMSG,
				       ": more than %u blob records",
				       CPRX_STATE_MAX_BLOBS);
		pos = align8(e);
	}
	if (pos != d->end)
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state has %llu stray bytes after its %u records",
			       (unsigned long long)(d->end - pos), d->nr);
	if (!cnt[CPRX_REC_ORIGIN])
		return set_err(d->err, d->errlen, -EBADMSG,
			       "state has no ORIGIN record");
	return 0;
}

/*
 * Payload reader.  The first failure sticks in @why and makes every later
 * read return zero, so a parser can read a run of fields and check once.
 */
struct rd {
	const uint8_t *p;
	uint32_t len, pos;
	char why[96];
};

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
		return rec_err(d, -EBADMSG, ": %s", r->why);
	if (exact && r->pos != r->len)
		return rec_err(d, -EBADMSG,
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
static int parse_origin(struct dec *d, struct rd *r, struct cprx_state *st,
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
	if (strict && st->backend > CPRX_BACKEND_KMOD)
		return rec_err(d, -EBADMSG, ": backend %u out of range",
			       st->backend);
	/* every string takes 4 bytes at least: bound argc before calloc */
	if (argc > CPRX_STATE_MAX_ARGS || argc > (r->len - r->pos) / 4)
		return rec_err(d, -EBADMSG,
			       ": argc %u exceeds %u or the %u bytes left",
			       argc, CPRX_STATE_MAX_ARGS, r->len - r->pos);
	/* an empty path means none: NULL, as the encoder took it */
	if (n && !(st->exe_path = dup_str(path, n)))
		return rec_err(d, -ENOMEM, ": out of memory");
	st->argv = calloc(argc + 1, sizeof(*st->argv));
	if (!st->argv)
		return rec_err(d, -ENOMEM, ": out of memory");
	st->argc = argc;
	for (i = 0; i < argc; i++) {
		snprintf(what, sizeof(what), "argv[%u]", i);
		arg = rd_str(r, what, ARG_LEN_MAX, &n);
		if (!arg)
			return rd_end(d, r, strict);
		st->argv[i] = dup_str(arg, n);
		if (!st->argv[i])
			return rec_err(d, -ENOMEM, ": out of memory");
	}
	return rd_end(d, r, strict);
}

static int parse_times(struct dec *d, struct rd *r, struct cprx_state *st)
{
	uint32_t count = rd_u32(r, "count"), zero = rd_u32(r, "reserved");
	uint32_t left = r->len - r->pos, i;
	uint64_t v;

	if (r->why[0])
		return rd_end(d, r, true);
	if (zero)
		return rec_err(d, -EBADMSG,
			       ": reserved field is 0x%x, not zero", zero);
	if (left % 8 || left / 8 != count)
		return rec_err(d, -EBADMSG,
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
		return rec_err(d, -EBADMSG, ": empty token");
	memcpy(tok, s, n);
	tok[n] = '\0';
	set_tok(d, s, n);
	return 0;
}

static int parse_fd(struct dec *d, struct rd *r, struct cprx_rec_fd *f)
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
	if (r->why[0])
		return rd_end(d, r, true);
	if (f->kind > CPRX_FD_INTERNAL)
		return rec_err(d, -EBADMSG, ": kind %u out of range", f->kind);
	if (f->page_kind > CPRX_PAGE_HUGETLB)
		return rec_err(d, -EBADMSG, ": page_kind %u out of range",
			       f->page_kind);
	if (zero)
		return rec_err(d, -EBADMSG,
			       ": reserved field is 0x%x, not zero", zero);
	return rd_end(d, r, true);
}

static int parse_blob(struct dec *d, struct rd *r, struct cprx_rec_blob *b)
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
		return rec_err(d, -ENOMEM, ": out of memory");
	memcpy(b->data, data, len);
	b->len = len;
	return 0;
}

/* Reports the later record of a duplicate token pair, if any. */
static int dup_tokens(struct dec *d, struct tokref *refs, uint32_t n,
		      uint32_t type)
{
	uint32_t i = find_dup(refs, n);

	if (!i)
		return 0;
	rec_enter(d, refs[i].rec, type);
	set_tok(d, refs[i].tok, strlen(refs[i].tok));
	return rec_err(d, -EBADMSG,
		       ": duplicate token '%s' (also in record %u)",
		       d->tok, refs[i - 1].rec);
}

/* Pass 2: payloads, into arrays sized by pass 1. */
static int parse_all(struct dec *d, const uint32_t *cnt, struct cprx_state *st)
{
	uint32_t nf = 0, nb = 0, idx, nfd = cnt[CPRX_REC_FD];
	uint64_t pos = d->hdr_len;
	struct tokref *refs;
	struct rec r;
	struct rd rd;
	int ret = 0;

	st->fds = calloc(nfd + 1, sizeof(*st->fds));
	st->blobs = calloc(cnt[CPRX_REC_BLOB] + 1, sizeof(*st->blobs));
	refs = calloc(nfd + cnt[CPRX_REC_BLOB] + 1, sizeof(*refs));
	if (!st->fds || !st->blobs || !refs) {
		free(refs);
		return set_err(d->err, d->errlen, -ENOMEM, "out of memory");
	}
	/* counts up front so that cprx_state_free sees every slot */
	st->nr_fds = nfd;
	st->nr_blobs = cnt[CPRX_REC_BLOB];

	for (idx = 0; idx < d->nr && !ret; idx++) {
		rec_at(d, pos, &r);	/* checked by scan() */
		rec_enter(d, idx, r.type);
		rd = (struct rd){ .p = r.payload, .len = r.len };
		switch (r.type) {
		case CPRX_REC_ORIGIN:
			ret = parse_origin(d, &rd, st, true);
			break;
		case CPRX_REC_TIMES:
			ret = parse_times(d, &rd, st);
			break;
		case CPRX_REC_FD:
			refs[nf] = (struct tokref){ st->fds[nf].token, idx };
			ret = parse_fd(d, &rd, &st->fds[nf++]);
			break;
		case CPRX_REC_BLOB:
			refs[nfd + nb] =
				(struct tokref){ st->blobs[nb].token, idx };
			ret = parse_blob(d, &rd, &st->blobs[nb++]);
			break;
		}
		pos = align8(pos + REC_HDR_LEN + r.len);
	}
	if (!ret)
		ret = dup_tokens(d, refs, nf, CPRX_REC_FD);
	if (!ret)
		ret = dup_tokens(d, refs + nfd, nb, CPRX_REC_BLOB);
	free(refs);
	return ret;
}

/* What both decoders do first: a clean error, a zeroed @st, no NULL buf. */
static int dec_begin(const void *buf, size_t *len, struct cprx_state *st,
		     char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!st)
		return set_err(err, errlen, -EINVAL, "no state to decode into");
	memset(st, 0, sizeof(*st));
	if (!buf)
		*len = 0;
	return 0;
}

int cprx_state_decode(const void *buf, size_t len, struct cprx_state *st,
		      char *err, size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	uint32_t cnt[CPRX_REC_BLOB + 1] = { 0 };
	uint32_t version;
	int ret;

	ret = dec_begin(buf, &len, st, err, errlen);
	if (ret)
		return ret;

	ret = read_header(&d, buf, len, true, &version);
	if (!ret)
		ret = scan(&d, cnt);
	if (!ret)
		ret = parse_all(&d, cnt, st);
	if (ret) {
		cprx_state_free(st);
		return ret;
	}
	st->version = version;
	return 0;
}

int cprx_state_decode_origin(const void *buf, size_t len,
			     struct cprx_state *st, char *err, size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	uint64_t pos;
	uint32_t idx, version;
	struct rec r;
	struct rd rd;
	int ret;

	ret = dec_begin(buf, &len, st, err, errlen);
	if (ret)
		return ret;

	ret = read_header(&d, buf, len, false, &version);
	if (ret)
		return ret;
	/* walk as far as the framing holds; the rest may be any version's */
	for (idx = 0, pos = d.hdr_len; idx < d.nr && rec_at(&d, pos, &r);
	     idx++) {
		if (r.len > d.end - pos - REC_HDR_LEN)
			break;
		pos = align8(pos + REC_HDR_LEN + r.len);
		if (r.type != CPRX_REC_ORIGIN)
			continue;
		rec_enter(&d, idx, r.type);
		if (cprx_crc32c(0, r.payload, r.len) != r.crc) {
			ret = rec_err(&d, -EBADMSG, " checksum mismatch");
			continue;
		}
		rd = (struct rd){ .p = r.payload, .len = r.len };
		ret = parse_origin(&d, &rd, st, false);
		if (!ret) {
			st->version = version;
			if (err && errlen)
				err[0] = '\0';	/* of an earlier bad one */
			return 0;
		}
		cprx_state_free(st);
	}
	if (!ret)
		ret = set_err(err, errlen, -EBADMSG,
			      "state has no ORIGIN record");
	return ret;
}

void cprx_state_free(struct cprx_state *st)
{
	uint32_t i;

	if (!st)
		return;
	free(st->exe_path);
	for (i = 0; st->argv && i < st->argc; i++)
		free(st->argv[i]);
	free(st->argv);
	for (i = 0; st->blobs && i < st->nr_blobs; i++)
		free(st->blobs[i].data);
	free(st->blobs);
	free(st->fds);
	memset(st, 0, sizeof(*st));
}
