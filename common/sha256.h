/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SHA-256 (FIPS 180-4) of a small buffer, in one call: common/sha256.c. */
#ifndef CPRX_SHA256_H
#define CPRX_SHA256_H

#include <stddef.h>
#include <stdint.h>

void cprx_sha256(const void *data, size_t len, unsigned char out[32]);

#endif /* CPRX_SHA256_H */
