/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state-format tests (tests/state/): a writer of the container to craft
 * states byte by byte (records with correct framing and checksums, or
 * not), and a sample state with every record kind.
 */
#ifndef CPRX_STATE_UTIL_H
#define CPRX_STATE_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "state.h"

/* A payload under construction. */
struct bb {
	uint8_t b[1024];
	uint32_t n;
};

/* One record of a state: type and payload. */
struct trec {
	uint32_t type;
	uint32_t len;
	const uint8_t *p;
};

#define MAX_RECS 16

uint32_t le32(const uint8_t *p);
void put32(uint8_t *p, uint32_t v);
void put64(uint8_t *p, uint64_t v);
void fix_header_crc(uint8_t *buf);
void bb_u32(struct bb *b, uint32_t v);
void bb_u64(struct bb *b, uint64_t v);
void bb_str(struct bb *b, const char *s, uint32_t n);
int split(const uint8_t *buf, size_t len, struct trec *r);
uint8_t *join(const struct trec *r, int n, size_t *lenp);
int decode_recs(const struct trec *r, int n, char *err, size_t errlen);
void origin_payload(struct bb *b, uint32_t backend, uint32_t argc);
void times_payload(struct bb *b, uint32_t count);
void fd_payload(struct bb *b, const char *tok, uint32_t toklen,
		uint32_t kind, uint32_t page_kind, uint32_t zero);
int std_recs(struct trec *r);
void expect_bad(const struct bb *b, uint32_t type, const char *msg);
/* The sample state: every record kind, a blob that leaves padding. */
void sample(struct cprx_state *st, struct cprx_rec_fd *fds,
	    struct cprx_rec_blob *blobs);
bool zeroed(const struct cprx_state *st);
void expect_origin_same(const struct cprx_state *a,
			const struct cprx_state *b);
void expect_same(const struct cprx_state *a, const struct cprx_state *b);

#endif
