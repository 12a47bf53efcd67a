// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp update --all: every running QEMU of the host moves to its new
 * binary (a QEMU package was upgraded). Each update is a cprx-qmp update of
 * its own, a child process, so that one VM's failure, hang or crash is only
 * that VM's: each is refused, rolled back or updated independently, at most
 * --jobs at a time, and the run never stops at the first failure. It ends
 * with a table (or JSON) of VM -> result, pause and old -> new version; its
 * exit status is the worst outcome.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The child's argv: one update, with the options that apply to every VM. */
static GPtrArray *child_argv(struct qmp_opts *o, struct vm *v, const char *json)
{
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);

	g_ptr_array_add(a, g_file_read_link("/proc/self/exe", NULL));
	g_ptr_array_add(a, g_strdup("update"));
	g_ptr_array_add(a, g_strdup_printf("--socket=%s", v->host_qmp));
	/* its own socket: a command line may name any */
	g_ptr_array_add(a, g_strdup_printf("--pid=%d", v->pid));
	g_ptr_array_add(a, g_strdup_printf("--json-out=%s", json));
	g_ptr_array_add(a, g_strdup_printf("--timeout=%d", o->timeout));
	if (o->new_binary)
		g_ptr_array_add(a, g_strdup_printf("--new-binary=%s", o->new_binary));
	for (guint i = 0; o->add_args && o->add_args[i]; i++)
		g_ptr_array_add(a, g_strdup_printf("--add-arg=%s", o->add_args[i]));
	if (o->pin_machine)
		g_ptr_array_add(a, g_strdup("--pin-machine"));
	if (o->no_trial)
		g_ptr_array_add(a, g_strdup("--no-trial"));
	if (o->preflight_only)
		g_ptr_array_add(a, g_strdup("--preflight-only"));
	if (o->no_rescue)
		g_ptr_array_add(a, g_strdup("--no-rescue"));
	g_ptr_array_add(a, NULL);
	return a;
}

/* Starts one VM's update, its output to DIR/PID.log; the child's PID. */
static pid_t start_one(struct qmp_opts *o, struct vm *v, const char *dir)
{
	g_autofree char *json = g_strdup_printf("%s/%d.json", dir, v->pid);
	g_autofree char *log = g_strdup_printf("%s/%d.log", dir, v->pid);
	g_autoptr(GPtrArray) a = child_argv(o, v, json);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	pid_t child;

	if (fd < 0 || !a->pdata[0])
		return -1;
	child = fork();
	if (child == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(EXIT_USAGE);
		execv(a->pdata[0], (char **)a->pdata);
		_exit(EXIT_USAGE);
	}
	close(fd);
	return child;
}

/* The first preflight check that failed, "name: detail". */
static char *refusal(JsonObject *r)
{
	JsonArray *checks = json_object_has_member(r, "preflight") ?
			    json_object_get_array_member(r, "preflight") : NULL;

	for (guint i = 0; checks && i < json_array_get_length(checks); i++) {
		JsonObject *c = json_array_get_object_element(checks, i);

		if (!json_object_get_boolean_member_with_default(c, "ok", TRUE))
			return g_strdup_printf("%s: %s",
				json_object_get_string_member_with_default(c, "check", "?"),
				json_object_get_string_member_with_default(c, "detail", ""));
	}
	return NULL;
}

/* Reads one finished update: its exit status, its report, what it was. */
static void finish_one(struct vm *v, int wstatus, const char *dir)
{
	g_autofree char *json = g_strdup_printf("%s/%d.json", dir, v->pid);
	g_autofree char *log = g_strdup_printf("%s/%d.log", dir, v->pid);
	g_autoptr(JsonParser) p = json_parser_new();
	g_autofree char *text = NULL;
	JsonObject *r = NULL;

	v->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : EXIT_LOST;
	if (json_parser_load_from_file(p, json, NULL) &&
	    JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
		r = v->report = json_object_ref(json_node_get_object(json_parser_get_root(p)));
	if (!WIFEXITED(wstatus))
		v->detail = g_strdup_printf("cprx-qmp update died of signal %d: the guest's "
					    "state is unknown", WTERMSIG(wstatus));
	else if (v->status == EXIT_REFUSED && r)
		v->detail = refusal(r);
	else if (v->status && r && json_object_has_member(r, "error"))
		v->detail = g_strdup(json_object_get_string_member(r, "error"));
	if (!v->detail && v->status && g_file_get_contents(log, &text, NULL, NULL))
		v->detail = g_strstrip(g_strdup(text));	/* e.g. cannot talk QMP */
	if (!WIFEXITED(wstatus))
		v->result = g_strdup("unknown");
	else if (r && json_object_get_boolean_member_with_default(r, "rescued", FALSE))
		v->result = g_strdup("rescued");
	else if (r && json_object_get_boolean_member_with_default(r, "rolled_back", FALSE))
		v->result = g_strdup("rolled back");
	else
		v->result = g_strdup(v->status == 0 ? (r && !g_strcmp0(json_object_get_string_member_with_default(
						r, "result", ""), "preflight-ok") ? "preflight ok" : "updated") :
				     v->status == EXIT_REFUSED ? "refused" :
				     v->status == EXIT_FAILED ? "failed" :
				     v->status == EXIT_LOST ? "lost" :
				     v->status == EXIT_RESCUED ? "rescued" : "error");
}

static struct vm *vm_of_child(GPtrArray *vms, GArray *children, pid_t child)
{
	for (guint i = 0; i < children->len; i++)
		if (g_array_index(children, pid_t, i) == child)
			return vms->pdata[i];
	return NULL;
}

/* Runs the updates, at most jobs at a time, with a line per start and end. */
static void run_all(struct qmp_opts *o, GPtrArray *vms, const char *dir)
{
	GArray *children = g_array_new(FALSE, TRUE, sizeof(pid_t));
	guint next = 0, running = 0, done = 0, todo = 0;

	g_array_set_size(children, vms->len);
	for (guint i = 0; i < vms->len; i++)
		todo += !((struct vm *)vms->pdata[i])->skip;
	while (done < todo) {
		while (running < (guint)o->jobs && next < vms->len) {
			struct vm *v = vms->pdata[next];
			pid_t child;

			if (v->skip) {
				next++;
				continue;
			}
			child = start_one(o, v, dir);
			if (child < 0) {
				v->status = EXIT_USAGE;
				v->result = g_strdup("error");
				v->detail = g_strdup_printf("cannot start cprx-qmp: %s", g_strerror(errno));
				done++;
			} else {
				g_array_index(children, pid_t, next) = child;
				running++;
				say("[%u/%u] pid %d (%s): updating", done + running, todo, v->pid, v->qmp);
			}
			next++;
		}
		if (running) {
			int ws;
			pid_t child = waitpid(-1, &ws, 0);
			struct vm *v = child > 0 ? vm_of_child(vms, children, child) : NULL;

			if (!v)
				continue;
			finish_one(v, ws, dir);
			running--;
			done++;
			say("[%u/%u] pid %d: %s%s%s", done, todo, v->pid, v->result,
			    v->detail ? ": " : "", v->detail ? v->detail : "");
		}
	}
	g_array_unref(children);
}

static double pause_of(struct vm *v, gboolean *at_most)
{
	*at_most = v->report && !json_object_has_member(v->report, "pause_ms") &&
		   json_object_has_member(v->report, "pause_ms_at_most");
	if (!v->report)
		return -1;
	return json_object_get_double_member_with_default(v->report,
		*at_most ? "pause_ms_at_most" : "pause_ms", -1);
}

static const char *report_str(struct vm *v, const char *key)
{
	return v->report ? json_object_get_string_member_with_default(v->report, key, NULL) : NULL;
}

static void print_table(GPtrArray *vms)
{
	printf("%-8s %-13s %9s  %-24s %s\n", "PID", "RESULT", "PAUSE", "QEMU", "QMP / DETAIL");
	for (guint i = 0; i < vms->len; i++) {
		struct vm *v = vms->pdata[i];
		const char *ov = report_str(v, "old_version"), *nv = report_str(v, "new_qemu_version");
		g_autofree char *ver = nv ? g_strdup_printf("%s -> %s", ov ? ov : "?", nv) :
				       g_strdup(ov ? ov : "-");
		g_autofree char *ps = NULL, *shown_ver = printable(ver);
		g_autofree char *where = printable(v->qmp ? v->qmp : v->exe);
		g_autofree char *detail = printable(v->skip ? v->skip : v->detail);
		gboolean at_most;
		double ms = pause_of(v, &at_most);

		ps = ms < 0 ? g_strdup("-") : g_strdup_printf("%s%.1fms", at_most ? "<" : "", ms);
		printf("%-8d %-13s %9s  %-24s %s%s\n", v->pid, v->skip ? "skipped" : v->result,
		       ps, shown_ver, where, v->replaced ? " (binary replaced)" : "");
		if (v->skip || v->detail)
			printf("%-8s %s\n", "", detail);
	}
}

static JsonObject *vm_json(struct vm *v)
{
	JsonObject *j = json_object_new();
	gboolean at_most;
	double ms = pause_of(v, &at_most);

	json_object_set_int_member(j, "pid", v->pid);
	json_object_set_string_member(j, "binary", v->exe);
	json_object_set_boolean_member(j, "binary_replaced", v->replaced);
	json_object_set_string_member(j, "qmp", v->qmp);
	json_object_set_string_member(j, "result", v->skip ? "skipped" : v->result);
	json_object_set_int_member(j, "exit_status", v->skip ? EXIT_REFUSED : v->status);
	if (v->skip || v->detail)
		json_object_set_string_member(j, "detail", v->skip ? v->skip : v->detail);
	if (ms >= 0)
		json_object_set_double_member(j, at_most ? "pause_ms_at_most" : "pause_ms", ms);
	if (v->report)
		json_object_set_object_member(j, "report", json_object_ref(v->report));
	return j;
}

/* How bad an update's exit status is: lost, then rescued (the guest runs,
 * in a new PID), failed or rolled back, could not talk to it, refused or
 * skipped (nothing touched), updated. */
static int badness(int status)
{
	static const int rank[] = {
		[0] = 0, [EXIT_REFUSED] = 1, [EXIT_USAGE] = 2, [EXIT_FAILED] = 3,
		[EXIT_RESCUED] = 4, [EXIT_LOST] = 5,
	};

	return status >= 0 && status < (int)G_N_ELEMENTS(rank) ? rank[status] : 5;
}

/* The worst outcome's exit status. */
static int worst(GPtrArray *vms)
{
	int w = 0;

	for (guint i = 0; i < vms->len; i++) {
		struct vm *v = vms->pdata[i];
		int s = v->skip ? EXIT_REFUSED : v->status;

		if (badness(s) > badness(w))
			w = s;
	}
	return w;
}

static void print_json(GPtrArray *vms, int status)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *s = NULL;
	JsonObject *top = json_object_new();
	JsonArray *arr = json_array_new();

	for (guint i = 0; i < vms->len; i++)
		json_array_add_object_element(arr, vm_json(vms->pdata[i]));
	json_object_set_array_member(top, "vms", arr);
	json_object_set_int_member(top, "exit_status", status);
	root = json_node_init_object(json_node_alloc(), top);
	json_object_unref(top);
	s = json_to_string(root, TRUE);
	printf("%s\n", s);
}

/* Options that name one QEMU make no sense for all of them. */
static gboolean all_usage_ok(struct qmp_opts *o)
{
	const char *bad = o->socket ? "--socket" : o->state ? "--state" :
			  o->new_qmp ? "--new-qmp" : o->argv && o->argv[0] ? "a new argv after --" :
			  o->json_out ? "--json-out" : NULL;

	if (bad) {
		say("update --all takes no %s: it names one QEMU (each update keeps its own "
		    "command line, socket and a state file of its own)", bad);
		return FALSE;
	}
	if (o->jobs < 1 || o->jobs > 64) {
		say("--jobs %d: give 1 to 64 updates at a time", o->jobs);
		return FALSE;
	}
	return TRUE;
}

int do_update_all(struct qmp_opts *o)
{
	g_autoptr(GPtrArray) vms = NULL;
	g_autofree char *under = NULL, *dir = NULL;
	int status;

	if (!all_usage_ok(o))
		return EXIT_USAGE;
	if (o->under)
		under = g_str_has_suffix(o->under, "/") ? g_strdup(o->under) :
			g_strconcat(o->under, "/", NULL);
	vms = discover_qemus(under);
	for (guint i = vms->len; i-- > 0;)
		if (o->replaced_only && !((struct vm *)vms->pdata[i])->replaced)
			g_ptr_array_remove_index(vms, i);
	if (!vms->len) {
		say("no running QEMU found%s%s%s", under ? " with its QMP socket under " : "",
		    under ? under : "", o->replaced_only ? " whose binary was replaced" : "");
		if (o->json)
			print_json(vms, 0);
		return 0;
	}
	dir = g_dir_make_tmp("cprx-qmp-all-XXXXXX", NULL);
	if (!dir) {
		say("cannot make a directory for the updates' reports in %s", g_get_tmp_dir());
		return EXIT_USAGE;
	}
	run_all(o, vms, dir);
	rm_dir(dir);
	status = worst(vms);
	if (o->json)
		print_json(vms, status);
	else
		print_table(vms);
	return status;
}
