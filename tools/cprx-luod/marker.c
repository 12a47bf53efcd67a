// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Markers: one small file per held session in the state directory, taken
 * at CREATE (as NAME.new), written at HOLD and removed at FINISH.  LUO has no way to list the sessions a
 * kexec brought, and a kernel without LUO has none at all: the markers say
 * what was prepared, so that a VMM is told its state is gone, and why,
 * rather than started afresh as if nothing had been lost.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include "luod.h"

const char *state_name(enum sess_state st)
{
	static const char *const names[] = {
		[S_OPEN] = "open", [S_HELD] = "held", [S_INCOMING] = "incoming",
		[S_RETRIEVED] = "retrieved", [S_LOST] = "lost",
	};

	return st <= S_LOST ? names[st] : "unknown";
}

static void marker_path(const struct luod *d, const char *kname, char *out,
			size_t len)
{
	snprintf(out, len, "%s/%s", d->state_dir, kname);
}

/* A record is at most this long: its file is taken at this size. */
#define MARKER_MAX	1024

static void marker_tmp(const struct luod *d, const struct sess *s, char *out,
		       size_t len)
{
	snprintf(out, len, "%s/%s.new", d->state_dir, s->kname);
}

/*
 * The record's file, taken at CREATE with its blocks: HOLD, with the
 * guest stopped, then needs no new inode nor block, which another uid
 * may have used up meanwhile (root has no reserve of inodes).
 */
int marker_reserve(struct luod *d, struct sess *s)
{
	static const char pad[MARKER_MAX];
	char tmp[PATH_MAX + 8];
	int err;

	marker_tmp(d, s, tmp, sizeof(tmp));
	errno = 0;	/* a short write leaves it: no room */
	s->rfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
		      O_CLOEXEC, 0600);
	if (s->rfd >= 0 && write(s->rfd, pad, sizeof(pad)) == sizeof(pad))
		return 0;
	err = s->rfd < 0 || errno ? errno : ENOSPC;
	marker_release(d, s);
	snprintf(d->why, sizeof(d->why), "cannot make room for the session's "
		 "record in %s: %s", d->state_dir, strerror(err));
	return -err;
}

/* The record's file, not written: the session ends before its HOLD. */
void marker_release(struct luod *d, struct sess *s)
{
	char tmp[PATH_MAX + 8];

	if (s->rfd < 0)
		return;
	close(s->rfd);
	s->rfd = -1;
	marker_tmp(d, s, tmp, sizeof(tmp));
	unlink(tmp);
}

int marker_write(struct luod *d, struct sess *s)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], when[32], rec[MARKER_MAX];
	struct utsname u = { 0 };
	time_t now = time(NULL);
	struct tm tm;
	int n, err = EBADF;

	uname(&u);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	snprintf(s->since, sizeof(s->since), "prepared %s on kernel %s (boot %s)",
		 when, u.release, d->boot_id);
	marker_path(d, s->kname, path, sizeof(path));
	marker_tmp(d, s, tmp, sizeof(tmp));
	n = snprintf(rec, sizeof(rec), "uid %u\nname %s\nboot %s\nsince %s\n",
		     s->uid, s->name, d->boot_id, s->since);
	if (s->rfd < 0)
		goto fail;
	errno = 0;
	if (pwrite(s->rfd, rec, n, 0) != n || ftruncate(s->rfd, n) ||
	    fsync(s->rfd) || rename(tmp, path)) {
		err = errno ? errno : EIO;
		goto fail;
	}
	close(s->rfd);
	s->rfd = -1;
	return 0;
fail:
	snprintf(d->why, sizeof(d->why), "cannot record the session in %s: %s",
		 d->state_dir, strerror(err));
	return -err;
}

void marker_remove(struct luod *d, const struct sess *s)
{
	char path[PATH_MAX];

	marker_path(d, s->kname, path, sizeof(path));
	unlink(path);
}

/* "key value" lines; a marker missing a key is ignored. */
static int marker_read(struct luod *d, const char *file, struct sess *s,
		       char *boot, size_t blen)
{
	char path[PATH_MAX], line[256];
	unsigned int seen = 0;
	FILE *f;

	marker_path(d, file, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "uid %u", &s->uid) == 1)
			seen |= 1;
		else if (!strncmp(line, "name ", 5) &&
			 strlen(line + 5) <= CPRX_LUOD_NAME_MAX)
			seen |= 2, snprintf(s->name, sizeof(s->name), "%s", line + 5);
		else if (!strncmp(line, "boot ", 5))
			seen |= 4, snprintf(boot, blen, "%s", line + 5);
		else if (!strncmp(line, "since ", 6))
			snprintf(s->since, sizeof(s->since), "%s", line + 6);
	}
	fclose(f);
	if (seen != 7 || cprx_luod_kname(s->kname, sizeof(s->kname), s->uid,
					 s->name) || strcmp(s->kname, file))
		return -1;
	return 0;
}

/*
 * At start: a marker from another boot is a session the kexec brought (or
 * lost); one from this boot was held by a daemon that stopped, and the
 * kernel dropped it when that daemon's fds closed.
 */
void markers_load(struct luod *d)
{
	char boot[64];
	struct dirent *e;
	struct sess *s;
	DIR *dir;

	mkdir(d->state_dir, 0700);
	dir = opendir(d->state_dir);
	while (dir && (e = readdir(dir))) {
		if (strncmp(e->d_name, "cprx-", 5))
			continue;
		if (strchr(e->d_name, '.')) {
			/* a file taken for a session that a stop dropped */
			unlinkat(dirfd(dir), e->d_name, 0);
			continue;
		}
		s = sess_new(d);
		if (!s)
			break;
		if (marker_read(d, e->d_name, s, boot, sizeof(boot))) {
			logmsg("ignoring malformed marker %s/%s", d->state_dir,
			       e->d_name);
			sess_free(d, s);
			continue;
		}
		s->state = strcmp(boot, d->boot_id) ? S_INCOMING : S_LOST;
		logmsg("session %s: %s, %s", s->kname, state_name(s->state),
		       s->since);
	}
	if (dir)
		closedir(dir);
}
