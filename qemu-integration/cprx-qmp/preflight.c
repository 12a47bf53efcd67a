// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The preflight: checks that refuse an update before the guest stops
 * (cpr-exec support, shared RAM, QEMU's sandbox, the guard, the state
 * file, the new command line's -incoming, the new binary, a paused trial
 * instance of the new command line, and its devices against the running
 * ones). The guard's check is in guard_check.c, -incoming's in incoming.c,
 * the devices' in devices.c.
 */
#include "cprx-qmp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double ms_since(gint64 t0)
{
	return (g_get_monotonic_time() - t0) / 1000.0;
}

gboolean check_ram(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) mem = qmp_cmd(c->q, "query-memdev", NULL, 5000, &e);
	g_autoptr(JsonNode) be = NULL, aux = NULL;
	gboolean ok = TRUE;
	JsonArray *a;

	if (!mem) {
		g_string_printf(d, "query-memdev: %s", e->message);
		return FALSE;
	}
	a = json_node_get_array(mem);
	for (guint i = 0; i < json_array_get_length(a); i++) {
		JsonObject *m = json_array_get_object_element(a, i);
		gboolean share = json_object_get_boolean_member_with_default(m, "share", FALSE);

		g_autofree char *size = g_format_size_full(json_object_get_int_member(m, "size"),
							   G_FORMAT_SIZE_IEC_UNITS);

		g_string_append_printf(d, "%s%s %s share=%s", d->len ? ", " : "",
				       json_object_get_string_member_with_default(m, "id", "?"),
				       size, share ? "on" : "off");
		ok &= share;
	}
	if (!ok) {
		*hint = "cpr-exec keeps guest RAM only when it is shared: use "
			"memory-backend-memfd (or -file) with share=on; QEMU itself "
			"would exec and lose the VM";
		return FALSE;
	}
	be = qmp_cmd(c->q, "qom-get", qmp_args("path", str_node("/machine"),
		"property", str_node("memory-backend"), NULL), 5000, NULL);
	if (!qmp_node_string(be) || !*qmp_node_string(be)) {
		g_string_append(d, d->len ? "; " : "");
		g_string_append(d, "main RAM is not a memory backend");
		*hint = "add -machine memory-backend=ID with a share=on backend";
		return FALSE;
	}
	aux = qmp_cmd(c->q, "qom-get", qmp_args("path", str_node("/machine"),
		"property", str_node("aux-ram-share"), NULL), 5000, NULL);
	if (aux && qmp_node_bool(aux) != 1) {
		g_string_append(d, "; aux-ram-share=off");
		*hint = "add -machine aux-ram-share=on so ROMs and device RAM are shared too";
		return FALSE;
	}
	return TRUE;
}

/* cpr-exec came with QEMU 10.2: older ones lack the parameter. */
static gboolean check_cpr(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-migrate-parameters", NULL, 5000, &e);

	if (!r) {
		g_string_printf(d, "query-migrate-parameters: %s", e->message);
		return FALSE;
	}
	if (!json_object_has_member(json_node_get_object(r), "cpr-exec-command")) {
		g_string_printf(d, "QEMU %s has no cpr-exec migration mode", qmp_version(c->q));
		*hint = "cpr-exec needs QEMU 10.2 or later (qemu-integration/qemu-chroot.sh has 11.x)";
		return FALSE;
	}
	g_string_printf(d, "QEMU %s has cpr-exec", qmp_version(c->q));
	return TRUE;
}

/* -sandbox on,spawn=deny makes QEMU's seccomp filter kill execve. */
gboolean check_sandbox(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/status", c->pid), *st = NULL;
	const char *sandbox = NULL, *sc;
	int seccomp = -1;

	for (guint i = 0; i + 1 < c->old_argv->len - 1; i++)
		if (!strcmp(c->old_argv->pdata[i], "-sandbox"))
			sandbox = c->old_argv->pdata[i + 1];
	if (g_file_get_contents(p, &st, NULL, NULL) && (sc = strstr(st, "\nSeccomp:")))
		seccomp = atoi(sc + 9);
	g_string_printf(d, "-sandbox %s, Seccomp %d", sandbox ? sandbox : "(none)", seccomp);
	if (sandbox && strstr(sandbox, "spawn=deny") && !g_str_has_prefix(sandbox, "off")) {
		g_string_prepend(d, "exec refused by QEMU's sandbox: ");
		*hint = "QEMU was started with -sandbox ...,spawn=deny: its seccomp filter "
			"refuses execve, so cpr-exec would fail with only \"execvp failed: "
			"Operation not permitted\"; restart it without spawn=deny";
		return FALSE;
	}
	if (seccomp == 2 && !sandbox)
		g_string_append(d, " (a seccomp filter not from -sandbox: exec may be refused)");
	return TRUE;
}

/* The preflight's end, or @max_s seconds from now when not 0 and sooner:
 * how long what we start for QEMU may take. */
static gint64 deadline_in(struct qmp_ctx *c, int max_s)
{
	gint64 d = g_get_monotonic_time() + (gint64)max_s * G_USEC_PER_SEC;

	return max_s && d < c->deadline ? d : c->deadline;
}

static gboolean check_binary(struct qmp_ctx *c, GString *d, const char **hint)
{
	const char *bin = c->new_argv->pdata[0];
	g_autofree char *hp = host_path(c, bin), *out = NULL;
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;
	gboolean killed;

	if (bin[0] == '/' && access(hp, X_OK)) {
		g_string_printf(d, "%s: %s%s", bin, g_strerror(errno),
				c->other_root ? " (in QEMU's root)" : "");
		*hint = "install the new QEMU, or give its path inside QEMU's root with --new-binary";
		return FALSE;
	}
	g_ptr_array_add(argv, (char *)bin);
	g_ptr_array_add(argv, "-version");
	g_ptr_array_add(argv, NULL);
	p = spawn_in_root(c, argv, &e);
	if (!p) {
		g_string_printf(d, "%s -version: %s", bin, e->message);
		return FALSE;
	}
	out = communicate_until(p, deadline_in(c, 0), &killed);
	if (killed) {
		g_string_printf(d, "%s -version did not end in %d s: killed", bin, c->o->timeout);
		*hint = "the new binary hangs";
		return FALSE;
	}
	if (!g_subprocess_get_successful(p) || !g_str_has_prefix(out, "QEMU emulator version")) {
		g_string_printf(d, "%s -version failed: %s", bin, g_strstrip(out));
		*hint = "the new binary does not run (missing libraries? wrong architecture?)";
		return FALSE;
	}
	g_string_printf(d, "%s: %.*s", bin, (int)strcspn(out, "\n"), out);
	json_object_set_string_member(c->report, "new_version", d->str + strlen(bin) + 2);
	return TRUE;
}

/* Points file and socket paths of a chardev-like option into dir. */
static char *redirect_paths(const char *opt, const char *dir, guint n)
{
	g_auto(GStrv) parts = g_strsplit(opt, ",", -1);

	for (guint i = 0; parts[i]; i++) {
		static const char *keys[] = { "unix:", "file:", "path=", "logfile=" };

		for (guint k = 0; k < G_N_ELEMENTS(keys); k++) {
			if ((k < 2 && i > 0) || !g_str_has_prefix(parts[i], keys[k]))
				continue;
			g_free(parts[i]);
			parts[i] = g_strdup_printf("%s%s/a%u-%u", keys[k], dir, n, i);
		}
	}
	return g_strjoinv(",", parts);
}

/* The new argv, made harmless: paused, waiting for an incoming migration
 * that never comes, every socket and file elsewhere, our own QMP (and a
 * rescued QEMU's RAM, on fds only it has, a memfd of the trial's own). */
static GPtrArray *trial_argv(struct qmp_ctx *c, const char *dir)
{
	static const char *drop2[] = { "-incoming", "-pidfile", "-D", "-qmp", "-qmp-pretty", NULL };
	static const char *redirect[] = { "-monitor", "-serial", "-parallel", "-chardev", NULL };
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	guint n = c->new_argv->len - 1;

	g_ptr_array_add(a, g_strdup(c->new_argv->pdata[0]));
	for (guint i = 1; i < n; i++) {
		const char *arg = c->new_argv->pdata[i];
		char *obj;

		if (i + 1 < n && g_strv_contains(drop2, arg)) {
			i++;
			continue;
		}
		if (!strcmp(arg, "-daemonize"))
			continue;
		g_ptr_array_add(a, g_strdup(arg));
		if (i + 1 < n && (!strcmp(arg, "-object") || !strcmp(arg, "--object")) &&
		    (obj = trial_backend(c->new_argv->pdata[i + 1]))) {
			g_ptr_array_add(a, obj);
			i++;
		} else if (i + 1 < n && g_strv_contains(redirect, arg)) {
			i++;
			g_ptr_array_add(a, redirect_paths(c->new_argv->pdata[i], dir, i));
		}
	}
	g_ptr_array_add(a, g_strdup("-S"));
	g_ptr_array_add(a, g_strdup("-incoming"));
	g_ptr_array_add(a, g_strdup("defer"));
	g_ptr_array_add(a, g_strdup("-qmp"));
	g_ptr_array_add(a, g_strdup_printf("unix:%s/trial.sock,server=on,wait=off", dir));
	g_ptr_array_add(a, NULL);
	return a;
}

/* What the devices check needs from the trial: its devices, and the time
 * the walk took. */
static void trial_devices(struct qmp_ctx *c, struct qmp *t)
{
	g_autoptr(GError) e = NULL;
	gint64 t0 = g_get_monotonic_time();

	c->trial_devs = qom_devices(t, &e);
	c->trial_devs_ms = ms_since(t0);
	if (!c->trial_devs)
		c->trial_devs_err = g_strdup(e->message);
}

/* Waits for the trial instance's QMP, asks its machine type and devices,
 * quits it. Returns FALSE when it never answered (it refused the command
 * line). */
static gboolean trial_run(struct qmp_ctx *c, GSubprocess *p, const char *sock, gint64 deadline,
			  char **mtype)
{
	const char *id;

	while (g_get_monotonic_time() < deadline && (id = g_subprocess_get_identifier(p))) {
		struct qmp *t = g_file_test(sock, G_FILE_TEST_EXISTS) ?
				qmp_open_peer(sock, atoi(id), NULL) : NULL;

		if (t) {
			/* It may exit before it answers. */
			JsonNode *r;

			qmp_set_limit(t, deadline);
			*mtype = machine_type(t);
			trial_devices(c, t);
			r = qmp_cmd(t, "quit", NULL, 5000, NULL);
			if (r)
				json_node_unref(r);
			qmp_close(t);
			return TRUE;
		}
		g_usleep(20000);
	}
	g_subprocess_force_exit(p);
	return FALSE;
}

/* The trial's directory in QEMU's /tmp (resolved in QEMU's root), made by
 * us and given to QEMU's user, who may rename it or fill it: it is reached
 * and emptied only through the fds it was made with. */
struct trial_dir {
	int tmp, fd;
	char name[32];
};

static gboolean trial_dir(struct qmp_ctx *c, struct trial_dir *t, GString *d)
{
	t->fd = -1;
	t->tmp = qemu_dir_open(c, "/tmp");
	for (int i = 0; t->tmp >= 0 && i < 100; i++) {
		g_snprintf(t->name, sizeof(t->name), "cprx-trial-%08x", g_random_int());
		if (!mkdirat(t->tmp, t->name, 0700) || errno != EEXIST)
			break;
	}
	if (t->tmp >= 0)
		t->fd = openat(t->tmp, t->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (t->fd < 0 || (!geteuid() && fchown(t->fd, c->creds.uid[1], c->creds.gid[1]))) {
		g_string_printf(d, "cannot make a trial directory in QEMU's /tmp for QEMU's "
				"user: %s", g_strerror(errno));
		if (t->fd >= 0)
			close(t->fd);
		if (t->tmp >= 0) {
			unlinkat(t->tmp, t->name, AT_REMOVEDIR);
			close(t->tmp);
		}
		return FALSE;
	}
	return TRUE;
}

/* Empties it (the names in it only, whatever QEMU's user made of them)
 * and removes it, if the empty directory is still at its name. */
static void trial_dir_remove(struct trial_dir *t)
{
	DIR *dir = fdopendir(dup(t->fd));
	struct dirent *e;

	while (dir && (e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(t->fd, e->d_name, 0);
	if (dir)
		closedir(dir);
	close(t->fd);
	unlinkat(t->tmp, t->name, AT_REMOVEDIR);
	close(t->tmp);
}

static gboolean check_cmdline(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autofree char *out = NULL, *dir = NULL, *hsock = NULL, *mnew = NULL, *mold = NULL;
	g_autoptr(GPtrArray) argv = NULL;
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;
	gint64 deadline = deadline_in(c, 60);
	struct trial_dir t;
	gboolean up, killed;

	if (!trial_dir(c, &t, d))
		return FALSE;
	dir = g_strdup_printf("/tmp/%s", t.name);
	hsock = g_strdup_printf("/proc/self/fd/%d/trial.sock", t.fd);
	argv = trial_argv(c, dir);
	p = spawn_in_root(c, argv, &e);
	if (!p) {
		g_string_printf(d, "cannot start %s: %s", (char *)argv->pdata[0], e->message);
		trial_dir_remove(&t);
		return FALSE;
	}
	up = trial_run(c, p, hsock, deadline, &mnew);
	out = communicate_until(p, deadline, &killed);
	trial_dir_remove(&t);
	if (!up) {
		g_string_printf(d, "QEMU refuses the new command line: %s",
				killed ? "it did not serve QMP in time (killed)" :
				*out ? g_strstrip(out) : "it exited without a message");
		*hint = "fix the new command line (cpr-exec would exec it and lose the VM); "
			"it was tried paused, with -incoming defer, RAM untouched";
		return FALSE;
	}
	mold = machine_type(c->q);
	if (mold && mnew && strcmp(mold, mnew)) {
		g_string_printf(d, "machine type %s in the new QEMU, %s in the running one: "
				"its state would not load", mnew, mold);
		g_autofree char *h = g_strdup_printf("pin the running machine type in the new "
			"command line: -machine %s,... (--pin-machine does it)", mold);

		*hint = g_intern_string(h);
		return FALSE;
	}
	g_string_printf(d, "a paused trial instance accepted all %u arguments (machine %s)",
			c->new_argv->len - 2, mnew ? mnew : "?");
	return TRUE;
}

/*
 * Why a migration file that exists already is not ours to use, or NULL.
 * QEMU writes it (O_TRUNC follows a symlink) and a rescue loads it: one a
 * local user left in a shared directory such as /tmp, the default, would
 * take the devices' state to that user or a write to any file QEMU can.
 */
const char *state_foreign(struct qmp_ctx *c, const struct stat *st)
{
	g_autofree char *proc = g_strdup_printf("/proc/%d", c->pid);
	struct stat q;

	if (S_ISLNK(st->st_mode))
		return "a symbolic link";
	if (!S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_nlink != 1)
		return "a file with other hard links";
	if (st->st_uid != geteuid() && (stat(proc, &q) || st->st_uid != q.st_uid))
		return "owned by another user than QEMU's and ours";
	return NULL;
}

static gboolean check_state(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_autofree char *dn = g_path_get_dirname(c->o->state), *base = NULL;
	int dfd = qemu_parent_open(c, c->o->state, &base);
	const char *why = NULL;
	struct stat st;

	g_string_printf(d, "file:%s", c->o->state);
	if (dfd < 0 || faccessat(dfd, ".", W_OK, 0)) {
		g_string_append_printf(d, ": %s: %s%s", dn, g_strerror(errno),
				       c->other_root ? " (in QEMU's root)" : "");
		*hint = "give --state a file in a directory QEMU can write";
		if (dfd >= 0)
			close(dfd);
		return FALSE;
	}
	if (!fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) && (why = state_foreign(c, &st))) {
		g_string_append_printf(d, ": exists, %s", why);
		*hint = "remove it, or give --state a file in a directory only QEMU's user "
			"can write";
	}
	close(dfd);
	return !why;
}

static gboolean run_check(struct qmp_ctx *c, const char *name,
			  gboolean (*fn)(struct qmp_ctx *, GString *, const char **))
{
	g_autoptr(GString) d = g_string_new(NULL);
	const char *hint = NULL;
	gint64 t0 = g_get_monotonic_time();
	gboolean ok;

	c->warn = FALSE;
	ok = fn(c, d, &hint);
	add_check(c, name, ok, c->warn, ms_since(t0), d->str, hint);
	return ok;
}

/* A command that timed out failed its check, and made every later one
 * fail; said once, by name. */
static gboolean check_qmp(struct qmp_ctx *c, GString *d, const char **hint)
{
	g_string_printf(d, "QEMU did not answer a command in time (the preflight has --timeout, "
			"%d s)", c->o->timeout);
	*hint = "QEMU is stuck or loaded; the checks after it could not ask it";
	return FALSE;
}

/* Every check, all reported, within --timeout: a QEMU that answers each
 * command just in time holds update --all's other VMs no longer. */
gboolean preflight(struct qmp_ctx *c)
{
	gint64 t0 = g_get_monotonic_time();
	gboolean ok = TRUE;

	c->deadline = t0 + (gint64)c->o->timeout * G_USEC_PER_SEC;
	qmp_set_limit(c->q, c->deadline);

	ok &= run_check(c, "cpr", check_cpr);
	ok &= run_check(c, "ram", check_ram);
	ok &= run_check(c, "sandbox", check_sandbox);
	ok &= run_check(c, "guard", check_guard);
	ok &= run_check(c, "state", check_state);
	ok &= run_check(c, "incoming", check_incoming);
	if (run_check(c, "binary", check_binary)) {
		/* devices: only when the trial ran and answered. */
		if (!c->o->no_trial && run_check(c, "cmdline", check_cmdline))
			ok &= run_check(c, "devices", check_devices);
		else if (!c->o->no_trial)
			ok = FALSE;
	} else {
		ok = FALSE;
	}
	/* Last: its references are counted against the fds of the rest. */
	if (!c->o->no_rescue)
		ok &= run_check(c, "rescue", check_rescue);
	if (qmp_stale(c->q))
		ok &= run_check(c, "qmp", check_qmp);
	qmp_set_limit(c->q, 0);
	json_object_set_double_member(c->report, "preflight_ms", ms_since(t0));
	return ok;
}
