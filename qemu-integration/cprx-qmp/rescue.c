// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The rescue: the new QEMU died (exited, crashed, failed to load) before
 * the guest ran, and nothing took its place in that PID.  The previous
 * binary (kept open, keep.c) is started again with the previous command
 * line, in QEMU's mount namespace and root, where:
 *
 *   - each memory backend becomes memory-backend-file,share=on on
 *     /proc/self/fd/N, the kept memfd handed to it as fd N: opening it
 *     reopens the same shmem inode, the guest's RAM as it was at the stop;
 *   - -incoming defer; then, over QMP, the old QEMU's migration
 *     capabilities, mode cpr-exec (the file was written in that mode: no
 *     RAM block's pages are in it) and migrate-incoming of the kept
 *     migration file, handed to it as fd M: /proc/self/fd/M;
 *   - the other RAM blocks (firmware, option ROMs, device RAM), which a
 *     QEMU started with -incoming leaves empty, get the kept blocks'
 *     contents before the load, written at their new address through
 *     /proc/PID/mem.
 *
 * It runs as the QEMU it replaces did: its user, group and groups.
 * The guest resumes in a new PID.  Once only: a rescued QEMU that dies
 * too is the VM lost.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kept backend of id @id, with the fd the rescued QEMU gets it at. */
static struct kept_block *kept_backend(struct qmp_ctx *c, const char *id, guint *nth)
{
	for (guint i = 0, n = 0; i < c->kept->blocks->len; i++) {
		struct kept_block *b = &g_array_index(c->kept->blocks, struct kept_block, i);
		const char *slash = strrchr(b->name, '/');

		if (!b->backend)
			continue;
		if (!strcmp(b->name, id) || (slash && !strcmp(slash + 1, id))) {
			*nth = n;
			return b;
		}
		n++;
	}
	return NULL;
}

/* The rescued QEMU gets each backend's memfd as an fd of its own, which
 * stays open across its later cpr-execs: its mem-path stays valid for
 * updates in that PID. */
#define CHILD_FD0 200

static char *backend_path(struct qmp_ctx *c, const char *id)
{
	guint nth;

	if (!kept_backend(c, id, &nth))
		return NULL;
	return g_strdup_printf("/proc/self/fd/%u", CHILD_FD0 + nth);
}

/* The kept migration file, an fd of the rescued QEMU too: one of ours in
 * /proc would not open for a QEMU that runs as another user. */
#define CHILD_STATE_FD (CHILD_FD0 - 1)

/* Properties only the memfd backend has. */
static gboolean memfd_only(const char *key)
{
	return !strcmp(key, "hugetlb") || !strcmp(key, "hugetlbsize") || !strcmp(key, "seal");
}

static gboolean backend_type(const char *t)
{
	return !g_strcmp0(t, "memory-backend-memfd") || !g_strcmp0(t, "memory-backend-file");
}

/* -object TYPE,id=ID,... of a kept backend, on its kept fd; NULL when it
 * is not one. */
static char *rewrite_keyval(struct qmp_ctx *c, const char *opt)
{
	g_auto(GStrv) kv = g_strsplit(opt, ",", -1);
	g_autoptr(GString) out = g_string_new("memory-backend-file");
	const char *type = NULL;
	g_autofree char *path = NULL;

	if (strstr(opt, ",,"))
		return NULL;	/* an escaped comma: not parsed here */
	for (guint i = 0; kv[i]; i++) {
		if (i == 0 && !strchr(kv[i], '='))
			type = kv[i];
		else if (g_str_has_prefix(kv[i], "qom-type="))
			type = kv[i] + 9;
		else if (g_str_has_prefix(kv[i], "id=") && !path)
			path = backend_path(c, kv[i] + 3);
	}
	if (!backend_type(type) || !path)
		return NULL;
	for (guint i = 0; kv[i]; i++) {
		g_autofree char *key = g_strndup(kv[i], strcspn(kv[i], "="));

		if ((i == 0 && !strchr(kv[i], '=')) || !strcmp(key, "qom-type") ||
		    !strcmp(key, "mem-path") || !strcmp(key, "share") || memfd_only(key))
			continue;
		g_string_append_printf(out, ",%s", kv[i]);
	}
	g_string_append_printf(out, ",share=on,mem-path=%s", path);
	return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The same for -object '{"qom-type": ..., "id": ...}'. */
static char *rewrite_json(struct qmp_ctx *c, const char *opt)
{
	g_autoptr(JsonParser) p = json_parser_new();
	g_autofree char *path = NULL;
	JsonObject *o;
	JsonNode *root;

	if (!json_parser_load_from_data(p, opt, -1, NULL))
		return NULL;
	root = json_parser_get_root(p);
	if (!JSON_NODE_HOLDS_OBJECT(root))
		return NULL;
	o = json_node_get_object(root);
	if (!backend_type(json_object_get_string_member_with_default(o, "qom-type", NULL)) ||
	    !(path = backend_path(c, json_object_get_string_member_with_default(o, "id", ""))))
		return NULL;
	for (const char *const *k = (const char *[]){ "hugetlb", "hugetlbsize", "seal", NULL };
	     *k; k++)
		if (json_object_has_member(o, *k))
			json_object_remove_member(o, *k);
	json_object_set_string_member(o, "qom-type", "memory-backend-file");
	json_object_set_string_member(o, "mem-path", path);
	json_object_set_boolean_member(o, "share", TRUE);
	return json_to_string(root, FALSE);
}

/* Properties only the file backend has. */
static gboolean file_only(const char *key)
{
	static const char *const keys[] = { "mem-path", "align", "offset", "discard-data",
					    "pmem", "readonly", "rom", NULL };

	return g_strv_contains(keys, key);
}

/* A rescued QEMU's backend (on /proc/self/fd/N, an fd only that QEMU has)
 * as a trial instance can have it: a memfd of the same size, which the
 * paused trial never touches.  NULL for any other -object. */
char *trial_backend(const char *opt)
{
	g_autoptr(JsonParser) p = json_parser_new();
	g_autoptr(GString) out = g_string_new("memory-backend-memfd");
	g_auto(GStrv) kv = NULL;
	JsonObject *o;

	if (!strstr(opt, "/proc/self/fd/"))
		return NULL;
	if (opt[0] == '{') {
		if (!json_parser_load_from_data(p, opt, -1, NULL) ||
		    !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
			return NULL;
		o = json_node_get_object(json_parser_get_root(p));
		g_autoptr(GList) keys = json_object_get_members(o);

		for (GList *k = keys; k; k = k->next)
			if (file_only(k->data))
				json_object_remove_member(o, k->data);
		json_object_set_string_member(o, "qom-type", "memory-backend-memfd");
		return json_to_string(json_parser_get_root(p), FALSE);
	}
	kv = g_strsplit(opt, ",", -1);
	for (guint i = 0; kv[i]; i++) {
		g_autofree char *key = g_strndup(kv[i], strcspn(kv[i], "="));

		if ((i == 0 && !strchr(kv[i], '=')) || !strcmp(key, "qom-type") || file_only(key))
			continue;
		g_string_append_printf(out, ",%s", kv[i]);
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The previous command line, for the rescue; *backends counts the
 * memory backends moved onto kept fds. */
static GPtrArray *rescue_argv(struct qmp_ctx *c, guint *backends)
{
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	guint n = c->old_argv->len - 1;

	*backends = 0;
	for (guint i = 0; i < n; i++) {
		const char *arg = c->old_argv->pdata[i];
		char *obj;

		if ((!strcmp(arg, "-incoming") || !strcmp(arg, "--incoming")) && i + 1 < n) {
			i++;
			continue;
		}
		if (!strcmp(arg, "-daemonize") || !strcmp(arg, "--daemonize"))
			continue;	/* the PID we start is the one that must run */
		g_ptr_array_add(a, g_strdup(arg));
		if ((strcmp(arg, "-object") && strcmp(arg, "--object")) || i + 1 >= n)
			continue;
		arg = c->old_argv->pdata[++i];
		obj = arg[0] == '{' ? rewrite_json(c, arg) : rewrite_keyval(c, arg);
		*backends += !!obj;
		g_ptr_array_add(a, obj ? obj : g_strdup(arg));
	}
	g_ptr_array_add(a, g_strdup("-incoming"));
	g_ptr_array_add(a, g_strdup("defer"));
	g_ptr_array_add(a, NULL);
	return a;
}

gboolean rescue_argv_ok(struct qmp_ctx *c, GString *d)
{
	guint want = 0, got;
	g_autoptr(GPtrArray) a = rescue_argv(c, &got);

	for (guint i = 0; i < c->kept->blocks->len; i++)
		want += g_array_index(c->kept->blocks, struct kept_block, i).backend;
	if (got != want)
		g_string_printf(d, "%u of %u memory backends found as -object in QEMU's command "
				"line", got, want);
	return got == want;
}

struct child_args {
	struct kept *k;
	const struct qemu_creds *creds;
	gboolean other_root;
	char **argv, **envp;
};

/* @fd, or a copy of it at @top or above when it is where the child's fds
 * go (CHILD_STATE_FD to @top): a dup2 there would replace it. */
static void out_of_the_way(int *fd, int top)
{
	if (*fd >= CHILD_STATE_FD && *fd < top && (*fd = fcntl(*fd, F_DUPFD_CLOEXEC, top)) < 0)
		_exit(126);
}

/* In the child: QEMU's namespace, root, cwd, stdio and RAM; the previous
 * binary.  No other fd of ours: one our caller left open is root's.  The
 * kept fds are this child's copies (fork): moving them changes no fd of
 * the parent's. */
static void child_exec(const struct child_args *a)
{
	struct kept *k = a->k;
	int *fds[] = { &k->exe, &k->ns, &k->root, &k->cwd, &k->state,
		       &k->stdio[0], &k->stdio[1], &k->stdio[2] };
	guint n = 0, top = CHILD_FD0;

	for (guint i = 0; i < k->blocks->len; i++)
		top += g_array_index(k->blocks, struct kept_block, i).backend;
	for (guint i = 0; i < G_N_ELEMENTS(fds); i++)
		out_of_the_way(fds[i], top);
	for (guint i = 0; i < k->blocks->len; i++)
		out_of_the_way(&g_array_index(k->blocks, struct kept_block, i).fd, top);
	/* every one replaced (keep.c): none of ours is left at 0-2 */
	for (int i = 0; i < 3; i++)
		if (dup2(k->stdio[i], i) < 0)
			_exit(126);
	for (guint i = 0; i < k->blocks->len; i++) {
		const struct kept_block *b = &g_array_index(k->blocks, struct kept_block, i);

		if (b->backend && dup2(b->fd, CHILD_FD0 + n++) < 0)
			_exit(126);
	}
	if (dup2(k->state, CHILD_STATE_FD) < 0)
		_exit(126);
	/* close-on-exec, not closed: the kept binary's fd is exec'd */
	if (close_range(3, CHILD_STATE_FD - 1, CLOSE_RANGE_CLOEXEC) ||
	    close_range(CHILD_FD0 + n, ~0U, CLOSE_RANGE_CLOEXEC))
		_exit(126);
	if (a->other_root && (setns(a->k->ns, CLONE_NEWNS) || fchdir(a->k->root) || chroot(".")))
		_exit(126);
	if (fchdir(a->k->cwd))
		_exit(126);
	if (!become_qemu(a->creds))
		_exit(126);
	setsid();	/* outlive cprx-qmp, like the QEMU it replaces */
	syscall(SYS_execveat, a->k->exe, "", a->argv, a->envp, AT_EMPTY_PATH);
	_exit(127);
}

/* Starts the previous QEMU; its PID. */
static pid_t spawn(struct qmp_ctx *c, GPtrArray *argv, GString *why)
{
	struct child_args a = { c->kept, &c->creds, c->other_root, (char **)argv->pdata,
				(char **)c->creds.env->pdata };
	pid_t pid = fork();

	if (pid == 0)
		child_exec(&a);
	if (pid < 0) {
		g_string_printf(why, "fork: %s", g_strerror(errno));
		return -1;
	}
	return pid;
}

/*
 * Whether the rescued QEMU still runs the kept binary as QEMU's user,
 * asked after its /proc/PID/mem was opened: that fd reaches the memory of
 * the image the process ran then, or nothing once it exec'd.  A process
 * that answered "info ramblock" and exec'd another image (a set-user-ID
 * one, say) before that open gets nothing written by root.
 */
static gboolean still_qemu(struct qmp_ctx *c)
{
	g_autofree char *exe = g_strdup_printf("/proc/%d/exe", c->pid);
	g_autoptr(GString) d = g_string_new(NULL);
	struct qemu_creds now = { 0 };
	struct stat a, b;
	gboolean same;

	same = !stat(exe, &a) && !fstat(c->kept->exe, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino && read_creds(c->pid, &now, d) &&
	       !memcmp(now.uid, c->creds.uid, sizeof(now.uid)) &&
	       !memcmp(now.gid, c->creds.gid, sizeof(now.gid));
	creds_clear(&now);
	return same && qemu_alive(c);
}

/* The kept contents of the RAM blocks other than the backends, written
 * into the same blocks of the rescued QEMU; the number copied. */
static guint copy_blocks(struct qmp_ctx *c, GString *note)
{
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "human-monitor-command",
		qmp_args("command-line", str_node("info ramblock"), NULL), 5000, NULL);
	g_autofree char *mp = g_strdup_printf("/proc/%d/mem", c->pid);
	g_auto(GStrv) lines = r ? g_strsplit(json_node_get_string(r), "\n", -1) : NULL;
	int mem = open(mp, O_RDWR | O_CLOEXEC);
	guint copied = 0;

	if (mem >= 0 && !still_qemu(c)) {
		g_string_append_printf(note, " pid %d no longer runs QEMU's binary as QEMU's "
				       "user: nothing copied;", c->pid);
		close(mem);
		mem = -1;
	}

	for (guint i = 1; lines && mem >= 0 && lines[i]; i++) {
		g_autofree char *name = NULL;
		guint64 used, hva;

		if (!parse_ramblock(g_strstrip(lines[i]), &name, &used, &hva))
			continue;
		for (guint j = 0; j < c->kept->blocks->len; j++) {
			struct kept_block *b = &g_array_index(c->kept->blocks, struct kept_block, j);
			void *src;

			if (b->backend || strcmp(b->name, name))
				continue;
			if (b->used != used) {
				g_string_append_printf(note, " %s: size changed;", b->name);
				continue;
			}
			src = mmap(NULL, b->used, PROT_READ, MAP_SHARED, b->fd, 0);
			if (src != MAP_FAILED && pwrite(mem, src, b->used, hva) == (ssize_t)b->used)
				copied++;
			else
				g_string_append_printf(note, " %s: %s;", b->name, g_strerror(errno));
			if (src != MAP_FAILED)
				munmap(src, b->used);
		}
	}
	if (mem >= 0)
		close(mem);
	return copied;
}

/* Loads the kept migration file the way it was written. */
static gboolean load_state(struct qmp_ctx *c, GString *why)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) r1 = NULL, r2 = NULL, r3 = NULL;
	g_autoptr(GError) e = NULL;
	g_autofree char *uri = g_strdup_printf("file:/proc/self/fd/%d", CHILD_STATE_FD);

	json_builder_begin_array(b);
	for (guint i = 0; i < c->kept->caps->len; i++) {
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "capability");
		json_builder_add_string_value(b, c->kept->caps->pdata[i]);
		json_builder_set_member_name(b, "state");
		json_builder_add_boolean_value(b, TRUE);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	if (!(r1 = qmp_cmd(c->q, "migrate-set-capabilities",
			   qmp_args("capabilities", json_builder_get_root(b), NULL), 5000, &e)) ||
	    !(r2 = qmp_cmd(c->q, "migrate-set-parameters",
			   qmp_args("mode", str_node("cpr-exec"), NULL), 5000, &e)) ||
	    !(r3 = qmp_cmd(c->q, "migrate-incoming",
			   qmp_args("uri", str_node(uri), NULL), 5000, &e))) {
		g_string_printf(why, "the rescued QEMU refused to load the state: %s", e->message);
		return FALSE;
	}
	return TRUE;
}

/* Waits for the rescued guest to run. */
static gboolean wait_running(struct qmp_ctx *c, gint64 deadline, GString *why)
{
	while (g_get_monotonic_time() < deadline) {
		g_autoptr(JsonNode) ev = qmp_event(c->q, "RESUME", 200, NULL);

		if (ev || !strcmp(guest_status(c), "running"))
			return TRUE;
		if (!qemu_alive(c)) {
			g_string_printf(why, "the rescued QEMU (pid %d) exited too", c->pid);
			return FALSE;
		}
		g_usleep(10000);	/* QMP may be gone before the process */
	}
	g_string_printf(why, "the rescued QEMU (pid %d) did not resume the guest in time", c->pid);
	return FALSE;
}

/* After the rescue the QEMU is in mode cpr-exec: back to normal, so a
 * migration that is not an update is not one by surprise. */
static void mode_normal(struct qmp_ctx *c)
{
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "migrate-set-parameters",
					qmp_args("mode", str_node("normal"), NULL), 5000, NULL);
}

/* The new QEMU (c->pid) is dead; @what says how.  Returns the exit
 * status: EXIT_RESCUED with the guest running in a new PID, EXIT_LOST. */
int rescue(struct qmp_ctx *c, const char *what)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)c->o->timeout * G_USEC_PER_SEC;
	g_autoptr(GString) why = g_string_new(NULL), note = g_string_new(NULL);
	g_autoptr(GPtrArray) argv = NULL;
	g_autofree char *msg = NULL;
	pid_t old = c->pid, pid;
	guint backends, copied;
	int attempts;

	if (!c->kept)
		return fail(c, EXIT_LOST, "the new QEMU", what, "--no-rescue: nothing was kept "
			    "to start the previous QEMU again");
	json_object_set_string_member(c->report, "new_qemu_died", what);
	qmp_close(c->q);
	c->q = NULL;
	argv = rescue_argv(c, &backends);
	pid = spawn(c, argv, why);
	if (pid < 0)
		return fail(c, EXIT_LOST, "rescue", why->str, NULL);
	set_qemu_pid(c, pid);	/* our child: no one else reaps it */
	json_object_set_int_member(c->report, "rescue_pid", pid);
	c->q = follow_at(c, c->o->socket, deadline, &attempts);
	if (!c->q) {
		g_string_printf(why, "%s; the previous QEMU started again (pid %d) never served QMP",
				what, pid);
		return fail(c, EXIT_LOST, "rescue", why->str, "see QEMU's stderr");
	}
	copied = copy_blocks(c, note);
	json_object_set_int_member(c->report, "rescue_blocks_copied", copied);
	if (note->len)
		json_object_set_string_member(c->report, "rescue_note", note->str);
	if (!load_state(c, why) || !wait_running(c, deadline, why))
		return fail(c, EXIT_LOST, "rescue", why->str, "see QEMU's stderr");
	mode_normal(c);
	json_object_set_boolean_member(c->report, "rescued", TRUE);
	json_object_set_int_member(c->report, "new_pid", pid);
	json_object_set_boolean_member(c->report, "same_pid", FALSE);
	msg = g_strdup_printf("%s; the previous QEMU was started again on the same RAM and "
			      "state: the guest runs in pid %d (was %d)", what, pid, old);
	return fail(c, EXIT_RESCUED, "the new QEMU died", msg,
		    "see QEMU's stderr for why the new QEMU died");
}
