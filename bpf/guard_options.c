// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guard's command line: each verb's options, parsed into one struct
 * cg_options, and the policy the `load` options describe.
 */
#include "guard_tool.h"

struct cg_options cg_opt = { .idle = 1.0 };

const char *cg_status_file(void)
{
	return cg_opt.status_file ? cg_opt.status_file :
	       cprx_guard_status_path();
}

const char *cg_pin_dir(void)
{
	return cg_opt.pin_dir ? cg_opt.pin_dir : CG_DEFAULT_PIN;
}

static gboolean add_all(struct cg_policy *p, const char *key, char **vals,
			GError **err)
{
	for (; vals && *vals; vals++)
		if (!cg_policy_add(p, key, *vals, err))
			return FALSE;
	return TRUE;
}

struct cg_policy *cg_policy_from_options(GError **err)
{
	struct cg_policy *p = cg_policy_new();

	p->source = g_strdup("command line");
	if ((cg_opt.policy && !cg_policy_load_file(p, cg_opt.policy, err)) ||
	    !add_all(p, "guard-uid", cg_opt.uids, err) ||
	    !add_all(p, "guard-cgroup", cg_opt.cgroups, err) ||
	    !add_all(p, "guard-exe", cg_opt.exes, err) ||
	    !add_all(p, "allow", cg_opt.allow, err) ||
	    !cg_policy_check(p, err)) {
		cg_policy_free(p);
		return NULL;
	}
	if (cg_opt.armed_only)
		p->armed_only = TRUE;
	if (cg_opt.trace_only)
		p->trace = TRUE;
	return p;
}

const GOptionEntry cg_load_entries[] = {
	{ "policy", 'p', 0, G_OPTION_ARG_FILENAME, &cg_opt.policy,
	  "Policy file (items: mode, armed-only, guard-uid, guard-cgroup, "
	  "guard-exe, allow)", "FILE" },
	{ "allow", 'a', 0, G_OPTION_ARG_FILENAME_ARRAY, &cg_opt.allow,
	  "Guarded processes may exec this binary (by inode, resolved now); "
	  "'PATH sha256=HEX': only if its content has that SHA-256",
	  "PATH[ sha256=HEX]" },
	{ "guard-cgroup", 'c', 0, G_OPTION_ARG_FILENAME_ARRAY, &cg_opt.cgroups,
	  "Guard processes in this cgroup v2 directory and below", "DIR" },
	{ "guard-uid", 'u', 0, G_OPTION_ARG_STRING_ARRAY, &cg_opt.uids,
	  "Guard processes with this real uid", "UID" },
	{ "guard-exe", 'e', 0, G_OPTION_ARG_FILENAME_ARRAY, &cg_opt.exes,
	  "Guard processes running this binary (sha256= as for --allow)",
	  "PATH[ sha256=HEX]" },
	{ "armed-only", 0, 0, G_OPTION_ARG_NONE, &cg_opt.armed_only,
	  "A VMM (a process running an allowed binary) may exec only while it "
	  "holds an armed cprx.ko session", NULL },
	{ "trace-only", 0, 0, G_OPTION_ARG_NONE, &cg_opt.trace_only,
	  "Never refuse; report what would be refused", NULL },
	{ "require-enforce", 0, 0, G_OPTION_ARG_NONE, &cg_opt.require_enforce,
	  "Fail unless enforcing, even in mode trace (without it, the default "
	  "fails too, unless --fallback-trace or mode trace)", NULL },
	{ "fallback-trace", 0, 0, G_OPTION_ARG_NONE, &cg_opt.fallback_trace,
	  "Where the guard cannot enforce, load trace-only (NOT ENFORCED) "
	  "instead of failing", NULL },
	{ "pin", 0, 0, G_OPTION_ARG_NONE, &cg_opt.pin,
	  "Pin in bpffs and exit: the policy outlives the tool", NULL },
	{ "replace", 0, 0, G_OPTION_ARG_NONE, &cg_opt.replace,
	  "With --pin: replace a pinned guard, with no unguarded window; "
	  "if the new one fails the old one stays", NULL },
	{ "pin-dir", 0, 0, G_OPTION_ARG_FILENAME, &cg_opt.pin_dir,
	  "Where to pin (" CG_DEFAULT_PIN ")", "DIR" },
	{ "trace", 't', 0, G_OPTION_ARG_NONE, &cg_opt.trace,
	  "Without --pin: print timelines while loaded", NULL },
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &cg_opt.json,
	  "Timelines as JSON lines", NULL },
	{ "bench", 0, 0, G_OPTION_ARG_NONE, &cg_opt.bench,
	  "Measure only: run the exec check from tp_btf/sched_prepare_exec "
	  "(kernel >= 6.10), enforcing nothing", NULL },
	{ NULL }
};

const GOptionEntry cg_trace_entries[] = {
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &cg_opt.json,
	  "One JSON object per timeline", NULL },
	{ "count", 'n', 0, G_OPTION_ARG_INT, &cg_opt.count,
	  "Exit after N timelines", "N" },
	{ "timeout", 0, 0, G_OPTION_ARG_DOUBLE, &cg_opt.timeout,
	  "Exit after SEC seconds", "SEC" },
	{ "idle", 0, 0, G_OPTION_ARG_DOUBLE, &cg_opt.idle,
	  "Print an unfinished timeline after SEC quiet seconds (1)", "SEC" },
	{ "backlog", 'b', 0, G_OPTION_ARG_NONE, &cg_opt.backlog,
	  "Also the events still in the ring from before the trace began", NULL },
	{ NULL }
};

const GOptionEntry cg_status_entries[] = {
	{ "json", 'j', 0, G_OPTION_ARG_NONE, &cg_opt.json,
	  "One JSON object (counters, programs' run_cnt and run_time_ns)", NULL },
	{ NULL }
};

const GOptionEntry cg_detach_entries[] = {
	{ "pin-dir", 0, 0, G_OPTION_ARG_FILENAME, &cg_opt.pin_dir,
	  "Where the guard is pinned (" CG_DEFAULT_PIN ")", "DIR" },
	{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &cg_opt.quiet,
	  "Say nothing when nothing is loaded", NULL },
	{ NULL }
};

const GOptionEntry cg_check_entries[] = {
	{ "armed", 0, 0, G_OPTION_ARG_NONE, &cg_opt.armed,
	  "The exec would happen with an armed cprx.ko session", NULL },
	{ NULL }
};

const GOptionEntry cg_common_entries[] = {
	{ "status-file", 's', 0, G_OPTION_ARG_FILENAME, &cg_opt.status_file,
	  "Status file (" CPRX_GUARD_STATUS_PATH ", or $" CPRX_GUARD_STATUS_ENV ")",
	  "FILE" },
	{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &cg_opt.verbose,
	  "libbpf's and the verifier's messages", NULL },
	{ NULL }
};
