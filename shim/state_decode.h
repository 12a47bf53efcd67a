/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state decoder's internals: what its framing pass (state_decode.c)
 * and its payload parsers (state_records.c) share.
 */
#ifndef CPRX_STATE_DECODE_H
#define CPRX_STATE_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"

/* A decode in progress. */
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

/*
 * Payload reader.  The first failure sticks in @why and makes every later
 * read return zero, so a parser can read a run of fields and check once.
 */
struct rd {
	const uint8_t *p;
	uint32_t len, pos;
	char why[96];
};

/* state_decode.c */
/* "record 3 (fd 'ram0')" followed by @fmt. */
__attribute__((format(printf, 3, 4)))
int cprx_rec_err(struct dec *d, int ret, const char *fmt, ...);
/* Messages quote tokens: keep terminal escapes and the like out of them. */
void cprx_rec_tok(struct dec *d, const void *s, size_t n);

/* state_records.c: one record's payload each, into @st */
int cprx_parse_origin(struct dec *d, struct rd *r, struct cprx_state *st,
		      bool strict);
int cprx_parse_times(struct dec *d, struct rd *r, struct cprx_state *st);
int cprx_parse_fd(struct dec *d, struct rd *r, struct cprx_rec_fd *f);
int cprx_parse_blob(struct dec *d, struct rd *r, struct cprx_rec_blob *b);

#endif /* CPRX_STATE_DECODE_H */
