/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcprx's view of cprx-guard (bpf/), internal: the reader of its status
 * file, shared with cprx-guard and cprx-qmp.
 *
 * The guard keeps a world-readable status file, by default
 * /run/cprx-guard/status ($CPRX_GUARD_STATUS overrides it), so that an
 * unprivileged VMM can learn, before its guest stops, whether an exec will
 * be refused and, after an EPERM, which rule refused it.  One item per line,
 * the path always last (it may hold spaces):
 *
 *   cprx-guard 1
 *   state enforcing|trace-only
 *   why <sentence>                     (trace-only: why nothing is enforced)
 *   mode enforce|trace
 *   armed-only 0|1
 *   pid <pid>                          (0: pinned in bpffs, outlives the tool)
 *   pid-start <ticks>                  (the loader's start time, field 22 of
 *                                       /proc/PID/stat: a reused pid is not it)
 *   boot-id <uuid>                     (/proc/sys/kernel/random/boot_id at
 *                                       load: a status from another boot,
 *                                       e.g. before a kexec, is stale)
 *   pinned <bpffs dir>
 *   policy <file or "command line">
 *   guard-uid <uid>
 *   guard-cgroup <path in cgroup2> <mount path>
 *                                      (whichever cgroup is at that path:
 *                                       the guard follows it, so one removed
 *                                       and created again is guarded)
 *   guard-cgroup-id <cgroup id> <path in cgroup2>
 *                                      (older guards only: they held the
 *                                       directory there at load, and a
 *                                       cgroup created at that path again
 *                                       was not guarded)
 *   guard-exe fp:<hex> <path>
 *   allow <rule> fp:<hex> <path>
 *   prog <id> <type> <name>            (each attached program of the guard:
 *                                       its id, enum bpf_prog_type and name
 *                                       as the kernel gives them)
 *   map <id> <type> <name>             (the maps cprx-guard reads: stats,
 *                                       events; enum bpf_map_type)
 *
 * The ids let cprx-guard find a foreground guard's programs and maps by
 * identity, not by name (a pinned one is found through its pins).  Ids are
 * reused once they wrap around: a reader checks that the id still names an
 * object of that type and name.  Older readers skip these lines.
 *
 * A binary is named by a fingerprint (cprx_guard_fingerprint: a hash of
 * its device, inode and ctime at load), not by its inode number: the
 * number is what an attacker needs to take a freed inode over.  Older
 * status files give "<major>:<minor>:<ino>"; both are read.
 *
 * Nothing here needs glib, privileges or BPF: it reads that file, /proc/self
 * and stat(2).  cprx-guard itself uses the same parser.
 */
#ifndef CPRX_GUARD_READER_H
#define CPRX_GUARD_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define CPRX_GUARD_STATUS_ENV	"CPRX_GUARD_STATUS"
#define CPRX_GUARD_STATUS_PATH	"/run/cprx-guard/status"
/*
 * The parser's limits; cprx-guard's (bpf/cprx_guard.h: CG_MAX_*) are held
 * to them at compile time (bpf/guard_status.c), so a status the loader
 * writes always parses.
 */
#define CPRX_GUARD_MAX_RULES	256	/* allow and guard-exe entries, each */
#define CPRX_GUARD_MAX_SEL	16	/* guard-uid and guard-cgroup, each */
#define CPRX_GUARD_MAX_PROGS	24	/* prog lines: the loader's links too */
#define CPRX_GUARD_MAX_MAPS	4	/* map lines */
#define CPRX_GUARD_OBJ_NAME	16	/* BPF_OBJ_NAME_LEN, its NUL included */
#define CPRX_GUARD_PATH_MAX	4096

enum cprx_guard_result {
	CPRX_GUARD_NONE = 0,	/* no guard policy is active */
	CPRX_GUARD_UNGUARDED,	/* a policy is active; it does not cover us */
	CPRX_GUARD_ALLOW,	/* guarded, the exec is allowed */
	CPRX_GUARD_DENY,	/* guarded, the exec will get EPERM */
	CPRX_GUARD_WOULD_DENY,	/* guarded, would be refused, not enforced */
};

struct cprx_guard_file {
	uint32_t major, minor;
	uint64_t ino;		/* old format only; 0 with a fingerprint */
	uint64_t fp;		/* cprx_guard_fingerprint; 0 in the old format */
	unsigned int rule;	/* allow: 1-based rule number */
	char *path;
};

struct cprx_guard_cgroup {
	char *rel;		/* as in /proc/self/cgroup ("/vmm") */
	char *mnt;		/* on the file system ("/sys/fs/cgroup/vmm") */
	uint64_t id;		/* an older guard's: the cgroup id it holds; 0: none */
};

/* One of the guard's BPF programs or maps, as the kernel named it. */
struct cprx_guard_obj {
	uint32_t id;		/* cyclic: check type and name before use */
	uint32_t type;		/* enum bpf_prog_type or enum bpf_map_type */
	char name[CPRX_GUARD_OBJ_NAME];
};

/* The guard's objects: the prog and map lines. */
struct cprx_guard_ids {
	unsigned int nr_progs, nr_maps;
	struct cprx_guard_obj progs[CPRX_GUARD_MAX_PROGS];
	struct cprx_guard_obj maps[CPRX_GUARD_MAX_MAPS];
};

struct cprx_guard_status {
	bool enforcing;		/* BPF LSM attached and mode enforce */
	bool armed_only;
	bool mode_trace;	/* the policy asked for trace only */
	long pid;		/* loader that holds the programs; 0 if pinned */
	unsigned long long pid_start;	/* its start time; 0: not given */
	char boot_id[40];	/* the boot it was loaded in; "": not given */
	char why[512];		/* trace-only: why */
	char pinned[256];
	char policy[256];
	unsigned int nr_uids, nr_cgroups, nr_exes, nr_allow;
	uint32_t uids[CPRX_GUARD_MAX_SEL];
	struct cprx_guard_cgroup cgroups[CPRX_GUARD_MAX_SEL];
	struct cprx_guard_file exes[CPRX_GUARD_MAX_RULES];
	struct cprx_guard_file allow[CPRX_GUARD_MAX_RULES];
	struct cprx_guard_ids ids;	/* none in older status files */
};

/*
 * The start time of process @pid (clock ticks since boot, field 22 of
 * /proc/PID/stat): with the pid, the identity of a loader.  0 on success;
 * -errno (-ESRCH: no such process).
 */
int cprx_guard_proc_start(long pid, unsigned long long *start);
/* This boot's id (/proc/sys/kernel/random/boot_id) into @buf; 0 or -errno. */
int cprx_guard_boot_id(char *buf, size_t len);

/*
 * A file's fingerprint in the status file: the first 64 bits of SHA-256
 * over its device, inode and ctime.  It matches the file the policy
 * resolved, and no longer once that file is replaced (or its ctime
 * changes: chmod, chown, link), without publishing its inode number.
 */
uint64_t cprx_guard_fingerprint(const struct stat *sb);

/* The status file in use: $CPRX_GUARD_STATUS or the default. */
const char *cprx_guard_status_path(void);
/*
 * Reads and checks a status file.  0; -ENOENT when there is none (no
 * guard); -ESTALE when it is from another boot (a kexec or reboot took
 * its programs along) or its loader is gone (its pid gone, or now another
 * process: the start time differs); -EBADMSG with *err set when it
 * does not parse (line number and what).
 */
int cprx_guard_status_read(const char *file, struct cprx_guard_status *st,
			   char *err, size_t errlen);
void cprx_guard_status_free(struct cprx_guard_status *st);
/*
 * True, with @err set, when @st no longer describes a loaded guard: it was
 * written in another boot, or its foreground loader is gone (guard_stale.c).
 */
bool cprx_guard_status_stale(const struct cprx_guard_status *st, char *err,
			     size_t errlen);

/* Why this process is guarded ("cgroup /vmm"), or false. */
bool cprx_guard_covers_self(const struct cprx_guard_status *st, char *how,
			    size_t len);
/*
 * The same for another process, given its real @uid, its cgroup file
 * (/proc/PID/cgroup) and its running binary (/proc/PID/exe); the files
 * are read only when the policy has cgroup or binary selectors.
 */
bool cprx_guard_covers(const struct cprx_guard_status *st, uid_t uid,
		       const char *cgroup_file, const char *exe_file,
		       char *how, size_t len);
/* The allow rule naming the file @sb (its device and inode), or NULL. */
const struct cprx_guard_file *
cprx_guard_find_rule(const struct cprx_guard_status *st, const struct stat *sb);
/* A rule naming @path (or its realpath) whatever its inode, or NULL. */
const struct cprx_guard_file *
cprx_guard_find_replaced(const struct cprx_guard_status *st, const char *path);
/* "cprx-guard (BPF LSM, enforcing)", or which trace-only it is. */
const char *cprx_guard_name(const struct cprx_guard_status *st);

/*
 * The guard's verdict on an exec of @path by this process.  @armed: the
 * exec will happen with an armed cprx.ko session (kmod backend); armed-only
 * binds processes that run an allow-listed binary (VMMs), not launchers.
 * @why gets
 * one sentence naming the guard, the binary and the rule; @hint the fix
 * (either may be NULL).
 */
enum cprx_guard_result cprx_guard_verdict(const char *path, bool armed,
					  char *why, size_t len,
					  char *hint, size_t hlen);

/*
 * After execve failed with EPERM: true, with a message naming the guard,
 * the binary and the rule, when an enforcing guard policy refuses @path for
 * this process; false (buffers untouched) when the guard does not explain it.
 */
bool cprx_guard_explain(const char *path, bool armed, char *msg, size_t len,
			char *hint, size_t hlen);

#endif /* CPRX_GUARD_READER_H */
