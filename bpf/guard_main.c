// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guard's main: the verb table, the command line's help built from it,
 * and the dispatch.  The verbs live with what they work on: `load` in
 * cprx_guard.c (the loader), `status` and `check` in guard_status.c,
 * `trace` in guard_trace.c, `detach` in guard_pin.c, `hash` in
 * guard_policy.c.
 */
#include <stdio.h>
#include <string.h>
#include "guard_tool.h"

volatile sig_atomic_t cg_stop;

static void on_signal(int sig)
{
	(void)sig;
	cg_stop = 1;
}

void cg_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

struct verb {
	const char *name;
	const char *args;	/* after the name in the usage line */
	const char *summary;	/* of `cprx-guard VERB --help` */
	const char *help;	/* in `cprx-guard --help`; '\n' continues it */
	const GOptionEntry *opts;
	int (*run)(char **args);
};

static const struct verb verbs[] = {
	{ "load", "", "Load a guard policy and attach the guard.",
	  "load a policy and attach the guard; --pin leaves it in bpffs\n"
	  "and exits, otherwise it stays in the foreground (--trace)",
	  cg_load_entries, cg_cmd_load },
	{ "status", "", "Show the loaded guard.",
	  "enforced or not (and why), rules, counters, run time",
	  cg_status_entries, cg_cmd_status },
	{ "trace", "", "Print update timelines.",
	  "one timeline per live update: arm, check, commit, retrieve,\n"
	  "finish, with kernel timestamps (text, or --json)",
	  cg_trace_entries, cg_cmd_trace },
	{ "detach", "", "Remove the guard.",
	  "remove the guard (pinned or foreground) and its status",
	  cg_detach_entries, cg_cmd_detach },
	{ "check", "PATH...", "The policy's verdict on execs of PATH.",
	  "the loaded policy's verdict on PATH for this process",
	  cg_check_entries, cg_cmd_check },
	{ "hash", "PATH...", "Print an allow rule naming each PATH and its "
	  "SHA-256.",
	  "print 'allow PATH sha256=HEX' for each PATH: a rule bound to\n"
	  "the file's content as well", NULL, cg_cmd_hash },
	{ NULL }
};

/* `cprx-guard --help`'s list of verbs, from the table. */
static char *verbs_help(void)
{
	GString *s = g_string_new("Commands:\n");
	const struct verb *v;
	const char *p;

	for (v = verbs; v->name; v++) {
		g_string_append_printf(s, "  %-8s ", v->name);
		for (p = v->help; *p; p++) {
			g_string_append_c(s, *p);
			if (*p == '\n')
				g_string_append(s, "           ");
		}
		g_string_append_c(s, '\n');
	}
	g_string_append(s, "\n"
		"Run 'cprx-guard COMMAND --help' for a command's options.  Where the BPF\n"
		"LSM is unavailable the guard falls back to trace-only and says so.");
	return g_string_free(s, FALSE);
}

static int usage(GOptionContext *ctx, int status)
{
	g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);

	fputs(help, status ? stderr : stdout);
	return status;
}

int main(int argc, char **argv)
{
	const struct verb *v, *c = NULL;
	g_autoptr(GOptionContext) ctx = NULL;
	g_autofree char *param = NULL, *list = NULL;
	GError *err = NULL;

	for (v = verbs; argc > 1 && v->name; v++)
		if (!strcmp(argv[1], v->name))
			c = v;
	param = g_strdup_printf("%s%s%s", c ? c->name : "COMMAND",
				c && *c->args ? " " : "", c ? c->args : "");
	ctx = g_option_context_new(param);
	g_option_context_set_summary(ctx, c ? c->summary :
		"Authorize and trace live updates (cpr-exec) of VMMs with an "
		"eBPF LSM.");
	if (!c) {
		list = verbs_help();
		g_option_context_set_description(ctx, list);
	}
	g_option_context_add_main_entries(ctx, cg_common_entries, NULL);
	if (c && c->opts)
		g_option_context_add_main_entries(ctx, c->opts, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "cprx-guard: %s\n", err->message);
		return 2;
	}
	if (!c)
		return usage(ctx, argc > 1 ? 2 : 0);
	cg_libbpf_log();
	return c->run(argv + 2);
}
