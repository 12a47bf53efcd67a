// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-bench --guard-timeline: the kernel's side of each update, from the
 * bpf/ guard.  A `cprx-guard trace --json` runs beside the sweep; its
 * timelines (one per update, per pid, in order) give each sample its
 * kernel_ms: the guard's exec check (bprm_check_security, or the fallback's
 * sys_enter) to the exec's commit (sched_process_exec), kernel timestamps,
 * next to libcprx's own exec span (execve -> the new image running).
 * Needs root and a loaded guard that sees cprx-vmm (guard-exe or its
 * cgroup or uid), as in the VM tier (tests/vm/).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

struct guard_trace {
	pid_t pid;
	int out_fd;		/* its stdout, non-blocking */
	int err_fd;		/* its stderr: an unlinked file */
	GString *buf;		/* a partial line */
	GHashTable *by_pid;	/* pid -> GArray of double: kernel_ms, in order */
};

static char *guard_tool(void)
{
	const char *env = g_getenv("CPRX_GUARD");
	g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
	g_autofree char *dir = self ? g_path_get_dirname(self) : g_strdup(".");
	char *built = g_build_filename(dir, "..", "bpf", "cprx-guard", NULL);

	if (env && *env) {
		g_free(built);
		return g_strdup(env);
	}
	if (!access(built, X_OK))
		return built;
	g_free(built);
	return g_strdup("cprx-guard");
}

/* A phase's t_ms in a timeline's "phases", or NAN. */
static double phase_t(JsonArray *phases, const char *name)
{
	guint i;

	for (i = 0; phases && i < json_array_get_length(phases); i++) {
		JsonObject *p = json_array_get_object_element(phases, i);

		if (p && !g_strcmp0(json_object_get_string_member_with_default(
			p, "phase", ""), name))
			return json_object_get_double_member_with_default(p, "t_ms", NAN);
	}
	return NAN;
}

/* One timeline line: its check -> commit span, filed under its pid. */
static void take_line(struct guard_trace *g, const char *line)
{
	g_autoptr(JsonParser) p = json_parser_new();
	JsonObject *o;
	JsonNode *root;
	GArray *a;
	double ms;
	gint64 pid;

	if (!json_parser_load_from_data(p, line, -1, NULL))
		return;
	root = json_parser_get_root(p);
	if (!JSON_NODE_HOLDS_OBJECT(root))
		return;
	o = json_node_get_object(root);
	if (g_strcmp0(json_object_get_string_member_with_default(o, "outcome", ""),
		      "updated"))
		return;
	pid = json_object_get_int_member_with_default(o, "pid", 0);
	ms = phase_t(json_object_get_array_member(o, "phases"), "committed") -
	     phase_t(json_object_get_array_member(o, "phases"), "checked");
	a = g_hash_table_lookup(g->by_pid, GINT_TO_POINTER((int)pid));
	if (!a) {
		a = g_array_new(FALSE, FALSE, sizeof(double));
		g_hash_table_insert(g->by_pid, GINT_TO_POINTER((int)pid), a);
	}
	g_array_append_val(a, ms);
}

static void drain(struct guard_trace *g)
{
	char chunk[4096], *nl;
	ssize_t n;

	while ((n = read(g->out_fd, chunk, sizeof(chunk))) > 0)
		g_string_append_len(g->buf, chunk, n);
	while ((nl = strchr(g->buf->str, '\n'))) {
		*nl = '\0';
		take_line(g, g->buf->str);
		g_string_erase(g->buf, 0, nl - g->buf->str + 1);
	}
}

static char *err_text(int fd)
{
	char buf[1024];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return g_strdup(g_strstrip(buf));
}

bool guard_trace_start(struct bench *b)
{
	char tmpl[] = "/tmp/cprx-bench-guard.XXXXXX";
	g_autofree char *tool = guard_tool(), *msg = NULL;
	struct guard_trace *g = g_new0(struct guard_trace, 1);
	int p[2], tries;

	g->err_fd = mkostemp(tmpl, O_CLOEXEC);
	if (g->err_fd < 0 || pipe2(p, O_CLOEXEC) < 0)
		goto fail;
	unlink(tmpl);
	g->pid = fork();
	if (g->pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		dup2(g->err_fd, STDERR_FILENO);
		execlp(tool, tool, "trace", "--json", (char *)NULL);
		fprintf(stderr, "cannot run %s: %s\n", tool, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	g->out_fd = p[0];
	fcntl(g->out_fd, F_SETFL, O_NONBLOCK);
	g->buf = g_string_new(NULL);
	g->by_pid = g_hash_table_new_full(NULL, NULL, NULL,
					  (GDestroyNotify)g_array_unref);
	b->guard = g;
	for (tries = 0; tries < 100; tries++) {
		g_free(msg);
		msg = err_text(g->err_fd);
		if (strstr(msg, "cprx-guard: tracing"))
			return true;
		if (waitpid(g->pid, NULL, WNOHANG) == g->pid) {
			g->pid = 0;
			break;
		}
		g_usleep(50 * 1000);
	}
	g_printerr("cprx-bench: --guard-timeline: `%s trace --json` did not start "
		   "(%s).  It needs root and a loaded guard that sees cprx-vmm, e.g. "
		   "cprx-guard load --guard-exe VMM --allow VMM (the VM tier's guests "
		   "run the BPF LSM)\n", tool, *msg ? msg : "no message");
	guard_trace_stop(b);
	return false;
fail:
	g_printerr("cprx-bench: --guard-timeline: %s\n", g_strerror(errno));
	if (g->err_fd >= 0)
		close(g->err_fd);
	g_free(g);
	return false;
}

void guard_trace_fill(struct bench *b, pid_t pid, struct sample *s,
		      unsigned int n)
{
	struct guard_trace *g = b->guard;
	gint64 end = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
	GArray *a = NULL;
	unsigned int i;

	if (!g || !n)
		return;
	/* the reader polls every 100 ms and prints when an update ends */
	do {
		drain(g);
		a = g_hash_table_lookup(g->by_pid, GINT_TO_POINTER((int)pid));
		if (a && a->len >= n)
			break;
		g_usleep(50 * 1000);
	} while (g_get_monotonic_time() < end);
	for (i = 0; a && i < n && i < a->len; i++)
		s[i].kernel_ms = g_array_index(a, double, i);
	if (!a || a->len < n) {
		g_ptr_array_add(b->notes, g_strdup_printf("--guard-timeline: the "
			"guard traced %u of %u updates of pid %d (is it guarded?)",
			a ? a->len : 0, n, (int)pid));
		progress_note("--guard-timeline: %u of %u updates of pid %d traced",
			      a ? a->len : 0, n, (int)pid);
	}
	g_hash_table_remove(g->by_pid, GINT_TO_POINTER((int)pid));
}

void guard_trace_stop(struct bench *b)
{
	struct guard_trace *g = b->guard;

	if (!g)
		return;
	if (g->pid > 0) {
		kill(g->pid, SIGTERM);
		waitpid(g->pid, NULL, 0);
	}
	close(g->out_fd);
	close(g->err_fd);
	if (g->buf)
		g_string_free(g->buf, TRUE);
	if (g->by_pid)
		g_hash_table_unref(g->by_pid);
	g_free(g);
	b->guard = NULL;
}
