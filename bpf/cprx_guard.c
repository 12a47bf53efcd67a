// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The loader (the `load` verb): loads the guard (cprx_guard.bpf.c) with a
 * policy and holds it, or pins it and exits.  It reads top to bottom in
 * the order it runs: open the skeleton and set the policy in .rodata, pick
 * the programs (the LSM set, or the trace-only set), load, fill the maps,
 * attach; then pin, write the status file, poll (or wait) in the
 * foreground, and clean up.  When the BPF LSM is unavailable, or the kernel
 * refuses LSM programs, the trace-only set is loaded instead, and that is
 * said at load, in the status file and by `status`.
 *
 * Kept in one file: the load sequence reads top to bottom as it runs, and
 * struct guard and the skeleton stay private to it (the canary, the pins
 * and the status file, which need less, have files of their own).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "errname.h"
#include "guard_tool.h"
#include "cprx_guard.skel.h"
#include <linux/cprx.h>

/*
 * cprx_guard.h copies cprx.ko's ioctl numbers because the BPF side cannot
 * include the uAPI header; here, where both can be seen, the copies are
 * held to it.
 */
#define CG_SAME_AS_UAPI(copy, uapi) \
	_Static_assert((copy) == (uapi), \
		       #copy " != " #uapi " of <linux/cprx.h>")
CG_SAME_AS_UAPI(CG_IOC_TYPE, CPRX_IOCTL_TYPE);
CG_SAME_AS_UAPI(CG_IOC_CREATE, CPRX_IOCTL_CREATE_SESSION);
CG_SAME_AS_UAPI(CG_IOC_RETRIEVE, CPRX_IOCTL_RETRIEVE_SESSION);
CG_SAME_AS_UAPI(CG_IOC_PRESERVE, CPRX_SESSION_PRESERVE_FD);
CG_SAME_AS_UAPI(CG_IOC_UNPRESERVE, CPRX_SESSION_UNPRESERVE_FD);
CG_SAME_AS_UAPI(CG_IOC_ARM, CPRX_SESSION_ARM);
CG_SAME_AS_UAPI(CG_IOC_RETRIEVE_FD, CPRX_SESSION_RETRIEVE_FD);
CG_SAME_AS_UAPI(CG_IOC_FINISH, CPRX_SESSION_FINISH);
CG_SAME_AS_UAPI(CG_IOC_PRESERVE_FDS, CPRX_SESSION_PRESERVE_FDS);
CG_SAME_AS_UAPI(CG_ARM_CANCEL, CPRX_ARM_CANCEL);
/* the BPF side reads struct cprx_session_arm as __u32[2]: size, flags */
CG_SAME_AS_UAPI(sizeof(struct cprx_session_arm), 2 * sizeof(__u32));
CG_SAME_AS_UAPI(offsetof(struct cprx_session_arm, flags), sizeof(__u32));

#define LSM_LIST	"/sys/kernel/security/lsm"
#define CPRX_MODULE	"/sys/module/cprx"

static gboolean trying;		/* a failure here is expected: keep quiet */
static char refused_prog[64];	/* the first program the kernel refused */

static int on_libbpf(enum libbpf_print_level level, const char *fmt,
		     va_list ap)
{
	char line[512];
	const char *p;

	vsnprintf(line, sizeof(line), fmt, ap);
	p = strstr(line, "prog '");
	if (p && !*refused_prog && strstr(line, "load failed"))
		sscanf(p, "prog '%63[^']'", refused_prog);
	if (cg_opt.verbose || (level == LIBBPF_WARN && !trying))
		fputs(line, stderr);
	return 0;
}

void cg_libbpf_log(void)
{
	libbpf_set_print(on_libbpf);
}

/* The errno of a refused LSM program, in words. */
static const char *why_refused(int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return "BPF trampolines (LSM and fentry programs) are blocked "
		       "on this kernel";
	case EINVAL:
	case ENOTSUP:
	case 524:	/* ENOTSUPP */
		return "this kernel has no BPF LSM support";
	}
	return "see cprx-guard load --verbose";
}

/* Which programs: the LSM, its trace-only fallback, or the benchmark. */
enum guard_mode { GM_LSM, GM_FALLBACK, GM_BENCH };

/* Every program of the object fits the status file's prog lines. */
_Static_assert(sizeof(((struct cprx_guard_bpf *)0)->progs) /
	       sizeof(struct bpf_program *) <= CPRX_GUARD_MAX_PROGS,
	       "more guard programs than the status parser takes");

struct guard {
	struct cprx_guard_bpf *skel;
	struct bpf_link *links[CPRX_GUARD_MAX_PROGS];
	const char *names[CPRX_GUARD_MAX_PROGS];
	int nr_links;
	enum guard_mode mode;
	gboolean fallback;	/* anything but the LSM: nothing enforced */
	char *canary_dir;	/* the canary's cgroup (guard_canary.c) */
	__u32 canary_slot;	/* its cgroup slot: after the policy's */
	char *canary_err;	/* why there is no canary */
	gboolean bad_rule;	/* a rule's file refused: no mode can load it */
};

/* --- open, load, attach -------------------------------------------------- */

/* Slot @i follows cgroup2 path @rel ("/" or "/a/b": level 0 or 2). */
static void set_cgroup_path(struct cprx_guard_bpf *skel, guint i,
			    const char *rel)
{
	const char *c;
	__u32 level = 0;

	for (c = rel; *c; c++)
		level += *c == '/' && c[1];
	skel->rodata->cfg_cgroup_levels[i] = level;
	g_strlcpy((char *)skel->rodata->cfg_cgroup_paths[i], rel,
		  sizeof(skel->rodata->cfg_cgroup_paths[i]));
}

static void set_policy(struct cprx_guard_bpf *skel, const struct cg_policy *p,
		       enum guard_mode mode)
{
	guint i;

	skel->rodata->cfg_enforce = !p->trace && mode == GM_LSM;
	skel->rodata->cfg_armed_only = p->armed_only;
	skel->rodata->cfg_fallback = mode == GM_FALLBACK;
	skel->rodata->cfg_nr_uids = p->uids->len;
	for (i = 0; i < p->uids->len; i++)
		skel->rodata->cfg_uids[i] = g_array_index(p->uids, guint32, i);
	for (i = 0; i < p->cgroup_rels->len; i++)
		set_cgroup_path(skel, i, g_ptr_array_index(p->cgroup_rels, i));
	/* the slot after the policy's guards the canary's cgroup (guard_canary.c) */
	skel->rodata->cfg_cgroup_levels[p->cgroups->len] = CG_CANARY_LEVEL;
	skel->rodata->cfg_nr_cgroups = p->cgroups->len + (mode == GM_LSM);
	skel->rodata->cfg_nr_exes = p->exes->len;
	for (i = 0; i < p->exes->len; i++) {
		const char *path = g_array_index(p->exes, struct cg_rule, i).path;
		size_t n = strlen(strrchr(path, '/') ? strrchr(path, '/') + 1 : path);

		skel->rodata->cfg_exe_name_lens |= 1ull << MIN(n, 63);
	}
	skel->rodata->cfg_deny_userns = p->deny_userns;
}

/* Runs the iterator @prog once, to its end: @what says what it does. */
static gboolean run_iter(struct bpf_program *prog, const char *what,
			 GError **err)
{
	struct bpf_link *l;
	char buf[64];
	ssize_t n;
	int fd;

	l = bpf_program__attach_iter(prog, NULL);
	fd = l ? bpf_iter_create(bpf_link__fd(l)) : -1;
	if (fd < 0) {
		g_set_error(err, CG_ERROR, errno, "cannot %s through a BPF "
			    "iterator (%s): %s", what,
			    bpf_program__section_name(prog), g_strerror(errno));
		bpf_link__destroy(l);
		return FALSE;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		;
	close(fd);
	bpf_link__destroy(l);
	if (n < 0) {
		g_set_error(err, CG_ERROR, errno, "BPF iterator (%s): %s", what,
			    g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

/*
 * The rules' keys as the kernel sees their files: the iterator cg_rule_keys
 * runs file_key() on each file this process holds open, into rule_keys.
 */
static gboolean read_rule_keys(struct guard *g, GError **err)
{
	g->skel->bss->iter_tgid = getpid();
	return run_iter(g->skel->progs.cg_rule_keys, "read the rules' inodes",
			err);
}

/* @exe: guard-exe rules, keyed without the change time (exe_key()). */
static gboolean fill_rules(struct guard *g, int fd, GArray *rules,
			   gboolean exe, GError **err)
{
	int keys = bpf_map__fd(g->skel->maps.rule_keys);
	guint i;

	for (i = 0; i < rules->len; i++) {
		struct cg_rule *r = &g_array_index(rules, struct cg_rule, i);
		struct cg_file_key k;
		struct cg_rule_key rk;
		__u32 rule = i + 1, rfd = r->fd;

		if (bpf_map_lookup_elem(keys, &rfd, &rk) < 0) {
			g_set_error(err, CG_ERROR, ENOENT, "rule '%s': the "
				    "kernel's key of the file was not found",
				    r->path);
			return FALSE;
		}
		k = rk.key;
		/* guard_policy.c's lease check, where leases cannot tell */
		if (rk.writers > 0) {
			g_set_error(err, CG_ERROR, EBUSY, "'%s' is open for "
				    "writing (the kernel counts %d writer%s: an "
				    "fd or a shared mapping): its writer could "
				    "change it past the owner and mode checks "
				    "(fix: stop the writer, `fuser -v '%s'`, or "
				    "install the binary anew as root)", r->path,
				    rk.writers, rk.writers == 1 ? "" : "s",
				    r->path);
			return FALSE;
		}
		/* read after the key: no change since it was checked */
		if (!cg_rule_unchanged(r, err))
			return FALSE;
		if (exe)
			k.ctime_sec = k.ctime_nsec = 0;
		if (bpf_map_update_elem(fd, &k, &rule, BPF_ANY) < 0) {
			g_set_error(err, CG_ERROR, errno, "rule '%s': %s",
				    r->path, g_strerror(errno));
			return FALSE;
		}
	}
	return TRUE;
}

/*
 * Each guard-exe's directory entry (struct cg_exe_name) into exe_names:
 * its directory as the BPF side sees it (the key cg_rule_keys read from
 * the loader's open @dirs), and its name.
 */
static gboolean fill_exe_names(struct guard *g, GArray *exes, const int *dirs,
			       GError **err)
{
	int fd = bpf_map__fd(g->skel->maps.exe_names);
	int keys = bpf_map__fd(g->skel->maps.rule_keys);
	guint i;

	for (i = 0; i < exes->len; i++) {
		struct cg_rule *r = &g_array_index(exes, struct cg_rule, i);
		g_autofree char *base = g_path_get_basename(r->path);
		struct cg_exe_name n = { 0 };
		struct cg_rule_key rk;
		__u32 rule = i + 1, dfd = dirs[i];

		if (bpf_map_lookup_elem(keys, &dfd, &rk) < 0) {
			g_set_error(err, CG_ERROR, ENOENT, "guard-exe '%s': the "
				    "kernel's key of its directory was not "
				    "found", r->path);
			return FALSE;
		}
		n.dir_ino = rk.key.ino;
		n.dir_dev = rk.key.dev;
		g_strlcpy(n.name, base, sizeof(n.name));
		if (bpf_map_update_elem(fd, &n, &rule, BPF_ANY) < 0) {
			g_set_error(err, CG_ERROR, errno, "guard-exe '%s': %s",
				    r->path, g_strerror(errno));
			return FALSE;
		}
	}
	return TRUE;
}

/* Opens each guard-exe's directory into @dirs: its key is read with theirs. */
static gboolean open_exe_dirs(GArray *exes, int *dirs, GError **err)
{
	guint i;

	for (i = 0; i < exes->len; i++) {
		const char *path = g_array_index(exes, struct cg_rule, i).path;
		g_autofree char *dir = g_path_get_dirname(path);

		dirs[i] = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirs[i] < 0) {
			g_set_error(err, CG_ERROR, errno, "guard-exe '%s': %s: %s",
				    path, dir, g_strerror(errno));
			while (i--)
				close(dirs[i]);
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean fill_maps(struct guard *g, const struct cg_policy *p,
			  GError **err)
{
	int dirs[CG_MAX_RULES];
	gboolean ok;
	guint i;

	if (!open_exe_dirs(p->exes, dirs, err))
		return FALSE;
	ok = read_rule_keys(g, err) &&
	     fill_rules(g, bpf_map__fd(g->skel->maps.allow), p->allow, FALSE,
			err) &&
	     fill_rules(g, bpf_map__fd(g->skel->maps.guard_exes), p->exes,
			TRUE, err) &&
	     fill_exe_names(g, p->exes, dirs, err);
	for (i = 0; i < p->exes->len; i++)
		close(dirs[i]);
	return ok;
}

static void guard_close(struct guard *g)
{
	int i;

	if (g->canary_dir)
		cg_canary_remove(&g->skel->bss->cgroup_ids[g->canary_slot],
				 g->canary_dir);
	g_clear_pointer(&g->canary_dir, g_free);
	g_clear_pointer(&g->canary_err, g_free);
	for (i = 0; i < g->nr_links; i++)
		bpf_link__destroy(g->links[i]);
	g->nr_links = 0;
	cprx_guard_bpf__destroy(g->skel);
	g->skel = NULL;
}

/* What the status file records of the guard: its programs and maps, by id. */
static void guard_ids(const struct guard *g, struct cprx_guard_ids *ids)
{
	struct bpf_map *maps[] = { g->skel->maps.stats, g->skel->maps.events };
	struct cprx_guard_obj *o;
	struct cg_loaded_prog lp;
	unsigned int i;

	_Static_assert(G_N_ELEMENTS(maps) <= CPRX_GUARD_MAX_MAPS,
		       "more maps than the status parser takes");
	memset(ids, 0, sizeof(*ids));
	for (i = 0; i < (unsigned int)g->nr_links; i++) {
		if (!cg_link_prog(bpf_link__fd(g->links[i]), &lp))
			continue;
		o = &ids->progs[ids->nr_progs++];
		o->id = lp.id;
		o->type = lp.type;
		g_strlcpy(o->name, lp.name, sizeof(o->name));
	}
	for (i = 0; i < G_N_ELEMENTS(maps); i++)
		if (cg_map_obj(bpf_map__fd(maps[i]), &ids->maps[ids->nr_maps]))
			ids->nr_maps++;
}

int cg_object_progs(struct cg_loaded_prog *out, int max)
{
	struct cprx_guard_bpf *s = cprx_guard_bpf__open();
	struct bpf_program *prog;
	int n = 0;

	if (!s)
		return 0;
	bpf_object__for_each_program(prog, s->obj) {
		if (n >= max)
			break;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].type = bpf_program__type(prog);
		/* as the kernel keeps it: BPF_OBJ_NAME_LEN - 1 characters */
		g_strlcpy(out[n].name, bpf_program__name(prog),
			  sizeof(out[n].name));
		n++;
	}
	cprx_guard_bpf__destroy(s);
	return n;
}

/* The canary's cgroup in the slot after the policy's (see set_policy). */
static void add_canary(struct guard *g, const struct cg_policy *p)
{
	GError *e = NULL;

	g_assert(p->cgroups->len < CG_CGROUP_SLOTS);
	g->canary_slot = p->cgroups->len;
	if (!cg_canary_prepare(&g->skel->bss->cgroup_ids[g->canary_slot],
			       &g->canary_dir, &e)) {
		g->canary_err = g_strdup(e->message);
		g_error_free(e);
		return;
	}
	/*
	 * For tests (tests/guard/vm-guard.sh): a canary nobody guards, as if
	 * the LSM programs were attached but never ran.
	 */
	if (g_getenv("CPRX_GUARD_TEST_UNGUARDED_CANARY"))
		g->skel->bss->cgroup_ids[g->canary_slot] = 0;
}

static gboolean attach_one(struct guard *g, struct bpf_program *prog,
			   GError **err)
{
	struct bpf_link *l = bpf_program__attach(prog);

	if (!l) {
		int e = errno;

		g_set_error(err, CG_ERROR, e, "the kernel refused to attach %s "
			    "(%s): %s (%s): %s", bpf_program__name(prog),
			    bpf_program__section_name(prog), g_strerror(e),
			    cprx_errname(e), why_refused(e));
		return FALSE;
	}
	g->names[g->nr_links] = bpf_program__name(prog);
	g->links[g->nr_links++] = l;
	return TRUE;
}

/* The id of the cgroup at @dir now (its inode number), 0 if none. */
static __u64 cgroup_id_at(const char *dir)
{
	struct stat st;

	return stat(dir, &st) < 0 ? 0 : st.st_ino;
}

/*
 * The cgroup at each guard-cgroup path, followed from now on: the mkdir
 * program is attached first, then each slot gets the directory's id, read
 * again after the write.  A directory created again in between was seen by
 * the program, but the write may have put the older id over its: then the
 * second read differs, and the slot is written again.
 */
static gboolean follow_cgroups(struct guard *g, const struct cg_policy *p,
			       GError **err)
{
	__u64 *ids = g->skel->bss->cgroup_ids;
	guint i, tries;

	if (!p->cgroups->len)
		return TRUE;
	if (!attach_one(g, g->skel->progs.cg_cgroup_mkdir, err))
		return FALSE;
	for (i = 0; i < p->cgroups->len; i++) {
		const char *dir = g_ptr_array_index(p->cgroups, i);
		__u64 id = cgroup_id_at(dir), now;

		for (tries = 0; tries < 100; tries++, id = now) {
			__atomic_store_n(&ids[i], id, __ATOMIC_SEQ_CST);
			now = cgroup_id_at(dir);
			if (now == id)
				break;
		}
		if (tries == 100) {
			g_set_error(err, CG_ERROR, EAGAIN, "cgroup %s: created "
				    "and removed too fast to be followed", dir);
			return FALSE;
		}
	}
	return TRUE;
}

/*
 * A reload hands the pinned guard's marks (who is guarded, who is a VMM)
 * to the new guard: a task guarded by its mark alone (it left its cgroup,
 * or exec'd an allowed binary that is no guard-exe) must stay guarded once
 * the old guard is gone.  No marks to take over: the reload fails, and the
 * old guard stays.
 */
static gboolean keep_marks(struct cprx_guard_bpf *s, GError **err)
{
	g_autofree char *pin = NULL;
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	int fd, e;

	if (!cg_opt.replace || !g_file_test(cg_pin_dir(), G_FILE_TEST_IS_DIR))
		return TRUE;
	pin = g_build_filename(cg_pin_dir(), "marks", NULL);
	fd = bpf_obj_get(pin);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) ||
	    info.type != bpf_map__type(s->maps.marks) ||
	    info.key_size != bpf_map__key_size(s->maps.marks) ||
	    info.value_size != bpf_map__value_size(s->maps.marks)) {
		e = fd < 0 ? errno : EINVAL;
		g_set_error(err, CG_ERROR, e, "cannot take over the pinned "
			    "guard's marks (%s: %s): the processes it guards by "
			    "their mark alone would be unguarded after the swap "
			    "(detach, then load, if that is what you want)", pin,
			    fd < 0 ? g_strerror(e) : "not a map of this guard's "
			    "kind");
		if (fd >= 0)
			close(fd);
		return FALSE;
	}
	e = bpf_map__reuse_fd(s->maps.marks, fd);
	close(fd);
	if (e) {
		g_set_error(err, CG_ERROR, -e, "cannot take over the pinned "
			    "guard's marks (%s): %s", pin, g_strerror(-e));
		return FALSE;
	}
	return TRUE;
}

/*
 * With the hooks attached (every fork and exec from now on marks), the
 * tasks the selectors match already are marked: those started before the
 * guard could otherwise leave their cgroup and exec unguarded.
 */
static gboolean mark_tasks(struct guard *g, GError **err)
{
	return run_iter(g->skel->progs.cg_mark_tasks, "mark the guarded "
			"processes running already", err);
}

/* Does this kernel have the LSM hook @name (userns_create: 6.1)? */
static gboolean has_lsm_hook(const char *name)
{
	return libbpf_find_vmlinux_btf_id(name, BPF_LSM_MAC) >= 0;
}

/*
 * cprx.ko's tracepoints are where armed-only learns that a session is armed
 * and that it is not any more: without the module loaded, or with one that
 * lacks either, armed-only could only refuse every update, or go on
 * believing a closed session armed.  Say so at load instead.  The end is
 * attached first: an arm the guard sees is never missing its end.
 */
static gboolean attach_module_tp(struct guard *g, const struct cg_policy *p,
				 GError **err)
{
	struct bpf_program *progs[] = { g->skel->progs.cg_cprx_end,
					 g->skel->progs.cg_cprx_ioctl };
	GError *e = NULL;
	size_t i;

	if (!g_file_test(CPRX_MODULE, G_FILE_TEST_IS_DIR)) {
		if (p->armed_only) {
			g_set_error(err, CG_ERROR, ENOENT, "armed-only needs "
				    "cprx.ko loaded (its tracepoints %s and %s "
				    "say when a session is armed and when it "
				    "ends): modprobe cprx, then load the guard "
				    "again", CG_MOD_TRACEPOINT, CG_MOD_TP_END);
			return FALSE;
		}
		g_printerr("cprx-guard: cprx.ko is not loaded: its sessions are "
			   "not traced (load it before the guard)\n");
		return TRUE;
	}
	for (i = 0; i < G_N_ELEMENTS(progs); i++) {
		if (attach_one(g, progs[i], &e))
			continue;
		if (p->armed_only) {
			g_set_error(err, CG_ERROR, e->code, "armed-only needs "
				    "cprx.ko's tracepoints %s and %s (%s): "
				    "install the cprx.ko of this release",
				    CG_MOD_TRACEPOINT, CG_MOD_TP_END,
				    e->message);
			g_error_free(e);
			return FALSE;
		}
		g_printerr("cprx-guard: warning: %s; cprx.ko sessions are not "
			   "fully traced\n", e->message);
		g_clear_error(&e);
	}
	return TRUE;
}

/*
 * Which programs each mode loads, by the skeleton's handles; the
 * iterators, cprx.ko's tracepoints and cgroup_mkdir are attached on their
 * own.
 */
static void choose_programs(struct cprx_guard_bpf *s,
			    const struct cg_policy *p, enum guard_mode mode)
{
	gboolean lsm = mode == GM_LSM;

	bpf_program__set_autoload(s->progs.cg_bprm_check, lsm);
	bpf_program__set_autoload(s->progs.cg_file_fcntl, lsm);
	bpf_program__set_autoload(s->progs.cg_ptrace_access, lsm);
	bpf_program__set_autoload(s->progs.cg_ptrace_traceme, lsm);
	bpf_program__set_autoload(s->progs.cg_task_prctl, lsm);
	bpf_program__set_autoload(s->progs.cg_userns_create, lsm &&
				  p->deny_userns &&
				  has_lsm_hook("userns_create"));
	bpf_program__set_autoload(s->progs.cg_sys_enter, mode == GM_FALLBACK);
	bpf_program__set_autoload(s->progs.cg_sys_exit, mode == GM_FALLBACK);
	bpf_program__set_autoload(s->progs.cg_bench_check, mode == GM_BENCH);
	bpf_program__set_autoload(s->progs.cg_cgroup_mkdir, p->cgroups->len > 0);
	if (lsm && p->deny_userns && !has_lsm_hook("userns_create"))
		g_printerr("cprx-guard: warning: this kernel has no "
			   "userns_create LSM hook: user namespaces are not "
			   "refused (every exec stage is still checked)\n");
}

static gboolean attach_all(struct guard *g, const struct cg_policy *p,
			   GError **err)
{
	struct cprx_guard_bpf *s = g->skel;
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, s->obj) {
		if (!bpf_program__autoload(prog) ||
		    prog == s->progs.cg_rule_keys ||
		    prog == s->progs.cg_mark_tasks ||
		    prog == s->progs.cg_cprx_ioctl ||
		    prog == s->progs.cg_cprx_end ||
		    prog == s->progs.cg_cgroup_mkdir)
			continue;
		if (!attach_one(g, prog, err))
			return FALSE;
	}
	return attach_module_tp(g, p, err);
}

static gboolean guard_open(struct guard *g, const struct cg_policy *p,
			   enum guard_mode mode, GError **err)
{
	gboolean fallback = mode != GM_LSM;
	struct cprx_guard_bpf *s;
	struct bpf_program *prog = NULL, *it;
	int ret;

	g->mode = mode;
	g->fallback = fallback;
	g->skel = s = cprx_guard_bpf__open();
	if (!s) {
		g_set_error(err, CG_ERROR, errno, "cannot open the BPF object: %s",
			    g_strerror(errno));
		return FALSE;
	}
	set_policy(s, p, mode);
	choose_programs(s, p, mode);
	if (!keep_marks(s, err))
		goto fail;
	refused_prog[0] = '\0';
	trying = !fallback;
	ret = cprx_guard_bpf__load(s);
	trying = FALSE;
	if (ret) {
		/* the skeleton's program that libbpf's log named */
		bpf_object__for_each_program(it, s->obj)
			if (!strcmp(bpf_program__name(it), refused_prog))
				prog = it;
		g_set_error(err, CG_ERROR, -ret, "the kernel refused to load the "
			    "%s program %s%s%s%s: %s (%s): %s",
			    fallback ? "tp_btf" : "BPF LSM",
			    prog ? bpf_program__name(prog) : "set",
			    prog ? " (" : "", prog ? bpf_program__section_name(prog) : "",
			    prog ? ")" : "", g_strerror(-ret), cprx_errname(-ret),
			    why_refused(-ret));
		goto fail;
	}
	if (!fill_maps(g, p, err)) {
		g->bad_rule = TRUE;
		goto fail;
	}
	if (!follow_cgroups(g, p, err))
		goto fail;
	if (mode == GM_LSM)
		add_canary(g, p);
	trying = !fallback;
	if (!attach_all(g, p, err)) {
		trying = FALSE;
		goto fail;
	}
	trying = FALSE;
	if (!mark_tasks(g, err))
		goto fail;
	return TRUE;
fail:
	guard_close(g);
	return FALSE;
}

/* --- the LSM, or trace-only ---------------------------------------------- */

/*
 * NULL when "bpf" is an active LSM, or when we cannot tell (then only the
 * canary can prove enforcement: see verify_enforcing), else why not.
 */
static char *lsm_missing(void)
{
	g_autofree char *list = NULL;
	g_auto(GStrv) names = NULL;

	if (!g_file_get_contents(LSM_LIST, &list, NULL, NULL))
		return NULL;
	g_strstrip(list);
	names = g_strsplit(list, ",", -1);
	if (g_strv_contains((const char *const *)names, "bpf"))
		return NULL;
	return g_strdup_printf("'bpf' is not an active LSM (%s is '%s'): boot "
			       "with lsm=%s,bpf", LSM_LIST, list, list);
}

static void shout(const char *what, const char *why)
{
	fprintf(stderr,
		"cprx-guard: ******************************************************\n"
		"cprx-guard: NOT ENFORCED: %s.\n"
		"cprx-guard: why: %s.\n"
		"cprx-guard: guarded processes may exec any binary; the trace shows\n"
		"cprx-guard: what the policy would have refused.\n"
		"cprx-guard: ******************************************************\n",
		what, why);
}

/*
 * Fail closed: a guard that cannot enforce is an error, unless trace-only
 * was asked for (--fallback-trace, or the policy's mode is trace).
 */
static gboolean fallback_allowed(const struct cg_policy *p)
{
	return !cg_opt.require_enforce && (cg_opt.fallback_trace || p->trace);
}

/*
 * The fallback decodes raw syscalls (ioctl, fcntl, execve, execveat) by
 * number, and knows only x86-64's numbers (cprx_guard.bpf.c: NR_*).
 */
static gboolean fallback_arch_ok(GError **err)
{
#if defined(__x86_64__)
	(void)err;
	return TRUE;
#else
	g_set_error(err, CG_ERROR, ENOTSUP, "the trace-only fallback decodes "
		    "x86-64 syscall numbers only, and this is not x86-64: no "
		    "fallback here (boot a kernel with the BPF LSM active)");
	return FALSE;
#endif
}

/* LSM programs if we can, else the trace-only set, saying why. */
static gboolean attach_best(struct guard *g, const struct cg_policy *p,
			    char **why, GError **err)
{
	GError *e = NULL;

	if (cg_opt.bench) {
		*why = g_strdup("benchmark mode (--bench): the exec check runs "
				"from tp_btf/sched_prepare_exec and enforces nothing");
		return guard_open(g, p, GM_BENCH, err);
	}
	*why = lsm_missing();
	if (!*why) {
		if (guard_open(g, p, GM_LSM, &e))
			return TRUE;
		/* the policy's fault, not the LSM's: no fallback helps */
		if (g->bad_rule) {
			g_propagate_error(err, e);
			return FALSE;
		}
		*why = g_strdup(e->message);
		g_clear_error(&e);
	}
	if (!fallback_allowed(p)) {
		g_set_error(err, CG_ERROR, EPERM, "cannot enforce: %s (give "
			    "--fallback-trace to load trace-only instead)", *why);
		return FALSE;
	}
	if (!fallback_arch_ok(err))
		return FALSE;
	if (!guard_open(g, p, GM_FALLBACK, &e)) {
		g_set_error(err, CG_ERROR, e->code, "BPF is unavailable: no LSM "
			    "(%s), and no trace-only fallback either: %s", *why,
			    e->message);
		g_error_free(e);
		return FALSE;
	}
	shout("trace-only mode", *why);
	return TRUE;
}

/*
 * Only the canary's EPERM proves that the attached programs refuse: until
 * it has, the guard is not said to enforce.  FALSE, with @why, when not.
 */
static gboolean verify_enforcing(struct guard *g, char **why)
{
	GError *e = NULL;
	gboolean ok;

	if (!g->canary_dir) {
		*why = g_strdup_printf("enforcement unproven: no canary (%s)",
				       g->canary_err);
		return FALSE;
	}
	ok = cg_canary_run(g->canary_dir,
			   bpf_map__fd(g->skel->maps.stats), &e);
	cg_canary_remove(&g->skel->bss->cgroup_ids[g->canary_slot],
			 g->canary_dir);
	g_clear_pointer(&g->canary_dir, g_free);
	if (!ok) {
		*why = g_strdup_printf("enforcement unproven: %s", e->message);
		g_error_free(e);
	}
	return ok;
}

/* --- the `load` verb ----------------------------------------------------- */

/*
 * Refuses a second guard: the status file and the pins are one each.
 * With --replace a pinned guard may be there: it is swapped out after the
 * new one works (see swap_pins); a foreground one may not.
 */
static gboolean already_loaded(GError **err)
{
	struct cprx_guard_status st;

	if (!cprx_guard_status_read(cg_status_file(), &st, NULL, 0)) {
		gboolean fg = st.pid != 0;

		cprx_guard_status_free(&st);
		if (cg_opt.replace && !fg)
			return FALSE;
		g_set_error(err, CG_ERROR, EEXIST, "a guard is loaded already "
			    "(%s: %s): cprx-guard detach first%s", cg_status_file(),
			    fg ? "running in the foreground" : "pinned",
			    fg ? "" : ", or load --pin --replace");
		return TRUE;
	}
	if (!cg_opt.replace && g_file_test(cg_pin_dir(), G_FILE_TEST_EXISTS)) {
		g_set_error(err, CG_ERROR, EEXIST, "%s exists: cprx-guard detach "
			    "first, or load --pin --replace", cg_pin_dir());
		return TRUE;
	}
	return FALSE;
}

static void print_loaded(const struct guard *g, const struct cg_policy *p,
			 gboolean enforcing, const char *pinned)
{
	int i;

	printf("cprx-guard: %s; policy %s: %u allowed, guarding %u uid%s, "
	       "%u cgroup%s, %u binar%s%s\n",
	       enforcing ? "enforcing (BPF LSM, canary refused)" :
	       g->fallback ? "trace-only (NOT ENFORCED)" :
	       p->trace ? "BPF LSM attached, mode trace (NOT ENFORCED)" :
	       "BPF LSM attached, enforcement unproven (NOT ENFORCED)",
	       p->source, p->allow->len,
	       p->uids->len, p->uids->len == 1 ? "" : "s",
	       p->cgroups->len, p->cgroups->len == 1 ? "" : "s",
	       p->exes->len, p->exes->len == 1 ? "y" : "ies",
	       p->armed_only ? ", armed-only" : "");
	for (i = 0; i < g->nr_links; i++)
		printf("cprx-guard:   %s attached\n", g->names[i]);
	if (pinned)
		printf("cprx-guard: pinned in %s; status in %s; the policy stays "
		       "until cprx-guard detach\n", pinned, cg_status_file());
	fflush(stdout);
}

/* Waits for SIGINT, SIGTERM or SIGHUP without missing one (sigsuspend). */
static void wait_for_signal(void)
{
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	while (!cg_stop)
		sigsuspend(&old);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Holds the guard until a signal, printing timelines with --trace. */
static int foreground(struct guard *g)
{
	struct cprx_guard_status st;
	struct cg_trace_opts o = { .json = cg_opt.json, .idle = cg_opt.idle };
	int ret = 0, lock;

	if (!cg_opt.trace) {
		wait_for_signal();
		return 0;
	}
	lock = cg_trace_lock();
	if (lock < 0)
		return 1;
	o.st = cprx_guard_status_read(cg_status_file(), &st, NULL, 0) ?
	       NULL : &st;
	ret = cg_trace_run(bpf_map__fd(g->skel->maps.events), &o, &cg_stop);
	if (o.st)
		cprx_guard_status_free(&st);
	close(lock);
	return ret ? 1 : 0;
}

/*
 * Pins the guard.  Replacing a pinned one, the new guard is pinned beside
 * it and the directories are swapped: both guards are attached meanwhile
 * (an exec must pass both: never less guarded than either policy), and
 * the old one goes only once the new one holds.  *@old_dir: what to unpin
 * once the status file names the new guard.  A loader killed between
 * these steps leaves pins that the next load, status or detach resolves
 * (guard_swap.c), under the load lock this one holds.
 */
static gboolean pin_guard(struct guard *g, char **old_dir, GError **err)
{
	g_autofree char *next = g_strconcat(cg_pin_dir(), CG_PIN_NEW, NULL);
	char *old = g_strconcat(cg_pin_dir(), CG_PIN_OLD, NULL);

	*old_dir = NULL;
	if (!g_file_test(cg_pin_dir(), G_FILE_TEST_IS_DIR)) {
		g_free(old);
		return cg_pin(g->skel->obj, g->links, g->names, g->nr_links,
			      cg_pin_dir(), err);
	}
	if (!cg_pin(g->skel->obj, g->links, g->names, g->nr_links, next, err))
		goto fail;
	if (rename(cg_pin_dir(), old) < 0 || rename(next, cg_pin_dir()) < 0) {
		g_set_error(err, CG_ERROR, errno, "cannot swap %s for %s: %s",
			    next, cg_pin_dir(), g_strerror(errno));
		if (!g_file_test(cg_pin_dir(), G_FILE_TEST_EXISTS))
			rename(old, cg_pin_dir());
		cg_unpin(next);
		goto fail;
	}
	*old_dir = old;
	return TRUE;
fail:
	g_free(old);
	return FALSE;
}

/* Puts the old guard's pins back after a failure past the swap. */
static void unswap_pins(const char *old_dir)
{
	g_autofree char *next = g_strconcat(cg_pin_dir(), CG_PIN_NEW, NULL);

	if (rename(cg_pin_dir(), next) == 0 && rename(old_dir, cg_pin_dir()) == 0)
		cg_unpin(next);
}

int cg_cmd_load(char **args)
{
	g_autofree char *why = NULL, *old_pins = NULL;
	struct cprx_guard_ids ids;
	struct cg_policy *p;
	struct guard g = { 0 };
	GError *err = NULL;
	gboolean enforcing;
	int ret = 0, lock;

	(void)args;
	cg_catch_signals();	/* a SIGTERM from now on ends the guard cleanly */
	if (cg_opt.replace && !cg_opt.pin) {
		fprintf(stderr, "cprx-guard: --replace swaps a pinned guard: "
			"give --pin too\n");
		return 2;
	}
	/* a pinned load holds it to the end: no other swaps pins meanwhile */
	lock = cg_load_lock_recovered();
	if (lock < 0) {
		fprintf(stderr, "cprx-guard: nothing was loaded\n");
		return 1;
	}
	if (!cg_opt.pin) {
		close(lock);
		lock = -1;
	}
	p = cg_policy_from_options(&err);
	if (!p || already_loaded(&err) || !attach_best(&g, p, &why, &err))
		goto fail;
	/* the rules' keys are in the maps: no file system stays busy */
	cg_policy_close_files(p);
	enforcing = !g.fallback && !p->trace && g.mode == GM_LSM;
	if (!g.fallback && p->trace) {
		why = g_strdup("the policy's mode is trace");
	} else if (enforcing && !verify_enforcing(&g, &why)) {
		enforcing = FALSE;
		if (!fallback_allowed(p)) {
			g_set_error(&err, CG_ERROR, EPERM, "cannot enforce: %s "
				    "(give --fallback-trace to load anyway, "
				    "NOT ENFORCED)", why);
			goto fail;
		}
		shout("the LSM programs are attached, but enforcement is "
		      "unproven", why);
	}
	if (cg_opt.pin && !pin_guard(&g, &old_pins, &err))
		goto fail;
	guard_ids(&g, &ids);
	if (!cg_status_write(p, cg_status_file(), enforcing, why,
			     cg_opt.pin ? 0 : (long)getpid(),
			     cg_opt.pin ? cg_pin_dir() : NULL, &ids, &err)) {
		if (old_pins)
			unswap_pins(old_pins);
		else if (cg_opt.pin)
			cg_unpin(cg_pin_dir());
		goto fail;
	}
	if (old_pins) {
		cg_unpin(old_pins);
		printf("cprx-guard: replaced the pinned guard (no unguarded "
		       "window: both were attached during the swap)\n");
	}
	print_loaded(&g, p, enforcing, cg_opt.pin ? cg_pin_dir() : NULL);
	if (!cg_opt.pin) {
		ret = foreground(&g);
		unlink(cg_status_file());
	}
	guard_close(&g);
	cg_policy_free(p);
	if (lock >= 0)
		close(lock);
	return ret;
fail:
	fprintf(stderr, "cprx-guard: %s\n", err->message);
	if (cg_opt.replace)
		fprintf(stderr, "cprx-guard: the guard loaded before (if any) "
			"stays in place, unchanged\n");
	g_error_free(err);
	if (g.skel)
		guard_close(&g);
	cg_policy_free(p);
	if (lock >= 0)
		close(lock);
	return 1;
}
