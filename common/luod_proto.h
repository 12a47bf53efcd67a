/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-luod's protocol: libcprx (backend "luo") and `cprx-luod status` talk
 * to the daemon that owns /dev/liveupdate over a SOCK_SEQPACKET Unix
 * socket.  One request, one reply; each a line of text, an fd riding along
 * (SCM_RIGHTS) where said:
 *
 *   CREATE <name>       -> OK | ERR <errno> <why>   a session for this peer
 *   PRESERVE <token> +fd -> OK | ERR ...            token: 16 hex digits
 *   HOLD                -> OK | ERR ...             keep it until the kexec
 *   RETRIEVE <name>     -> OK | NONE | ERR ...      after the kexec
 *   GET <token>         -> OK +fd | ERR ...
 *   FINISH              -> OK | ERR ...             the update is final
 *   STATUS              -> OK <n>, then n lines "<uid> <name> <state> <since>"
 *                          (up to CPRX_LUOD_REPLY_MAX bytes; the rest 4096)
 *   KEXEC               -> OK | ERR ...             --fake-kexec only
 *
 * A connection has at most one session.  The daemon names it after the
 * peer's uid (SO_PEERCRED), so one uid never sees another's.  A session
 * created on a connection that closes before HOLD is dropped with it.
 */
#ifndef CPRX_LUOD_PROTO_H
#define CPRX_LUOD_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define CPRX_LUOD_SOCKET	"/run/cprx-luod.sock"
/* Overrides the socket path (libcprx, cprx-luod status). */
#define CPRX_LUOD_ENV		"CPRX_LUOD_SOCKET"
#define CPRX_LUOD_MSG_MAX	4096
/*
 * The longest reply, STATUS's: a line of at most 400 bytes for each of
 * the daemon's 256 sessions.  Within a Unix socket's default send buffer.
 */
#define CPRX_LUOD_REPLY_MAX	(128 * 1024)
/* The longest name a VMM may give: "cprx-<uid>-" takes the rest of 63. */
#define CPRX_LUOD_NAME_MAX	47

/* Sends @msg and, if @fd >= 0, @fd with it.  0 or -errno. */
int cprx_luod_send(int sock, const char *msg, int fd);
/* The same from @niov pieces, with sendmsg's @flags (MSG_DONTWAIT). */
int cprx_luod_sendv(int sock, const struct iovec *iov, int niov, int fd,
		    int flags);
/*
 * Receives one message into @buf (NUL-terminated, at most @len - 1 bytes)
 * and the fd sent with it into *@fd (-1 if none; close-on-exec).  Returns
 * its length, or -errno (-ECONNRESET when the peer closed).  A message
 * with more than one fd is refused (-EPROTO), the extra fds closed.
 */
int cprx_luod_recv(int sock, char *buf, size_t len, int *fd);
/*
 * Closes an fd a peer sent without waiting on it: a socket with SO_LINGER
 * set would hold the closer until its unsent data is gone.
 */
void cprx_luod_drop_fd(int fd);
/*
 * The socket path: $CPRX_LUOD_SOCKET when set (and the process runs with
 * no more privilege than its user: secure_getenv), else CPRX_LUOD_SOCKET.
 */
const char *cprx_luod_path(void);
/* "cprx-<uid>-<name>": the kernel's name for a VMM's session. */
int cprx_luod_kname(char *out, size_t len, unsigned int uid, const char *name);

#endif /* CPRX_LUOD_PROTO_H */
