// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A loaded guard outside the loader: its links and maps pinned in bpffs
 * (so the policy outlives the tool), its programs and maps found by
 * identity (its pins, or the ids its status file records; never by name),
 * and the `detach` verb, which removes it either way.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "guard_tool.h"

/* --- pinning ----------------------------------------------------------- */

/*
 * Would a bpffs mounted on @dir stay in this mount namespace only?  Yes
 * when the mount it would land on is a slave (systemd's PrivateTmp= and
 * friends make every mount of a unit's namespace one): mounts made there
 * never propagate back to the host, and the pins would vanish with the
 * unit.  Also yes when we know we are not in init's namespace and the
 * mount is not shared.  (A private mount of a single namespace, as in a
 * container, is fine: nothing outside it would look.)
 */
static gboolean mount_stays_private(const char *dir)
{
	char line[4096], mp[PATH_MAX], best_opt[4096] = "";
	size_t best = 0, n;
	struct stat self, init;
	gboolean other_ns;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - "), *opt;
		int off = 0;

		if (!sep || sscanf(line, "%*d %*d %*s %*s %4095s %*s %n", mp,
				   &off) != 1 || !off)
			continue;
		n = strlen(mp);
		opt = line + off;
		if ((!strcmp(mp, "/") || (!strncmp(dir, mp, n) &&
					 (dir[n] == '/' || !dir[n]))) &&
		    n >= best && opt <= sep) {
			best = n;
			g_strlcpy(best_opt, opt, MIN(sizeof(best_opt),
						     (size_t)(sep - opt) + 1));
		}
	}
	if (f)
		fclose(f);
	if (strstr(best_opt, "shared:"))
		return FALSE;
	if (strstr(best_opt, "master:"))
		return TRUE;
	other_ns = stat("/proc/self/ns/mnt", &self) == 0 &&
		   stat("/proc/1/ns/mnt", &init) == 0 &&
		   (self.st_ino != init.st_ino || self.st_dev != init.st_dev);
	return other_ns;
}

static gboolean ensure_bpffs(const char *dir, GError **err)
{
	g_autofree char *parent = g_path_get_dirname(dir);
	struct statfs sfs;

	if (statfs(parent, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC)
		return TRUE;
	/* mounted here it would vanish with our private mount namespace */
	if (mount_stays_private(parent)) {
		g_set_error(err, CG_ERROR, ENOTDIR, "%s is not on a bpf file "
			    "system, and mounting one from this private mount "
			    "namespace (a unit's PrivateTmp=, say) would hide the "
			    "pins from every other process: mount it first, in the "
			    "host's namespace (systemd's sys-fs-bpf.mount, or mount "
			    "-t bpf bpf /sys/fs/bpf)", dir);
		return FALSE;
	}
	if (strcmp(parent, "/sys/fs/bpf") ||
	    mount("bpf", parent, "bpf", 0, "mode=0700") < 0) {
		g_set_error(err, CG_ERROR, ENOTDIR, "%s is not on a bpf file "
			    "system (mount -t bpf bpf /sys/fs/bpf)", dir);
		return FALSE;
	}
	fprintf(stderr, "cprx-guard: mounted bpffs on %s\n", parent);
	return TRUE;
}

void cg_unpin(const char *dir)
{
	struct dirent *d;
	DIR *dd = opendir(dir);

	while (dd && (d = readdir(dd))) {
		g_autofree char *f = NULL;

		if (d->d_name[0] == '.')
			continue;
		f = g_build_filename(dir, d->d_name, NULL);
		unlink(f);
	}
	if (dd)
		closedir(dd);
	rmdir(dir);
}

gboolean cg_pin(struct bpf_object *obj, struct bpf_link *const *links,
		const char *const *names, int nr_links, const char *dir,
		GError **err)
{
	struct bpf_map *map;
	int i;

	if (!ensure_bpffs(dir, err))
		return FALSE;
	if (mkdir(dir, 0700) < 0) {
		g_set_error(err, CG_ERROR, errno, "%s: %s", dir, g_strerror(errno));
		return FALSE;
	}
	for (i = 0; i < nr_links; i++) {
		g_autofree char *f = g_strdup_printf("%s/link_%s", dir, names[i]);

		if (bpf_link__pin(links[i], f))
			goto fail;
	}
	bpf_object__for_each_map(map, obj) {
		g_autofree char *f = NULL;

		if (bpf_map__type(map) == BPF_MAP_TYPE_ARRAY)
			continue;	/* .rodata: read from the status file */
		f = g_strdup_printf("%s/%s", dir, bpf_map__name(map));
		if (bpf_map__pin(map, f))
			goto fail;
	}
	return TRUE;
fail:
	g_set_error(err, CG_ERROR, errno, "pinning in %s: %s", dir,
		    g_strerror(errno));
	cg_unpin(dir);
	return FALSE;
}

/* --- finding a loaded guard: by identity, never by name ---------------- */

/* Program @id, if it is still loaded. */
static gboolean prog_by_id(__u32 id, struct cg_loaded_prog *lp)
{
	struct bpf_prog_info info = { 0 };
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);
	gboolean ok;

	if (fd < 0)
		return FALSE;
	ok = !bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (!ok)
		return FALSE;
	memset(lp, 0, sizeof(*lp));
	lp->id = info.id;
	lp->type = info.type;
	g_strlcpy(lp->name, info.name, sizeof(lp->name));
	lp->run_cnt = info.run_cnt;
	lp->run_time_ns = info.run_time_ns;
	return TRUE;
}

/* Ids are reused once they wrap: the same id of another type or name is not it. */
static gboolean same_prog(const struct cg_loaded_prog *a, __u32 id, __u32 type,
			  const char *name)
{
	return a->id == id && a->type == type && !strcmp(a->name, name);
}

gboolean cg_link_prog(int link_fd, struct cg_loaded_prog *lp)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);

	return link_fd >= 0 && !bpf_obj_get_info_by_fd(link_fd, &info, &len) &&
	       prog_by_id(info.prog_id, lp);
}

gboolean cg_map_obj(int map_fd, struct cprx_guard_obj *o)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);

	if (map_fd < 0 || bpf_obj_get_info_by_fd(map_fd, &info, &len))
		return FALSE;
	o->id = info.id;
	o->type = info.type;
	g_strlcpy(o->name, info.name, sizeof(o->name));
	return TRUE;
}

static int by_id(const void *a, const void *b)
{
	const struct cg_loaded_prog *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

int cg_pinned_progs(const char *dir, struct cg_loaded_prog *out, int max)
{
	struct dirent *d;
	DIR *dd = opendir(dir);
	int n = 0, fd;

	while (dd && n < max && (d = readdir(dd))) {
		g_autofree char *f = NULL;

		if (!g_str_has_prefix(d->d_name, "link_"))
			continue;
		f = g_build_filename(dir, d->d_name, NULL);
		fd = bpf_obj_get(f);
		if (cg_link_prog(fd, &out[n]))
			n++;
		if (fd >= 0)
			close(fd);
	}
	if (dd)
		closedir(dd);
	qsort(out, n, sizeof(*out), by_id);	/* in load order, as from ids */
	return n;
}

/* The programs whose ids @ids recorded, those still the same programs. */
static int progs_by_ids(const struct cprx_guard_ids *ids,
			struct cg_loaded_prog *out, int max)
{
	const struct cprx_guard_obj *o;
	unsigned int i;
	int n = 0;

	for (i = 0; i < ids->nr_progs && n < max; i++) {
		o = &ids->progs[i];
		if (prog_by_id(o->id, &out[n]) &&
		    same_prog(&out[n], o->id, o->type, o->name))
			n++;
	}
	return n;
}

int cg_find_progs(const struct cprx_guard_status *st,
		  struct cg_loaded_prog *out, int max)
{
	if (*st->pinned)
		return cg_pinned_progs(st->pinned, out, max);
	return progs_by_ids(&st->ids, out, max);
}

/* An fd on the map @o recorded, if its id still names that map. */
static int map_by_obj(const struct cprx_guard_obj *o)
{
	struct cprx_guard_obj now;
	int fd = bpf_map_get_fd_by_id(o->id);

	if (fd >= 0 && cg_map_obj(fd, &now) && now.type == o->type &&
	    !strcmp(now.name, o->name))
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

int cg_find_map(const struct cprx_guard_status *st, const char *name)
{
	g_autofree char *pin = NULL;
	unsigned int i;

	if (*st->pinned) {
		pin = g_build_filename(st->pinned, name, NULL);
		return bpf_obj_get(pin);
	}
	for (i = 0; i < st->ids.nr_maps; i++)
		if (!strcmp(st->ids.maps[i].name, name))
			return map_by_obj(&st->ids.maps[i]);
	return -1;
}

static gboolean has_id(const struct cg_loaded_prog *progs, int n, __u32 id)
{
	int i;

	for (i = 0; i < n; i++)
		if (progs[i].id == id)
			return TRUE;
	return FALSE;
}

int cg_lookalikes(const struct cg_loaded_prog *known, int nknown,
		  struct cg_loaded_prog *out, int max)
{
	struct cg_loaded_prog like[CPRX_GUARD_MAX_PROGS];
	int nlike = cg_object_progs(like, G_N_ELEMENTS(like)), n = 0, i;
	__u32 id = 0;

	while (n < max && !bpf_prog_get_next_id(id, &id)) {
		if (has_id(known, nknown, id) || !prog_by_id(id, &out[n]))
			continue;
		for (i = 0; i < nlike; i++) {
			if (same_prog(&out[n], id, like[i].type, like[i].name)) {
				n++;
				break;
			}
		}
	}
	return n;
}

/* --- the `detach` verb ------------------------------------------------- */

/* Adds @more to @all (*@n of @max) but the ids @all has already. */
static void add_progs(struct cg_loaded_prog *all, int *n, int max,
		      const struct cg_loaded_prog *more, int m)
{
	int i;

	for (i = 0; i < m && *n < max; i++)
		if (!has_id(all, *n, more[i].id))
			all[(*n)++] = more[i];
}

/*
 * The guard's own programs, before anything is removed: those of the
 * loaded guard @st (may be NULL) and of the links pinned in the pin dir.
 */
static int own_progs(const struct cprx_guard_status *st,
		     struct cg_loaded_prog *own, int max)
{
	struct cg_loaded_prog p[CPRX_GUARD_MAX_PROGS];
	int n = 0;

	if (st)
		add_progs(own, &n, max, p, cg_find_progs(st, p, G_N_ELEMENTS(p)));
	add_progs(own, &n, max, p, cg_pinned_progs(cg_pin_dir(), p,
						   G_N_ELEMENTS(p)));
	return n;
}

/* Which of @own are still loaded, as "name (id N)" words; "" when none. */
static char *still_loaded(const struct cg_loaded_prog *own, int n)
{
	GString *s = g_string_new(NULL);
	struct cg_loaded_prog now;
	int tries, i;

	/* links are released asynchronously (RCU) */
	for (tries = 0; tries < 50; tries++) {
		g_string_truncate(s, 0);
		for (i = 0; i < n; i++)
			if (prog_by_id(own[i].id, &now) &&
			    same_prog(&now, own[i].id, own[i].type, own[i].name))
				g_string_append_printf(s, " %s (id %u)", now.name,
						       now.id);
		if (!s->len)
			break;
		g_usleep(100 * 1000);
	}
	return g_string_free(s, FALSE);
}

/*
 * A diagnostic only: programs named and typed like the guard's, not this
 * guard's, may be another guard (another --pin-dir or status file) left
 * loaded, or anyone's programs that happen to look the same.
 */
static void warn_lookalikes(const struct cg_loaded_prog *own, int nown)
{
	struct cg_loaded_prog like[CPRX_GUARD_MAX_PROGS];
	int n = cg_lookalikes(own, nown, like, G_N_ELEMENTS(like)), i;

	if (!n)
		return;
	fprintf(stderr, "cprx-guard: warning: %d program%s named and typed like "
		"the guard's %s loaded, not this guard's (another cprx-guard's, "
		"with another --pin-dir or status file?):", n, n == 1 ? "" : "s",
		n == 1 ? "is" : "are");
	for (i = 0; i < n; i++)
		fprintf(stderr, " %s (id %u)", like[i].name, like[i].id);
	fprintf(stderr, "; bpftool prog show id ID\n");
}

/* A pidfd for the live loader of @st, or -1: never a reused pid. */
static int loader_pidfd(const struct cprx_guard_status *st)
{
	unsigned long long start;
	int fd = syscall(SYS_pidfd_open, (pid_t)st->pid, 0);

	if (fd < 0)
		return -1;
	/* checked after the pidfd pins the process: no reuse in between */
	if (st->pid_start && (cprx_guard_proc_start(st->pid, &start) ||
			      start != st->pid_start)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* SIGTERMs the foreground loader and waits for it to exit. */
static gboolean stop_loader(const struct cprx_guard_status *st)
{
	struct pollfd pfd = { .events = POLLIN };

	pfd.fd = loader_pidfd(st);
	if (pfd.fd < 0) {
		fprintf(stderr, "cprx-guard: the foreground guard (pid %ld) is "
			"gone already\n", st->pid);
		return TRUE;
	}
	if (syscall(SYS_pidfd_send_signal, pfd.fd, SIGTERM, NULL, 0) < 0) {
		fprintf(stderr, "cprx-guard: cannot stop the foreground guard "
			"(pid %ld): %s\n", st->pid, g_strerror(errno));
		close(pfd.fd);
		return FALSE;
	}
	if (poll(&pfd, 1, 5000) != 1) {
		fprintf(stderr, "cprx-guard: the foreground guard (pid %ld) did "
			"not exit within 5 s of SIGTERM\n", st->pid);
		close(pfd.fd);
		return FALSE;
	}
	close(pfd.fd);
	printf("cprx-guard: stopped the foreground guard (pid %ld)\n", st->pid);
	return TRUE;
}

/* Stops the loader @st names, if any; its programs are collected first. */
static gboolean stop_guard(const struct cprx_guard_status *st,
			   struct cg_loaded_prog *own, int *nown, int max)
{
	*nown = own_progs(st, own, max);
	return st->pid <= 0 || stop_loader(st);
}

static gboolean unpin_dir(void)
{
	cg_unpin(cg_pin_dir());
	if (g_file_test(cg_pin_dir(), G_FILE_TEST_EXISTS)) {
		fprintf(stderr, "cprx-guard: cannot remove %s\n", cg_pin_dir());
		return FALSE;
	}
	printf("cprx-guard: unpinned %s\n", cg_pin_dir());
	return TRUE;
}

static int detach(void)
{
	struct cg_loaded_prog own[2 * CPRX_GUARD_MAX_PROGS];
	struct cprx_guard_status st;
	gboolean found = FALSE, ok = TRUE;
	g_autofree char *left = NULL;
	char why[256] = "";
	int ret, nown;

	ret = cprx_guard_status_read(cg_status_file(), &st, why, sizeof(why));
	/*
	 * The status names a guard pinned elsewhere: unpinning here would
	 * leave it enforcing, and removing its status hide it.
	 */
	if (!ret && *st.pinned && strcmp(st.pinned, cg_pin_dir())) {
		fprintf(stderr, "cprx-guard: %s names a guard pinned in %s, not "
			"%s: nothing was detached (cprx-guard detach --pin-dir "
			"%s)\n", cg_status_file(), st.pinned, cg_pin_dir(),
			st.pinned);
		cprx_guard_status_free(&st);
		return 1;
	}
	if (!ret) {
		found = TRUE;
		ok = stop_guard(&st, own, &nown, G_N_ELEMENTS(own));
		cprx_guard_status_free(&st);
	} else {
		nown = own_progs(NULL, own, G_N_ELEMENTS(own));
		if (ret == -ESTALE)
			printf("cprx-guard: removing a stale status (%s)\n", why);
	}
	if (g_file_test(cg_pin_dir(), G_FILE_TEST_IS_DIR)) {
		found = TRUE;
		ok = unpin_dir() && ok;
	}
	if (ok && unlink(cg_status_file()) < 0 && errno != ENOENT) {
		fprintf(stderr, "cprx-guard: cannot remove %s: %s\n",
			cg_status_file(), g_strerror(errno));
		ok = FALSE;
	}
	if (!ok)
		return 1;
	left = still_loaded(own, nown);
	if (*left) {
		fprintf(stderr, "cprx-guard: the guard's programs are still "
			"loaded:%s (held by a pin outside %s, or an open fd)\n",
			left, cg_pin_dir());
		return 1;
	}
	warn_lookalikes(own, nown);
	if (!found && !cg_opt.quiet)
		printf("cprx-guard: nothing was loaded\n");
	else if (found && nown)
		printf("cprx-guard: detached; the guard's %d program%s gone from "
		       "the kernel\n", nown, nown == 1 ? " is" : "s are");
	else if (found)
		printf("cprx-guard: detached; no program of it was known to "
		       "check (no pinned link, no recorded id)\n");
	return 0;
}

int cg_cmd_detach(char **args)
{
	int lock, ret;

	(void)args;
	/* unprivileged, nothing below works: say so instead of "detached" */
	if (geteuid() != 0) {
		fprintf(stderr, "cprx-guard: detach needs root (it unpins BPF "
			"links and stops the loader): nothing was detached\n");
		return 1;
	}
	/* after a reload under way; a reload cut short leaves one guard */
	lock = cg_load_lock_recovered();
	if (lock < 0) {
		fprintf(stderr, "cprx-guard: nothing was detached\n");
		return 1;
	}
	ret = detach();
	close(lock);
	return ret;
}
