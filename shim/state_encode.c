// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state's encoder: checks a struct cprx_state as the decoder would and
 * serializes it (layout in state.h and state_wire.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "state_wire.h"

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
		wr_u64(w, f->dev);
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
	if (cprx_state_find_dup(refs, st->nr_fds))
		ret = -EINVAL;
	for (i = 0; i < st->nr_blobs; i++)
		refs[i] = (struct tokref){ st->blobs[i].token, i };
	if (cprx_state_find_dup(refs, st->nr_blobs))
		ret = -EINVAL;
	free(refs);
	return ret;
}

static int check_input(const struct cprx_state *st)
{
	uint32_t i;

	if (bad_token(st->session, true) || st->backend > CPRX_BACKEND_LUO)
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
	put_le32(w.p + H_CRC, cprx_state_header_crc(w.p));
	*bufp = w.p;
	*lenp = w.pos;
	return 0;
}
