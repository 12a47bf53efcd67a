/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-luod: owns /dev/liveupdate (one opener per host) and hands each VMM
 * a session of its own over a Unix socket (common/luod_proto.h).  This
 * header: the daemon's state and what its files offer each other.
 *
 * The daemon never holds a peer's socket nor an fd a peer sent it unvetted:
 * each connection has a reader process (reader.c) that receives from the
 * peer, passes on only shmem memfds and closes the rest itself, so a close
 * that waits on a peer (a FUSE file's flush, a lingering socket) stalls
 * that reader only.
 */
#ifndef CPRX_LUOD_H
#define CPRX_LUOD_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include <sys/types.h>
#include "luod_proto.h"
#include "luo_uapi.h"

#define LUOD_MAX_CONNS		256
#define LUOD_MAX_SESSIONS	256
#define LUOD_MAX_PER_UID	32	/* one uid cannot take every slot */
/* a uid's sessions, each on its connection until held, and some to spare */
#define LUOD_CONNS_PER_UID	48
#define LUOD_DRAIN_MAX		1024	/* messages read from a closing peer */
/*
 * Files one uid may have preserved, all its sessions together: each costs
 * the kernel a page of preserved memory and its bookkeeping, charged to
 * no one until the kexec (64 for each session a uid may hold).
 */
#define LUOD_FILES_PER_UID	(64 * LUOD_MAX_PER_UID)

enum sess_state {
	S_OPEN,		/* created, its connection still preserving */
	S_HELD,		/* prepared: held until the kexec */
	S_INCOMING,	/* from before the kexec, not retrieved yet */
	S_RETRIEVED,	/* retrieved, not finished */
	S_LOST,		/* prepared in this boot by a daemon that stopped */
};

struct conn;

struct fake_fd {
	uint64_t token;
	int fd;
};

struct sess {
	bool used;
	unsigned int uid;
	char name[CPRX_LUOD_NAME_MAX + 1];
	char kname[CPRX_LUO_NAME_LEN];
	enum sess_state state;
	bool gone;			/* retrieved in vain: the kernel has none */
	int sfd;			/* the kernel's session fd, or -1 */
	int rfd;			/* its record's file, from CREATE to HOLD */
	struct fake_fd *fds;		/* --fake-kexec: what it holds */
	unsigned int nr_fds;
	unsigned int nr_files;		/* preserved in this boot */
	struct conn *owner;		/* S_OPEN, S_RETRIEVED: who uses it */
	char since[320];		/* from the marker: boot, kernel, time */
};

/*
 * A connection: its reader's control socket, and the reader, counted
 * against the peer's uid until reaped (a reader stalled in a close holds
 * the slot: a uid stalls no more readers than it may have connections).
 */
struct conn {
	int fd;				/* to the reader, or -1 */
	pid_t reader;			/* until reaped, else 0 */
	uid_t uid;
	pid_t pid;			/* the peer's */
	bool gone;			/* the peer hung up */
	struct sess *s;
	struct sess *held;		/* held by the last request */
};

/*
 * Between the daemon and a reader: each request forwarded with a struct
 * fwd ahead of its text, and a memfd if the peer sent one; each answer
 * with CTL_ANSWER ahead of the reply's text (and fd), or CTL_DROP with a
 * socket for the reader to close (a connection refused, whose peer is gone).
 */
enum fwd_kind {
	FWD_REQ,
	FWD_GONE,	/* the peer hung up */
	FWD_LOST,	/* the peer hung up before the last answer reached it */
};

enum fwd_fd {
	FD_NONE,
	FD_MEMFD,	/* a shmem memfd rides along */
	FD_REFUSED,	/* the peer sent another kind: closed by the reader */
};

struct fwd {
	uint8_t kind;
	uint8_t fd;
	char what[126];			/* FD_REFUSED: what it was */
};

#define CTL_ANSWER	'A'
#define CTL_DROP	'D'

struct luod {
	const char *device;
	const char *state_dir;
	const char *socket;
	char boot_id[64];
	bool fake;			/* --fake-kexec: no device, for tests */
	int devfd;			/* opened at first need, kept */
	int lfd;
	struct conn conns[LUOD_MAX_CONNS];
	struct sess sess[LUOD_MAX_SESSIONS];
	char why[512];			/* the last device error, for ERR */
};

/* dev.c: the device, real (ioctls) or fake (fds kept in the daemon) */
int dev_create(struct luod *d, struct sess *s);
int dev_retrieve(struct luod *d, struct sess *s);
int dev_preserve(struct luod *d, struct sess *s, int fd, uint64_t token);
int dev_get(struct luod *d, struct sess *s, uint64_t token);
int dev_finish(struct luod *d, struct sess *s);
void dev_drop(struct sess *s);
void dev_fake_kexec(struct luod *d);

/* marker.c: what survives the kexec on disk, to say what a reboot lost */
int marker_reserve(struct luod *d, struct sess *s);
void marker_release(struct luod *d, struct sess *s);
int marker_write(struct luod *d, struct sess *s);
void marker_remove(struct luod *d, const struct sess *s);
void markers_load(struct luod *d);
const char *state_name(enum sess_state st);

/* reader.c: a connection's reader; the daemon's side of its socket */
int reader_start(struct conn *c, int peer);
int ctl_recv(int ctl, struct fwd *f, char *buf, size_t len, int *fd);
int ctl_answer(int ctl, const char *msg, int fd);
int ctl_drop(int ctl, int sock);
void peer_close(int sock);

/* verbs.c */
void conn_request(struct luod *d, struct conn *c);
void conn_closed(struct luod *d, struct conn *c);
struct sess *sess_new(struct luod *d);
void sess_free(struct luod *d, struct sess *s);

void __attribute__((format(printf, 1, 2))) logmsg(const char *fmt, ...);

#endif
