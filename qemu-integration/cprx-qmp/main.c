// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp: live-update a running QEMU (cpr-exec) through QMP, with a
 * preflight that refuses before the guest stops, and a report of the pause.
 *
 *   cprx-qmp status -s QMP.sock
 *   cprx-qmp update -s QMP.sock [--new-binary PATH] [-- NEW ARGV...]
 *   cprx-qmp update --all [--jobs N] [--replaced] [--under DIR]
 *   cprx-qmp restart -s QMP.sock
 *   cprx-qmp demo
 *
 * This file: the command line and the table of commands.
 */
#include "cprx-qmp.h"

#include <stdio.h>
#include <string.h>

static void opts_clear(struct qmp_opts *o)
{
	g_free(o->socket);
	g_free(o->new_qmp);
	g_free(o->new_binary);
	g_free(o->state);
	g_free(o->json_out);
	g_free(o->under);
	g_strfreev(o->add_args);
	g_strfreev(o->argv);
}

/* The commands; all but demo drive the QEMU behind --socket. */
static const struct verb {
	const char *name;
	int (*run)(struct qmp_opts *o);
	gboolean needs_socket;
} verbs[] = {
	{ "status",	do_status,	TRUE },
	{ "update",	do_update,	TRUE },
	{ "restart",	do_restart,	TRUE },
	{ "demo",	do_demo,	FALSE },
};

static const struct verb *find_verb(const char *name)
{
	for (guint i = 0; i < G_N_ELEMENTS(verbs); i++)
		if (!strcmp(verbs[i].name, name))
			return &verbs[i];
	return NULL;
}

static const char *usage_text =
	"COMMAND: status | update | restart | demo\n\n"
	"  status  what the running QEMU is and whether it can be updated\n"
	"  update  preflight, then cpr-exec into the new binary/command line\n"
	"  update --all  every running QEMU of the host (a QMP server socket on its\n"
	"          command line), each a separate update, --jobs at a time; a table\n"
	"          (or --json) of each VM's result, pause and versions\n"
	"  restart the baseline: migrate to a file, quit, start QEMU again with\n"
	"          -incoming (RAM copied; a new PID), report the pause the same way\n"
	"  demo    boot a small Linux guest (qemu-integration/guest.sh) and update it 3 times\n\n"
	"update keeps QEMU's command line (read from /proc/PID/cmdline), with\n"
	"-incoming file:STATE, unless a full new argv follows --. Exit status: 0 ok,\n"
	"1 usage or connection error, 2 refused by the preflight (nothing stopped),\n"
	"3 failed with the guest still running (rolled back included), 4 VM lost,\n"
	"5 failed and rescued: the new QEMU died, the previous one runs the guest\n"
	"again in a new PID; for --all, the worst of its updates (lost, rescued,\n"
	"failed, error, refused or skipped, updated).";

int main(int argc, char **argv)
{
	struct qmp_opts o = { .timeout = 120, .jobs = 2 };
	GOptionEntry entries[] = {
		{ "socket", 's', 0, G_OPTION_ARG_FILENAME, &o.socket, "QMP socket of the running QEMU", "PATH" },
		{ "new-binary", 'b', 0, G_OPTION_ARG_FILENAME, &o.new_binary, "new QEMU binary (path in QEMU's root; default: the running one)", "PATH" },
		{ "new-qmp", 0, 0, G_OPTION_ARG_FILENAME, &o.new_qmp, "QMP socket the new QEMU serves (default: --socket)", "PATH" },
		{ "state", 0, 0, G_OPTION_ARG_FILENAME, &o.state, "migration file (default /tmp/cprx-qmp-PID.state)", "PATH" },
		{ "add-arg", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &o.add_args, "append an argument to the new command line", "ARG" },
		{ "no-trial", 0, 0, G_OPTION_ARG_NONE, &o.no_trial, "skip the trial instance of the new command line", NULL },
		{ "preflight-only", 0, 0, G_OPTION_ARG_NONE, &o.preflight_only, "run the preflight and stop", NULL },
		{ "no-rescue", 0, 0, G_OPTION_ARG_NONE, &o.no_rescue, "keep no reference to the guest's RAM and state: a new QEMU that dies loses the VM", NULL },
		{ "pin-machine", 0, 0, G_OPTION_ARG_NONE, &o.pin_machine, "replace -machine ALIAS (pc, q35) by the running machine type (for another QEMU version)", NULL },
		{ "json", 'j', 0, G_OPTION_ARG_NONE, &o.json, "print the report as JSON instead of a summary", NULL },
		{ "json-out", 0, 0, G_OPTION_ARG_FILENAME, &o.json_out, "also write the JSON report to FILE", "FILE" },
		{ "timeout", 't', 0, G_OPTION_ARG_INT, &o.timeout, "seconds to wait for the update (120)", "SEC" },
		{ "keep", 0, 0, G_OPTION_ARG_NONE, &o.keep, "demo: keep the guest's directory", NULL },
		{ "all", 0, 0, G_OPTION_ARG_NONE, &o.all, "update: every running QEMU of the host", NULL },
		{ "jobs", 0, 0, G_OPTION_ARG_INT, &o.jobs, "--all: updates at a time (2)", "N" },
		{ "replaced", 0, 0, G_OPTION_ARG_NONE, &o.replaced_only, "--all: only QEMUs whose binary was replaced on disk", NULL },
		{ "pid", 0, 0, G_OPTION_ARG_INT, &o.pid, "refuse unless the socket is served by process PID (update --all gives each QEMU's)", "PID" },
		{ "under", 0, 0, G_OPTION_ARG_FILENAME, &o.under, "--all: only QEMUs whose QMP socket is under DIR", "DIR" },
		{ G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &o.argv, NULL, NULL },
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("COMMAND [-- NEW QEMU ARGV...]");
	g_autoptr(GError) e = NULL;
	g_autofree char *cmd = NULL;
	const struct verb *verb;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	g_option_context_set_summary(ctx, "Live-update a running QEMU by cpr-exec through QMP.");
	g_option_context_set_description(ctx, usage_text);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &e)) {
		say("%s (see --help)", e->message);
		return EXIT_USAGE;
	}
	/* G_OPTION_REMAINING takes the command too: the new argv is what follows it. */
	cmd = g_strdup(o.argv && o.argv[0] ? o.argv[0] : "");
	if (o.argv && o.argv[0]) {
		g_free(o.argv[0]);
		memmove(o.argv, o.argv + 1, sizeof(char *) * g_strv_length(o.argv));
	}
	verb = find_verb(cmd);
	if (!verb) {
		say("say which: status, update, restart or demo (see --help)");
		ret = EXIT_USAGE;
	} else if (o.all && verb->run != do_update) {
		say("--all is for update only");
		ret = EXIT_USAGE;
	} else if (o.all) {
		ret = do_update_all(&o);
	} else if (verb->needs_socket && !o.socket) {
		say("--socket is needed");
		ret = EXIT_USAGE;
	} else {
		ret = verb->run(&o);
	}
	opts_clear(&o);
	return ret;
}
