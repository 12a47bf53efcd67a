// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * QEMU's credentials, and our children taking them.  Root's cprx-qmp
 * starts programs on QEMU's behalf: the new binary's -version, the trial
 * instance, a restarted or rescued QEMU.  What they run is named by QEMU's
 * command line and environment, which QEMU may rewrite (its argv and
 * environ are its own memory), or by a binary in a root QEMU's user may
 * own: each runs with QEMU's user, group and groups, and with no new
 * privileges when QEMU had none, never with ours.
 */
#include "cprx-qmp.h"

#include <grp.h>
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

gboolean read_creds(pid_t pid, struct qemu_creds *cr, GString *d)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/status", pid), *st = NULL;
	g_autoptr(GArray) uid = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) gid = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) nnp = g_array_new(FALSE, FALSE, sizeof(guint32));

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
	cr->known = TRUE;
	return TRUE;
}

/* Between fork and exec (async-signal-safe): last, since entering QEMU's
 * root needs our privileges, not QEMU's. */
gboolean become_qemu(const struct qemu_creds *cr)
{
	if (!cr->known)
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
	cr->groups = NULL;
	cr->known = FALSE;
}
