// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for the state decoder (shim/state_decode.c and
 * state_records.c).
 *
 * Every input goes through the decoders twice: as it is, and with its
 * magic, version and checksums made right, since random bytes almost never
 * get past a CRC and the payload parsers are where the bugs would be.  The
 * bits of the input's header CRC field, which the fix-up overwrites anyway,
 * choose which of the other header fields it leaves alone.
 *
 * Whatever decodes must encode again and decode to the same state.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

#define check(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_state.c:%d: %s\n",	\
				__LINE__, #cond);			\
			abort();					\
		}							\
	} while (0)

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static bool zeroed(const struct cprx_state *st)
{
	static const struct cprx_state zero;

	return !memcmp(st, &zero, sizeof(zero));
}

static bool streq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void same_origin(const struct cprx_state *a, const struct cprx_state *b)
{
	check(a->version == b->version);
	check(!strcmp(a->session, b->session));
	check(streq(a->exe_path, b->exe_path));
	check(a->argc == b->argc && a->argv && b->argv);
	for (uint32_t i = 0; i < a->argc; i++)
		check(streq(a->argv[i], b->argv[i]) && a->argv[i]);
	check(!a->argv[a->argc] && !b->argv[b->argc]);
	check(a->exe_fd == b->exe_fd && a->pid == b->pid);
	check(a->keeper_pid == b->keeper_pid && a->backend == b->backend);
	check(a->generation == b->generation);
}

static void same(const struct cprx_state *a, const struct cprx_state *b)
{
	same_origin(a, b);
	check(!memcmp(a->ts, b->ts, sizeof(a->ts)));
	check(a->nr_fds == b->nr_fds && a->nr_blobs == b->nr_blobs);
	for (uint32_t i = 0; i < a->nr_fds; i++) {
		const struct cprx_rec_fd *x = &a->fds[i], *y = &b->fds[i];

		check(!strcmp(x->token, y->token) && x->token[0]);
		check(x->kind == y->kind && x->page_kind == y->page_kind);
		check(x->fd == y->fd && x->size == y->size);
		check(x->handle == y->handle);
		check(x->dev == y->dev);
	}
	for (uint32_t i = 0; i < a->nr_blobs; i++) {
		const struct cprx_rec_blob *x = &a->blobs[i], *y = &b->blobs[i];

		check(!strcmp(x->token, y->token) && x->token[0]);
		check(x->len == y->len && x->data && y->data);
		check(!memcmp(x->data, y->data, x->len));
	}
}

static void decode(const uint8_t *data, size_t size)
{
	struct cprx_state st, again, org;
	char err[CPRX_MSG_MAX];
	void *buf, *buf2;
	size_t len, len2;
	int ret, oret;

	memset(err, 'x', sizeof(err));
	ret = cprx_state_decode(data, size, &st, err, sizeof(err));
	check(ret == 0 || ret == -EBADMSG || ret == -EPROTO || ret == -E2BIG);
	check(memchr(err, '\0', sizeof(err)));
	oret = cprx_state_decode_origin(data, size, &org, NULL, 0);
	check(oret == 0 || oret == -EBADMSG || oret == -E2BIG);
	if (oret)
		check(zeroed(&org));
	if (ret) {
		check(err[0] && zeroed(&st));
		cprx_state_free(&org);
		return;
	}
	check(!err[0]);
	/* the strict decoder accepts a subset of what the lenient one does */
	check(!oret);
	same_origin(&st, &org);
	cprx_state_free(&org);

	check(!cprx_state_encode(&st, &buf, &len));
	check(!cprx_state_decode(buf, len, &again, err, sizeof(err)));
	same(&st, &again);
	/* and the encoding is canonical from there on */
	check(!cprx_state_encode(&again, &buf2, &len2));
	check(len == len2 && !memcmp(buf, buf2, len));
	free(buf);
	free(buf2);
	cprx_state_free(&again);
	cprx_state_free(&st);
}

/* Magic, version and checksums made right; see the top of the file. */
static void decode_fixed(const uint8_t *data, size_t size)
{
	uint64_t total, pos = 32;
	uint32_t knobs, len, n = 0;
	uint8_t *p;

	if (size < 32)
		return;
	p = malloc(size);
	if (!p)
		return;
	memcpy(p, data, size);
	knobs = le32(p + 28);
	memcpy(p, CPRX_STATE_MAGIC, 8);
	put32(p + 8, CPRX_STATE_VERSION);
	if (!(knobs & 1))
		put32(p + 12, 32);
	if (!(knobs & 2)) {
		put32(p + 16, size);
		put32(p + 20, (uint64_t)size >> 32);
	}
	total = le32(p + 16) | (uint64_t)le32(p + 20) << 32;
	if (total > size)
		total = size;
	while (pos <= total && total - pos >= 16) {
		len = le32(p + pos + 4);
		if (len > total - pos - 16)
			break;
		put32(p + pos + 8, cprx_crc32c(0, p + pos + 16, len));
		if (!(knobs & 4))
			put32(p + pos + 12, 0);
		pos = (pos + 16 + len + 7) & ~(uint64_t)7;
		n++;
	}
	if (!(knobs & 8))
		put32(p + 24, n);
	put32(p + 28, 0);
	put32(p + 28, cprx_crc32c(0, p, 32));
	decode(p, size);
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode(data, size);
	decode_fixed(data, size);
	return 0;
}
