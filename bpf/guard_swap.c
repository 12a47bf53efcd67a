// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A reload's swap of pin dirs cut short, and the lock that keeps loads,
 * detaches and this recovery apart.  A reload (load --pin --replace) pins
 * the new guard at DIR-new, renames DIR to DIR-old and DIR-new to DIR,
 * rewrites the status file, then unpins DIR-old (cprx_guard.c:
 * pin_guard).  A loader killed between those steps leaves two guards
 * pinned, both enforcing, and the status naming one of them; the next
 * reload, finding no DIR, took over no marks, and the one after unpinned
 * the guards that held them.  The status file, written last, is the swap's
 * commit: cg_pins_recover keeps the guard it names at DIR and unpins the
 * other, so every later load finds the marks at DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include "guard_tool.h"

int cg_open_lock(const char *name, char **path)
{
	g_autofree char *dir = g_path_get_dirname(cg_status_file());
	char *file = g_build_filename(dir, name, NULL);
	struct stat st;
	int fd = open(file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	*path = file;
	if (fd < 0) {
		fprintf(stderr, "cprx-guard: cannot open %s to lock it: %s\n",
			file, g_strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & 077)) {
		fprintf(stderr, "cprx-guard: %s is not this user's own file "
			"(mode 0600): another user could hold it locked; remove "
			"it\n", file);
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

int cg_load_lock(gboolean wait)
{
	g_autofree char *dir = g_path_get_dirname(cg_status_file());
	g_autofree char *file = NULL;
	int fd, e;

	if (g_mkdir_with_parents(dir, 0755) < 0 ||
	    (fd = cg_open_lock("load.lock", &file)) < 0)
		return -1;
	while (flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR && !cg_stop)
			continue;
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int cg_load_lock_recovered(void)
{
	int lock = cg_load_lock(TRUE);

	if (lock >= 0 && cg_pins_recover(cg_pin_dir()) < 0) {
		close(lock);
		return -1;
	}
	return lock;
}

/* Does the status file name the guard pinned at @dir? */
static gboolean status_names(const char *dir)
{
	struct cg_loaded_prog p[CPRX_GUARD_MAX_PROGS];
	struct cprx_guard_status st;
	gboolean yes = FALSE;
	unsigned int i;
	int n, j;

	if (cprx_guard_status_read(cg_status_file(), &st, NULL, 0))
		return FALSE;
	if (!strcmp(st.pinned, dir)) {
		n = cg_pinned_progs(dir, p, G_N_ELEMENTS(p));
		/* a loader older than the prog lines: the pins at the path */
		yes = n > 0 && !st.ids.nr_progs;
		for (i = 0; i < st.ids.nr_progs; i++)
			for (j = 0; j < n; j++)
				yes |= p[j].id == st.ids.progs[i].id;
	}
	cprx_guard_status_free(&st);
	return yes;
}

static gboolean is_dir(const char *path)
{
	return g_file_test(path, G_FILE_TEST_IS_DIR);
}

/* Unpins @dir; FALSE, said, when it is still there. */
static gboolean unpin_said(const char *dir)
{
	cg_unpin(dir);
	if (!g_file_test(dir, G_FILE_TEST_EXISTS))
		return TRUE;
	fprintf(stderr, "cprx-guard: cannot remove %s\n", dir);
	return FALSE;
}

gboolean cg_pins_left(const char *dir)
{
	g_autofree char *old = g_strconcat(dir, CG_PIN_OLD, NULL);
	g_autofree char *next = g_strconcat(dir, CG_PIN_NEW, NULL);

	return is_dir(old) || is_dir(next);
}

int cg_pins_recover(const char *dir)
{
	g_autofree char *old = g_strconcat(dir, CG_PIN_OLD, NULL);
	g_autofree char *next = g_strconcat(dir, CG_PIN_NEW, NULL);
	gboolean has_old = is_dir(old), has_new = is_dir(next);
	gboolean restore = has_old && !(is_dir(dir) && status_names(dir));

	if (!has_old && !has_new)
		return 0;
	fprintf(stderr, "cprx-guard: a reload of the guard pinned in %s was "
		"cut short (%s%s%s left): the guard %s, as the status names "
		"it; the other one's pins go\n", dir, has_old ? old : "",
		has_old && has_new ? " and " : "", has_new ? next : "",
		restore ? "pinned before the reload goes back there" :
		"there stays");
	if (!restore)
		return unpin_said(old) && unpin_said(next) ? 1 : -1;
	/* the old guard stays attached through its pins at -old meanwhile */
	if (!unpin_said(next) || (is_dir(dir) && !unpin_said(dir)))
		return -1;
	if (rename(old, dir) < 0) {
		fprintf(stderr, "cprx-guard: cannot rename %s to %s: %s\n", old,
			dir, g_strerror(errno));
		return -1;
	}
	return 1;
}
