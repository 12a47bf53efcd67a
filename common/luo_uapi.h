/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The few constants of Linux's Live Update Orchestrator uAPI (/dev/liveupdate,
 * Linux 6.19+) that cprx-luod uses, for build hosts whose kernel headers
 * predate it.  Every struct starts with its size; all ioctls are _IO on type
 * 0xBA.  Session names are at most 63 bytes plus the NUL.
 */
#ifndef CPRX_LUO_UAPI_H
#define CPRX_LUO_UAPI_H

#include <stdint.h>
#include <sys/ioctl.h>

#define CPRX_LUO_DEVICE		"/dev/liveupdate"
#define CPRX_LUO_NAME_LEN	64

#define CPRX_LUO_IOC_TYPE	0xBA
/* on /dev/liveupdate */
#define CPRX_LUO_CREATE_SESSION		_IO(CPRX_LUO_IOC_TYPE, 0x00)
#define CPRX_LUO_RETRIEVE_SESSION	_IO(CPRX_LUO_IOC_TYPE, 0x01)
/* on a session fd */
#define CPRX_LUO_SESSION_PRESERVE_FD	_IO(CPRX_LUO_IOC_TYPE, 0x40)
#define CPRX_LUO_SESSION_RETRIEVE_FD	_IO(CPRX_LUO_IOC_TYPE, 0x41)
#define CPRX_LUO_SESSION_FINISH		_IO(CPRX_LUO_IOC_TYPE, 0x42)

/* CREATE_SESSION and RETRIEVE_SESSION */
struct cprx_luo_session_arg {
	uint32_t size;
	int32_t fd;		/* out: the session's fd */
	uint8_t name[CPRX_LUO_NAME_LEN];
};

/* SESSION_PRESERVE_FD (fd in) and SESSION_RETRIEVE_FD (fd out) */
struct cprx_luo_fd_arg {
	uint32_t size;
	int32_t fd;
	uint64_t token __attribute__((aligned(8)));
};

struct cprx_luo_finish_arg {
	uint32_t size;
	uint32_t reserved;
};

#endif /* CPRX_LUO_UAPI_H */
