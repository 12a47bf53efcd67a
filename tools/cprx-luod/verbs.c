// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The protocol's verbs (common/luod_proto.h).  Every session belongs to the
 * uid SO_PEERCRED gave its creator: lookups match uid and name, so another
 * uid's session is never named, found or touched, only listed to root.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "luod.h"

struct sess *sess_new(struct luod *d)
{
	unsigned int i;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++) {
		if (!d->sess[i].used) {
			memset(&d->sess[i], 0, sizeof(d->sess[i]));
			d->sess[i].used = true;
			d->sess[i].sfd = -1;
			d->sess[i].rfd = -1;
			return &d->sess[i];
		}
	}
	return NULL;
}

void sess_free(struct luod *d, struct sess *s)
{
	marker_release(d, s);
	s->used = false;
}

/* 0, or -errno: the answer will never reach the peer. */
static int reply(struct conn *c, const char *msg, int fd)
{
	int ret = ctl_answer(c->fd, msg, fd);

	if (ret)
		logmsg("pid %d: reply lost: %s", (int)c->pid, strerror(-ret));
	return ret;
}

static void __attribute__((format(printf, 3, 4)))
refuse(struct conn *c, int err, const char *fmt, ...)
{
	char msg[CPRX_LUOD_MSG_MAX];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "ERR %d ", err);

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	reply(c, msg, -1);
}

static struct sess *find(struct luod *d, unsigned int uid, const char *name)
{
	unsigned int i;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++)
		if (d->sess[i].used && d->sess[i].uid == uid &&
		    !strcmp(d->sess[i].name, name))
			return &d->sess[i];
	return NULL;
}

static unsigned int count_uid(const struct luod *d, unsigned int uid)
{
	unsigned int i, n = 0;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++)
		n += d->sess[i].used && d->sess[i].uid == uid;
	return n;
}

static unsigned int files_of_uid(const struct luod *d, unsigned int uid)
{
	unsigned int i, n = 0;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++)
		if (d->sess[i].used && d->sess[i].uid == uid)
			n += d->sess[i].nr_files;
	return n;
}

/*
 * A name is what a session name may be: no '/', no space, no dot, and no
 * control character (it reaches root's status listing and the journal).
 */
static bool name_ok(const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return n && n <= CPRX_LUOD_NAME_MAX && !strpbrk(name, "/ .");
}

/*
 * A record whose state is known gone holds nothing: the VMM was told, and
 * when it prepares again under its name the new session takes its place.
 */
static void drop_dead(struct luod *d, struct conn *c, const char *name)
{
	struct sess *s = find(d, c->uid, name);

	if (!s || (s->state != S_LOST && !s->gone))
		return;
	logmsg("pid %d uid %u: %s replaces its %s record (%s)", (int)c->pid,
	       s->uid, s->kname, s->state == S_LOST ? "lost" : "gone", s->since);
	marker_remove(d, s);
	dev_drop(s);
	sess_free(d, s);
}

static void do_create(struct luod *d, struct conn *c, const char *name)
{
	struct sess *s;
	int ret;

	if (c->s)
		return refuse(c, EBUSY, "this connection has session '%s' "
			      "already", c->s->name);
	if (!name_ok(name))
		return refuse(c, EINVAL, "session name '%s' is not 1 to %d "
			      "bytes without '/', '.', spaces or control "
			      "characters", name, CPRX_LUOD_NAME_MAX);
	drop_dead(d, c, name);
	if (count_uid(d, c->uid) >= LUOD_MAX_PER_UID)
		return refuse(c, ENOSPC, "uid %u holds %d sessions, the most "
			      "one uid may", (unsigned int)c->uid,
			      LUOD_MAX_PER_UID);
	if (find(d, c->uid, name))
		return refuse(c, EEXIST, "uid %u has a session '%s' already "
			      "(one per VMM: give each its own name)",
			      (unsigned int)c->uid, name);
	s = sess_new(d);
	if (!s)
		return refuse(c, ENOSPC, "cprx-luod holds %d sessions, its "
			      "limit", LUOD_MAX_SESSIONS);
	s->uid = c->uid;
	snprintf(s->name, sizeof(s->name), "%s", name);
	cprx_luod_kname(s->kname, sizeof(s->kname), s->uid, name);
	ret = marker_reserve(d, s);
	if (!ret)
		ret = dev_create(d, s);
	if (ret) {
		sess_free(d, s);
		return refuse(c, -ret, "%s", d->why);
	}
	s->state = S_OPEN;
	s->owner = c;
	c->s = s;
	logmsg("pid %d uid %u: created %s", (int)c->pid, s->uid, s->kname);
	reply(c, "OK", -1);
}

static bool parse_token(const char *p, uint64_t *token)
{
	char *end;

	if (strlen(p) != 16)
		return false;
	errno = 0;
	*token = strtoull(p, &end, 16);
	return !errno && !*end;
}

/*
 * What preserving @fd would make root do for the peer.  It freezes the
 * file for all who share it (no resize, no fallocate until the kexec),
 * pins it, and LUO takes an inode in one session only: the peer must be
 * able to write it, not just read.  And LUO allocates, zeroes and pins a
 * page for every hole inside this process's ioctl, charged to the daemon
 * while every VMM waits: the peer allocates its pages itself (libcprx
 * does), paid by its own uid.  0, or -errno with the reason in d->why.
 */
static int memfd_ok(struct luod *d, int fd)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long want;
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fstat(fd, &st) < 0)
		return -errno;
	if ((fl & O_ACCMODE) != O_RDWR) {
		snprintf(d->why, sizeof(d->why), "the memfd is not open for "
			 "writing: preserving it would freeze it for everyone "
			 "who has it");
		return -EACCES;
	}
	want = ((unsigned long long)st.st_size + page - 1) / page * page;
	if ((unsigned long long)st.st_blocks * 512 < want) {
		snprintf(d->why, sizeof(d->why), "the memfd has %llu bytes of "
			 "holes in its %lld: LUO would allocate them in "
			 "cprx-luod; fallocate it first", want -
			 (unsigned long long)st.st_blocks * 512,
			 (long long)st.st_size);
		return -EFBIG;
	}
	return 0;
}

static void do_preserve(struct luod *d, struct conn *c, const char *arg,
			const struct fwd *f, int fd)
{
	uint64_t token;
	int ret;

	if (!c->s || c->s->state != S_OPEN)
		return refuse(c, EINVAL, "PRESERVE needs a session created on "
			      "this connection and not held yet");
	if (f->fd == FD_REFUSED)
		return refuse(c, EOPNOTSUPP, "%s is not a shmem memfd",
			      f->what[0] ? f->what : "the fd");
	if (fd < 0 || !parse_token(arg, &token))
		return refuse(c, EINVAL, "PRESERVE takes a 16-digit hex token "
			      "and one fd");
	if (files_of_uid(d, c->uid) >= LUOD_FILES_PER_UID)
		return refuse(c, ENOSPC, "uid %u has %d files preserved, the "
			      "most one uid may", (unsigned int)c->uid,
			      LUOD_FILES_PER_UID);
	d->why[0] = '\0';
	ret = memfd_ok(d, fd);
	if (!ret)
		ret = dev_preserve(d, c->s, fd, token);
	if (ret)
		return refuse(c, -ret, "%s", d->why[0] ? d->why : strerror(-ret));
	c->s->nr_files++;
	reply(c, "OK", -1);
}

static void unhold(struct luod *d, struct conn *c);

static void do_hold(struct luod *d, struct conn *c)
{
	int ret;

	if (!c->s || c->s->state != S_OPEN)
		return refuse(c, EINVAL, "HOLD needs a session created on this "
			      "connection");
	ret = marker_write(d, c->s);
	if (ret)
		return refuse(c, -ret, "%s", d->why);
	c->s->state = S_HELD;
	c->s->owner = NULL;
	logmsg("pid %d uid %u: %s held until the kexec", (int)c->pid,
	       c->s->uid, c->s->kname);
	c->held = c->s;
	c->s = NULL;
	/* an OK its VMM never gets: it gives up and runs its guest on */
	if (reply(c, "OK", -1))
		unhold(d, c);
}

/*
 * The OK to a HOLD never reached the VMM (it hung up first): it gave up
 * waiting and runs its guest on, so holding its session would carry the
 * guest's new RAM with its old state into the kexec.
 */
static void unhold(struct luod *d, struct conn *c)
{
	struct sess *s = c->held;

	c->held = NULL;
	if (!s || !s->used || s->state != S_HELD || s->uid != c->uid)
		return;
	logmsg("pid %d uid %u: gone before the answer to its HOLD, not "
	       "holding %s", (int)c->pid, s->uid, s->kname);
	marker_remove(d, s);
	dev_drop(s);
	sess_free(d, s);
}

static void do_retrieve(struct luod *d, struct conn *c, const char *name)
{
	struct sess *s = find(d, c->uid, name);
	int ret;

	if (c->s)
		return refuse(c, EBUSY, "this connection has session '%s' "
			      "already", c->s->name);
	if (!s || s->state == S_OPEN || s->state == S_HELD) {
		reply(c, "NONE", -1);
		return;
	}
	if (s->state == S_LOST)
		return refuse(c, ENOENT, "session '%s' (%s) was dropped by the "
			      "kernel: cprx-luod stopped before the kexec, and "
			      "with it the session's fd", name, s->since);
	if (s->owner)
		return refuse(c, EBUSY, "session '%s' is being resumed by pid "
			      "%d", name, (int)s->owner->pid);
	d->why[0] = '\0';
	ret = dev_retrieve(d, s);
	s->gone = ret == -ENOENT || ret == -ENODEV;
	if (ret)
		return refuse(c, ret == -ENODEV ? ENODEV : -ret, "the state of "
			      "session '%s' (%s) is gone: %s", name, s->since,
			      ret == -ENOENT ? "the kernel has no such session "
			      "(the reboot was not a live update kexec)" : d->why);
	s->state = S_RETRIEVED;
	s->owner = c;
	c->s = s;
	logmsg("pid %d uid %u: retrieved %s", (int)c->pid, s->uid, s->kname);
	reply(c, "OK", -1);
}

static void do_get(struct luod *d, struct conn *c, const char *arg)
{
	uint64_t token;
	int fd;

	if (!c->s || c->s->state != S_RETRIEVED)
		return refuse(c, EINVAL, "GET needs a session retrieved on this "
			      "connection");
	if (!parse_token(arg, &token))
		return refuse(c, EINVAL, "GET takes a 16-digit hex token");
	fd = dev_get(d, c->s, token);
	if (fd < 0)
		return refuse(c, -fd, "session '%s' has no file under token "
			      "%s: %s", c->s->name, arg, strerror(-fd));
	reply(c, "OK", fd);
	close(fd);
}

static void do_finish(struct luod *d, struct conn *c)
{
	struct sess *s = c->s;
	int ret;

	if (!s || s->state != S_RETRIEVED)
		return refuse(c, EINVAL, "FINISH needs a session retrieved on "
			      "this connection");
	ret = dev_finish(d, s);
	if (ret)
		return refuse(c, -ret, "%s", d->why);
	marker_remove(d, s);
	logmsg("pid %d uid %u: finished %s", (int)c->pid, s->uid, s->kname);
	sess_free(d, s);
	c->s = NULL;
	reply(c, "OK", -1);
}

/* a line: "\n<uid> <name> <state> <since>", each at its longest */
_Static_assert(LUOD_MAX_SESSIONS * (1 + 10 + 1 + CPRX_LUOD_NAME_MAX + 1 + 9 +
				    1 + sizeof(((struct sess *)0)->since)) + 16 <=
	       CPRX_LUOD_REPLY_MAX, "a STATUS of every session fits its reply");

/* Root sees every session, anyone else their own: all of them. */
static void do_status(struct luod *d, struct conn *c)
{
	static char msg[CPRX_LUOD_REPLY_MAX];
	size_t off;
	unsigned int i, n = 0;

	for (i = 0; i < LUOD_MAX_SESSIONS; i++)
		n += d->sess[i].used && (!c->uid || d->sess[i].uid == c->uid);
	off = snprintf(msg, sizeof(msg), "OK %u", n);
	for (i = 0; i < LUOD_MAX_SESSIONS && off < sizeof(msg); i++) {
		const struct sess *s = &d->sess[i];

		if (!s->used || (c->uid && s->uid != c->uid))
			continue;
		off += snprintf(msg + off, sizeof(msg) - off, "\n%u %s %s %s",
				s->uid, s->name, state_name(s->state),
				s->since[0] ? s->since : "-");
	}
	reply(c, msg, -1);
}

static void do_kexec(struct luod *d, struct conn *c)
{
	if (!d->fake)
		return refuse(c, EPERM, "KEXEC is for --fake-kexec (tests); a "
			      "real kexec is reboot(LINUX_REBOOT_CMD_KEXEC)");
	if (c->uid)
		return refuse(c, EPERM, "only root may KEXEC");
	dev_fake_kexec(d);
	logmsg("fake kexec: held sessions are incoming now");
	reply(c, "OK", -1);
}

static void conn_gone(struct luod *d, struct conn *c, bool lost);

/*
 * What a reader passes on: a request (with a vetted memfd at most: the
 * daemon's close of it waits on no one), or that its peer hung up.
 */
void conn_request(struct luod *d, struct conn *c)
{
	char msg[CPRX_LUOD_MSG_MAX], *arg;
	struct fwd f;
	int fd, n = ctl_recv(c->fd, &f, msg, sizeof(msg), &fd);

	if (n == -EAGAIN)
		return;
	if (n < 0) {
		conn_closed(d, c);
		return;
	}
	if (f.kind != FWD_REQ || c->gone) {
		if (fd >= 0)
			close(fd);
		return conn_gone(d, c, f.kind == FWD_LOST);
	}
	c->held = NULL;
	arg = strchr(msg, ' ');
	if (arg)
		*arg++ = '\0';
	else
		arg = msg + strlen(msg);
	if (!strcmp(msg, "CREATE"))
		do_create(d, c, arg);
	else if (!strcmp(msg, "PRESERVE"))
		do_preserve(d, c, arg, &f, fd);
	else if (!strcmp(msg, "HOLD"))
		do_hold(d, c);
	else if (!strcmp(msg, "RETRIEVE"))
		do_retrieve(d, c, arg);
	else if (!strcmp(msg, "GET"))
		do_get(d, c, arg);
	else if (!strcmp(msg, "FINISH"))
		do_finish(d, c);
	else if (!strcmp(msg, "STATUS"))
		do_status(d, c);
	else if (!strcmp(msg, "KEXEC"))
		do_kexec(d, c);
	else
		refuse(c, EINVAL, "unknown verb '%.32s'", msg);
	if (fd >= 0)
		close(fd);	/* a memfd: its close waits on no one */
}

/*
 * A session still open when its VMM goes is dropped: nothing stays pinned
 * for an update that never got as far as HOLD.  A retrieved one stays,
 * unfinished, for the status verb and the next try.  The slot stays the
 * reader's until it exits, closing what the peer left (conn_closed).
 */
static void conn_gone(struct luod *d, struct conn *c, bool lost)
{
	struct sess *s = c->s;

	if (lost)
		unhold(d, c);
	c->held = NULL;
	c->gone = true;
	c->s = NULL;
	if (s && s->state == S_OPEN) {
		logmsg("pid %d uid %u: gone before HOLD, dropping %s",
		       (int)c->pid, s->uid, s->kname);
		dev_drop(s);
		sess_free(d, s);
	} else if (s) {
		s->owner = NULL;
	}
}

/* The reader exited: its socket goes; the slot once the reader is reaped. */
void conn_closed(struct luod *d, struct conn *c)
{
	conn_gone(d, c, false);
	close(c->fd);	/* holds vetted memfds at most */
	c->fd = -1;
}
