// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state's checks that the encoder and the decoder share: the header
 * checksum and the duplicate-token search.
 */
#include <stdlib.h>
#include <string.h>

#include "state_wire.h"

uint32_t cprx_state_header_crc(const uint8_t *hdr)
{
	uint8_t tmp[HDR_LEN];

	memcpy(tmp, hdr, HDR_LEN);
	put_le32(tmp + H_CRC, 0);
	return cprx_crc32c(0, tmp, HDR_LEN);
}

static int tokref_cmp(const void *a, const void *b)
{
	const struct tokref *x = a, *y = b;
	int c = strcmp(x->tok, y->tok);

	if (c)
		return c;
	return x->rec < y->rec ? -1 : x->rec > y->rec;
}

/* Sorting, not n^2 compares: this runs while the guest is stopped. */
uint32_t cprx_state_find_dup(struct tokref *refs, uint32_t n)
{
	uint32_t i;

	qsort(refs, n, sizeof(*refs), tokref_cmp);
	for (i = 1; i < n; i++)
		if (!strcmp(refs[i - 1].tok, refs[i].tok))
			return i;
	return 0;
}
