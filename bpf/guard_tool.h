/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What cprx-guard's userspace files share: guard_main.c (the verb table),
 * guard_options.c (the command line), cprx_guard.c (the loader: the `load`
 * verb), guard_pin.c (bpffs pins, finding a loaded guard by identity,
 * `detach`), guard_status.c (the status file, `status`, `check`),
 * guard_policy.c (the policy, `hash`), guard_trace.c (timelines, `trace`)
 * and guard_swap.c (a reload cut short, the load lock).
 */
#ifndef CPRX_GUARD_TOOL_H
#define CPRX_GUARD_TOOL_H

#include <signal.h>
#include <time.h>
#include <glib.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include "cprx_guard.h"
#include "guard_reader.h"

#define CG_DEFAULT_PIN	"/sys/fs/bpf/cprx-guard"

struct bpf_link;
struct bpf_object;

/* guard_main.c: set by SIGINT, SIGTERM and SIGHUP once caught. */
extern volatile sig_atomic_t cg_stop;
void cg_catch_signals(void);

/* guard_options.c: every verb's options, parsed into one place. */
struct cg_options {
	char *policy, *pin_dir, *status_file;
	char **allow, **cgroups, **exes, **uids;
	gboolean armed_only, trace_only, pin, trace, require_enforce, bench;
	gboolean fallback_trace, replace;
	gboolean json, backlog, quiet, armed, verbose;
	int count;
	double timeout, idle;
};

extern struct cg_options cg_opt;
extern const GOptionEntry cg_common_entries[], cg_load_entries[],
	cg_status_entries[], cg_trace_entries[], cg_detach_entries[],
	cg_check_entries[];

const char *cg_status_file(void);
const char *cg_pin_dir(void);

/* The verbs; @args are the words after the verb, options removed. */
int cg_cmd_load(char **args);
int cg_cmd_status(char **args);
int cg_cmd_trace(char **args);
int cg_cmd_detach(char **args);
int cg_cmd_check(char **args);
int cg_cmd_hash(char **args);

/* cprx_guard.c: libbpf's messages, quiet where a failure is expected. */
void cg_libbpf_log(void);

/*
 * A binary named by the policy, resolved at load.  @fd stays open until the
 * loader has read the kernel's key of the file (struct cg_file_key); a
 * digest is checked through it too, so what is hashed is what is keyed.
 */
struct cg_rule {
	char *path;		/* canonical */
	guint32 major, minor;
	guint64 ino;
	int fd;			/* O_RDONLY on the file; -1 once closed */
	guint64 fp;		/* cprx_guard_fingerprint: the status file's name */
	struct timespec ctime;	/* when checked (and hashed): see cg_rule_unchanged */
	gboolean has_sha256;	/* the rule gave sha256=, and the content matched */
	guint8 sha256[32];
};

struct cg_policy {
	char *source;		/* the file, or "command line" */
	gboolean trace;		/* mode trace: report, never refuse */
	gboolean armed_only;
	gboolean deny_userns;	/* guarded tasks may not create user namespaces */
	GArray *uids;		/* guint32 */
	GPtrArray *cgroups;	/* char *: cgroup v2 directories (may not exist) */
	GPtrArray *cgroup_rels;	/* char *: the same in the hierarchy ("/vmm") */
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
/*
 * After the kernel's key of @r's file was read: its change time is still
 * the one it had when it was checked and hashed, so the key (which holds
 * the change time) names the content that was checked.
 */
gboolean cg_rule_unchanged(const struct cg_rule *r, GError **err);
/* Closes the rules' files, once the loader has their keys. */
void cg_policy_close_files(struct cg_policy *p);
/*
 * A cgroup v2 directory's path inside the hierarchy ("/vmm"), and its
 * canonical path on the mount (*@real, if not NULL).  It need not exist
 * (the guard follows the path); the part of it that exists must be on the
 * cgroup2 mount.
 */
char *cg_cgroup_rel(const char *dir, char **real, GError **err);

/* The cgroup2 file system's mount point (the hierarchy's root there). */
gboolean cg_cgroup2_mount(char *mnt, size_t len, GError **err);

/*
 * guard_canary.c: the load-time proof of enforcement.  prepare creates the
 * canary's cgroup *@dir (CG_CANARY_NAME under the cgroup2 root: level 1)
 * and guards it through its cgroup slot, whose id is *@slot_id; run execs
 * a non-allowed binary there and is TRUE only if this guard refused it
 * (EPERM and its deny counter moved); remove undoes prepare.
 */
#define CG_CANARY_LEVEL	1
gboolean cg_canary_prepare(__u64 *slot_id, char **dir, GError **err);
gboolean cg_canary_run(const char *dir, int stats_fd, GError **err);
void cg_canary_remove(__u64 *slot_id, const char *dir);

/* guard_options.c: the policy from --policy and the other load options. */
struct cg_policy *cg_policy_from_options(GError **err);

/* guard_pin.c: pin a loaded guard's links and maps in bpffs @dir. */
gboolean cg_pin(struct bpf_object *obj, struct bpf_link *const *links,
		const char *const *names, int nr_links, const char *dir,
		GError **err);
void cg_unpin(const char *dir);

/*
 * guard_swap.c: a reload pins the new guard beside the old one, at the pin
 * dir with these suffixes (bpffs refuses dots in names), and swaps them.
 */
#define CG_PIN_NEW	"-new"
#define CG_PIN_OLD	"-old"
/*
 * A lock on load.lock beside the status file (root's, 0600), held by a
 * pinned load and by detach for their whole run: an fd to close when
 * done, or -1 (@wait FALSE: errno EWOULDBLOCK while another holds it).
 */
int cg_load_lock(gboolean wait);
/* cg_load_lock(TRUE), then cg_pins_recover() of the pin dir: -1 if either fails. */
int cg_load_lock_recovered(void);
/*
 * An fd on the lock file @name beside the status file, this user's own and
 * mode 0600 (another user's could be held locked to stall us), not locked
 * yet; -1, said, when not.  *@path: its path, to free.
 */
int cg_open_lock(const char *name, char **path);
/*
 * A reload killed mid-swap (pins left at @dir's -old or -new): keeps the
 * guard the status file names at @dir and unpins the other, saying so on
 * stderr.  0: nothing to do; 1: resolved; -1: not.  Hold cg_load_lock().
 */
int cg_pins_recover(const char *dir);
/* Are pins of a reload left at @dir's -old or -new? */
gboolean cg_pins_left(const char *dir);

/* One of the guard's programs in the kernel. */
struct cg_loaded_prog {
	__u32 id, type;
	char name[BPF_OBJ_NAME_LEN];
	__u64 run_cnt, run_time_ns;
};

/*
 * The programs and maps of the guard @st describes, by identity, never by
 * name: a pinned guard's through its pins, a foreground one's by the ids
 * its status records, each checked to name still an object of the type and
 * name recorded (ids are reused once they wrap).  Need CAP_SYS_ADMIN.
 */
int cg_find_progs(const struct cprx_guard_status *st,
		  struct cg_loaded_prog *out, int max);
/* The map @name of that guard: an fd, or -1. */
int cg_find_map(const struct cprx_guard_status *st, const char *name);
/* The programs of the links pinned in @dir. */
int cg_pinned_progs(const char *dir, struct cg_loaded_prog *out, int max);
/* The program of a link; a map's id, type and name. */
gboolean cg_link_prog(int link_fd, struct cg_loaded_prog *lp);
gboolean cg_map_obj(int map_fd, struct cprx_guard_obj *o);
/*
 * Loaded programs other than @known named and typed like one of the
 * guard's (cg_object_progs): what may be an orphaned guard.  A diagnostic:
 * anyone may load a program under these names.
 */
int cg_lookalikes(const struct cg_loaded_prog *known, int nknown,
		  struct cg_loaded_prog *out, int max);

/* cprx_guard.c: the guard object's programs, type and name (as loaded). */
int cg_object_progs(struct cg_loaded_prog *out, int max);

/*
 * guard_status.c: the world-readable status (format in
 * common/guard_reader.h), written atomically.
 */
gboolean cg_status_write(const struct cg_policy *p, const char *file,
			 gboolean enforcing, const char *why, long pid,
			 const char *pinned, const struct cprx_guard_ids *ids,
			 GError **err);

struct cg_trace_opts {
	gboolean json;
	int count;		/* stop after this many timelines (0: never) */
	double timeout;		/* seconds (0: none) */
	double idle;		/* print an unfinished timeline after this */
	gboolean backlog;	/* also what happened before the trace began */
	const struct cprx_guard_status *st;	/* rule names; may be NULL */
	int watch_fd;		/* > 0: stop when this pinned map is replaced */
	const char *watch_pin;	/* its pin */
};

/*
 * One trace reader at a time (a second one would split the events): a lock
 * on trace.lock beside the status file, root's, 0600; an fd to close when
 * done, or -1 (said).
 */
int cg_trace_lock(void);

/* Reads the ring buffer @map_fd, prints timelines until *stop or a limit. */
int cg_trace_run(int map_fd, const struct cg_trace_opts *o,
		 volatile sig_atomic_t *stop);

#endif /* CPRX_GUARD_TOOL_H */
