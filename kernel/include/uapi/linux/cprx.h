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
 * A session belongs to one image of its owner at a time: the one that
 * created it, then each one that retrieves it.  Only that image may change
 * it (PRESERVE, UNPRESERVE, ARM, FINISH) or take files back; another image
 * of the owner (one exec'd without arming) may only QUERY it.  "Not the
 * owner" below means another process, another euid, or another image.
 *
 * Every ioctl argument starts with its size.  The kernel accepts a smaller
 * (older) struct, and a larger one only if the bytes it does not know are
 * zero (E2BIG otherwise), so the structs can grow.
 *
 * Errors every command may return, and then nothing has changed, the
 * caller's struct included: EFAULT (the argument cannot be read or written
 * back), EINVAL (its size is below the command's minimum, or a flag or
 * reserved field is set), E2BIG (larger than a page, or a non-zero byte
 * past the struct the kernel knows), ENOMEM, and ENOTTY (an unknown
 * command, or a session command on /dev/cprx and the reverse).
 *
 * /dev/cprx is root's, mode 0660; the udev rule cprx ships gives it to the
 * group that runs VMMs (kvm).  Sessions and pins are charged to the euid
 * that created the session - in a user namespace, to the user that owns
 * the outermost one, so that a range of subordinate ids counts as one
 * user: module parameters max_sessions (per user), max_total_sessions (all
 * users), max_pins (per session), max_user_pins (per user) and
 * max_total_pins (all users) bound them (ENOSPC).
 *
 * The ioctl type 0xE7 is free in the kernel's ioctl-number table; cprx
 * uses numbers 0x00-0x4f of it.
 */
#ifndef _UAPI_LINUX_CPRX_H
#define _UAPI_LINUX_CPRX_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CPRX_DEVICE		"/dev/cprx"
#define CPRX_IOCTL_TYPE		0xE7
#define CPRX_SESSION_NAME_LEN	64	/* with the NUL */

enum {
	/* on /dev/cprx */
	CPRX_CMD_CREATE_SESSION = 0x00,
	CPRX_CMD_RETRIEVE_SESSION = 0x01,
	CPRX_CMD_ADOPT_SESSION = 0x02,
	/* on a session fd */
	CPRX_CMD_PRESERVE_FD = 0x40,
	CPRX_CMD_UNPRESERVE_FD = 0x41,
	CPRX_CMD_ARM = 0x42,
	CPRX_CMD_RETRIEVE_FD = 0x43,
	CPRX_CMD_FINISH = 0x44,
	CPRX_CMD_QUERY = 0x45,
	CPRX_CMD_PRESERVE_FDS = 0x46,
	CPRX_CMD_SET_GUARDIAN = 0x47,
};

/*
 * CREATE_SESSION: a new session owned by the calling process, charged to its
 * euid.  @name must be NUL-terminated, non-empty, printable ASCII (0x20 to
 * 0x7e) and unique among the caller's live sessions.  Returns the session
 * in @fd (O_CLOEXEC); @fd is written only on success.
 *   EINVAL  a bad name
 *   EEXIST  the caller has a live session of that name
 *   ENOSPC  max_sessions for the euid, or max_total_sessions, reached: a
 *           session counts until its last fd is closed, finished or not
 *   EMFILE  no free fd
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
 * process, as a new fd (O_CLOEXEC); @fd is written only on success.  The
 * session is disarmed by it.
 *   ENOENT  the caller has no live session of that name (another
 *           process's name is no different from a free one), and its
 *           parent adopted none of that name for it (ADOPT_SESSION)
 *   EPERM   not armed; or no exec since the arm; or the caller's euid is
 *           not the creator's; or its uids, gids, groups, user namespace or
 *           LSM labels (those the LSMs report for the task: SELinux, Smack,
 *           AppArmor) differ from those that armed, or it has a capability
 *           (or a securebit other than keep-caps) the arming image had not
 *           and a plain exec would not give it back: what a setuid, setgid
 *           or file-capability exec or an LSM transition changes.
 *           AT_SECURE alone is no refusal: the image can rewrite it, and a
 *           VMM given capabilities by its own file execs with it every time
 *   EMFILE  no free fd
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

/*
 * ADOPT_SESSION: the guardian (SET_GUARDIAN) of session @name, whose owner
 * died in the middle of an update, takes it: the session is armed anew
 * with the guardian's credentials, for a child of the guardian to retrieve
 * (RETRIEVE_SESSION, by name, after its exec) and so become its owner.
 * The guardian gets the session in @fd (O_CLOEXEC) to hand to that child;
 * the pins stay until the child finishes the session or dies after the
 * retrieve, or the guardian exits before it.  Same struct as
 * CREATE_SESSION.
 *   ENOENT  no session of that name is waiting for the caller: not its
 *           guardian, or the owner alive, or the session died with it
 *           (the owner died outside an update: no arm, or finished)
 *   EPERM   the caller's euid is not the session's
 *   EMFILE  no free fd
 */
struct cprx_ioctl_adopt_session {
	__u32 size;
	__u32 flags;		/* must be 0 */
	__u8 name[CPRX_SESSION_NAME_LEN];
	__s32 fd;		/* out */
	__u32 reserved;
};

#define CPRX_IOCTL_ADOPT_SESSION \
	_IO(CPRX_IOCTL_TYPE, CPRX_CMD_ADOPT_SESSION)

/*
 * PRESERVE_FD: pin the file behind @fd under @token.
 *   EPERM   not the owner (the creating process, under the creating euid)
 *   ESRCH   the session is finished or its owner gone
 *   EBUSY   armed
 *   EBADF   @fd is not open
 *   EINVAL  @fd is a cprx session
 *   EEXIST  @token is taken
 *   ENOSPC  max_pins for the session, or max_user_pins for the euid
 */
struct cprx_session_preserve_fd {
	__u32 size;
	__s32 fd;
	__aligned_u64 token;
};

#define CPRX_SESSION_PRESERVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_PRESERVE_FD)

/*
 * PRESERVE_FDS: PRESERVE_FD for @nr entries at once, all or nothing: either
 * every file is pinned under its token, or none is.  @entries is a user
 * pointer to struct cprx_preserve_entry[@nr].  The entries are checked in
 * order, and the first one refused is the error; @failed is then its index.
 * @failed is written back on success (@nr) and on the errors that name an
 * entry (EBADF, EINVAL for an entry, EEXIST, ENOSPC); on any other error
 * the caller's struct is unchanged.
 *   EPERM   not the owner
 *   ESRCH   the session is finished or its owner gone
 *   EBUSY   armed
 *   EINVAL  @reserved set; or entry @failed is a cprx session or has its
 *           @reserved set
 *   EFAULT  @entries cannot be read (nothing is pinned, @failed unchanged)
 *   EBADF   entry @failed's fd is not open
 *   EEXIST  entry @failed's token is taken, by a pin of the session or by
 *           an earlier entry of the batch
 *   ENOSPC  entry @failed is the first that does not fit max_pins for the
 *           session, max_user_pins for the user or max_total_pins.  An @nr
 *           above the room the session has left is refused so before the
 *           entries are read: @failed is then the first entry past that room
 *   E2BIG   @nr above CPRX_PRESERVE_FDS_MAX, whatever the limits: split the
 *           batch (@failed unchanged)
 * Who and when come first: EPERM, ESRCH and EBUSY whatever @nr is.
 */
#define CPRX_PRESERVE_FDS_MAX	65536
struct cprx_preserve_entry {
	__s32 fd;
	__u32 reserved;		/* must be 0 */
	__aligned_u64 token;
};

struct cprx_session_preserve_fds {
	__u32 size;
	__u32 nr;
	__aligned_u64 entries;
	__u32 failed;		/* out */
	__u32 reserved;		/* must be 0 */
};

#define CPRX_SESSION_PRESERVE_FDS _IO(CPRX_IOCTL_TYPE, CPRX_CMD_PRESERVE_FDS)

/*
 * UNPRESERVE_FD: drop the pin of @token.
 *   EPERM not the owner; EBUSY armed; ENOENT no such pin
 */
struct cprx_session_unpreserve_fd {
	__u32 size;
	__u32 reserved;
	__aligned_u64 token;
};

#define CPRX_SESSION_UNPRESERVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_UNPRESERVE_FD)

/*
 * ARM: the session survives the next exec of its owner, and the credentials
 * of the caller are those RETRIEVE_SESSION will require.  With
 * CPRX_ARM_CANCEL, undoes an arm whose exec failed: only in the image that
 * armed.
 *   EPERM   not the owner (CANCEL from an image after the exec included)
 *   ESRCH   finished or owner gone
 *   EBUSY   ARM of an armed session
 *   EINVAL  CANCEL of a session that is not armed; an unknown flag
 */
#define CPRX_ARM_CANCEL		(1u << 0)
struct cprx_session_arm {
	__u32 size;
	__u32 flags;
};

#define CPRX_SESSION_ARM _IO(CPRX_IOCTL_TYPE, CPRX_CMD_ARM)

/*
 * RETRIEVE_FD: a new fd (O_CLOEXEC) on the file pinned under @token, as a
 * received file (the LSMs may refuse it); the pin stays until FINISH.
 *   EPERM   not the owner, or not a retrieved session (an image the
 *           retrieving one exec'd without arming gets nothing)
 *   ESRCH   finished or owner gone
 *   ENOENT  no such pin
 *   EMFILE  no free fd
 */
struct cprx_session_retrieve_fd {
	__u32 size;
	__s32 fd;		/* out */
	__aligned_u64 token;
};

#define CPRX_SESSION_RETRIEVE_FD _IO(CPRX_IOCTL_TYPE, CPRX_CMD_RETRIEVE_FD)

/*
 * FINISH: the update is done; every pin is released, and the session is
 * dead (its name free again; still charged until its last fd is closed).
 *   EPERM not the owner; EBUSY armed
 */
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
#define CPRX_SESSION_DEAD	(1u << 2)	/* finished, or owner gone */
#define CPRX_SESSION_GUARDED	(1u << 3)	/* a guardian is set */
#define CPRX_SESSION_ORPHAN	(1u << 4)	/* owner died, kept for it */

/*
 * QUERY: session state and up to @nr_entries pins into @entries (a user
 * pointer to struct cprx_query_entry[]).  On return @nr_entries holds how
 * many pins there are, which may be more than were copied.  A session
 * adopted by a guardian answers the guardian and its children too, and
 * @owner_pid is then 0 until a child retrieves it.
 *   EPERM   not the owner's process or euid (any image of it may query)
 *   EINVAL  @flags or @owner_pid set (they are out only)
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

/*
 * SET_GUARDIAN: the peer of @fd, a connected AF_UNIX socket, becomes the
 * session's guardian.  Should the owner die in the middle of an update -
 * armed, or retrieved and not finished - while the guardian lives, the
 * session is not ended but kept for the guardian (ADOPT_SESSION).  It is
 * ended when the guardian exits first; outside an update the session dies
 * with its owner as ever.  A kept session still counts against the owner's
 * user limits.  Once per session, before ARM.
 *   EPERM   not the owner; or the peer's euid is not the session's
 *   ESRCH   finished or owner gone; or the peer has exited
 *   EBUSY   armed
 *   EEXIST  a guardian is set
 *   EBADF   @fd is not open
 *   ENOTSOCK @fd is not a socket
 *   EINVAL  not an AF_UNIX socket; or the peer is the owner itself
 *   ENOTCONN no peer
 */
struct cprx_session_set_guardian {
	__u32 size;
	__s32 fd;
};

#define CPRX_SESSION_SET_GUARDIAN _IO(CPRX_IOCTL_TYPE, CPRX_CMD_SET_GUARDIAN)

#endif /* _UAPI_LINUX_CPRX_H */
