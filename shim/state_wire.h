/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The precreate state's bytes, shared by its encoder (state_encode.c) and
 * decoder (state_decode.c, state_records.c); the container is in state.h.
 * Payloads are:
 *
 *   ORIGIN  i32 exe_fd, i32 pid, i32 keeper_pid, u32 backend, u32 generation,
 *           str session, str exe_path, u32 argc, str argv[argc]
 *   TIMES   u32 count, u32 zero, u64 ts[count]
 *   FD      str token, u32 kind, u32 page_kind, i32 fd, u32 zero,
 *           u64 size, u64 handle
 *   BLOB    str token, u32 len, u8 data[len]
 *
 * where str is { u32 len; char bytes[len]; zero pad to 4 } without a NUL.
 * FD's dev came later: a record without it decodes as dev 0 (unknown), and
 * the encoder always writes it.
 * Every payload must be consumed exactly and every pad and reserved field
 * must be zero, so one state has exactly one encoding and a flipped bit
 * anywhere is caught: the header CRC covers the header, the record CRC the
 * payload, the zero checks the rest.  A flipped type bit turns a record
 * into another known type only as origin<->fd and times<->fd, and those
 * leave a missing or second ORIGIN/TIMES, a NUL in a token or a nonzero
 * reserved field behind.
 */
#ifndef CPRX_STATE_WIRE_H
#define CPRX_STATE_WIRE_H

#include <stdint.h>

#include "state.h"

#define HDR_LEN		32u
#define REC_HDR_LEN	16u
#define PATH_LEN_MAX	4095u		/* exe_path: PATH_MAX less the NUL */
#define ARG_LEN_MAX	131071u		/* one argv string: MAX_ARG_STRLEN less the NUL */

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

/* state_wire.c: what both directions check the same way */
uint32_t cprx_state_header_crc(const uint8_t *hdr);

struct tokref {
	const char *tok;
	uint32_t rec;		/* record index (array index when encoding) */
};

/* Sorts @refs; returns the index of the later of a duplicate pair, or 0. */
uint32_t cprx_state_find_dup(struct tokref *refs, uint32_t n);

#endif /* CPRX_STATE_WIRE_H */
