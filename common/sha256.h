/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256 (FIPS 180-4), common/sha256.c: of a buffer in one call, or of a
 * stream (init, update as often as the data comes, final).
 */
#ifndef CPRX_SHA256_H
#define CPRX_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct cprx_sha256 {
	uint32_t h[8];
	uint64_t len;			/* bytes so far */
	unsigned char buf[64];		/* the partial block: len % 64 bytes */
};

void cprx_sha256_init(struct cprx_sha256 *c);
void cprx_sha256_update(struct cprx_sha256 *c, const void *data, size_t len);
void cprx_sha256_final(struct cprx_sha256 *c, unsigned char out[32]);

void cprx_sha256(const void *data, size_t len, unsigned char out[32]);
/* The digest as sha256sum(1) prints it: 64 lowercase hex digits. */
void cprx_sha256_hex(const unsigned char digest[32], char hex[65]);

#endif /* CPRX_SHA256_H */
