// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Markers: one small file per held session in the state directory, written
 * at HOLD and removed at FINISH.  LUO has no way to list the sessions a
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

int marker_write(struct luod *d, struct sess *s)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], when[32];
	struct utsname u = { 0 };
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;
	int err;

	uname(&u);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	snprintf(s->since, sizeof(s->since), "prepared %s on kernel %s (boot %s)",
		 when, u.release, d->boot_id);
	marker_path(d, s->kname, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "we");
	if (!f)
		goto fail;
	fprintf(f, "uid %u\nname %s\nboot %s\nsince %s\n", s->uid, s->name,
		d->boot_id, s->since);
	if (fflush(f) || fsync(fileno(f))) {
		fclose(f);
		goto fail;
	}
	fclose(f);
	if (!rename(tmp, path))
		return 0;
fail:
	err = errno;
	unlink(tmp);
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
		if (strncmp(e->d_name, "cprx-", 5) || strchr(e->d_name, '.'))
			continue;
		s = sess_new(d);
		if (!s)
			break;
		if (marker_read(d, e->d_name, s, boot, sizeof(boot))) {
			logmsg("ignoring malformed marker %s/%s", d->state_dir,
			       e->d_name);
			sess_free(s);
			continue;
		}
		s->state = strcmp(boot, d->boot_id) ? S_INCOMING : S_LOST;
		logmsg("session %s: %s, %s", s->kname, state_name(s->state),
		       s->since);
	}
	if (dir)
		closedir(dir);
}
