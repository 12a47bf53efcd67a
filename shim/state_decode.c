// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state decoder: header, framing and CRC checks, error messages, and
 * the two entry points (the payload parsers are in state_records.c).
 *
 * The decoder takes hostile bytes: it first walks the records checking
 * framing and CRCs only, so that it allocates arrays for counts of records
 * that really exist, then parses each payload.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state_decode.h"
#include "state_wire.h"

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
void cprx_rec_tok(struct dec *d, const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i;

	for (i = 0; i < n && i < CPRX_NAME_MAX; i++)
		d->tok[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
	d->tok[i] = '\0';
}

/* "record 3 (fd 'ram0')" followed by @fmt. */
__attribute__((format(printf, 3, 4)))
int cprx_rec_err(struct dec *d, int ret, const char *fmt, ...)
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
	cprx_rec_tok(d, r->payload + 4, n);
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
	if (cprx_state_header_crc(b) != get_le32(b + H_CRC))
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
			return cprx_rec_err(d, -EBADMSG,
					    " truncated: %u byte payload at offset %llu, state ends at %llu",
					    r.len,
					    (unsigned long long)pos +
					    REC_HDR_LEN,
					    (unsigned long long)d->end);
		if (cprx_crc32c(0, r.payload, r.len) != r.crc) {
			peek_token(d, &r);
			return cprx_rec_err(d, -EBADMSG, " checksum mismatch");
		}
		if (r.zero)
			return cprx_rec_err(d, -EBADMSG,
					    ": reserved header field is 0x%x, not zero",
					    r.zero);
		e = pos + REC_HDR_LEN + r.len;
		if (align8(e) > d->end)
			return cprx_rec_err(d, -EBADMSG,
					    ": padding runs past the end of the state");
		for (i = e; i < align8(e); i++)
			if (d->buf[i])
				return cprx_rec_err(d, -EBADMSG,
						    ": nonzero padding byte at offset %llu",
						    (unsigned long long)i);
		if (!known_type(r.type))
			return cprx_rec_err(d, -EBADMSG,
					    ": unknown record type");
		cnt[r.type]++;
		if (r.type == CPRX_REC_ORIGIN && cnt[r.type] > 1)
			return cprx_rec_err(d, -EBADMSG,
					    ": second ORIGIN record");
		if (r.type == CPRX_REC_TIMES && cnt[r.type] > 1)
			return cprx_rec_err(d, -EBADMSG,
					    ": second TIMES record");
		if (r.type == CPRX_REC_FD && cnt[r.type] > CPRX_STATE_MAX_FDS)
			return cprx_rec_err(d, -EBADMSG,
					    ": more than %u fd records",
					    CPRX_STATE_MAX_FDS);
		if (r.type == CPRX_REC_BLOB &&
		    cnt[r.type] > CPRX_STATE_MAX_BLOBS)
			return cprx_rec_err(d, -EBADMSG,
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

/* Reports the later record of a duplicate token pair, if any. */
static int dup_tokens(struct dec *d, struct tokref *refs, uint32_t n,
		      uint32_t type)
{
	uint32_t i = cprx_state_find_dup(refs, n);

	if (!i)
		return 0;
	rec_enter(d, refs[i].rec, type);
	cprx_rec_tok(d, refs[i].tok, strlen(refs[i].tok));
	return cprx_rec_err(d, -EBADMSG,
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
			ret = cprx_parse_origin(d, &rd, st, true);
			break;
		case CPRX_REC_TIMES:
			ret = cprx_parse_times(d, &rd, st);
			break;
		case CPRX_REC_FD:
			refs[nf] = (struct tokref){ st->fds[nf].token, idx };
			ret = cprx_parse_fd(d, &rd, &st->fds[nf++]);
			break;
		case CPRX_REC_BLOB:
			refs[nfd + nb] =
				(struct tokref){ st->blobs[nb].token, idx };
			ret = cprx_parse_blob(d, &rd, &st->blobs[nb++]);
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
			ret = cprx_rec_err(&d, -EBADMSG, " checksum mismatch");
			continue;
		}
		rd = (struct rd){ .p = r.payload, .len = r.len };
		ret = cprx_parse_origin(&d, &rd, st, false);
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
