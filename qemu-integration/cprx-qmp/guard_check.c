// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The preflight's guard check: predicts cprx-guard's verdict (bpf/) on
 * QEMU's exec of the new binary from the status file the guard keeps
 * (read by common/guard_reader.c, as libcprx reads it), with the same
 * selectors and rules as the BPF side.
 */
#include "cprx-qmp.h"
#include "guard_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* QEMU's real uid: the first number of the "Uid:" line of /proc/PID/status. */
static gboolean qemu_uid(struct qmp_ctx *c, uid_t *uid)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/status", c->pid), *st = NULL;
	const char *u;

	if (!g_file_get_contents(p, &st, NULL, NULL) || !(u = strstr(st, "\nUid:")))
		return FALSE;
	*uid = strtoul(u + 5, NULL, 10);
	return TRUE;
}

/* Will QEMU exec with an armed cprx.ko session?  Only a QEMU built with
 * --enable-cprx (libcprx in its maps) that finds /dev/cprx, unless its
 * environment forces the cloexec backend.  @why says which, @hint the fix
 * when it will not. */
static gboolean qemu_arms(struct qmp_ctx *c, GString *why, const char **hint)
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
static gboolean guard_refuses(struct qmp_ctx *c, const struct cprx_guard_status *st,
			      GString *d, const char *bin, const struct stat *sb,
			      const char *how, const char *what)
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
static gboolean guard_verdict(struct qmp_ctx *c, const struct cprx_guard_status *st,
			      GString *d, const char **hint)
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
			what = g_strdup_printf("rule %u (allow %s) names the file that was "
					       "there when the policy was loaded, but it has been "
					       "replaced on disk (or its ctime changed) since",
					       old->rule, old->path);
			*hint = "reload the cprx-guard policy (cprx-guard load --pin --replace): "
				"its rules are resolved to inodes when it loads";
		} else {
			g_autofree char *h = g_strdup_printf("add 'allow %s' to the cprx-guard "
				"policy (or --allow %s) and reload it in place (cprx-guard "
				"load --pin --replace), or update to an allow-listed binary "
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

gboolean check_guard(struct qmp_ctx *c, GString *d, const char **hint)
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
