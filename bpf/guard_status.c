// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The guard's status: the world-readable file the loader writes (format in
 * common/guard_reader.h; libcprx reads it to explain a refusal), and what
 * is read back from it and from the kernel: the `status` verb (rules,
 * counters, programs' run time; text or JSON by common/jsonl.c) and the
 * `check` verb (libcprx's verdict on an exec).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "guard_tool.h"
#include "jsonl.h"

/* --- writing ----------------------------------------------------------- */

/* What the loader takes, the parser must read (common/guard_reader.h). */
_Static_assert(CG_MAX_RULES <= CPRX_GUARD_MAX_RULES,
	       "guard-exe and allow entries beyond the status parser's limit");
_Static_assert(CG_MAX_UIDS <= CPRX_GUARD_MAX_SEL &&
	       CG_MAX_CGROUPS <= CPRX_GUARD_MAX_SEL,
	       "selectors beyond the status parser's limit");
_Static_assert(CPRX_GUARD_OBJ_NAME == BPF_OBJ_NAME_LEN,
	       "program and map names as the kernel keeps them");

static void status_rules(GString *s, const char *key, GArray *a, gboolean num)
{
	guint i;

	for (i = 0; i < a->len; i++) {
		struct cg_rule *r = &g_array_index(a, struct cg_rule, i);

		g_string_append(s, key);
		if (num)
			g_string_append_printf(s, " %u", i + 1);
		/* a fingerprint, not the inode number (guard_reader.h) */
		g_string_append_printf(s, " fp:%016" G_GINT64_MODIFIER "x %s\n",
				       r->fp, r->path);
	}
}

/* The guard's objects by id: how readers find it (guard_pin.c). */
static void status_ids(GString *s, const struct cprx_guard_ids *ids)
{
	unsigned int i;

	for (i = 0; i < ids->nr_progs; i++)
		g_string_append_printf(s, "prog %u %u %s\n", ids->progs[i].id,
				       ids->progs[i].type, ids->progs[i].name);
	for (i = 0; i < ids->nr_maps; i++)
		g_string_append_printf(s, "map %u %u %s\n", ids->maps[i].id,
				       ids->maps[i].type, ids->maps[i].name);
}

gboolean cg_status_write(const struct cg_policy *p, const char *file,
			 gboolean enforcing, const char *why, long pid,
			 const char *pinned, const struct cprx_guard_ids *ids,
			 GError **err)
{
	g_autoptr(GString) s = g_string_new("cprx-guard 1\n");
	g_autofree char *dir = g_path_get_dirname(file);
	unsigned long long start;
	char boot_id[40];
	guint i;

	g_string_append_printf(s, "state %s\n", enforcing ? "enforcing" :
			       "trace-only");
	if (why)
		g_string_append_printf(s, "why %s\n", why);
	g_string_append_printf(s, "mode %s\narmed-only %d\npid %ld\n",
			       p->trace ? "trace" : "enforce", !!p->armed_only,
			       pid);
	/* the loader is its pid and start time: a pid may be reused */
	if (pid > 0 && !cprx_guard_proc_start(pid, &start))
		g_string_append_printf(s, "pid-start %llu\n", start);
	/* programs and pins die with this kernel: the status with them */
	if (!cprx_guard_boot_id(boot_id, sizeof(boot_id)))
		g_string_append_printf(s, "boot-id %s\n", boot_id);
	if (pinned)
		g_string_append_printf(s, "pinned %s\n", pinned);
	g_string_append_printf(s, "policy %s\n", p->source);
	for (i = 0; i < p->uids->len; i++)
		g_string_append_printf(s, "guard-uid %u\n",
				       g_array_index(p->uids, guint32, i));
	/* by path: the guard follows it (no guard-cgroup-id, guard_reader.h) */
	for (i = 0; i < p->cgroups->len; i++)
		g_string_append_printf(s, "guard-cgroup %s %s\n",
				       (char *)g_ptr_array_index(p->cgroup_rels, i),
				       (char *)g_ptr_array_index(p->cgroups, i));
	status_rules(s, "guard-exe", p->exes, FALSE);
	status_rules(s, "allow", p->allow, TRUE);
	status_ids(s, ids);
	/* readable by every VMM, so libcprx can explain a refusal */
	if (g_mkdir_with_parents(dir, 0755) < 0) {
		g_set_error(err, CG_ERROR, errno, "%s: %s", dir, g_strerror(errno));
		return FALSE;
	}
	if (!g_file_set_contents_full(file, s->str, s->len,
				      G_FILE_SET_CONTENTS_CONSISTENT, 0644, err))
		return FALSE;
	return TRUE;
}

/* --- the `status` verb ------------------------------------------------- */

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
		else if (!cprx_guard_find_rule(st, &sb))
			note = "  [replaced on disk (or its ctime changed) since "
			       "load: the file there now is NOT allowed]";
		printf("  allow  rule %u: %s%s\n", r->rule, r->path, note);
	}
}

static const char *const stat_names[CG_ST_MAX] = {
	"execs", "guarded", "allowed", "denied", "would-deny", "events",
	"dropped",
};

/* Sums of the per-CPU counters; false when the map cannot be read. */
static gboolean read_counters(const struct cprx_guard_status *st,
			      __u64 sums[CG_ST_MAX])
{
	int fd, ncpu = libbpf_num_possible_cpus();
	g_autofree __u64 *vals = g_new0(__u64, ncpu > 0 ? ncpu : 1);
	__u32 k;
	int c;

	memset(sums, 0, CG_ST_MAX * sizeof(sums[0]));
	if (!st || geteuid() || ncpu <= 0)
		return FALSE;
	fd = cg_find_map(st, "stats");
	if (fd < 0)
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

static void print_counters(const struct cprx_guard_status *st,
			   const struct cg_loaded_prog *progs, int n)
{
	g_autofree char *en = stats_enabled();
	__u64 sums[CG_ST_MAX];
	int i;

	if (read_counters(st, sums)) {
		printf("counters:");
		for (i = 0; i < CG_ST_MAX; i++)
			printf(" %s %llu", stat_names[i], (unsigned long long)sums[i]);
		printf("\n");
	}
	printf("programs (run time from kernel.bpf_stats_enabled=%s):\n", en);
	for (i = 0; i < n; i++)
		printf("  %-15s id %-6u runs %-10llu avg %llu ns\n", progs[i].name,
		       progs[i].id, (unsigned long long)progs[i].run_cnt,
		       progs[i].run_cnt ? (unsigned long long)(progs[i].run_time_ns /
							       progs[i].run_cnt) : 0ULL);
}

/* One object: what scripts (tests, benchmarks) need. */
static void status_json(const struct cprx_guard_status *st, int ret,
			const struct cg_loaded_prog *progs, int n)
{
	g_autofree char *en = stats_enabled();
	__u64 sums[CG_ST_MAX];
	struct jsonl w;
	int i;

	jsonl_begin(&w, stdout);
	jsonl_bool(&w, "loaded", !ret);
	if (!ret) {
		jsonl_bool(&w, "enforcing", st->enforcing);
		jsonl_bool(&w, "armed_only", st->armed_only);
		jsonl_int(&w, "pid", st->pid);
		jsonl_str(&w, "why", st->why);
		jsonl_str(&w, "policy", st->policy);
		jsonl_str(&w, "pinned", st->pinned);
	}
	jsonl_str(&w, "bpf_stats_enabled", en);
	jsonl_object_begin(&w, "counters");
	if (read_counters(ret ? NULL : st, sums))
		for (i = 0; i < CG_ST_MAX; i++)
			jsonl_u64(&w, stat_names[i], sums[i]);
	jsonl_object_end(&w);
	jsonl_array_begin(&w, "programs");
	for (i = 0; i < n; i++) {
		jsonl_object_begin(&w, NULL);
		jsonl_str(&w, "name", progs[i].name);
		jsonl_u64(&w, "id", progs[i].id);
		jsonl_u64(&w, "run_cnt", progs[i].run_cnt);
		jsonl_u64(&w, "run_time_ns", progs[i].run_time_ns);
		jsonl_object_end(&w);
	}
	jsonl_array_end(&w);
	jsonl_end(&w);
}

/*
 * The guard's programs, by identity (guard_pin.c): those of the guard the
 * status describes, else those pinned in the pin dir.  Root only.
 */
static int guard_progs(const struct cprx_guard_status *st, int ret,
		       struct cg_loaded_prog *out, int max)
{
	if (geteuid())
		return 0;
	if (!ret)
		return cg_find_progs(st, out, max);
	return cg_pinned_progs(cg_pin_dir(), out, max);
}

/* No status: what is loaded all the same (root only). */
static void print_unloaded(int n)
{
	struct cg_loaded_prog like[CPRX_GUARD_MAX_PROGS];

	if (n) {
		printf("cprx-guard: but a guard is pinned in %s (%d program%s): "
		       "cprx-guard detach\n", cg_pin_dir(), n, n == 1 ? "" : "s");
		return;
	}
	n = geteuid() ? 0 : cg_lookalikes(NULL, 0, like, G_N_ELEMENTS(like));
	if (n)
		printf("cprx-guard: but %d program%s named and typed like the "
		       "guard's %s loaded (from another status file or pin dir? "
		       "bpftool prog show id %u)\n", n, n == 1 ? "" : "s",
		       n == 1 ? "is" : "are", like[0].id);
}

/* Programs of the guard, or as non-root what cannot be shown. */
static void print_programs(const struct cprx_guard_status *st,
			   const struct cg_loaded_prog *progs, int n)
{
	if (geteuid()) {
		printf("(counters and programs: run as root)\n");
		return;
	}
	if (!*st->pinned && !st->ids.nr_progs) {
		printf("(programs: the status file records none; its loader is "
		       "older than this cprx-guard)\n");
		return;
	}
	print_counters(st, progs, n);
	if (!n || (unsigned int)n < st->ids.nr_progs)
		printf("cprx-guard: WARNING: the status file says loaded, but "
		       "%s of the guard's programs %s in the kernel\n",
		       n ? "not all" : "none", n ? "are" : "is");
}

/*
 * A reload cut short (guard_swap.c) is resolved before anything is shown:
 * until then two guards enforce, and the status names one no longer at
 * the pin dir.  Root only, as are the pins.
 */
static void recover_pins(void)
{
	struct cprx_guard_status st;
	g_autofree char *dir = g_strdup(cg_pin_dir());
	int lock;

	if (geteuid())
		return;
	/* the guard the status names may be pinned elsewhere than --pin-dir */
	if (!cprx_guard_status_read(cg_status_file(), &st, NULL, 0)) {
		if (*st.pinned) {
			g_free(dir);
			dir = g_strdup(st.pinned);
		}
		cprx_guard_status_free(&st);
	}
	if (!cg_pins_left(dir))
		return;
	lock = cg_load_lock(FALSE);
	if (lock < 0) {
		if (errno == EWOULDBLOCK)
			fprintf(stderr, "cprx-guard: a load or detach is under "
				"way: what follows may be about to change\n");
		return;
	}
	cg_pins_recover(dir);
	close(lock);
}

int cg_cmd_status(char **args)
{
	struct cg_loaded_prog progs[CPRX_GUARD_MAX_PROGS];
	struct cprx_guard_status st;
	char err[256] = "";
	int ret, n;

	(void)args;
	recover_pins();
	ret = cprx_guard_status_read(cg_status_file(), &st, err, sizeof(err));
	n = guard_progs(&st, ret, progs, G_N_ELEMENTS(progs));
	if (cg_opt.json) {
		status_json(&st, ret, progs, n);
		if (!ret)
			cprx_guard_status_free(&st);
		return ret ? 3 : 0;
	}
	if (ret) {
		printf("cprx-guard: not loaded (%s: %s)\n", cg_status_file(),
		       ret == -ENOENT ? "no such file" : err);
		print_unloaded(n);
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
	print_programs(&st, progs, n);
	cprx_guard_status_free(&st);
	return 0;
}

/* --- the `check` verb -------------------------------------------------- */

int cg_cmd_check(char **paths)
{
	static const char *const names[] = {
		"no-guard", "unguarded", "allow", "deny", "would-deny",
	};
	char why[8192], hint[1024];
	int ret = 0;

	for (; paths && *paths; paths++) {
		enum cprx_guard_result r;

		r = cprx_guard_verdict(*paths, cg_opt.armed, why, sizeof(why),
				       hint, sizeof(hint));
		printf("%s: %s: %s\n", *paths, names[r], why);
		if (*hint)
			printf("  hint: %s\n", hint);
		if (r == CPRX_GUARD_DENY || r == CPRX_GUARD_WOULD_DENY)
			ret = 1;
	}
	return ret;
}
