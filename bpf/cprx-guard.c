// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guard: loads the guard (cprx_guard.bpf.c) with a policy, reports
 * what is and is not enforced, prints update timelines, and detaches.
 *
 * Loader sequence (libbpf skeleton): open, set the policy in .rodata, pick
 * the programs (LSM set, or the trace-only set), load, fill the maps,
 * attach; optionally pin links and maps in bpffs so the policy outlives
 * the tool.  When the BPF LSM is unavailable, or the kernel refuses LSM
 * programs, the trace-only set is loaded instead, and that is said at load,
 * in the status file and by `status`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "guard_tool.h"
#include "cprx_guard.skel.h"

#define LSM_LIST	"/sys/kernel/security/lsm"

static volatile sig_atomic_t stop;
static gboolean verbose;
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
	if (verbose || (level == LIBBPF_WARN && !trying))
		fputs(line, stderr);
	return 0;
}

static const char *errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EINVAL: return "EINVAL";
	case E2BIG: return "E2BIG";
	case ENOENT: return "ENOENT";
	case ENOTSUP: return "EOPNOTSUPP";
	case 524: return "ENOTSUPP";
	}
	return "error";
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* --- loading ------------------------------------------------------------- */

/* Which programs: the LSM, its trace-only fallback, or the benchmark. */
enum guard_mode { GM_LSM, GM_FALLBACK, GM_BENCH };

struct guard {
	struct cprx_guard_bpf *skel;
	struct bpf_link *links[8];
	const char *names[8];
	int nr_links;
	enum guard_mode mode;
	gboolean fallback;	/* anything but the LSM: nothing enforced */
};

/* NULL when "bpf" is an active LSM (or we cannot tell), else why not. */
static char *lsm_missing(void)
{
	g_autofree char *list = NULL;
	g_auto(GStrv) names = NULL;

	if (!g_file_get_contents(LSM_LIST, &list, NULL, NULL))
		return NULL;	/* no securityfs: let the kernel answer */
	g_strstrip(list);
	names = g_strsplit(list, ",", -1);
	if (g_strv_contains((const char *const *)names, "bpf"))
		return NULL;
	return g_strdup_printf("'bpf' is not an active LSM (%s is '%s'): boot "
			       "with lsm=%s,bpf", LSM_LIST, list, list);
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
	skel->rodata->cfg_nr_cgroups = p->cgroups->len;
	skel->rodata->cfg_nr_exes = p->exes->len;
}

static gboolean fill_rules(int fd, GArray *rules, GError **err)
{
	guint i;

	for (i = 0; i < rules->len; i++) {
		struct cg_rule *r = &g_array_index(rules, struct cg_rule, i);
		struct cg_file_key k = { .ino = r->ino, .dev = cg_rule_kdev(r) };
		__u32 rule = i + 1;

		if (bpf_map_update_elem(fd, &k, &rule, BPF_ANY) < 0) {
			g_set_error(err, CG_ERROR, errno, "rule '%s': %s",
				    r->path, g_strerror(errno));
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean fill_maps(struct guard *g, const struct cg_policy *p,
			  GError **err)
{
	int cg_fd = bpf_map__fd(g->skel->maps.cgroups);
	guint i;

	if (!fill_rules(bpf_map__fd(g->skel->maps.allow), p->allow, err) ||
	    !fill_rules(bpf_map__fd(g->skel->maps.guard_exes), p->exes, err))
		return FALSE;
	for (i = 0; i < p->cgroups->len; i++) {
		const char *dir = g_ptr_array_index(p->cgroups, i);
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		__u32 key = i;

		if (fd < 0 || bpf_map_update_elem(cg_fd, &key, &fd, BPF_ANY) < 0) {
			g_set_error(err, CG_ERROR, errno, "cgroup %s: %s", dir,
				    g_strerror(errno));
			if (fd >= 0)
				close(fd);
			return FALSE;
		}
		close(fd);
	}
	return TRUE;
}

static void guard_close(struct guard *g)
{
	int i;

	for (i = 0; i < g->nr_links; i++)
		bpf_link__destroy(g->links[i]);
	g->nr_links = 0;
	cprx_guard_bpf__destroy(g->skel);
	g->skel = NULL;
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

static gboolean attach_one(struct guard *g, struct bpf_program *prog,
			   GError **err)
{
	struct bpf_link *l = bpf_program__attach(prog);

	if (!l) {
		int e = errno;

		g_set_error(err, CG_ERROR, e, "the kernel refused to attach %s "
			    "(%s): %s (%s): %s", bpf_program__name(prog),
			    bpf_program__section_name(prog), g_strerror(e),
			    errno_name(e), why_refused(e));
		return FALSE;
	}
	g->names[g->nr_links] = bpf_program__name(prog);
	g->links[g->nr_links++] = l;
	return TRUE;
}

static gboolean guard_open(struct guard *g, const struct cg_policy *p,
			   enum guard_mode mode, GError **err)
{
	gboolean fallback = mode != GM_LSM;
	struct cprx_guard_bpf *s;
	struct bpf_program *prog;
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
	bpf_program__set_autoload(s->progs.cg_bprm_check, mode == GM_LSM);
	bpf_program__set_autoload(s->progs.cg_file_ioctl, mode == GM_LSM);
	bpf_program__set_autoload(s->progs.cg_file_fcntl, mode == GM_LSM);
	bpf_program__set_autoload(s->progs.cg_sys_enter, mode == GM_FALLBACK);
	bpf_program__set_autoload(s->progs.cg_sys_exit, mode == GM_FALLBACK);
	bpf_program__set_autoload(s->progs.cg_bench_check, mode == GM_BENCH);
	refused_prog[0] = '\0';
	trying = !fallback;
	ret = cprx_guard_bpf__load(s);
	trying = FALSE;
	if (ret) {
		prog = *refused_prog ?
		       bpf_object__find_program_by_name(s->obj, refused_prog) : NULL;
		g_set_error(err, CG_ERROR, -ret, "the kernel refused to load the "
			    "%s program %s%s%s%s: %s (%s): %s",
			    fallback ? "tp_btf" : "BPF LSM",
			    prog ? bpf_program__name(prog) : "set",
			    prog ? " (" : "", prog ? bpf_program__section_name(prog) : "",
			    prog ? ")" : "", g_strerror(-ret), errno_name(-ret),
			    why_refused(-ret));
		goto fail;
	}
	if (!fill_maps(g, p, err))
		goto fail;
	trying = !fallback;
	bpf_object__for_each_program(prog, s->obj) {
		if (bpf_program__autoload(prog) && !attach_one(g, prog, err)) {
			trying = FALSE;
			goto fail;
		}
	}
	trying = FALSE;
	return TRUE;
fail:
	guard_close(g);
	return FALSE;
}

/* --- pinning ----------------------------------------------------------- */

static gboolean ensure_bpffs(const char *dir, GError **err)
{
	g_autofree char *parent = g_path_get_dirname(dir);
	struct statfs sfs;

	if (statfs(parent, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC)
		return TRUE;
	if (strcmp(parent, "/sys/fs/bpf") ||
	    mount("bpf", parent, "bpf", 0, "mode=0700") < 0) {
		g_set_error(err, CG_ERROR, ENOTDIR, "%s is not on a bpf file "
			    "system (mount -t bpf bpf /sys/fs/bpf)", dir);
		return FALSE;
	}
	fprintf(stderr, "cprx-guard: mounted bpffs on %s\n", parent);
	return TRUE;
}

static void unpin_dir(const char *dir)
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

static gboolean guard_pin(struct guard *g, const char *dir, GError **err)
{
	struct bpf_map *map;
	int i;

	if (!ensure_bpffs(dir, err))
		return FALSE;
	if (mkdir(dir, 0700) < 0) {
		g_set_error(err, CG_ERROR, errno, "%s: %s", dir, g_strerror(errno));
		return FALSE;
	}
	for (i = 0; i < g->nr_links; i++) {
		g_autofree char *f = g_strdup_printf("%s/link_%s", dir, g->names[i]);

		if (bpf_link__pin(g->links[i], f))
			goto fail;
	}
	bpf_object__for_each_map(map, g->skel->obj) {
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
	unpin_dir(dir);
	return FALSE;
}

/* --- finding a loaded guard ------------------------------------------- */

static const char *const prog_names[] = {
	"cg_bprm_check", "cg_file_ioctl", "cg_file_fcntl", "cg_exec",
	"cg_sys_enter", "cg_sys_exit", "cg_bench_check", NULL,
};

struct loaded_prog {
	__u32 id;
	char name[BPF_OBJ_NAME_LEN];
	__u64 run_cnt, run_time_ns;
	__u32 map_ids[16];
	__u32 nr_maps;
};

/* Our programs among the loaded ones (needs CAP_SYS_ADMIN). */
static int find_progs(struct loaded_prog *out, int max)
{
	__u32 id = 0;
	int n = 0;

	while (n < max && !bpf_prog_get_next_id(id, &id)) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);
		struct loaded_prog *lp = &out[n];
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

/* A map of a loaded guard program, by name: an fd, or -1. */
static int find_map(const struct loaded_prog *progs, int n, const char *name)
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

/* --- commands ---------------------------------------------------------- */

static char *opt_policy, *opt_pin_dir, *opt_status_file;
static char **opt_allow, **opt_cgroups, **opt_exes, **opt_uids;
static gboolean opt_armed_only, opt_trace_only, opt_pin, opt_trace;
static gboolean opt_json, opt_require_enforce, opt_armed, opt_quiet;
static gboolean opt_bench, opt_backlog;
static int opt_count;
static double opt_timeout, opt_idle = 1.0;

static const char *status_file(void)
{
	return opt_status_file ? opt_status_file : cprx_guard_status_path();
}

static const char *pin_dir(void)
{
	return opt_pin_dir ? opt_pin_dir : CG_DEFAULT_PIN;
}

static gboolean add_all(struct cg_policy *p, const char *key, char **vals,
			GError **err)
{
	for (; vals && *vals; vals++)
		if (!cg_policy_add(p, key, *vals, err))
			return FALSE;
	return TRUE;
}

static struct cg_policy *build_policy(GError **err)
{
	struct cg_policy *p = cg_policy_new();

	p->source = g_strdup("command line");
	if ((opt_policy && !cg_policy_load_file(p, opt_policy, err)) ||
	    !add_all(p, "guard-uid", opt_uids, err) ||
	    !add_all(p, "guard-cgroup", opt_cgroups, err) ||
	    !add_all(p, "guard-exe", opt_exes, err) ||
	    !add_all(p, "allow", opt_allow, err) ||
	    !cg_policy_check(p, err)) {
		cg_policy_free(p);
		return NULL;
	}
	if (opt_armed_only)
		p->armed_only = TRUE;
	if (opt_trace_only)
		p->trace = TRUE;
	return p;
}

/* Refuses a second guard: the status file and the pins are one each. */
static gboolean already_loaded(GError **err)
{
	struct cprx_guard_status st;

	if (!cprx_guard_status_read(status_file(), &st, NULL, 0)) {
		g_set_error(err, CG_ERROR, EEXIST, "a guard is loaded already "
			    "(%s: %s): cprx-guard detach first", status_file(),
			    st.pid ? "running in the foreground" : "pinned");
		cprx_guard_status_free(&st);
		return TRUE;
	}
	if (g_file_test(pin_dir(), G_FILE_TEST_EXISTS)) {
		g_set_error(err, CG_ERROR, EEXIST, "%s exists: cprx-guard detach "
			    "first", pin_dir());
		return TRUE;
	}
	return FALSE;
}

static void shout_fallback(const char *why)
{
	fprintf(stderr,
		"cprx-guard: ******************************************************\n"
		"cprx-guard: NOT ENFORCED: trace-only mode.\n"
		"cprx-guard: why: %s.\n"
		"cprx-guard: guarded processes may exec any binary; the trace shows\n"
		"cprx-guard: what the policy would have refused.\n"
		"cprx-guard: ******************************************************\n",
		why);
}

static void print_loaded(const struct guard *g, const struct cg_policy *p,
			 const char *pinned)
{
	int i;

	printf("cprx-guard: %s; policy %s: %u allowed, guarding %u uid%s, "
	       "%u cgroup%s, %u binar%s%s\n",
	       g->fallback ? "trace-only (NOT ENFORCED)" :
	       p->trace ? "BPF LSM attached, mode trace (NOT ENFORCED)" :
	       "enforcing (BPF LSM)", p->source, p->allow->len,
	       p->uids->len, p->uids->len == 1 ? "" : "s",
	       p->cgroups->len, p->cgroups->len == 1 ? "" : "s",
	       p->exes->len, p->exes->len == 1 ? "y" : "ies",
	       p->armed_only ? ", armed-only" : "");
	for (i = 0; i < g->nr_links; i++)
		printf("cprx-guard:   %s attached\n", g->names[i]);
	if (pinned)
		printf("cprx-guard: pinned in %s; status in %s; the policy stays "
		       "until cprx-guard detach\n", pinned, status_file());
	fflush(stdout);
}

/* LSM programs if we can, else the trace-only set, saying why. */
static gboolean attach_best(struct guard *g, const struct cg_policy *p,
			    char **why, GError **err)
{
	GError *e = NULL;

	if (opt_bench) {
		*why = g_strdup("benchmark mode (--bench): the exec check runs "
				"from tp_btf/sched_prepare_exec and enforces nothing");
		return guard_open(g, p, GM_BENCH, err);
	}
	*why = lsm_missing();
	if (!*why) {
		if (guard_open(g, p, GM_LSM, &e))
			return TRUE;
		*why = g_strdup(e->message);
		g_clear_error(&e);
	}
	if (opt_require_enforce) {
		g_set_error(err, CG_ERROR, EPERM, "cannot enforce: %s", *why);
		return FALSE;
	}
	if (!guard_open(g, p, GM_FALLBACK, &e)) {
		g_set_error(err, CG_ERROR, e->code, "BPF is unavailable: no LSM "
			    "(%s), and no trace-only fallback either: %s", *why,
			    e->message);
		g_error_free(e);
		return FALSE;
	}
	shout_fallback(*why);
	return TRUE;
}

static int foreground(struct guard *g)
{
	struct cprx_guard_status st;
	struct cg_trace_opts o = { .json = opt_json, .idle = opt_idle };
	int ret = 0;

	catch_signals();
	if (opt_trace) {
		o.st = cprx_guard_status_read(status_file(), &st, NULL, 0) ?
		       NULL : &st;
		ret = cg_trace_run(bpf_map__fd(g->skel->maps.events), &o, &stop);
		if (o.st)
			cprx_guard_status_free(&st);
	} else {
		while (!stop)
			pause();
	}
	return ret ? 1 : 0;
}

static int cmd_load(void)
{
	g_autofree char *why = NULL;
	struct cg_policy *p;
	struct guard g = { 0 };
	GError *err = NULL;
	gboolean enforcing;
	int ret = 0;

	p = build_policy(&err);
	if (!p || already_loaded(&err) || !attach_best(&g, p, &why, &err))
		goto fail;
	enforcing = !g.fallback && !p->trace;
	if (!g.fallback && p->trace)
		why = g_strdup("the policy's mode is trace");
	if (opt_pin && !guard_pin(&g, pin_dir(), &err))
		goto fail;
	if (!cg_status_write(p, status_file(), enforcing, why,
			     opt_pin ? 0 : (long)getpid(),
			     opt_pin ? pin_dir() : NULL, &err)) {
		if (opt_pin)
			unpin_dir(pin_dir());
		goto fail;
	}
	print_loaded(&g, p, opt_pin ? pin_dir() : NULL);
	if (!opt_pin) {
		ret = foreground(&g);
		unlink(status_file());
	}
	guard_close(&g);
	cg_policy_free(p);
	return ret;
fail:
	fprintf(stderr, "cprx-guard: %s\n", err->message);
	g_error_free(err);
	if (g.skel)
		guard_close(&g);
	cg_policy_free(p);
	return 1;
}

static void print_rules(const struct cprx_guard_status *st)
{
	unsigned int i;

	for (i = 0; i < st->nr_uids; i++)
		printf("  guard  uid %u\n", st->uids[i]);
	for (i = 0; i < st->nr_cgroups; i++)
		printf("  guard  cgroup %s\n", st->cgroups[i].mnt);
	for (i = 0; i < st->nr_exes; i++)
		printf("  guard  processes running %s\n", st->exes[i].path);
	for (i = 0; i < st->nr_allow; i++) {
		const struct cprx_guard_file *r = &st->allow[i];
		struct stat sb;
		const char *note = "";

		if (stat(r->path, &sb) < 0)
			note = "  [gone from disk: reload the policy]";
		else if (major(sb.st_dev) != r->major || minor(sb.st_dev) != r->minor ||
			 sb.st_ino != r->ino)
			note = "  [replaced on disk since load: the new file is NOT allowed]";
		printf("  allow  rule %u: %s (%u:%u:%llu)%s\n", r->rule, r->path,
		       r->major, r->minor, (unsigned long long)r->ino, note);
	}
}

static const char *const stat_names[CG_ST_MAX] = {
	"execs", "guarded", "allowed", "denied", "would-deny", "events",
	"dropped",
};

/* Sums of the per-CPU counters; false when the map cannot be read. */
static gboolean read_counters(const struct loaded_prog *progs, int n,
			      __u64 sums[CG_ST_MAX])
{
	int fd = find_map(progs, n, "stats"), ncpu = libbpf_num_possible_cpus();
	g_autofree __u64 *vals = g_new0(__u64, ncpu > 0 ? ncpu : 1);
	__u32 k;
	int c;

	memset(sums, 0, CG_ST_MAX * sizeof(sums[0]));
	if (fd < 0 || ncpu <= 0)
		return FALSE;
	for (k = 0; k < CG_ST_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals))
			continue;
		for (c = 0; c < ncpu; c++)
			sums[k] += vals[c];
	}
	close(fd);
	return TRUE;
}

static char *stats_enabled(void)
{
	char *en = NULL;

	if (!g_file_get_contents("/proc/sys/kernel/bpf_stats_enabled", &en,
				 NULL, NULL))
		return g_strdup("?");
	return g_strstrip(en);
}

static void print_counters(const struct loaded_prog *progs, int n)
{
	g_autofree char *en = stats_enabled();
	__u64 sums[CG_ST_MAX];
	int i;

	if (read_counters(progs, n, sums)) {
		printf("counters:");
		for (i = 0; i < CG_ST_MAX; i++)
			printf(" %s %llu", stat_names[i], (unsigned long long)sums[i]);
		printf("\n");
	}
	printf("programs (run time from kernel.bpf_stats_enabled=%s):\n", en);
	for (i = 0; i < n; i++)
		printf("  %-14s id %-6u runs %-10llu avg %llu ns\n", progs[i].name,
		       progs[i].id, (unsigned long long)progs[i].run_cnt,
		       progs[i].run_cnt ? (unsigned long long)(progs[i].run_time_ns /
							       progs[i].run_cnt) : 0ULL);
}

static void json_kv(GString *s, const char *key, const char *val)
{
	const char *p;

	g_string_append_printf(s, "\"%s\":\"", key);
	for (p = val; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_c(s, '\\');
		if ((unsigned char)*p >= 0x20)
			g_string_append_c(s, *p);
	}
	g_string_append(s, "\",");
}

/* One object: what scripts (tests, benchmarks) need. */
static void status_json(const struct cprx_guard_status *st, int ret,
			const struct loaded_prog *progs, int n)
{
	g_autoptr(GString) s = g_string_new("{");
	g_autofree char *en = stats_enabled();
	__u64 sums[CG_ST_MAX];
	int i;

	g_string_append_printf(s, "\"loaded\":%s,", ret ? "false" : "true");
	if (!ret) {
		g_string_append_printf(s, "\"enforcing\":%s,\"armed_only\":%s,"
				       "\"pid\":%ld,", st->enforcing ? "true" :
				       "false", st->armed_only ? "true" : "false",
				       st->pid);
		json_kv(s, "why", st->why);
		json_kv(s, "policy", st->policy);
		json_kv(s, "pinned", st->pinned);
	}
	json_kv(s, "bpf_stats_enabled", en);
	g_string_append(s, "\"counters\":{");
	if (read_counters(progs, n, sums))
		for (i = 0; i < CG_ST_MAX; i++)
			g_string_append_printf(s, "%s\"%s\":%llu", i ? "," : "",
					       stat_names[i],
					       (unsigned long long)sums[i]);
	g_string_append(s, "},\"programs\":[");
	for (i = 0; i < n; i++)
		g_string_append_printf(s, "%s{\"name\":\"%s\",\"id\":%u,"
				       "\"run_cnt\":%llu,\"run_time_ns\":%llu}",
				       i ? "," : "", progs[i].name, progs[i].id,
				       (unsigned long long)progs[i].run_cnt,
				       (unsigned long long)progs[i].run_time_ns);
	g_string_append(s, "]}");
	printf("%s\n", s->str);
}

static int cmd_status(void)
{
	struct loaded_prog progs[8];
	struct cprx_guard_status st;
	char err[256] = "";
	int ret, n;

	ret = cprx_guard_status_read(status_file(), &st, err, sizeof(err));
	n = geteuid() == 0 ? find_progs(progs, G_N_ELEMENTS(progs)) : 0;
	if (opt_json) {
		status_json(&st, ret, progs, n);
		if (!ret)
			cprx_guard_status_free(&st);
		return ret ? 3 : 0;
	}
	if (ret) {
		printf("cprx-guard: not loaded (%s: %s)\n", status_file(),
		       ret == -ENOENT ? "no such file" : err);
		if (n)
			printf("cprx-guard: but %d guard program%s loaded: "
			       "cprx-guard detach\n", n, n == 1 ? " is" : "s are");
		return 3;
	}
	if (st.enforcing)
		printf("cprx-guard: ENFORCING (BPF LSM)\n");
	else
		printf("cprx-guard: NOT ENFORCED: trace-only: %s\n", st.why);
	printf("policy %s, mode %s%s; %s\n", st.policy,
	       st.mode_trace ? "trace" : "enforce",
	       st.armed_only ? ", armed-only" : "",
	       st.pid ? "held by a foreground cprx-guard" : "pinned");
	if (st.pid)
		printf("loader pid %ld\n", st.pid);
	else
		printf("pinned in %s\n", st.pinned);
	print_rules(&st);
	if (n) {
		print_counters(progs, n);
	} else if (geteuid()) {
		printf("(counters and programs: run as root)\n");
	} else {
		printf("cprx-guard: WARNING: the status file says loaded, but no "
		       "guard program is in the kernel\n");
	}
	cprx_guard_status_free(&st);
	return 0;
}

static int events_fd(const struct cprx_guard_status *st)
{
	struct loaded_prog progs[8];
	g_autofree char *pin = NULL;
	int fd;

	if (st && *st->pinned) {
		pin = g_build_filename(st->pinned, "events", NULL);
		fd = bpf_obj_get(pin);
		if (fd >= 0)
			return fd;
	}
	return find_map(progs, find_progs(progs, G_N_ELEMENTS(progs)), "events");
}

static int cmd_trace(void)
{
	struct cg_trace_opts o = { .json = opt_json, .count = opt_count,
				   .timeout = opt_timeout, .idle = opt_idle,
				   .backlog = opt_backlog };
	struct cprx_guard_status st;
	gboolean have = !cprx_guard_status_read(status_file(), &st, NULL, 0);
	int fd, ret;

	fd = events_fd(have ? &st : NULL);
	if (fd < 0) {
		fprintf(stderr, "cprx-guard: no guard is loaded (cprx-guard load)\n");
		return 3;
	}
	if (have && !st.enforcing)
		fprintf(stderr, "cprx-guard: NOT ENFORCED: %s\n", st.why);
	o.st = have ? &st : NULL;
	catch_signals();
	ret = cg_trace_run(fd, &o, &stop);
	close(fd);
	if (have)
		cprx_guard_status_free(&st);
	return ret ? 1 : 0;
}

static gboolean progs_gone(void)
{
	struct loaded_prog progs[8];
	int tries;

	/* links are released asynchronously (RCU) */
	for (tries = 0; tries < 50; tries++) {
		if (!find_progs(progs, G_N_ELEMENTS(progs)))
			return TRUE;
		g_usleep(100 * 1000);
	}
	return FALSE;
}

static int cmd_detach(void)
{
	struct cprx_guard_status st;
	gboolean found = FALSE;
	int tries;

	if (!cprx_guard_status_read(status_file(), &st, NULL, 0)) {
		found = TRUE;
		if (st.pid > 0 && kill(st.pid, SIGTERM) == 0) {
			for (tries = 0; tries < 100 && !kill(st.pid, 0); tries++)
				g_usleep(50 * 1000);
			printf("cprx-guard: stopped the foreground guard (pid %ld)\n",
			       st.pid);
		}
		cprx_guard_status_free(&st);
	}
	if (g_file_test(pin_dir(), G_FILE_TEST_IS_DIR)) {
		found = TRUE;
		unpin_dir(pin_dir());
		printf("cprx-guard: unpinned %s\n", pin_dir());
	}
	unlink(status_file());
	if (!progs_gone()) {
		fprintf(stderr, "cprx-guard: guard programs are still loaded "
			"(another loader, or a pin outside %s)\n", pin_dir());
		return 1;
	}
	if (!found && !opt_quiet)
		printf("cprx-guard: nothing was loaded\n");
	else if (found)
		printf("cprx-guard: detached; no guard program left in the kernel\n");
	return 0;
}

static int cmd_check(char **paths)
{
	static const char *const names[] = {
		"no-guard", "unguarded", "allow", "deny", "would-deny",
	};
	char why[8192], hint[1024];
	int ret = 0;

	for (; paths && *paths; paths++) {
		enum cprx_guard_result r;

		r = cprx_guard_verdict(*paths, opt_armed, why, sizeof(why),
				       hint, sizeof(hint));
		printf("%s: %s: %s\n", *paths, names[r], why);
		if (*hint)
			printf("  hint: %s\n", hint);
		if (r == CPRX_GUARD_DENY || r == CPRX_GUARD_WOULD_DENY)
			ret = 1;
	}
	return ret;
}

/* --- options ----------------------------------------------------------- */

static const GOptionEntry load_opts[] = {
	{ "policy", 'p', 0, G_OPTION_ARG_FILENAME, &opt_policy,
	  "Policy file (items: mode, armed-only, guard-uid, guard-cgroup, "
	  "guard-exe, allow)", "FILE" },
	{ "allow", 'a', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_allow,
	  "Guarded processes may exec this binary (by inode, resolved now)", "PATH" },
	{ "guard-cgroup", 'c', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_cgroups,
	  "Guard processes in this cgroup v2 directory and below", "DIR" },
	{ "guard-uid", 'u', 0, G_OPTION_ARG_STRING_ARRAY, &opt_uids,
	  "Guard processes with this real uid", "UID" },
	{ "guard-exe", 'e', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_exes,
	  "Guard processes running this binary", "PATH" },
	{ "armed-only", 0, 0, G_OPTION_ARG_NONE, &opt_armed_only,
	  "A VMM (a process running an allowed binary) may exec only while it "
	  "holds an armed cprx.ko session", NULL },
	{ "trace-only", 0, 0, G_OPTION_ARG_NONE, &opt_trace_only,
	  "Never refuse; report what would be refused", NULL },
	{ "require-enforce", 0, 0, G_OPTION_ARG_NONE, &opt_require_enforce,
	  "Fail instead of falling back to trace-only", NULL },
	{ "pin", 0, 0, G_OPTION_ARG_NONE, &opt_pin,
	  "Pin in bpffs and exit: the policy outlives the tool", NULL },
	{ "pin-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_pin_dir,
	  "Where to pin (" CG_DEFAULT_PIN ")", "DIR" },
	{ "trace", 't', 0, G_OPTION_ARG_NONE, &opt_trace,
	  "Without --pin: print timelines while loaded", NULL },
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
	  "Timelines as JSON lines", NULL },
	{ "bench", 0, 0, G_OPTION_ARG_NONE, &opt_bench,
	  "Measure only: run the exec check from tp_btf/sched_prepare_exec "
	  "(kernel >= 6.10), enforcing nothing", NULL },
	{ NULL }
};

static const GOptionEntry trace_opts[] = {
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
	  "One JSON object per timeline", NULL },
	{ "count", 'n', 0, G_OPTION_ARG_INT, &opt_count,
	  "Exit after N timelines", "N" },
	{ "timeout", 0, 0, G_OPTION_ARG_DOUBLE, &opt_timeout,
	  "Exit after SEC seconds", "SEC" },
	{ "idle", 0, 0, G_OPTION_ARG_DOUBLE, &opt_idle,
	  "Print an unfinished timeline after SEC quiet seconds (1)", "SEC" },
	{ "backlog", 'b', 0, G_OPTION_ARG_NONE, &opt_backlog,
	  "Also the events still in the ring from before the trace began", NULL },
	{ NULL }
};

static const GOptionEntry status_opts[] = {
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
	  "One JSON object (counters, programs' run_cnt and run_time_ns)", NULL },
	{ NULL }
};

static const GOptionEntry detach_opts[] = {
	{ "pin-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_pin_dir,
	  "Where the guard is pinned (" CG_DEFAULT_PIN ")", "DIR" },
	{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet,
	  "Say nothing when nothing is loaded", NULL },
	{ NULL }
};

static const GOptionEntry check_opts[] = {
	{ "armed", 0, 0, G_OPTION_ARG_NONE, &opt_armed,
	  "The exec would happen with an armed cprx.ko session", NULL },
	{ NULL }
};

static const GOptionEntry common_opts[] = {
	{ "status-file", 's', 0, G_OPTION_ARG_FILENAME, &opt_status_file,
	  "Status file (" CPRX_GUARD_STATUS_PATH ", or $" CPRX_GUARD_STATUS_ENV ")",
	  "FILE" },
	{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
	  "libbpf's and the verifier's messages", NULL },
	{ NULL }
};

static const char commands[] =
	"Commands:\n"
	"  load     load a policy and attach the guard; --pin leaves it in bpffs\n"
	"           and exits, otherwise it stays in the foreground (--trace)\n"
	"  status   enforced or not (and why), rules, counters, run time\n"
	"  trace    one timeline per live update: arm, check, commit, retrieve,\n"
	"           finish, with kernel timestamps (text, or --json)\n"
	"  detach   remove the guard (pinned or foreground) and its status\n"
	"  check    the loaded policy's verdict on PATH for this process\n"
	"\n"
	"Run 'cprx-guard COMMAND --help' for a command's options.  Where the BPF\n"
	"LSM is unavailable the guard falls back to trace-only and says so.";

struct command {
	const char *name, *args, *summary;
	const GOptionEntry *opts;
};

static const struct command cmds[] = {
	{ "load", "", "Load a guard policy and attach the guard.", load_opts },
	{ "status", "", "Show the loaded guard.", status_opts },
	{ "trace", "", "Print update timelines.", trace_opts },
	{ "detach", "", "Remove the guard.", detach_opts },
	{ "check", "PATH...", "The policy's verdict on execs of PATH.", check_opts },
	{ NULL }
};

static int usage(GOptionContext *ctx, int status)
{
	g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);

	fputs(help, status ? stderr : stdout);
	return status;
}

int main(int argc, char **argv)
{
	const struct command *c = NULL;
	g_autoptr(GOptionContext) ctx = NULL;
	g_autofree char *param = NULL;
	GError *err = NULL;
	int i;

	for (i = 0; argc > 1 && cmds[i].name; i++)
		if (!strcmp(argv[1], cmds[i].name))
			c = &cmds[i];
	param = g_strdup_printf("%s%s%s", c ? c->name : "COMMAND",
				c && *c->args ? " " : "", c ? c->args : "");
	ctx = g_option_context_new(param);
	g_option_context_set_summary(ctx, c ? c->summary :
		"Authorize and trace live updates (cpr-exec) of VMMs with an "
		"eBPF LSM.");
	if (!c)
		g_option_context_set_description(ctx, commands);
	g_option_context_add_main_entries(ctx, common_opts, NULL);
	if (c && c->opts)
		g_option_context_add_main_entries(ctx, c->opts, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "cprx-guard: %s\n", err->message);
		return 2;
	}
	if (!c)
		return usage(ctx, argc > 1 ? 2 : 0);
	libbpf_set_print(on_libbpf);
	if (!strcmp(c->name, "load"))
		return cmd_load();
	if (!strcmp(c->name, "status"))
		return cmd_status();
	if (!strcmp(c->name, "trace"))
		return cmd_trace();
	if (!strcmp(c->name, "detach"))
		return cmd_detach();
	return cmd_check(argv + 2);
}
