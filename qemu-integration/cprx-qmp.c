// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp: live-update a running QEMU (cpr-exec) through QMP, with a
 * preflight that refuses before the guest stops, and a report of the pause.
 *
 *   cprx-qmp status -s QMP.sock
 *   cprx-qmp update -s QMP.sock [--new-binary PATH] [-- NEW ARGV...]
 *   cprx-qmp demo
 *
 * QEMU may run in another root (a chroot, qemu-integration/qemu-run.sh):
 * paths in its command line are resolved through /proc/PID/root, and the
 * preflight runs the new binary in QEMU's mount namespace and root, where
 * cpr-exec will run it.  The guard check predicts cprx-guard's verdict
 * (bpf/) on QEMU's exec from the status file it keeps (shim/guard.c).
 */
#include "qmp.h"
#include "guard_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_REFUSED = 2, EXIT_FAILED = 3, EXIT_LOST = 4 };

typedef struct {
	char *socket;		/* QMP socket of the running QEMU (host path) */
	char *new_qmp;		/* QMP socket the new QEMU serves (QEMU's path) */
	char *new_binary;
	char *state;		/* migration file (QEMU's path) */
	char **add_args;
	char **argv;		/* explicit new argv (after --) */
	char *json_out;
	gboolean json;
	gboolean no_trial;
	gboolean preflight_only;
	gboolean pin_machine;	/* -machine ALIAS -> the running machine type */
	int timeout;		/* seconds */
} Opts;

typedef struct {
	Opts *o;
	Qmp *q;
	pid_t pid;
	gboolean other_root;	/* QEMU's / is not ours */
	GPtrArray *old_argv;
	GPtrArray *new_argv;
	JsonObject *report;
	JsonArray *checks;
	gboolean warn;		/* set by a check that passes with a warning */
} Ctx;

static void say(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("cprx-qmp: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static double ms_since(gint64 t0)
{
	return (g_get_monotonic_time() - t0) / 1000.0;
}

/* --- QEMU's view of the file system ----------------------------------- */

static gboolean same_root(pid_t pid)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/root", pid);
	struct stat a, b;

	return stat(p, &a) || stat("/", &b) || (a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/* A path as QEMU sees it, reachable from here. */
static char *host_path(Ctx *c, const char *path)
{
	if (!c->other_root || path[0] != '/')
		return g_strdup(path);
	return g_strdup_printf("/proc/%d/root%s", c->pid, path);
}

/* Child side: enter QEMU's mount namespace and root, as cpr-exec's execvp will. */
static void enter_qemu_root(gpointer data)
{
	int pid = GPOINTER_TO_INT(data);
	char p[64];
	int ns, root;

	snprintf(p, sizeof(p), "/proc/%d/ns/mnt", pid);
	ns = open(p, O_RDONLY | O_CLOEXEC);
	snprintf(p, sizeof(p), "/proc/%d/root", pid);
	root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ns < 0 || root < 0 || setns(ns, CLONE_NEWNS) || fchdir(root) ||
	    chroot(".") || chdir("/"))
		_exit(126);
}

static GSubprocess *spawn_in_root(Ctx *c, GPtrArray *argv, GError **err)
{
	g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(
		G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);

	if (c->other_root)
		g_subprocess_launcher_set_child_setup(l, enter_qemu_root,
						      GINT_TO_POINTER(c->pid), NULL);
	return g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, err);
}

/* Waits for the child; its output as valid UTF-8 (never NULL). */
static char *communicate_text(GSubprocess *p)
{
	g_autoptr(GBytes) b = NULL;
	gsize n = 0;
	const char *data;

	if (!g_subprocess_communicate(p, NULL, NULL, &b, NULL, NULL) || !b)
		return g_strdup("");
	data = g_bytes_get_data(b, &n);
	return g_utf8_make_valid(data ? data : "", n);
}

static GPtrArray *read_cmdline(pid_t pid, GError **err)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/cmdline", pid);
	g_autofree char *buf = NULL;
	GPtrArray *a;
	gsize len;

	if (!g_file_get_contents(p, &buf, &len, err))
		return NULL;
	a = g_ptr_array_new_with_free_func(g_free);
	for (gsize off = 0; off < len; off += strlen(buf + off) + 1)
		g_ptr_array_add(a, g_strdup(buf + off));
	g_ptr_array_add(a, NULL);
	return a;
}

/* --- the report ---------------------------------------------------------- */

/* warn: passed, but says something the user should know (not a refusal). */
static void add_check(Ctx *c, const char *name, gboolean ok, gboolean warn, double ms,
		      const char *detail, const char *hint)
{
	JsonObject *o = json_object_new();

	warn &= ok;
	json_object_set_string_member(o, "check", name);
	json_object_set_boolean_member(o, "ok", ok);
	json_object_set_boolean_member(o, "warn", warn);
	json_object_set_double_member(o, "ms", ms);
	json_object_set_string_member(o, "detail", detail);
	if (hint)
		json_object_set_string_member(o, "hint", hint);
	json_array_add_object_element(c->checks, o);
	if (!c->o->json)
		printf("  preflight %-9s %s  %s (%.1f ms)\n", name,
		       !ok ? "FAIL" : warn ? "warn" : "ok  ", detail, ms);
	if ((!ok || warn) && hint && !c->o->json)
		printf("  %-19s hint: %s\n", "", hint);
}

static void write_report(Ctx *c)
{
	g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), c->report);
	g_autofree char *s = json_to_string(n, TRUE);

	if (c->o->json)
		printf("%s\n", s);
	if (c->o->json_out && !g_file_set_contents(c->o->json_out, s, -1, NULL))
		say("cannot write %s", c->o->json_out);
}

/* query-status on the running QEMU: the proof the guest still runs. */
static const char *guest_status(Ctx *c)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-status", NULL, 5000, &e);
	static char st[64];

	if (!r)
		return "unknown (QMP gone)";
	g_strlcpy(st, json_object_get_string_member_with_default(
			json_node_get_object(r), "status", "?"), sizeof(st));
	return st;
}

/* --- preflight checks: each returns ok, fills detail and hint -------------- */

static gboolean check_ram(Ctx *c, GString *d, const char **hint)
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
	be = qmp_cmd(c->q, "qom-get", qmp_args("path", json_node_init_string(json_node_alloc(), "/machine"),
		"property", json_node_init_string(json_node_alloc(), "memory-backend"), NULL), 5000, NULL);
	if (!be || !*json_node_get_string(be)) {
		g_string_append(d, d->len ? "; " : "");
		g_string_append(d, "main RAM is not a memory backend");
		*hint = "add -machine memory-backend=ID with a share=on backend";
		return FALSE;
	}
	aux = qmp_cmd(c->q, "qom-get", qmp_args("path", json_node_init_string(json_node_alloc(), "/machine"),
		"property", json_node_init_string(json_node_alloc(), "aux-ram-share"), NULL), 5000, NULL);
	if (aux && !json_node_get_boolean(aux)) {
		g_string_append(d, "; aux-ram-share=off");
		*hint = "add -machine aux-ram-share=on so ROMs and device RAM are shared too";
		return FALSE;
	}
	return TRUE;
}

/* cpr-exec came with QEMU 10.2: older ones lack the parameter. */
static gboolean check_cpr(Ctx *c, GString *d, const char **hint)
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
static gboolean check_sandbox(Ctx *c, GString *d, const char **hint)
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

/* --- the guard (bpf/): its verdict on QEMU's exec ------------------------- */

/* QEMU's real uid: the first number of the "Uid:" line of /proc/PID/status. */
static gboolean qemu_uid(Ctx *c, uid_t *uid)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/status", c->pid), *st = NULL;
	const char *u;

	if (!g_file_get_contents(p, &st, NULL, NULL) || !(u = strstr(st, "\nUid:")))
		return FALSE;
	*uid = strtoul(u + 5, NULL, 10);
	return TRUE;
}

/* A variable of QEMU's environment (/proc/PID/environ), or NULL. */
static char *qemu_getenv(Ctx *c, const char *name)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/environ", c->pid), *buf = NULL;
	gsize len, n = strlen(name);

	if (!g_file_get_contents(p, &buf, &len, NULL))
		return NULL;
	for (gsize off = 0; off < len; off += strlen(buf + off) + 1)
		if (!strncmp(buf + off, name, n) && buf[off + n] == '=')
			return g_strdup(buf + off + n + 1);
	return NULL;
}

/* A path QEMU would resolve (in its root, from its cwd), reachable from here. */
static char *qemu_path(Ctx *c, const char *path)
{
	if (path[0] == '/')
		return host_path(c, path);
	return g_strdup_printf("/proc/%d/cwd/%s", c->pid, path);
}

/* The new binary where cpr-exec's execvp will find it (a bare name is
 * looked up in QEMU's PATH), as a path reachable from here; NULL if none. */
static char *qemu_exec_path(Ctx *c, const char *bin)
{
	g_autofree char *path = NULL;
	g_auto(GStrv) dirs = NULL;

	if (strchr(bin, '/'))
		return qemu_path(c, bin);
	path = qemu_getenv(c, "PATH");
	dirs = g_strsplit(path ? path : "/bin:/usr/bin", ":", -1);
	for (guint i = 0; dirs[i]; i++) {
		g_autofree char *f = g_build_filename(*dirs[i] ? dirs[i] : ".", bin, NULL);
		g_autofree char *hp = qemu_path(c, f);

		if (!access(hp, X_OK))
			return g_steal_pointer(&hp);
	}
	return NULL;
}

/* Will QEMU exec with an armed cprx.ko session?  Only a QEMU built with
 * --enable-cprx (libcprx in its maps) that finds /dev/cprx, unless its
 * environment forces the cloexec backend.  @why says which, @hint the fix
 * when it will not. */
static gboolean qemu_arms(Ctx *c, GString *why, const char **hint)
{
	g_autofree char *maps = g_strdup_printf("/proc/%d/maps", c->pid), *m = NULL;
	g_autofree char *dev = host_path(c, "/dev/cprx"), *be = NULL;

	if (!g_file_get_contents(maps, &m, NULL, NULL) || !strstr(m, "libcprx")) {
		g_string_assign(why, "no libcprx in its maps: a stock QEMU arms no session");
		*hint = "use a QEMU built with --enable-cprx (libcprx) and load cprx.ko, so "
			"that /dev/cprx is there in QEMU's root (the kmod backend arms a "
			"session at the exec), or drop armed-only from the cprx-guard policy";
		return FALSE;
	}
	if (access(dev, F_OK)) {
		g_string_printf(why, "it uses libcprx, but there is no /dev/cprx%s (cprx.ko "
				"not loaded): libcprx would use the cloexec backend",
				c->other_root ? " in its root" : "");
		*hint = "load cprx.ko (modprobe cprx) so that /dev/cprx is there in QEMU's "
			"root (the kmod backend arms a session at the exec), or drop "
			"armed-only from the cprx-guard policy";
		return FALSE;
	}
	be = qemu_getenv(c, "CPRX_BACKEND");
	if (!g_strcmp0(be, "cloexec")) {
		g_string_assign(why, "it uses libcprx, but its environment has "
				"CPRX_BACKEND=cloexec");
		*hint = "start QEMU without CPRX_BACKEND=cloexec, with cprx.ko loaded (the "
			"kmod backend arms a session at the exec), or drop armed-only from "
			"the cprx-guard policy";
		return FALSE;
	}
	g_string_assign(why, "it uses libcprx and /dev/cprx is there: the kmod backend "
			"arms a session at the exec");
	return TRUE;
}

/* Enforcing: the check fails; trace-only: a warning, the exec would pass. */
static gboolean guard_refuses(Ctx *c, const struct cprx_guard_status *st, GString *d,
			      const char *bin, const struct stat *sb, const char *how,
			      const char *what)
{
	g_string_printf(d, "%s %s exec of %s (binary %u:%u:%llu) by QEMU (pid %d, guarded by %s): "
			"%s (policy %s)", cprx_guard_name(st),
			st->enforcing ? "refuses" : "would refuse", bin, major(sb->st_dev),
			minor(sb->st_dev), (unsigned long long)sb->st_ino, c->pid, how, what,
			*st->policy ? st->policy : "?");
	if (st->enforcing)
		return FALSE;
	g_string_append_printf(d, "; would be refused if enforced (not enforced: %s)",
			       *st->why ? st->why : st->mode_trace ? "the policy asks for trace only" :
			       "trace-only");
	c->warn = TRUE;
	return TRUE;
}

/* Same selectors and rules as the BPF side (bprm_check_security), for
 * QEMU's process: its real uid, its cgroup, its running binary. */
static gboolean guard_verdict(Ctx *c, const struct cprx_guard_status *st, GString *d,
			      const char **hint)
{
	const char *bin = c->new_argv->pdata[0], *name = cprx_guard_name(st);
	g_autofree char *cgf = g_strdup_printf("/proc/%d/cgroup", c->pid);
	g_autofree char *exef = g_strdup_printf("/proc/%d/exe", c->pid);
	g_autofree char *hp = NULL, *real = NULL, *what = NULL;
	g_autoptr(GString) arms = g_string_new(NULL);
	char how[CPRX_GUARD_PATH_MAX + 32];
	const struct cprx_guard_file *r, *old;
	struct stat sb, exe;
	gboolean vmm = FALSE;
	uid_t uid;

	if (!qemu_uid(c, &uid)) {
		g_string_printf(d, "%s is active, but QEMU's uid cannot be read from /proc/%d/status: "
				"its verdict is unknown", name, c->pid);
		*hint = "run cprx-qmp where it can read QEMU's /proc/PID (as root, or as QEMU's user)";
		c->warn = TRUE;
		return TRUE;
	}
	if (!cprx_guard_covers(st, uid, cgf, exef, how, sizeof(how))) {
		g_string_printf(d, "%s is active; QEMU (pid %d) is not guarded by the policy "
				"(its uid %u, cgroup and binary match none of %u uid, %u cgroup, "
				"%u binary selectors)", name, c->pid, uid, st->nr_uids,
				st->nr_cgroups, st->nr_exes);
		return TRUE;
	}
	hp = qemu_exec_path(c, bin);
	if (!hp || stat(hp, &sb)) {
		g_string_printf(d, "%s guards QEMU (pid %d, by %s), but %s cannot be checked: %s",
				name, c->pid, how, bin, hp ? g_strerror(errno) :
				"not found in QEMU's PATH");
		*hint = "the binary check says what is wrong with the new binary";
		c->warn = TRUE;
		return TRUE;
	}
	/* The binary's path for cprx-guard, which runs in our root. */
	real = realpath(hp, NULL);
	if (!real || g_str_has_prefix(real, "/proc/")) {
		g_free(real);
		real = g_strdup(c->other_root ? hp : bin);
	}
	r = cprx_guard_find_rule(st, &sb);
	if (!r) {
		/* in a chroot, the same path names another file on our side */
		old = cprx_guard_find_replaced(st, real);
		if (!old && !c->other_root)
			old = cprx_guard_find_replaced(st, bin);
		if (old) {
			what = g_strdup_printf("rule %u (allow %s) names inode %llu, but the file "
					       "there has been replaced on disk since the policy "
					       "was loaded", old->rule, old->path,
					       (unsigned long long)old->ino);
			*hint = "reload the cprx-guard policy (cprx-guard detach, then cprx-guard "
				"load): its rules are resolved to inodes when it loads";
		} else {
			g_autofree char *h = g_strdup_printf("add 'allow %s' to the cprx-guard "
				"policy (or --allow %s) and reload it (cprx-guard detach, then "
				"cprx-guard load), or update to an allow-listed binary "
				"(--new-binary)", real, real);

			what = g_strdup_printf("no allow rule matches it (%u rule%s)", st->nr_allow,
					       st->nr_allow == 1 ? "" : "s");
			*hint = g_intern_string(h);
		}
		return guard_refuses(c, st, d, bin, &sb, how, what);
	}
	/* Armed-only binds a VMM: a process running an allow-listed binary. */
	if (st->armed_only) {
		vmm = !stat(exef, &exe) && cprx_guard_find_rule(st, &exe);
		if (vmm && !qemu_arms(c, arms, hint)) {
			what = g_strdup_printf("rule %u (allow %s) matches, but the policy is "
					       "armed-only and no cprx.ko session would be armed at "
					       "the exec (%s)", r->rule, r->path, arms->str);
			return guard_refuses(c, st, d, bin, &sb, how, what);
		}
	}
	g_string_printf(d, "%s allows exec of %s (binary %u:%u:%llu) by QEMU (pid %d, guarded "
			"by %s): rule %u (allow %s)", name, bin, major(sb.st_dev),
			minor(sb.st_dev), (unsigned long long)sb.st_ino, c->pid, how, r->rule,
			r->path);
	if (st->armed_only)
		g_string_append_printf(d, "; armed-only: %s", vmm ? arms->str :
				       "it binds only a QEMU running an allow-listed binary, "
				       "and this one's is not");
	return TRUE;
}

static gboolean check_guard(Ctx *c, GString *d, const char **hint)
{
	const char *file = cprx_guard_status_path();
	struct cprx_guard_status st;
	char err[256];
	gboolean ok;
	int ret;

	ret = cprx_guard_status_read(file, &st, err, sizeof(err));
	if (ret == -ENOENT) {
		g_string_printf(d, "no cprx-guard policy active (no %s)", file);
		return TRUE;
	}
	if (ret) {
		g_string_printf(d, "cprx-guard status %s ignored: %s; the guard's verdict on the "
				"exec is unknown", file, err);
		*hint = ret == -ESTALE ?
			"remove the stale status file, or load the guard policy again (cprx-guard "
			"load): a loader that died took its programs with it" :
			"fix or remove the status file (cprx-guard load writes it; "
			"cprx-guard status says whether a policy is loaded)";
		c->warn = TRUE;
		return TRUE;
	}
	ok = guard_verdict(c, &st, d, hint);
	cprx_guard_status_free(&st);
	return ok;
}

static gboolean check_binary(Ctx *c, GString *d, const char **hint)
{
	const char *bin = c->new_argv->pdata[0];
	g_autofree char *hp = host_path(c, bin), *out = NULL;
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;

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
	out = communicate_text(p);
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
 * that never comes, every socket and file elsewhere, our own QMP. */
static GPtrArray *trial_argv(Ctx *c, const char *dir)
{
	static const char *drop2[] = { "-incoming", "-pidfile", "-D", "-qmp", "-qmp-pretty", NULL };
	static const char *redirect[] = { "-monitor", "-serial", "-parallel", "-chardev", NULL };
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	guint n = c->new_argv->len - 1;

	g_ptr_array_add(a, g_strdup(c->new_argv->pdata[0]));
	for (guint i = 1; i < n; i++) {
		const char *arg = c->new_argv->pdata[i];

		if (i + 1 < n && g_strv_contains(drop2, arg)) {
			i++;
			continue;
		}
		if (!strcmp(arg, "-daemonize"))
			continue;
		g_ptr_array_add(a, g_strdup(arg));
		if (i + 1 < n && g_strv_contains(redirect, arg)) {
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

/* The machine type QEMU really runs ("pc" is an alias that every version
 * resolves to its own newest type; the state only loads into the same). */
static char *machine_type(Qmp *q)
{
	g_autoptr(JsonNode) r = qmp_cmd(q, "qom-get", qmp_args(
		"path", json_node_init_string(json_node_alloc(), "/machine"),
		"property", json_node_init_string(json_node_alloc(), "type"), NULL), 5000, NULL);
	const char *t = r && JSON_NODE_HOLDS_VALUE(r) ? json_node_get_string(r) : NULL;

	return t ? g_strndup(t, strlen(t) - (g_str_has_suffix(t, "-machine") ? 8 : 0)) : NULL;
}

/* Waits for the trial instance's QMP, asks its machine type, quits it.
 * Returns FALSE when it never answered (it refused the command line). */
static gboolean trial_run(GSubprocess *p, const char *sock, char **mtype)
{
	gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

	while (g_get_monotonic_time() < deadline && g_subprocess_get_identifier(p)) {
		Qmp *t = g_file_test(sock, G_FILE_TEST_EXISTS) ? qmp_open(sock, NULL) : NULL;

		if (t) {
			/* It may exit before it answers. */
			JsonNode *r;

			*mtype = machine_type(t);
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

static void rm_dir(const char *dir)
{
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	const char *n;

	while (d && (n = g_dir_read_name(d))) {
		g_autofree char *f = g_build_filename(dir, n, NULL);

		unlink(f);
	}
	rmdir(dir);
}

static gboolean check_cmdline(Ctx *c, GString *d, const char **hint)
{
	g_autofree char *tmpl = host_path(c, "/tmp/cprx-trial-XXXXXX");
	g_autofree char *out = NULL, *dir = NULL, *hsock = NULL, *mnew = NULL, *mold = NULL;
	g_autoptr(GPtrArray) argv = NULL;
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;
	gboolean up;

	if (!g_mkdtemp(tmpl)) {
		g_string_printf(d, "cannot create a trial directory in QEMU's /tmp: %s", g_strerror(errno));
		return FALSE;
	}
	dir = g_strdup(tmpl + (strlen(tmpl) - strlen("/tmp/cprx-trial-XXXXXX")));
	hsock = g_build_filename(tmpl, "trial.sock", NULL);
	argv = trial_argv(c, dir);
	p = spawn_in_root(c, argv, &e);
	if (!p) {
		g_string_printf(d, "cannot start %s: %s", (char *)argv->pdata[0], e->message);
		rm_dir(tmpl);
		return FALSE;
	}
	up = trial_run(p, hsock, &mnew);
	out = communicate_text(p);
	rm_dir(tmpl);
	if (!up) {
		g_string_printf(d, "QEMU refuses the new command line: %s",
				out && *out ? g_strstrip(out) : "it exited without a message");
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

static gboolean check_state(Ctx *c, GString *d, const char **hint)
{
	g_autofree char *dn = g_path_get_dirname(c->o->state);
	g_autofree char *hd = host_path(c, dn);

	g_string_printf(d, "file:%s", c->o->state);
	if (access(hd, W_OK)) {
		g_string_append_printf(d, ": %s: %s", dn, g_strerror(errno));
		*hint = "give --state a file in a directory QEMU can write";
		return FALSE;
	}
	return TRUE;
}

typedef gboolean (*CheckFn)(Ctx *, GString *, const char **);

static gboolean run_check(Ctx *c, const char *name, CheckFn fn)
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

static gboolean preflight(Ctx *c)
{
	gint64 t0 = g_get_monotonic_time();
	gboolean ok = TRUE;

	ok &= run_check(c, "cpr", check_cpr);
	ok &= run_check(c, "ram", check_ram);
	ok &= run_check(c, "sandbox", check_sandbox);
	ok &= run_check(c, "guard", check_guard);
	ok &= run_check(c, "state", check_state);
	if (run_check(c, "binary", check_binary)) {
		if (!c->o->no_trial)
			ok &= run_check(c, "cmdline", check_cmdline);
	} else {
		ok = FALSE;
	}
	json_object_set_double_member(c->report, "preflight_ms", ms_since(t0));
	return ok;
}

/* --- setting up ----------------------------------------------------------- */

static JsonNode *str_node(const char *s)
{
	return json_node_init_string(json_node_alloc(), s);
}

/* -machine pc,opts -> -machine pc-i440fx-10.2,opts (the running type). */
static void pin_machine(Ctx *c, GPtrArray *a)
{
	g_autofree char *type = machine_type(c->q);

	for (guint i = 1; type && i + 1 < a->len; i++) {
		const char *arg = a->pdata[i], *v = a->pdata[i + 1];
		const char *end = v + strcspn(v, ","), *eq = strchr(v, '=');

		if (strcmp(arg, "-machine") && strcmp(arg, "-M"))
			continue;
		if (end == v || (eq && eq < end))
			continue;	/* only the positional form is rewritten */
		a->pdata[i + 1] = g_strconcat(type, end, NULL);
		g_free((char *)v);
	}
}

/* Old argv with -incoming replaced, or the one after --. */
static GPtrArray *make_new_argv(Ctx *c)
{
	Opts *o = c->o;
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	guint n = c->old_argv->len - 1;

	if (o->argv && o->argv[0]) {
		for (guint i = 0; o->argv[i]; i++)
			g_ptr_array_add(a, g_strdup(o->argv[i]));
	} else {
		for (guint i = 0; i < n; i++) {
			if (!strcmp(c->old_argv->pdata[i], "-incoming") && i + 1 < n) {
				i++;
				continue;
			}
			g_ptr_array_add(a, g_strdup(c->old_argv->pdata[i]));
		}
		for (guint i = 0; o->add_args && o->add_args[i]; i++)
			g_ptr_array_add(a, g_strdup(o->add_args[i]));
		g_ptr_array_add(a, g_strdup("-incoming"));
		g_ptr_array_add(a, g_strdup_printf("file:%s", o->state));
	}
	if (o->new_binary) {
		g_free(a->pdata[0]);
		a->pdata[0] = g_strdup(o->new_binary);
	}
	if (o->pin_machine)
		pin_machine(c, a);
	g_ptr_array_add(a, NULL);
	return a;
}

static JsonArray *strv_array(GPtrArray *a)
{
	JsonArray *j = json_array_new();

	for (guint i = 0; i + 1 < a->len; i++)
		json_array_add_string_element(j, a->pdata[i]);
	return j;
}

static int connect_qemu(Ctx *c)
{
	g_autoptr(GError) e = NULL;

	c->q = qmp_open(c->o->socket, &e);
	if (!c->q) {
		say("cannot talk QMP on %s: %s", c->o->socket, e->message);
		return EXIT_USAGE;
	}
	c->pid = qmp_pid(c->q);
	c->other_root = !same_root(c->pid);
	c->old_argv = read_cmdline(c->pid, &e);
	if (!c->old_argv) {
		say("cannot read QEMU's command line (pid %d): %s", c->pid, e->message);
		return EXIT_USAGE;
	}
	c->report = json_object_new();
	c->checks = json_array_new();
	json_object_set_int_member(c->report, "pid", c->pid);
	json_object_set_string_member(c->report, "old_version", qmp_version(c->q));
	json_object_set_boolean_member(c->report, "chroot", c->other_root);
	return 0;
}

static void ctx_free(Ctx *c)
{
	qmp_close(c->q);
	if (c->old_argv)
		g_ptr_array_unref(c->old_argv);
	if (c->new_argv)
		g_ptr_array_unref(c->new_argv);
	if (c->report)
		json_object_unref(c->report);
}

/* --- the update ----------------------------------------------------------- */

static int fail(Ctx *c, int code, const char *what, const char *msg, const char *hint)
{
	const char *st = code == EXIT_LOST ? "lost" : guest_status(c);

	json_object_set_string_member(c->report, "result", code == EXIT_REFUSED ? "refused" :
				      code == EXIT_LOST ? "lost" : "failed");
	json_object_set_string_member(c->report, "error", msg);
	if (hint)
		json_object_set_string_member(c->report, "hint", hint);
	json_object_set_string_member(c->report, "guest_status", st);
	write_report(c);
	if (!c->o->json) {
		printf("update %s: %s\n", code == EXIT_REFUSED ? "refused" : "FAILED", what);
		printf("  error: %s\n", msg);
		if (hint)
			printf("  hint: %s\n", hint);
		printf("  guest: %s (query-status on pid %d)\n", st, c->pid);
	}
	return code;
}

/* Waits for the old QEMU to exec (its QMP connection closes), or for the
 * migration to fail (then QEMU says why and keeps the guest). */
static gboolean wait_exec(Ctx *c, gint64 deadline, char **why)
{
	while (g_get_monotonic_time() < deadline) {
		g_autoptr(GError) e = NULL;
		g_autoptr(JsonNode) r = NULL;
		JsonObject *o;

		if (qmp_wait_eof(c->q, 100, &e))
			return TRUE;
		if (!g_error_matches(e, QMP_ERROR, QMP_ERROR_TIMEOUT))
			return *why = g_strdup(e->message), FALSE;
		g_clear_error(&e);
		r = qmp_cmd(c->q, "query-migrate", NULL, 5000, &e);
		if (!r)
			return g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF) ? TRUE :
			       (*why = g_strdup(e->message), FALSE);
		o = json_node_get_object(r);
		if (!g_strcmp0(json_object_get_string_member_with_default(o, "status", ""), "failed")) {
			*why = g_strdup(json_object_get_string_member_with_default(o, "error-desc",
								"migration failed"));
			return FALSE;
		}
	}
	*why = g_strdup("QEMU did not exec in time");
	return FALSE;
}

/* Connects to the new QEMU's QMP socket as soon as it listens. */
static Qmp *follow(Ctx *c, gint64 deadline, int *attempts)
{
	g_autofree char *hp = host_path(c, c->o->new_qmp);
	g_autofree char *proc = g_strdup_printf("/proc/%d", c->pid);

	for (*attempts = 1; g_get_monotonic_time() < deadline; (*attempts)++) {
		Qmp *q = qmp_open(hp, NULL);

		if (q)
			return q;
		if (!g_file_test(proc, G_FILE_TEST_EXISTS))
			return NULL;
		g_usleep(1000);
	}
	return NULL;
}


static int migrate(Ctx *c)
{
	Opts *o = c->o;
	gint64 deadline = g_get_monotonic_time() + (gint64)o->timeout * G_USEC_PER_SEC;
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = NULL, stop = NULL, resume = NULL;
	g_autofree char *why = NULL, *uri = g_strdup_printf("file:%s", o->state);
	g_autoptr(JsonBuilder) b = json_builder_new();
	JsonObject *ph = json_object_new();
	gint64 t_mig, t_exec, t_qmp, usec_exec, usec_qmp;
	int attempts;
	const char *st;

	json_object_set_object_member(c->report, "phases", ph);
	json_builder_begin_array(b);
	for (guint i = 0; i < c->new_argv->len - 1; i++)
		json_builder_add_string_value(b, c->new_argv->pdata[i]);
	json_builder_end_array(b);
	r = qmp_cmd(c->q, "migrate-set-parameters",
		    qmp_args("mode", str_node("cpr-exec"),
			     "cpr-exec-command", json_builder_get_root(b), NULL), 5000, &e);
	if (!r)
		return fail(c, EXIT_FAILED, "migrate-set-parameters", e->message,
			    "this QEMU has no cpr-exec mode (QEMU 10.2 or later has it)");
	g_clear_pointer(&r, json_node_unref);
	t_mig = g_get_monotonic_time();
	r = qmp_cmd(c->q, "migrate", qmp_args("uri", str_node(uri), NULL), 10000, &e);
	if (!r && !g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF))
		return fail(c, EXIT_FAILED, "migrate", e->message,
			    "QEMU refused before stopping the guest (a migration blocker?)");
	if (!wait_exec(c, deadline, &why)) {
		g_autoptr(JsonNode) stopped = qmp_event(c->q, "STOP", 0, NULL);

		return fail(c, EXIT_FAILED, "cpr-exec", why, stopped ?
			    "QEMU's own error; a failed exec leaves the old QEMU running" :
			    "QEMU's own error, before the guest stopped (a QEMU built "
			    "with --enable-cprx runs libcprx's preflight there)");
	}
	t_exec = g_get_monotonic_time();
	usec_exec = g_get_real_time();
	stop = qmp_event(c->q, "STOP", 0, NULL);
	qmp_close(c->q);
	c->q = follow(c, deadline, &attempts);
	if (!c->q)
		return fail(c, EXIT_LOST, "the new QEMU", "the new QEMU never served QMP on its socket "
			    "(it exited: the VM is lost)", "see QEMU's stderr for why the new "
			    "command line failed");
	t_qmp = g_get_monotonic_time();
	usec_qmp = g_get_real_time();
	json_object_set_int_member(c->report, "new_pid", qmp_pid(c->q));
	json_object_set_boolean_member(c->report, "same_pid", qmp_pid(c->q) == c->pid);
	json_object_set_string_member(c->report, "new_qemu_version", qmp_version(c->q));
	json_object_set_int_member(c->report, "qmp_attempts", attempts);
	st = guest_status(c);
	resume = qmp_event(c->q, "RESUME", strcmp(st, "running") ?
			   (int)((deadline - g_get_monotonic_time()) / 1000) : 0, NULL);
	if (!resume && strcmp(st, "running"))
		return fail(c, EXIT_FAILED, "resume", "the new QEMU did not resume the guest",
			    "query-status on the new QEMU tells its state");
	/* Client clocks for what only the client sees, QEMU's event
	 * timestamps (same wall clock) for the pause itself. */
	json_object_set_double_member(ph, "migrate_to_exec_ms", (t_exec - t_mig) / 1000.0);
	json_object_set_double_member(ph, "exec_to_qmp_ms", (t_qmp - t_exec) / 1000.0);
	if (stop && resume) {
		gint64 s = qmp_event_usec(stop), rs = qmp_event_usec(resume);

		json_object_set_double_member(ph, "stop_to_exec_ms", (usec_exec - s) / 1000.0);
		json_object_set_double_member(ph, "exec_to_resume_ms", (rs - usec_exec) / 1000.0);
		json_object_set_double_member(c->report, "pause_ms", (rs - s) / 1000.0);
	} else {
		/* RESUME came before we could listen: bound the pause from above. */
		json_object_set_boolean_member(c->report, "resume_event_missed", TRUE);
		json_object_set_double_member(c->report, "pause_ms_at_most",
			(usec_qmp - (stop ? qmp_event_usec(stop) : usec_exec)) / 1000.0);
	}
	json_object_set_string_member(c->report, "guest_status", guest_status(c));
	json_object_set_string_member(c->report, "result", "ok");
	return 0;
}

static void summary(Ctx *c)
{
	JsonObject *r = c->report, *ph = json_object_get_object_member(r, "phases");

	if (c->o->json)
		return;
	printf("update ok: pid %" G_GINT64_FORMAT " %s, QEMU %s -> %s, guest %s\n",
	       json_object_get_int_member(r, "pid"),
	       json_object_get_boolean_member(r, "same_pid") ? "kept" : "CHANGED",
	       json_object_get_string_member(r, "old_version"),
	       json_object_get_string_member(r, "new_qemu_version"),
	       json_object_get_string_member(r, "guest_status"));
	if (json_object_has_member(r, "pause_ms"))
		printf("  pause %.1f ms (STOP->RESUME): stop->exec %.1f, exec->resume %.1f; "
		       "QMP back %.1f ms after the exec; preflight %.0f ms before the stop\n",
		       json_object_get_double_member(r, "pause_ms"),
		       json_object_get_double_member(ph, "stop_to_exec_ms"),
		       json_object_get_double_member(ph, "exec_to_resume_ms"),
		       json_object_get_double_member(ph, "exec_to_qmp_ms"),
		       json_object_get_double_member_with_default(r, "preflight_ms", 0));
	else
		printf("  pause at most %.1f ms (RESUME came before QMP was back)\n",
		       json_object_get_double_member(r, "pause_ms_at_most"));
}

/* Connects, and settles what update and restart both need: the migration
 * file, the new QMP socket (the same path by default) and the new argv. */
static int prepare_update(Ctx *c)
{
	Opts *o = c->o;
	int ret = connect_qemu(c);

	if (ret)
		return ret;
	if (!o->state)
		o->state = g_strdup_printf("/tmp/cprx-qmp-%d.state", c->pid);
	if (!o->new_qmp)
		o->new_qmp = g_strdup(o->socket);
	c->new_argv = make_new_argv(c);
	return 0;
}

static int do_update(Opts *o)
{
	Ctx c = { .o = o };
	int ret = prepare_update(&c);

	if (ret)
		return ret;
	json_object_set_array_member(c.report, "new_argv", strv_array(c.new_argv));
	json_object_set_array_member(c.report, "preflight", c.checks);
	if (!o->json)
		printf("update pid %d (QEMU %s%s)\n", c.pid, qmp_version(c.q),
		       c.other_root ? ", in a chroot" : "");
	if (!preflight(&c)) {
		ret = fail(&c, EXIT_REFUSED, "preflight", "a preflight check failed; nothing was stopped",
			   NULL);
	} else if (o->preflight_only) {
		json_object_set_string_member(c.report, "result", "preflight-ok");
		write_report(&c);
	} else {
		ret = migrate(&c);
		if (!ret) {
			g_autofree char *hs = host_path(&c, o->state);

			unlink(hs);	/* the state is consumed */
			write_report(&c);
			summary(&c);
		}
	}
	ctx_free(&c);
	return ret;
}

/* --- baseline: normal migration to a file, quit, start again -------------- */

/* QEMU's namespace and root, kept open across its exit for the restart. */
typedef struct {
	int ns, root, log;	/* log: the new QEMU's stdout and stderr */
} RootFds;

static void enter_saved_root(gpointer data)
{
	(void)data;
	/* fds 100 and 101 are the launcher's copies of RootFds. */
	if (setns(100, CLONE_NEWNS) || fchdir(101) || chroot(".") || chdir("/"))
		_exit(126);
	setsid();	/* outlive cprx-qmp, like the QEMU it replaces */
}

static GSubprocess *spawn_restart(Ctx *c, RootFds *rf, GError **err)
{
	g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);

	if (rf->log >= 0) {
		g_subprocess_launcher_take_stderr_fd(l, dup(rf->log));
		g_subprocess_launcher_take_stdout_fd(l, rf->log);
		rf->log = -1;
	}
	if (c->other_root) {
		g_subprocess_launcher_take_fd(l, rf->ns, 100);
		g_subprocess_launcher_take_fd(l, rf->root, 101);
		rf->ns = rf->root = -1;
		g_subprocess_launcher_set_child_setup(l, enter_saved_root, NULL, NULL);
	}
	return g_subprocess_launcher_spawnv(l, (const char *const *)c->new_argv->pdata, err);
}

static const char *migration_status(Ctx *c)
{
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-migrate", NULL, 5000, NULL);
	static char st[32];

	g_strlcpy(st, r ? json_object_get_string_member_with_default(json_node_get_object(r),
			"status", "?") : "?", sizeof(st));
	return st;
}

static int restart(Ctx *c, RootFds *rf)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)c->o->timeout * G_USEC_PER_SEC;
	g_autofree char *uri = g_strdup_printf("file:%s", c->o->state);
	g_autoptr(JsonNode) r = NULL, stop = NULL, resume = NULL;
	g_autoptr(GSubprocess) p = NULL;
	g_autoptr(GError) e = NULL;
	JsonObject *ph = json_object_new();
	gint64 u_saved, u_spawn, u_qmp;
	int attempts;

	json_object_set_object_member(c->report, "phases", ph);
	r = qmp_cmd(c->q, "migrate", qmp_args("uri", str_node(uri), NULL), 10000, &e);
	if (!r)
		return fail(c, EXIT_FAILED, "migrate", e->message, NULL);
	while (strcmp(migration_status(c), "completed")) {
		if (!strcmp(migration_status(c), "failed") || g_get_monotonic_time() > deadline)
			return fail(c, EXIT_FAILED, "migrate", "migration to the file failed", NULL);
		g_usleep(2000);
	}
	u_saved = g_get_real_time();
	stop = qmp_event(c->q, "STOP", 1000, NULL);
	g_clear_pointer(&r, json_node_unref);
	r = qmp_cmd(c->q, "quit", NULL, 5000, NULL);
	qmp_wait_eof(c->q, 10000, NULL);
	qmp_close(c->q);
	c->q = NULL;
	u_spawn = g_get_real_time();
	p = spawn_restart(c, rf, &e);
	if (!p)
		return fail(c, EXIT_LOST, "restart", e->message, NULL);
	c->pid = atoi(g_subprocess_get_identifier(p));
	c->q = follow(c, deadline, &attempts);
	if (!c->q)
		return fail(c, EXIT_LOST, "restart", "the restarted QEMU never served QMP", NULL);
	u_qmp = g_get_real_time();
	resume = qmp_event(c->q, "RESUME", (int)((deadline - g_get_monotonic_time()) / 1000), &e);
	if (!resume || !stop)
		return fail(c, EXIT_FAILED, "restart", "no STOP or RESUME event seen", NULL);
	json_object_set_int_member(c->report, "new_pid", c->pid);
	json_object_set_double_member(ph, "stop_to_saved_ms", (u_saved - qmp_event_usec(stop)) / 1000.0);
	json_object_set_double_member(ph, "saved_to_spawn_ms", (u_spawn - u_saved) / 1000.0);
	json_object_set_double_member(ph, "spawn_to_qmp_ms", (u_qmp - u_spawn) / 1000.0);
	json_object_set_double_member(ph, "spawn_to_resume_ms", (qmp_event_usec(resume) - u_spawn) / 1000.0);
	json_object_set_double_member(c->report, "pause_ms",
		(qmp_event_usec(resume) - qmp_event_usec(stop)) / 1000.0);
	json_object_set_string_member(c->report, "guest_status", guest_status(c));
	json_object_set_string_member(c->report, "result", "ok");
	return 0;
}

static int do_restart(Opts *o)
{
	Ctx c = { .o = o };
	RootFds rf = { -1, -1, -1 };
	g_autofree char *ns = NULL, *root = NULL, *hs = NULL, *log = NULL, *hlog = NULL;
	int ret = prepare_update(&c);

	if (ret)
		return ret;
	json_object_set_string_member(c.report, "mode", "restart");
	ns = g_strdup_printf("/proc/%d/ns/mnt", c.pid);
	root = g_strdup_printf("/proc/%d/root", c.pid);
	rf.ns = open(ns, O_RDONLY | O_CLOEXEC);
	rf.root = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* Opened now: once QEMU exits, /proc/PID/root leads nowhere. */
	log = g_strdup_printf("%s.qemu.log", o->state);
	hlog = host_path(&c, log);
	rf.log = open(hlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	json_object_set_string_member(c.report, "qemu_log", log);
	ret = restart(&c, &rf);
	hs = host_path(&c, o->state);	/* through the new QEMU's root */
	if (!ret) {
		write_report(&c);
		if (!o->json)
			printf("restart ok: pid %" G_GINT64_FORMAT " -> %d, pause %.1f ms "
			       "(migrate to a file, quit, start with -incoming)\n",
			       json_object_get_int_member(c.report, "pid"), c.pid,
			       json_object_get_double_member(c.report, "pause_ms"));
	}
	unlink(hs);
	if (rf.ns >= 0)
		close(rf.ns);
	if (rf.root >= 0)
		close(rf.root);
	if (rf.log >= 0)
		close(rf.log);
	ctx_free(&c);
	return ret;
}

/* --- status ----------------------------------------------------------------- */

static int do_status(Opts *o)
{
	Ctx c = { .o = o };
	int ret = connect_qemu(&c);
	g_autoptr(JsonNode) mem = NULL;
	g_autoptr(GString) d = g_string_new(NULL);
	const char *hint = NULL;

	if (ret)
		return ret;
	json_object_set_string_member(c.report, "guest_status", guest_status(&c));
	mem = qmp_cmd(c.q, "query-memdev", NULL, 5000, NULL);
	if (mem)
		json_object_set_member(c.report, "memdev", json_node_copy(mem));
	json_object_set_boolean_member(c.report, "ram_shared", check_ram(&c, d, &hint));
	json_object_set_string_member(c.report, "ram", d->str);
	g_string_truncate(d, 0);
	json_object_set_boolean_member(c.report, "exec_permitted", check_sandbox(&c, d, &hint));
	json_object_set_string_member(c.report, "sandbox", d->str);
	write_report(&c);
	if (!o->json)
		printf("QEMU %s pid %d%s: guest %s\n  ram: %s (%s)\n  exec: %s (%s)\n",
		       qmp_version(c.q), c.pid, c.other_root ? " (chroot)" : "",
		       json_object_get_string_member(c.report, "guest_status"),
		       json_object_get_string_member(c.report, "ram"),
		       json_object_get_boolean_member(c.report, "ram_shared") ? "ready" : "NOT shared",
		       d->str, json_object_get_boolean_member(c.report, "exec_permitted") ?
		       "permitted" : "REFUSED");
	ctx_free(&c);
	return 0;
}

/* --- demo ------------------------------------------------------------------- */

static char *scripts_dir(void)
{
	const char *e = g_getenv("CPRX_QEMU_SCRIPTS");

	return g_strdup(e ? e : CPRX_QEMU_SCRIPTS);
}

/* Last "tick N" in the console log, -1 if none; checks the ticks so far
 * are consecutive and counts "ram ok" lines after tick `after`. */
static int read_ticks(const char *log, int after, int *ram_ok, int *ram_bad, gboolean *gap)
{
	g_autofree char *s = NULL;
	g_auto(GStrv) lines = NULL;
	int last = -1;

	*ram_ok = *ram_bad = 0;
	*gap = FALSE;
	if (!g_file_get_contents(log, &s, NULL, NULL))
		return -1;
	lines = g_strsplit(s, "\n", -1);
	for (guint i = 0; lines[i]; i++) {
		int n;

		if (sscanf(lines[i], "tick %d", &n) == 1) {
			*gap |= last >= 0 && n != last + 1;
			last = n;
		} else if (sscanf(lines[i], "ram ok %d", &n) == 1 && n > after) {
			(*ram_ok)++;
		} else if (g_str_has_prefix(lines[i], "ram BAD")) {
			(*ram_bad)++;
		}
	}
	return last;
}

static gboolean wait_tick(const char *log, int target, int timeout_s, int after,
			  int *ram_ok, int *ram_bad, gboolean *gap)
{
	for (int i = 0; i < timeout_s * 10; i++) {
		if (read_ticks(log, after, ram_ok, ram_bad, gap) >= target && *ram_ok > 0)
			return TRUE;
		g_usleep(100000);
	}
	return FALSE;
}

static int demo_guest(Opts *o, const char *dir)
{
	g_autofree char *sd = scripts_dir();
	g_autofree char *guest = g_build_filename(sd, "guest.sh", NULL);
	g_autofree char *log = g_build_filename(dir, "serial.log", NULL);
	const char *argv[] = { guest, "start", dir, NULL };
	g_autoptr(GError) e = NULL;
	int st, ok, bad, before, ret = 0, updates = 3;
	gboolean gap;

	printf("demo: booting Debian's kernel with a busybox initramfs under QEMU (TCG) in %s\n", dir);
	if (!g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, NULL, NULL, &st, &e) ||
	    !g_spawn_check_wait_status(st, NULL)) {
		say("cannot start the demo guest (%s)", e ? e->message : "guest.sh failed");
		return EXIT_USAGE;
	}
	if (!wait_tick(log, 12, 180, 0, &ok, &bad, &gap)) {
		say("the guest did not print its ticks (see %s)", log);
		return EXIT_USAGE;
	}
	o->socket = g_build_filename(dir, "qmp.sock", NULL);
	for (int u = 1; u <= updates && !ret; u++) {
		printf("demo: update %d of %d\n", u, updates);
		g_clear_pointer(&o->state, g_free);
		g_clear_pointer(&o->new_qmp, g_free);
		ret = do_update(o);
		before = read_ticks(log, 0, &ok, &bad, &gap);
		if (!ret && !wait_tick(log, before + 12, 120, before, &ok, &bad, &gap)) {
			say("the guest did not continue after the update");
			ret = EXIT_FAILED;
		}
		printf("demo: guest ticks %d -> %d after the update, %s, RAM pattern %s\n", before,
		       read_ticks(log, before, &ok, &bad, &gap), gap ? "GAP in the ticks" : "no gap",
		       bad ? "CORRUPTED" : ok ? "intact" : "not re-checked");
		if (gap || bad)
			ret = EXIT_FAILED;
	}
	return ret;
}

static int do_demo(Opts *o, gboolean keep)
{
	g_autofree char *dir = g_dir_make_tmp("cprx-demo-XXXXXX", NULL);
	g_autofree char *pidf = NULL, *pids = NULL;
	int ret;

	if (!dir)
		return EXIT_USAGE;
	ret = demo_guest(o, dir);
	pidf = g_build_filename(dir, "pid", NULL);
	if (g_file_get_contents(pidf, &pids, NULL, NULL) && atoi(pids) > 0)
		kill(atoi(pids), SIGTERM);
	if (!keep) {
		g_usleep(300000);
		rm_dir(dir);
	}
	printf("demo: %s\n", ret ? "FAILED" : "ok");
	return ret;
}

/* --- command line ------------------------------------------------------------- */

static void opts_clear(Opts *o)
{
	g_free(o->socket);
	g_free(o->new_qmp);
	g_free(o->new_binary);
	g_free(o->state);
	g_free(o->json_out);
	g_strfreev(o->add_args);
	g_strfreev(o->argv);
}

static const char *usage_text =
	"COMMAND: status | update | restart | demo\n\n"
	"  status  what the running QEMU is and whether it can be updated\n"
	"  update  preflight, then cpr-exec into the new binary/command line\n"
	"  restart the baseline: migrate to a file, quit, start QEMU again with\n"
	"          -incoming (RAM copied; a new PID), report the pause the same way\n"
	"  demo    boot a small Linux guest (qemu-integration/guest.sh) and update it 3 times\n\n"
	"update keeps QEMU's command line (read from /proc/PID/cmdline), with\n"
	"-incoming file:STATE, unless a full new argv follows --. Exit status: 0 ok,\n"
	"1 usage or connection error, 2 refused by the preflight (nothing stopped),\n"
	"3 failed with the guest still running, 4 VM lost.";

int main(int argc, char **argv)
{
	Opts o = { .timeout = 120 };
	gboolean keep = FALSE;
	GOptionEntry entries[] = {
		{ "socket", 's', 0, G_OPTION_ARG_FILENAME, &o.socket, "QMP socket of the running QEMU", "PATH" },
		{ "new-binary", 'b', 0, G_OPTION_ARG_FILENAME, &o.new_binary, "new QEMU binary (path in QEMU's root; default: the running one)", "PATH" },
		{ "new-qmp", 0, 0, G_OPTION_ARG_FILENAME, &o.new_qmp, "QMP socket the new QEMU serves (default: --socket)", "PATH" },
		{ "state", 0, 0, G_OPTION_ARG_FILENAME, &o.state, "migration file (default /tmp/cprx-qmp-PID.state)", "PATH" },
		{ "add-arg", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &o.add_args, "append an argument to the new command line", "ARG" },
		{ "no-trial", 0, 0, G_OPTION_ARG_NONE, &o.no_trial, "skip the trial instance of the new command line", NULL },
		{ "preflight-only", 0, 0, G_OPTION_ARG_NONE, &o.preflight_only, "run the preflight and stop", NULL },
		{ "pin-machine", 0, 0, G_OPTION_ARG_NONE, &o.pin_machine, "replace -machine ALIAS (pc, q35) by the running machine type (for another QEMU version)", NULL },
		{ "json", 'j', 0, G_OPTION_ARG_NONE, &o.json, "print the report as JSON instead of a summary", NULL },
		{ "json-out", 0, 0, G_OPTION_ARG_FILENAME, &o.json_out, "also write the JSON report to FILE", "FILE" },
		{ "timeout", 't', 0, G_OPTION_ARG_INT, &o.timeout, "seconds to wait for the update (120)", "SEC" },
		{ "keep", 0, 0, G_OPTION_ARG_NONE, &keep, "demo: keep the guest's directory", NULL },
		{ G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &o.argv, NULL, NULL },
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("COMMAND [-- NEW QEMU ARGV...]");
	g_autoptr(GError) e = NULL;
	g_autofree char *cmd = NULL;
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
	if (!strcmp(cmd, "demo")) {
		ret = do_demo(&o, keep);
	} else if (strcmp(cmd, "status") && strcmp(cmd, "update") && strcmp(cmd, "restart")) {
		say("say which: status, update, restart or demo (see --help)");
		ret = EXIT_USAGE;
	} else if (!o.socket) {
		say("--socket is needed");
		ret = EXIT_USAGE;
	} else {
		ret = !strcmp(cmd, "status") ? do_status(&o) :
		      !strcmp(cmd, "restart") ? do_restart(&o) : do_update(&o);
	}
	opts_clear(&o);
	return ret;
}
