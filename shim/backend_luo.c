// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Backend "luo": guest RAM and the state survive a kexec into a new kernel
 * in a Live Update Orchestrator session.  /dev/liveupdate has one opener
 * per host, so the VMM never opens it: cprx-luod does, and this backend
 * asks it (common/luod_proto.h) for a session of this VMM's own, sends it
 * the memfds, and at cprx_kexec_prepare the state and HOLD: the daemon
 * keeps the session until the kexec, after this process is gone.  After
 * the reboot a new VMM's cprx_incoming retrieves it by name.
 *
 * LUO preserves shmem memfds only (not hugetlb, no device fd): preflight
 * refuses the rest by token before the guest stops.  A kexec cannot be
 * undone, so there is no rollback and no exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include "internal.h"
#include "luod_proto.h"

#define TOKEN_STATE	(~0ull)
#define RECV_TIMEOUT_S	30

#define NO_DAEMON_HINT	"start it: systemctl enable --now cprx-luod.socket " \
			"(or set " CPRX_LUOD_ENV " to its socket)"

/* FNV-1a, as the kmod backend: a token name to LUO's 64-bit token. */
static uint64_t token_of(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
	return h == TOKEN_STATE ? h - 1 : h;
}

static void luo_close(struct cprx_session *s);

/*
 * The daemon must be root's (or this user's own): a socket path in a
 * shared directory may be served by another uid, which would see this
 * VMM's session and, after a kexec, hand it RAM and state to resume.
 */
static int daemon_trusted(struct cprx_session *s, const char *path)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(s->luo_sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid && cred.uid != geteuid())) {
		luo_close(s);
		return cprx_fail(s, s->luo_unreached ? s->luo_unreached : EPERM,
				 "point " CPRX_LUOD_ENV " at root's "
				 "cprx-luod", "the cprx-luod socket %s is served "
				 "by uid %d, neither root nor this VMM's",
				 path, len == sizeof(cred) ? (int)cred.uid : -1);
	}
	return 0;
}

/*
 * A connection to cprx-luod, or -@unreachable when there is none to
 * connect to (ENODEV before an update; ECONNREFUSED after a kexec, when
 * nothing was taken and a later call may still resume).  After a kexec
 * the same holds of a socket that is not root's daemon's, and of a daemon
 * that takes no request (ask()): it has taken nothing either.
 */
static int connect_daemon(struct cprx_session *s, int unreachable)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = RECV_TIMEOUT_S };
	const char *path = cprx_luod_path();
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return cprx_fail(s, ENAMETOOLONG, "shorten " CPRX_LUOD_ENV,
				 "cprx-luod socket path '%s' is too long", path);
	strcpy(sa.sun_path, path);
	s->luo_unreached = unreachable == ECONNREFUSED ? unreachable : 0;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cprx_fail(s, errno, NULL, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		close(fd);
		return cprx_fail(s, unreachable, NO_DAEMON_HINT, "the luo backend "
				 "needs cprx-luod, which owns /dev/liveupdate: "
				 "connecting to %s failed: %s", path, strerror(err));
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	s->luo_sock = fd;
	return daemon_trusted(s, path);
}

static void luo_close(struct cprx_session *s);

/*
 * One request, one reply.  0 on "OK", 1 on "NONE", else the daemon's errno
 * (negative) with its words in the session's message.  *@fdp, if given,
 * gets the fd the reply carried (-1 if none).  After a kexec, a request
 * the daemon did not take, unanswered or refused with the connection
 * (cprx-luod(8): that refusal carries the connection back), is
 * s->luo_unreached's errno: nothing was taken.
 */
static int ask(struct cprx_session *s, const char *req, int fd, int *fdp,
	       const char *hint)
{
	char msg[CPRX_LUOD_MSG_MAX], *why;
	int rfd = -1, ret, err;
	bool carried;

	ret = cprx_luod_send(s->luo_sock, req, fd);
	if (!ret)
		ret = cprx_luod_recv(s->luo_sock, msg, sizeof(msg), &rfd);
	if (ret < 0) {
		/*
		 * Unanswered, it may still be acted on: a late HOLD would keep
		 * a state this VMM runs on from.  Hanging up stops that (the
		 * daemon drops a session whose connection is gone).
		 */
		luo_close(s);
		return cprx_fail(s, s->luo_unreached ? s->luo_unreached :
				 ECONNRESET, "check cprx-luod's log "
				 "(journalctl -u cprx-luod)", "cprx-luod did not "
				 "answer '%.16s': %s", req, strerror(-ret));
	}
	carried = rfd >= 0;
	if (fdp)
		*fdp = rfd;
	else if (rfd >= 0)
		close(rfd);
	if (!strcmp(msg, "OK"))
		return 0;
	if (!strcmp(msg, "NONE"))
		return 1;
	if (fdp && *fdp >= 0)
		close(*fdp);
	err = (int)strtol(msg + 4, &why, 10);
	if (strncmp(msg, "ERR ", 4) || err <= 0)
		err = EPROTO;
	if (carried && s->luo_unreached) {
		err = s->luo_unreached;
		hint = "run again: cprx-luod refused the connection, not the "
		       "request";
	}
	return cprx_fail(s, err, hint, "cprx-luod: %s", *why ? why + 1 : msg);
}

static int luo_open(struct cprx_session *s)
{
	char req[128];
	int ret;

	if (s->opts.target == CPRX_STATE_FILE)
		return cprx_fail(s, EINVAL, "use CPRX_STATE_MEMFD with the luo "
				 "backend", "the luo backend keeps the state in "
				 "its LUO session: a state file would outlive it");
	if (strlen(s->name) > CPRX_LUOD_NAME_MAX)
		return cprx_fail(s, ENAMETOOLONG, "use a session name of at most "
				 "47 bytes with the luo backend", "session name "
				 "'%s' is too long for a LUO session (the daemon "
				 "adds the uid)", s->name);
	ret = connect_daemon(s, ENODEV);
	if (ret)
		return ret;
	snprintf(req, sizeof(req), "CREATE %s", s->name);
	return ask(s, req, -1, NULL, "give each VMM of a uid its own session "
		   "name; see cprx-luod(8)");
}

static void luo_close(struct cprx_session *s)
{
	/* an update not held is dropped with the connection */
	if (s->luo_sock >= 0)
		close(s->luo_sock);
	s->luo_sock = -1;
}

/* Sent at preflight (or at cprx_kexec_prepare): preserve only records. */
static int luo_preserve(struct cprx_session *s, struct cprx_entry *e)
{
	unsigned int i;

	e->handle = token_of(e->token);
	for (i = 0; i < s->nr_ents; i++)
		if (s->ents[i].handle == e->handle)
			return cprx_fail(s, EEXIST, "rename one of the tokens",
					 "token '%s' collides with '%s' in LUO's "
					 "64-bit token space", e->token,
					 s->ents[i].token);
	e->pinned = false;
	return 0;
}

static void luo_unpreserve(struct cprx_session *s, struct cprx_entry *e)
{
	if (e->pinned)	/* a session cannot drop one file: drop them all */
		s->luo_stale = true;
}

/*
 * LUO allocates a page for every hole of a memfd it preserves; cprx-luod
 * takes none (it would pay for them), so the VMM allocates them here, on
 * its own account: the pages the kernel would have added, no more.
 */
static int fill_holes(struct cprx_session *s, int fd, const char *what)
{
	long page = sysconf(_SC_PAGESIZE);
	struct stat st;

	if (fstat(fd, &st) < 0)
		return cprx_fail(s, errno, NULL, "fstat of %s: %s", what,
				 strerror(errno));
	if (!st.st_size ||
	    (unsigned long long)st.st_blocks * 512 >=
	    ((unsigned long long)st.st_size + page - 1) / page * page)
		return 0;
	if (fallocate(fd, 0, 0, st.st_size) < 0)
		return cprx_fail(s, errno, "LUO keeps every page of a memfd: "
				 "the host needs the memory for all of it",
				 "allocating the %lld bytes of %s failed: %s",
				 (long long)st.st_size, what, strerror(errno));
	return 0;
}

static int send_fd(struct cprx_session *s, int fd, uint64_t token,
		   const char *what)
{
	char req[64], hint[CPRX_MSG_MAX];
	int ret = fill_holes(s, fd, what);

	if (ret)
		return ret;

	snprintf(hint, sizeof(hint), "LUO preserves only shmem memfds; %s "
		 "must be one", what);
	snprintf(req, sizeof(req), "PRESERVE %016" PRIx64, token);
	return ask(s, req, fd, NULL, hint);
}

/*
 * LUO cannot take a file back out of a session: an unpreserve after a
 * flush needs a new one (the daemon drops the old with its connection).
 */
static int renew(struct cprx_session *s)
{
	unsigned int i;
	int ret;

	luo_close(s);
	ret = luo_open(s);
	for (i = 0; i < s->nr_ents; i++)
		s->ents[i].pinned = false;
	s->luo_stale = false;
	return ret;
}

static int luo_flush(struct cprx_session *s)
{
	unsigned int i;
	int ret = s->luo_stale ? renew(s) : 0;

	for (i = 0; !ret && i < s->nr_ents; i++) {
		struct cprx_entry *e = &s->ents[i];

		if (e->pinned)
			continue;
		if (!cprx_same_file(e->fd, e->dev, e->ino, NULL))
			return cprx_fail(s, EBADF, "keep preserved fds open until "
					 "the update", "fd %d of '%s' was closed "
					 "or replaced", e->fd, e->token);
		ret = send_fd(s, e->fd, e->handle, e->token);
		e->pinned = !ret;
	}
	return ret;
}

/*
 * What LUO can preserve: a shmem memfd.  0, or -errno with @why naming
 * what the fd is instead.
 */
int cprx_luo_check_fd(int fd, char *why, size_t len)
{
	char link[PATH_MAX];
	struct statfs sfs;

	if (cprx_fd_link(fd, link, sizeof(link)) || fstatfs(fd, &sfs)) {
		snprintf(why, len, "fd %d is not open", fd);
		return -EBADF;
	}
	if (sfs.f_type == HUGETLBFS_MAGIC) {
		snprintf(why, len, "fd %d is a hugetlb file (%s): LUO preserves "
			 "no hugetlb memfd", fd, link);
		return -EOPNOTSUPP;
	}
	if (sfs.f_type != TMPFS_MAGIC || strncmp(link, "/memfd:", 7)) {
		snprintf(why, len, "fd %d is %s, not a memfd: LUO preserves only "
			 "shmem memfds across a kexec", fd, link);
		return -EOPNOTSUPP;
	}
	snprintf(why, len, "fd %d is a shmem memfd (%s)", fd, link);
	return 0;
}

static int luo_arm(struct cprx_session *s, char *field, size_t len)
{
	(void)field;
	(void)len;
	return cprx_fail(s, EOPNOTSUPP, "call cprx_kexec_prepare, then kexec",
			 "the luo backend survives a kexec, not an exec");
}

static void luo_nothing(struct cprx_session *s)
{
	(void)s;
}

static void luo_field(const struct cprx_session *s, char *field, size_t len)
{
	(void)s;
	snprintf(field, len, "luo=1");
}

/*
 * The state last: sealed, so that nothing changes it before the kexec.
 * A refusal leaves a session that may hold the state: the next try
 * starts a new one.
 */
int cprx_luo_hold(struct cprx_session *s)
{
	int ret = luo_flush(s);

	if (!ret)
		ret = send_fd(s, s->state_fd, TOKEN_STATE, "the state");
	if (!ret)
		ret = ask(s, "HOLD", -1, NULL, "check cprx-luod's state "
			  "directory (/var/lib/cprx-luod)");
	if (ret)
		s->luo_stale = true;
	return ret;
}

/*
 * New kernel: the session named @name of this uid.  1 found, 0 none (a
 * fresh start), or -errno: the state is gone (the daemon says why).
 */
int cprx_luo_retrieve(struct cprx_session *s, const char *name)
{
	char req[128];
	int ret;

	if (strlen(name) > CPRX_LUOD_NAME_MAX)
		return cprx_fail(s, ENAMETOOLONG, "use the name the session was "
				 "opened with", "session name '%s' is too long "
				 "for a LUO session", name);
	ret = connect_daemon(s, ECONNREFUSED);
	if (ret)
		return ret;
	snprintf(req, sizeof(req), "RETRIEVE %s", name);
	ret = ask(s, req, -1, NULL, "the guest cannot be resumed: start it "
		  "afresh; to keep it across the next kexec, boot a kernel with "
		  "liveupdate=on and KHO (CONFIG_LIVEUPDATE, "
		  "CONFIG_KEXEC_HANDOVER)");
	if (ret == 1)
		s->luo_unreached = 0;
	if (ret)
		return ret == 1 ? 0 : ret;
	ret = ask(s, "GET " "ffffffffffffffff", -1, &s->state_fd,
		  "the state is lost; the guest cannot be resumed");
	if (ret < 0)
		return ret;
	/* taken: the failures of later requests are theirs */
	s->luo_unreached = 0;
	return 1;
}

static int luo_incoming(struct cprx_session *s, const struct cprx_handover *h)
{
	(void)h;
	return cprx_fail(s, EINVAL, "unset " CPRX_ENV ": after a kexec, "
			 "cprx_incoming finds the session by "
			 "cprx_options.kexec_session", CPRX_ENV " names a "
			 "luo session: it is never handed over by exec");
}

static int luo_retrieve_fd(struct cprx_session *s, const struct cprx_rec_fd *r,
			   int *fdp)
{
	char req[64];
	int fd = -1, ret;

	snprintf(req, sizeof(req), "GET %016" PRIx64, r->handle);
	ret = ask(s, req, -1, &fd, "the previous VMM must not unpreserve what "
		  "the state lists");
	if (ret)
		return ret < 0 ? ret : cprx_fail(s, EPROTO, NULL, "cprx-luod "
						 "answered GET with NONE");
	if (fd < 0)
		return cprx_fail(s, EPROTO, NULL, "cprx-luod sent no fd for "
				 "token '%s'", r->token);
	*fdp = fd;
	return 0;
}

static void luo_commit(struct cprx_session *s)
{
	/* a refusal leaves it listed by `cprx-luod status`: nothing to undo */
	ask(s, "FINISH", -1, NULL, NULL);
	luo_close(s);
}

const struct cprx_backend_ops cprx_backend_luo = {
	.name = "luo",
	.id = CPRX_BACKEND_LUO,
	.open = luo_open,
	.close = luo_close,
	.preserve = luo_preserve,
	.unpreserve = luo_unpreserve,
	.flush = luo_flush,
	.arm = luo_arm,
	.disarm = luo_nothing,
	.field = luo_field,
	.arm_now = luo_nothing,
	.incoming = luo_incoming,
	.retrieve = luo_retrieve_fd,
	.commit = luo_commit,
};
