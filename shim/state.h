/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The precreate state: what the old image hands the new one.  Internal to
 * libcprx (the fuzz target and unit tests include it too).
 *
 * Layout, little endian, every item 8-byte aligned:
 *   header  { char magic[8] "CPRXSTAT"; u32 version; u32 header_len;
 *             u64 total_len; u32 nr_records; u32 header_crc; }
 *   record  { u32 type; u32 len; u32 crc; u32 zero; u8 payload[len]; pad }
 * header_crc is CRC32C of the header with that field zero; crc is CRC32C of
 * the payload.  The header and the ORIGIN record never change layout, so any
 * version can find the previous binary and roll back to it.
 */
#ifndef CPRX_STATE_H
#define CPRX_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "cprx.h"

#define CPRX_STATE_MAGIC	"CPRXSTAT"
#ifndef CPRX_STATE_VERSION
#define CPRX_STATE_VERSION	1
#endif
#define CPRX_STATE_MAX		(256u << 20)	/* refuse anything larger */
#define CPRX_STATE_MAX_FDS	4096
#define CPRX_STATE_MAX_BLOBS	1024
#define CPRX_STATE_MAX_ARGS	4096

enum cprx_rec_type {
	CPRX_REC_ORIGIN = 1,	/* previous binary, argv, pid, generation */
	CPRX_REC_TIMES,		/* u64 ts[CPRX_PH_MAX] */
	CPRX_REC_FD,		/* one preserved fd */
	CPRX_REC_BLOB,		/* one caller blob */
};

struct cprx_rec_fd {
	char token[CPRX_NAME_MAX + 1];
	uint32_t kind;		/* enum cprx_fd_kind */
	uint32_t page_kind;	/* enum cprx_page_kind, RAM only */
	int32_t fd;		/* fd number in the old image (cloexec backend) */
	uint64_t size;		/* RAM only */
	uint64_t handle;	/* backend's key (kmod: 64-bit token) */
	uint64_t dev;		/* st_dev of the file, 0 if unknown */
};

struct cprx_rec_blob {
	char token[CPRX_NAME_MAX + 1];
	uint32_t len;
	void *data;		/* owned by the state */
};

struct cprx_state {
	uint32_t version;
	/* ORIGIN */
	char session[CPRX_NAME_MAX + 1];
	char *exe_path;		/* previous binary, for rollback */
	uint32_t argc;
	char **argv;		/* argc entries plus a NULL */
	int32_t exe_fd;		/* fd on the previous binary, -1 if none */
	int32_t pid;
	int32_t keeper_pid;	/* deferred-teardown helper, 0 if none */
	uint32_t backend;	/* enum cprx_backend */
	uint32_t generation;	/* updates completed before this one */
	/* TIMES */
	uint64_t ts[CPRX_PH_MAX];
	uint32_t nr_fds;
	struct cprx_rec_fd *fds;
	uint32_t nr_blobs;
	struct cprx_rec_blob *blobs;
};

uint32_t cprx_crc32c(uint32_t crc, const void *buf, size_t len);

/* Serializes @st into a malloc'ed buffer. */
int cprx_state_encode(const struct cprx_state *st, void **bufp, size_t *lenp);
/*
 * Parses untrusted bytes into @st (which owns copies of everything).
 * On error returns -EBADMSG, -EPROTO (version), -E2BIG or -ENOMEM and writes
 * a message naming the bad field or record into @err.
 */
int cprx_state_decode(const void *buf, size_t len, struct cprx_state *st,
		      char *err, size_t errlen);
/* Only the header and ORIGIN record, whatever the version: for rollback. */
int cprx_state_decode_origin(const void *buf, size_t len,
			     struct cprx_state *st, char *err, size_t errlen);
void cprx_state_free(struct cprx_state *st);

#endif /* CPRX_STATE_H */
