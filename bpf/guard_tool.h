/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cprx-guard's parts: the policy (guard_policy.c), the trace (guard_trace.c). */
#ifndef CPRX_GUARD_TOOL_H
#define CPRX_GUARD_TOOL_H

#include <signal.h>
#include <glib.h>
#include <linux/types.h>
#include "cprx_guard.h"
#include "guard_reader.h"

#define CG_DEFAULT_PIN	"/sys/fs/bpf/cprx-guard"

/* A binary named by the policy, resolved to its inode at load. */
struct cg_rule {
	char *path;		/* canonical */
	guint32 major, minor;
	guint64 ino;
};

struct cg_policy {
	char *source;		/* the file, or "command line" */
	gboolean trace;		/* mode trace: report, never refuse */
	gboolean armed_only;
	GArray *uids;		/* guint32 */
	GPtrArray *cgroups;	/* char *: cgroup v2 directories */
	GArray *exes;		/* struct cg_rule: guard processes running these */
	GArray *allow;		/* struct cg_rule: what guarded processes may exec */
};

#define CG_ERROR (cg_error_quark())
GQuark cg_error_quark(void);

struct cg_policy *cg_policy_new(void);
void cg_policy_free(struct cg_policy *p);
/* One "key value" item, from a file line or an option. */
gboolean cg_policy_add(struct cg_policy *p, const char *key, const char *val,
		       GError **err);
gboolean cg_policy_load_file(struct cg_policy *p, const char *file,
			     GError **err);
/* Something to guard and something to allow, within the limits. */
gboolean cg_policy_check(const struct cg_policy *p, GError **err);
/* The kernel's dev_t, as the BPF side sees inode->i_sb->s_dev. */
guint32 cg_rule_kdev(const struct cg_rule *r);
/* A cgroup v2 directory's path inside the hierarchy ("/vmm"). */
char *cg_cgroup_rel(const char *dir, GError **err);

/* The world-readable status (format in shim/guard.h), written atomically. */
gboolean cg_status_write(const struct cg_policy *p, const char *file,
			 gboolean enforcing, const char *why, long pid,
			 const char *pinned, GError **err);

struct cg_trace_opts {
	gboolean json;
	int count;		/* stop after this many timelines (0: never) */
	double timeout;		/* seconds (0: none) */
	double idle;		/* print an unfinished timeline after this */
	gboolean backlog;	/* also what happened before the trace began */
	const struct cprx_guard_status *st;	/* rule names; may be NULL */
};

/* Reads the ring buffer @map_fd, prints timelines until *stop or a limit. */
int cg_trace_run(int map_fd, const struct cg_trace_opts *o,
		 volatile sig_atomic_t *stop);

#endif /* CPRX_GUARD_TOOL_H */
