/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * cprx.ko uAPI: a pinned fd-table handle for live update by exec.
 *
 * /dev/cprx creates sessions.  A session is a file (anon inode) holding
 * pinned struct file references, each under a 64-bit token.  Arming a
 * session lets it outlive the exec of its owner; after that exec, and only
 * then, the same process (tgid) retrieves it by name and takes the files
 * back by token.  The pins never outlive the owning process.
 *
 * Every ioctl argument starts with its size.  The kernel accepts a smaller
 * (older) struct, and a larger one only if the bytes it does not know are
 * zero (E2BIG otherwise), so the structs can grow.
 */
#ifndef _UAPI_LINUX_CPRX_H
#define _UAPI_LINUX_CPRX_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CPRX_DEVICE		"/dev/cprx"
#define CPRX_IOCTL_TYPE		0xCE
#define CPRX_SESSION_NAME_LEN	64	/* with the NUL */

enum {
	/* on /dev/cprx */
	CPRX_CMD_CREATE_SESSION = 0x00,
	CPRX_CMD_RETRIEVE_SESSION = 0x01,
	/* on a session fd */
	CPRX_CMD_PRESERVE_FD = 0x40,
	CPRX_CMD_UNPRESERVE_FD = 0x41,
	CPRX_CMD_ARM = 0x42,
	CPRX_CMD_RETRIEVE_FD = 0x43,
	CPRX_CMD_FINISH = 0x44,
	CPRX_CMD_QUERY = 0x45,
};

/*
 * CREATE_SESSION: a new session owned by the calling process.  @name must be
 * NUL-terminated, non-empty and unique among the caller's sessions (EEXIST).
 * Returns the session in @fd (O_CLOEXEC).  ENOSPC past the per-process limit.
 */
struct cprx_ioctl_create_session {
	__u32 size;
	__u32 flags;		/* must be 0 */
	__u8 name[CPRX_SESSION_NAME_LEN];
	__s32 fd;		/* out */
	__u32 reserved;		/* must be 0 */
};
#define CPRX_IOCTL_CREATE_SESSION \
	_IO(CPRX_IOCTL_TYPE, CPRX_CMD_CREATE_SESSION)

/*
 * RETRIEVE_SESSION: after an exec, the armed session @name of the calling
 * process, as a new fd (O_CLOEXEC).  The session is disarmed by it.  ENOENT
 * if there is none; EPERM if it is another process's, or not yet past an
 * exec of its owner.
 */
struct cprx_ioctl_retrieve_session {
	__u32 size;
	__u32 flags;		/* must be 0 */
	__u8 name[CPRX_SESSION_NAME_LEN];
	__s32 fd;		/* out */
	__u32 reserved;
};
#define CPRX_IOCTL_RETRIEVE_SESSION \
	_IO(CPRX_IOCTL_TYPE, CPRX_CMD_RETRIEVE_SESSION)

/* PRESERVE_FD: pin the file behind @fd under @token (EEXIST if taken). */
struct cprx_session_preserve_fd {
	__u32 size;
	__s32 fd;
	__aligned_u64 token;
};
#define CPRX_SESSION_PRESERVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_PRESERVE_FD)

/* UNPRESERVE_FD: drop the pin of @token (ENOENT if none). */
struct cprx_session_unpreserve_fd {
	__u32 size;
	__u32 reserved;
	__aligned_u64 token;
};
#define CPRX_SESSION_UNPRESERVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_UNPRESERVE_FD)

/*
 * ARM: the session survives the next exec of its owner.  With
 * CPRX_ARM_CANCEL, undoes an arm whose exec failed.
 */
#define CPRX_ARM_CANCEL		(1u << 0)
struct cprx_session_arm {
	__u32 size;
	__u32 flags;
};
#define CPRX_SESSION_ARM _IO(CPRX_IOCTL_TYPE, CPRX_CMD_ARM)

/*
 * RETRIEVE_FD: a new fd (O_CLOEXEC) on the file pinned under @token.  Only
 * in a retrieved session (EPERM otherwise); the pin stays until FINISH.
 */
struct cprx_session_retrieve_fd {
	__u32 size;
	__s32 fd;		/* out */
	__aligned_u64 token;
};
#define CPRX_SESSION_RETRIEVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_RETRIEVE_FD)

/* FINISH: the update is done; every pin is released. */
struct cprx_session_finish {
	__u32 size;
	__u32 reserved;
};
#define CPRX_SESSION_FINISH _IO(CPRX_IOCTL_TYPE, CPRX_CMD_FINISH)

/* What a pinned file is, for QUERY. */
enum cprx_file_kind {
	CPRX_KIND_OTHER = 0,
	CPRX_KIND_MEMFD,	/* shmem/tmpfs file, memfd included */
	CPRX_KIND_HUGETLB,
	CPRX_KIND_REGULAR,
	CPRX_KIND_PIPE,
	CPRX_KIND_SOCKET,
	CPRX_KIND_EVENTFD,
	CPRX_KIND_CHARDEV,	/* ttys, /dev/kvm, vfio... */
	CPRX_KIND_ANON,		/* other anon inodes */
};

struct cprx_query_entry {
	__aligned_u64 token;
	__u32 kind;		/* enum cprx_file_kind */
	__u32 reserved;
};

#define CPRX_SESSION_ARMED	(1u << 0)
#define CPRX_SESSION_RETRIEVED	(1u << 1)

/*
 * QUERY: session state and up to @nr_entries pins into @entries (a user
 * pointer to struct cprx_query_entry[]).  On return @nr_entries holds how
 * many pins there are, which may be more than were copied.
 */
struct cprx_session_query {
	__u32 size;
	__u32 flags;		/* out: CPRX_SESSION_* */
	__u32 nr_entries;	/* in: capacity; out: pins in the session */
	__u32 owner_pid;	/* out: tgid of the owner */
	__aligned_u64 entries;
	__u8 name[CPRX_SESSION_NAME_LEN];	/* out */
};
#define CPRX_SESSION_QUERY _IO(CPRX_IOCTL_TYPE, CPRX_CMD_QUERY)

#endif /* _UAPI_LINUX_CPRX_H */
