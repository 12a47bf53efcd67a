// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * QEMU's credentials, and our children taking them.  Root's cprx-qmp
 * starts programs on QEMU's behalf: the new binary's -version, the trial
 * instance, a restarted or rescued QEMU.  What they run is named by QEMU's
 * command line and environment, which QEMU may rewrite (its argv and
 * environ are its own memory), or by a binary in a root QEMU's user may
 * own: each runs with QEMU's user, group and groups, its capability
 * bounding set, its resource limits and environment, and with no new
 * privileges when QEMU had none, never with ours.
 */
#include "cprx-qmp.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* The numbers after @key in /proc/PID/status, appended to @ids (of
 * 32-bit ids); how many. */
static guint status_ids(const char *st, const char *key, GArray *ids)
{
	const char *p = strstr(st, key);
	guint n = 0;
	char *end;

	for (p = p ? p + strlen(key) : NULL; p; p = end, n++) {
		guint32 v = strtoul(p, &end, 10);

		if (end == p)
			break;
		g_array_append_val(ids, v);
	}
	return n;
}

/* One value of /proc/PID/limits. */
static gboolean limit_value(const char *w, rlim_t *v)
{
	char *end;

	if (!strcmp(w, "unlimited")) {
		*v = RLIM_INFINITY;
		return TRUE;
	}
	*v = g_ascii_strtoull(w, &end, 10);
	return end != w && !*end;
}

/* Its resource limits, from /proc/PID/limits (one line a limit, in the
 * kernel's order, after a header; prlimit would need CAP_SYS_RESOURCE): a
 * QEMU held to fewer files, less memory or fewer processes than root is
 * held to them in what we start for it too. */
static gboolean read_limits(pid_t pid, struct qemu_creds *cr, GString *d)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/limits", pid), *buf = NULL;
	g_auto(GStrv) lines = NULL;
	int r = 0;

	if (g_file_get_contents(p, &buf, NULL, NULL))
		lines = g_strsplit(buf, "\n", -1);
	for (; lines && r < RLIM_NLIMITS && lines[r] && lines[r + 1]; r++) {
		char soft[32], hard[32];

		/* "%-25s %-20s %-20s %-10s": the name may have spaces */
		if (strlen(lines[r + 1]) < 26 ||
		    sscanf(lines[r + 1] + 26, "%31s %31s", soft, hard) != 2 ||
		    !limit_value(soft, &cr->lim[r].rlim_cur) ||
		    !limit_value(hard, &cr->lim[r].rlim_max))
			break;
	}
	if (r < RLIM_NLIMITS) {
		g_string_printf(d, "cannot read QEMU's resource limits in %s", p);
		return FALSE;
	}
	return TRUE;
}

/* Its environment, without what told it it was the target of an update:
 * what runs for it (a trial, a rescue) is not one.  cpr-exec's execvp
 * passes the rest on. */
static gboolean read_env(pid_t pid, struct qemu_creds *cr, GString *d)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/environ", pid), *buf = NULL;
	gsize len = 0;

	if (!g_file_get_contents(p, &buf, &len, NULL)) {
		g_string_printf(d, "cannot read QEMU's environment in %s", p);
		return FALSE;
	}
	if (cr->env)
		g_ptr_array_unref(cr->env);
	cr->env = g_ptr_array_new_with_free_func(g_free);
	for (gsize off = 0; off < len; off += strlen(buf + off) + 1)
		if (!g_str_has_prefix(buf + off, "CPRX_INCOMING=") &&
		    !g_str_has_prefix(buf + off, "QEMU_CPR_EXEC_STATE="))
			g_ptr_array_add(cr->env, g_strdup(buf + off));
	g_ptr_array_add(cr->env, NULL);
	return TRUE;
}

gboolean read_creds(pid_t pid, struct qemu_creds *cr, GString *d)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/status", pid), *st = NULL;
	g_autoptr(GArray) uid = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) gid = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) nnp = g_array_new(FALSE, FALSE, sizeof(guint32));
	const char *bnd;

	if (!g_file_get_contents(p, &st, NULL, NULL) || status_ids(st, "\nUid:", uid) != 4 ||
	    status_ids(st, "\nGid:", gid) != 4) {
		g_string_printf(d, "cannot read QEMU's user and group in %s", p);
		return FALSE;
	}
	for (int i = 0; i < 3; i++) {
		cr->uid[i] = g_array_index(uid, guint32, i);
		cr->gid[i] = g_array_index(gid, guint32, i);
	}
	if (!cr->groups)
		cr->groups = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_array_set_size(cr->groups, 0);
	status_ids(st, "\nGroups:", cr->groups);
	cr->no_new_privs = status_ids(st, "\nNoNewPrivs:", nnp) == 1 &&
			   g_array_index(nnp, guint32, 0);
	bnd = strstr(st, "\nCapBnd:");
	if (!bnd) {
		g_string_printf(d, "cannot read QEMU's capability bounding set in %s", p);
		return FALSE;
	}
	cr->cap_bnd = g_ascii_strtoull(bnd + strlen("\nCapBnd:"), NULL, 16);
	if (!read_limits(pid, cr, d) || !read_env(pid, cr, d))
		return FALSE;
	cr->known = TRUE;
	return TRUE;
}

/*
 * QEMU's bounding set, ours cut to it: what a root QEMU's own exec would
 * get back (its permitted set is the bounding set then), and no file
 * capability beyond it for any other.  Dropping needs CAP_SETPCAP, so
 * before the ids change; a capability this kernel lacks is EINVAL.
 */
static gboolean bound_caps(guint64 bnd)
{
	for (int cap = 0; cap < 64; cap++)
		if (!(bnd >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) &&
		    errno != EINVAL)
			return FALSE;
	return TRUE;
}

/* Between fork and exec (async-signal-safe): last, since entering QEMU's
 * root needs our privileges, not QEMU's.  Limits first: raising one back
 * to QEMU's needs ours. */
gboolean become_qemu(const struct qemu_creds *cr)
{
	if (!cr->known)
		return FALSE;
	for (int r = 0; r < RLIM_NLIMITS; r++)
		if (setrlimit(r, &cr->lim[r]) && errno != EPERM)
			return FALSE;
	if (!bound_caps(cr->cap_bnd))
		return FALSE;
	if (!geteuid() && (setgroups(cr->groups->len, (gid_t *)cr->groups->data) ||
			   setresgid(cr->gid[0], cr->gid[1], cr->gid[2]) ||
			   setresuid(cr->uid[0], cr->uid[1], cr->uid[2])))
		return FALSE;
	return !cr->no_new_privs || !prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

void creds_clear(struct qemu_creds *cr)
{
	if (cr->groups)
		g_array_unref(cr->groups);
	if (cr->env)
		g_ptr_array_unref(cr->env);
	cr->groups = NULL;
	cr->env = NULL;
	cr->known = FALSE;
}
