// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state file (CPRX_STATE_FILE): a durable copy of the sealed state
 * memfd, for whoever must find the state on disk.  The exec never reads
 * it, so damage to it cannot cost the guest.  It is written beside the
 * path and renamed over it, so a symlink or a file already there is
 * replaced, never followed or truncated; it is removed at commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "internal.h"

/* Splits @path into its directory (opened) and its last component. */
static int open_dir(const char *path, const char **base)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash) {
		*base = path;
		snprintf(dir, sizeof(dir), ".");
	} else {
		*base = slash + 1;
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path + (slash == path)),
			 path);
	}
	if (!**base || !strcmp(*base, ".") || !strcmp(*base, ".."))
		return -EISDIR;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* An unnamed file in @dfd (O_TMPFILE), or a fresh named one in its place. */
static int create_tmp(int dfd, const char *tmp, bool *named)
{
	int fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	*named = false;
	if (fd >= 0)
		return fd;
	/* file systems without O_TMPFILE: a new name, never an old file */
	fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	*named = true;
	return fd;
}

static int link_tmp(int fd, int dfd, const char *tmp)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (!linkat(AT_FDCWD, proc, dfd, tmp, AT_SYMLINK_FOLLOW))
		return 0;
	/* no /proc: AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, try it anyway */
	return linkat(fd, "", dfd, tmp, AT_EMPTY_PATH) ? -errno : 0;
}

/*
 * @path as the handover names it: absolute, for the new image refuses a
 * relative one, and a later chdir of the VMM must not change the file
 * that commit removes.
 */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/')
		out = strdup(path);
	else if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	else if (asprintf(&out, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "",
			  path) < 0)
		out = NULL;
	if (out && strlen(out) >= PATH_MAX) {	/* the most the handover takes */
		free(out);
		errno = ENAMETOOLONG;
		return NULL;
	}
	return out;
}

int cprx_mirror_write(struct cprx_session *s, const void *buf, size_t len)
{
	const char *path = s->opts.state_path, *base, *step = "open the directory";
	static unsigned int seq;
	char tmp[NAME_MAX + 1];
	struct stat st;
	bool named = false, placed = false;
	int dfd, fd = -1, ret;

	dfd = open_dir(path, &base);
	if (dfd < 0) {
		ret = dfd;
		goto out;
	}
	if (strlen(base) + 24 <= NAME_MAX)
		snprintf(tmp, sizeof(tmp), ".%s.%d.%u", base, (int)getpid(), ++seq);
	else
		snprintf(tmp, sizeof(tmp), ".cprx-state.%d.%u", (int)getpid(), ++seq);
	step = "create";
	fd = create_tmp(dfd, tmp, &named);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	step = "write";
	ret = cprx_io_write(s->ring, fd, buf, len, true);
	if (!ret && !named) {
		step = "link";
		ret = link_tmp(fd, dfd, tmp);
		named = !ret;
	}
	if (!ret) {
		step = "rename into place";
		ret = renameat(dfd, tmp, dfd, base) ? -errno : 0;
		if (!ret)
			named = false, placed = true;
	}
	if (!ret) {
		step = "fsync the directory";
		ret = fsync(dfd) ? -errno : 0;
	}
	if (!ret) {
		step = "fstat";
		ret = fstat(fd, &st) ? -errno : 0;
	}
	if (!ret) {
		free(s->mirror_path);
		step = "name it by an absolute path";
		s->mirror_path = absolute(path);
		s->mirror_dev = st.st_dev;
		s->mirror_ino = st.st_ino;
		if (!s->mirror_path)
			ret = errno ? -errno : -ENOMEM;
	}
out:
	if (named)
		unlinkat(dfd, tmp, 0);
	/* a file in place that is not recorded would never be removed */
	if (ret && placed)
		unlinkat(dfd, base, 0);
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (ret)
		return cprx_fail(s, -ret, "choose a state path in a writable "
				 "directory on a local file system, or the memfd "
				 "target", "state file '%s': %s failed: %s", path,
				 step, strerror(-ret));
	return 0;
}

/*
 * Removes the state file when the update is over.  The old image removes
 * only the file it wrote (same dev:ino); the new image what the handover
 * names, if it is a file of ours or a link put in its place (unlink never
 * follows a link).
 */
void cprx_mirror_remove(struct cprx_session *s)
{
	struct stat st;
	bool ours;

	if (!s->mirror_path)
		return;
	if (lstat(s->mirror_path, &st) < 0)
		goto out;
	if (!s->incoming)
		ours = st.st_dev == s->mirror_dev && st.st_ino == s->mirror_ino;
	else
		ours = S_ISLNK(st.st_mode) ||
		       (S_ISREG(st.st_mode) && st.st_uid == geteuid());
	if (ours)
		unlink(s->mirror_path);
out:
	free(s->mirror_path);
	s->mirror_path = NULL;
}
