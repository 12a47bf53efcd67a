// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A loaded guard outside the loader: its links and maps pinned in bpffs
 * (so the policy outlives the tool), its programs and maps found among
 * those in the kernel, and the `detach` verb, which removes it either way.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
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

/* --- finding a loaded guard ------------------------------------------- */

static const char *const prog_names[] = {
	"cg_bprm_check", "cg_file_ioctl", "cg_file_fcntl", "cg_exec",
	"cg_sys_enter", "cg_sys_exit", "cg_bench_check",
	"cg_cprx_ioctl", "cg_cprx_end", NULL,
};

int cg_find_progs(struct cg_loaded_prog *out, int max)
{
	__u32 id = 0;
	int n = 0;

	while (n < max && !bpf_prog_get_next_id(id, &id)) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);
		struct cg_loaded_prog *lp = &out[n];
		int fd = bpf_prog_get_fd_by_id(id);

		if (fd < 0)
			continue;
		memset(lp, 0, sizeof(*lp));
		info.nr_map_ids = G_N_ELEMENTS(lp->map_ids);
		info.map_ids = (__u64)(unsigned long)lp->map_ids;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len) &&
		    g_strv_contains((const char *const *)prog_names, info.name)) {
			lp->id = info.id;
			g_strlcpy(lp->name, info.name, sizeof(lp->name));
			lp->run_cnt = info.run_cnt;
			lp->run_time_ns = info.run_time_ns;
			lp->nr_maps = MIN(info.nr_map_ids, G_N_ELEMENTS(lp->map_ids));
			n++;
		}
		close(fd);
	}
	return n;
}

int cg_find_map(const struct cg_loaded_prog *progs, int n, const char *name)
{
	int i, fd;
	__u32 j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < progs[i].nr_maps; j++) {
			struct bpf_map_info info = { 0 };
			__u32 len = sizeof(info);

			fd = bpf_map_get_fd_by_id(progs[i].map_ids[j]);
			if (fd < 0)
				continue;
			if (!bpf_obj_get_info_by_fd(fd, &info, &len) &&
			    !strcmp(info.name, name))
				return fd;
			close(fd);
		}
	}
	return -1;
}

/* --- the `detach` verb ------------------------------------------------- */

static gboolean progs_gone(void)
{
	struct cg_loaded_prog progs[8];
	int tries;

	/* links are released asynchronously (RCU) */
	for (tries = 0; tries < 50; tries++) {
		if (!cg_find_progs(progs, G_N_ELEMENTS(progs)))
			return TRUE;
		g_usleep(100 * 1000);
	}
	return FALSE;
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

int cg_cmd_detach(char **args)
{
	struct cprx_guard_status st;
	gboolean found = FALSE, ok = TRUE;
	char why[256] = "";
	int ret;

	(void)args;
	/* unprivileged, nothing below works: say so instead of "detached" */
	if (geteuid() != 0) {
		fprintf(stderr, "cprx-guard: detach needs root (it unpins BPF "
			"links and stops the loader): nothing was detached\n");
		return 1;
	}
	ret = cprx_guard_status_read(cg_status_file(), &st, why, sizeof(why));
	if (!ret) {
		found = TRUE;
		if (st.pid > 0)
			ok = stop_loader(&st);
		cprx_guard_status_free(&st);
	} else if (ret == -ESTALE) {
		printf("cprx-guard: removing a stale status (%s)\n", why);
	}
	if (g_file_test(cg_pin_dir(), G_FILE_TEST_IS_DIR)) {
		found = TRUE;
		cg_unpin(cg_pin_dir());
		if (g_file_test(cg_pin_dir(), G_FILE_TEST_EXISTS)) {
			fprintf(stderr, "cprx-guard: cannot remove %s\n",
				cg_pin_dir());
			ok = FALSE;
		} else {
			printf("cprx-guard: unpinned %s\n", cg_pin_dir());
		}
	}
	if (ok && unlink(cg_status_file()) < 0 && errno != ENOENT) {
		fprintf(stderr, "cprx-guard: cannot remove %s: %s\n",
			cg_status_file(), g_strerror(errno));
		ok = FALSE;
	}
	if (!ok)
		return 1;
	if (!progs_gone()) {
		fprintf(stderr, "cprx-guard: guard programs are still loaded "
			"(another loader, or a pin outside %s)\n", cg_pin_dir());
		return 1;
	}
	if (!found && !cg_opt.quiet)
		printf("cprx-guard: nothing was loaded\n");
	else if (found)
		printf("cprx-guard: detached; no guard program left in the kernel\n");
	return 0;
}
