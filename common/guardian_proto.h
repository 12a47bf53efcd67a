/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What libcprx tells a session's guardian over the guardian socket (an
 * AF_UNIX SOCK_SEQPACKET socket): private to libcprx and cprx-guardian.
 *
 *   ARM     the update has begun: the message carries copies of the state
 *           memfd, the previous binary and (cloexec backend) every
 *           preserved fd, in chunks of at most CPRX_GMSG_FDS fds; the one
 *           with CPRX_GMSG_LAST ends the set.  A chunk with CPRX_GMSG_FIRST
 *           starts a new set, dropping any older one.
 *   DISARM  the exec failed: the old image runs on, drop the set.
 *   COMMIT  the new image committed: drop the set.
 *
 * A set is complete only once its last chunk came: a guardian holding an
 * incomplete set has nothing to restart from.
 */
#ifndef CPRX_GUARDIAN_PROTO_H
#define CPRX_GUARDIAN_PROTO_H

#include <stdint.h>

#define CPRX_GMSG_MAGIC		0x47585043u	/* "CPXG" */
#define CPRX_GMSG_VERSION	1
#define CPRX_GMSG_FDS		200		/* under the kernel's SCM_MAX_FD */

enum cprx_gmsg_type {
	CPRX_GMSG_ARM = 1,
	CPRX_GMSG_DISARM,
	CPRX_GMSG_COMMIT,
};

#define CPRX_GMSG_FIRST		(1u << 0)
#define CPRX_GMSG_LAST		(1u << 1)

/*
 * fds[i] is the number the sender had the i-th passed fd at: the restarted
 * binary finds each at the same number, as after an exec.  state_fd and
 * exe_fd are numbers too (-1: none), among those of the set.
 */
struct cprx_gmsg {
	uint32_t magic;
	uint16_t version;
	uint16_t type;		/* enum cprx_gmsg_type */
	uint32_t flags;		/* CPRX_GMSG_FIRST, CPRX_GMSG_LAST */
	int32_t pid;		/* the sender */
	uint32_t backend;	/* enum cprx_backend */
	uint32_t nr;		/* fds passed with this message */
	int32_t state_fd;
	int32_t exe_fd;
	int32_t guardian_fd;	/* the sender's number for this socket */
	uint32_t reserved;
	char session[64];	/* the session's name (kmod: for the adopt) */
	int32_t fds[CPRX_GMSG_FDS];
};

#endif /* CPRX_GUARDIAN_PROTO_H */
