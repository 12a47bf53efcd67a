/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-qmp's private header: the options, one run against a running QEMU,
 * and what each file of the tool offers the others.
 *
 * QEMU may run in another root (a chroot, qemu-integration/qemu-run.sh):
 * paths in its command line are resolved through /proc/PID/root, and the
 * preflight runs the new binary in QEMU's mount namespace and root, where
 * cpr-exec will run it.
 */
#ifndef CPRX_QMP_H
#define CPRX_QMP_H

#include "qmp.h"

#include <gio/gio.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Exit status, as --help lists it. */
enum { EXIT_USAGE = 1, EXIT_REFUSED = 2, EXIT_FAILED = 3, EXIT_LOST = 4, EXIT_RESCUED = 5 };

/* The command line. */
struct qmp_opts {
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
	gboolean keep;		/* demo: keep the guest's directory */
	gboolean no_rescue;	/* update without keeping the guest's RAM and state */
	int timeout;		/* seconds */
	gboolean all;		/* update --all: every QEMU of the host */
	gboolean replaced_only;	/* --all: only those whose binary was replaced */
	char *under;		/* --all: only QMP sockets under this directory */
	int jobs;		/* --all: updates at a time */
	int pid;		/* the socket must be served by this PID (--all's) */
};

/* A RAM block of QEMU, its file kept open (keep.c). */
struct kept_block {
	char *name;
	int fd;
	guint64 used;
	gboolean backend;	/* a memory backend (-object), not a ROM or device RAM */
};

/* What cprx-qmp holds of the guest across an update (keep.c), to start the
 * previous QEMU again if the new one dies (rescue.c). */
struct kept {
	int exe, state, ns, root, cwd, stdio[3];
	GArray *blocks;		/* struct kept_block */
	GPtrArray *caps;	/* migration capabilities QEMU had on */
	GArray *fds_before;	/* our fds (int) before any was kept */
	guint unkept;		/* RAM blocks with no fd (not shared): not restored */
};

/* QEMU's credentials (creds.c), read when we connect: what whatever we
 * start on its behalf runs with. */
struct qemu_creds {
	gboolean known;
	uid_t uid[3];		/* real, effective, saved */
	gid_t gid[3];
	GArray *groups;		/* supplementary groups (32-bit ids) */
	gboolean no_new_privs;
	guint64 cap_bnd;	/* its capability bounding set */
	struct rlimit lim[RLIM_NLIMITS];	/* its resource limits */
	GPtrArray *env;		/* its environment, NULL-terminated */
};

/* One run against a running QEMU: its connection, and the report. */
struct qmp_ctx {
	struct qmp_opts *o;
	struct qmp *q;
	pid_t pid;
	int pidfd;		/* QEMU's, -1 when pidfd_open failed */
	int pidfd_errno;
	struct kept *kept;	/* NULL with --no-rescue */
	struct qemu_creds creds;	/* QEMU's, read when we connected */
	gboolean state_created;	/* the migration file is ours to remove */
	int state_dir;		/* its directory, opened while QEMU lived */
	gint64 deadline;	/* the preflight's end (--timeout; monotonic) */
	gboolean other_root;	/* QEMU's / is not ours */
	GPtrArray *old_argv;
	GPtrArray *new_argv;
	JsonObject *report;
	JsonArray *checks;
	gboolean warn;		/* set by a check that passes with a warning */
	GPtrArray *trial_devs;	/* the trial instance's devices (devices.c) */
	char *trial_devs_err;	/* why they could not be read */
	double trial_devs_ms;
};

/* qemu_root.c: QEMU's view of the file system */
gboolean same_root(pid_t pid);
int qemu_dir_open(struct qmp_ctx *c, const char *dir);
int qemu_parent_open(struct qmp_ctx *c, const char *path, char **base);
void state_unlink(struct qmp_ctx *c);
char *host_path(struct qmp_ctx *c, const char *path);
char *qemu_path(struct qmp_ctx *c, const char *path);
char *qemu_exec_path(struct qmp_ctx *c, const char *bin);
char *qemu_getenv(struct qmp_ctx *c, const char *name);
GPtrArray *read_cmdline(pid_t pid, GError **err);
/* QEMU's mount namespace, root and cwd (fds), where what we start for it runs */
struct qemu_place {
	int ns, root, cwd;
};
gboolean qemu_place_open(struct qmp_ctx *c, struct qemu_place *pl);
void qemu_place_close(struct qemu_place *pl);
GSubprocess *spawn_as_qemu(struct qmp_ctx *c, GSubprocessLauncher *l,
			   const struct qemu_place *pl, GPtrArray *argv, GError **err);
GSubprocess *spawn_in_root(struct qmp_ctx *c, GPtrArray *argv, GError **err);
char *communicate_until(GSubprocess *p, gint64 deadline, gboolean *killed);
void rm_dir(const char *dir);

/* creds.c: QEMU's credentials; become_qemu is for a child, before its exec */
gboolean read_creds(pid_t pid, struct qemu_creds *cr, GString *d);
gboolean become_qemu(const struct qemu_creds *cr);
void creds_clear(struct qemu_creds *cr);

/* report.c: messages, the preflight's lines and the JSON report */
char *printable(const char *s);
void say(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void add_check(struct qmp_ctx *c, const char *name, gboolean ok, gboolean warn, double ms,
	       const char *detail, const char *hint);
void write_report(struct qmp_ctx *c);
const char *guest_status(struct qmp_ctx *c);
int fail(struct qmp_ctx *c, int code, const char *what, const char *msg, const char *hint);

/* setup.c: connecting, the new command line */
JsonNode *str_node(const char *s);
char *machine_type(struct qmp *q);
int connect_qemu(struct qmp_ctx *c);
int prepare_update(struct qmp_ctx *c);
struct qmp *follow(struct qmp_ctx *c, gint64 deadline, int *attempts);
struct qmp *follow_at(struct qmp_ctx *c, const char *sock, gint64 deadline, int *attempts);
gboolean qemu_alive(struct qmp_ctx *c);
void set_qemu_pid(struct qmp_ctx *c, pid_t pid);
void ctx_free(struct qmp_ctx *c);

/* preflight.c, guard_check.c, incoming.c, devices.c: each check returns ok, fills detail and hint */
gboolean check_ram(struct qmp_ctx *c, GString *d, const char **hint);
gboolean check_sandbox(struct qmp_ctx *c, GString *d, const char **hint);
gboolean check_guard(struct qmp_ctx *c, GString *d, const char **hint);
gboolean check_incoming(struct qmp_ctx *c, GString *d, const char **hint);
gboolean check_devices(struct qmp_ctx *c, GString *d, const char **hint);
/* devices.c: the realized devices of a QEMU, from its QOM tree */
GPtrArray *qom_devices(struct qmp *q, GError **err);
gboolean preflight(struct qmp_ctx *c);
const char *state_foreign(struct qmp_ctx *c, const struct stat *st);

/* keep.c: the references kept before the stop (the "rescue" check) */
gboolean check_rescue(struct qmp_ctx *c, GString *d, const char **hint);
void keep_drop(struct qmp_ctx *c);
gboolean parse_ramblock(const char *line, char **name, guint64 *used, guint64 *hva);
/* rescue.c: the previous QEMU started again when the new one died */
gboolean rescue_argv_ok(struct qmp_ctx *c, GString *d);
int rescue(struct qmp_ctx *c, const char *what);
char *trial_backend(const char *opt);

/* rollback.c: the reason QEMU at @pid was rolled back to (libcprx's
 * rollback after the new QEMU failed), or NULL when it was not */
char *rollback_reason(pid_t pid);

/* discover.c: a running QEMU found by update --all, and its outcome */
struct vm {
	pid_t pid;
	char *exe;		/* its argv[0] */
	gboolean replaced;	/* the file at that path is not its image */
	char *qmp;		/* its QMP server socket (QEMU's path), or NULL */
	char *host_qmp;		/* the same, reachable from here */
	char *skip;		/* why it is not updated, or NULL */
	int status;		/* the update's exit status */
	char *result;		/* updated, refused, rolled back, ... */
	char *detail;		/* why, when not updated */
	JsonObject *report;	/* the update's JSON report */
};
GPtrArray *discover_qemus(const char *under);
void vm_free(struct vm *v);

/* The commands (main.c's verb table). */
int do_status(struct qmp_opts *o);
int do_update(struct qmp_opts *o);
int do_update_all(struct qmp_opts *o);
int do_restart(struct qmp_opts *o);
int do_demo(struct qmp_opts *o);

#endif
