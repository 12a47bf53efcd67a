/* SPDX-License-Identifier: (LGPL-2.1-or-later OR BSD-2-Clause) */
/*
 * What cprx_guard.bpf.c and cprx-guard share: the event records of the ring
 * buffer and the limits of the policy.  Included by the BPF program (after
 * vmlinux.h) and by userspace (after <linux/types.h>).
 */
#ifndef CPRX_GUARD_H
#define CPRX_GUARD_H

#define CG_MAX_UIDS	8
#define CG_MAX_CGROUPS	4	/* guard-cgroup entries of a policy */
/* the cgroup slots: the policy's, and one after them for the load-time canary */
#define CG_CGROUP_SLOTS	(CG_MAX_CGROUPS + 1)
/*
 * A guard-cgroup's path in the cgroup2 hierarchy ("/machine.slice"), NUL
 * included; at most CG_CGROUP_PATH_LEN - 2 characters, so that a longer
 * path cut to the buffer never compares equal to one.
 */
#define CG_CGROUP_PATH_LEN	256
#define CG_MAX_RULES	256	/* allow + guard-exe entries */
#define CG_PATH_LEN	128
#define CG_COMM_LEN	16

/*
 * cprx.ko's ioctl numbers (kernel/include/uapi/linux/cprx.h): _IO(0xE7,
 * nr).  Copied, as the BPF side cannot include the uAPI header;
 * cprx_guard.c asserts at compile time that the copies match it.
 */
#define CG_IOC_TYPE		0xE7
#define CG_IOC_CREATE		0xE700
#define CG_IOC_RETRIEVE		0xE701
#define CG_IOC_PRESERVE		0xE740
#define CG_IOC_UNPRESERVE	0xE741
#define CG_IOC_ARM		0xE742
#define CG_IOC_RETRIEVE_FD	0xE743
#define CG_IOC_FINISH		0xE744
#define CG_IOC_PRESERVE_FDS	0xE746
#define CG_ARM_CANCEL		1u

/*
 * cprx.ko's tracepoints (kernel/cprx_trace.h), attached as raw tracepoints:
 * the module has no BTF.  After every ioctl that succeeded: (cmd, pins,
 * armed).  When a session dies without FINISH: (owner, start, armed, left,
 * left_armed).
 */
#define CG_MOD_TRACEPOINT	"cprx_ioctl_done"
#define CG_MOD_TP_END		"cprx_session_end"

/* One record of the ring buffer; the phases of an update, in order. */
enum cg_event_type {
	CG_EV_SESSION = 1,	/* cprx.ko session created */
	CG_EV_ARM,		/* kmod: session armed; cloexec: fds made inheritable */
	CG_EV_DISARM,		/* arm cancelled or fds restored: the exec failed */
	CG_EV_CHECK,		/* exec checked against the policy */
	CG_EV_EXEC_FAIL,	/* execve returned an error (trace-only mode) */
	CG_EV_COMMIT,		/* the new image runs */
	CG_EV_RETRIEVE,		/* kmod: session retrieved; cloexec: first fd reclaimed */
	CG_EV_FINISH,		/* kmod: session finished, pins released */
	CG_EV_MAX
};

enum cg_verdict {
	CG_V_NONE = 0,
	CG_V_ALLOW,		/* guarded, allowed */
	CG_V_DENY,		/* guarded, refused with EPERM */
	CG_V_WOULD_DENY,	/* guarded, would be refused: not enforced */
	CG_V_UNGUARDED,		/* not a guarded process: not checked */
	CG_V_UNCHECKED,		/* trace-only: decided at commit, see COMMIT */
};

enum cg_reason {
	CG_R_NONE = 0,
	CG_R_LISTED,		/* the binary is on the allow-list */
	CG_R_NOT_LISTED,	/* the binary is not on the allow-list */
	CG_R_NOT_ARMED,		/* armed-only, and no armed session */
	CG_R_PROBE,		/* armed-only, a vfork probe of a session holder */
	CG_R_LAUNCH,		/* armed-only, started by a non-VMM (a launcher) */
	CG_R_USERNS,		/* a guarded task may not create a user namespace */
	CG_R_PTRACE,		/* nor ptrace or write the memory of an unguarded one */
	CG_R_SET_MM,		/* nor change its mm's exe file (PR_SET_MM) */
};

/* Event flags. */
#define CG_F_KMOD	(1u << 0)	/* through cprx.ko (else cloexec) */
#define CG_F_ENFORCED	(1u << 1)	/* the verdict was enforced */
#define CG_F_GUARDED	(1u << 2)	/* the process is guarded */
#define CG_F_ARMED	(1u << 3)	/* an armed session at the time */
#define CG_F_LONE	(1u << 4)	/* CHECK: no state, no COMMIT will follow */

struct cg_event {
	__u64 ts;		/* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 ino;		/* CHECK/COMMIT: the binary */
	__u32 dev;		/* kernel dev_t: major << 20 | minor */
	__u32 type;		/* enum cg_event_type */
	__u32 pid;		/* tgid */
	__u32 tid;
	__u32 verdict;		/* enum cg_verdict */
	__u32 reason;		/* enum cg_reason */
	__u32 rule;		/* 1-based allow rule, 0 none */
	__u32 count;		/* ARM: fds; FINISH: fds retrieved */
	__u32 flags;		/* CG_F_* */
	__s32 err;		/* EXEC_FAIL: -errno */
	char comm[CG_COMM_LEN];
	char path[CG_PATH_LEN];
};

/*
 * Key of the allow-list and guard-exe maps: one file's content, as far as
 * the kernel can tell without reading it.  An inode number alone is reused
 * (ext4 hands freed numbers out again, a tmpfs remount starts from 1, an
 * anonymous device number comes back); with the generation, the change
 * time (any write, chmod, chown or link changes it, and no process can set
 * it) and the file system type, a reused number or a rewritten file no
 * longer matches.  Computed by the BPF side alone (file_key()), also for the
 * rules: the loader reads its own open rule files through an iterator.
 */
struct cg_file_key {
	__u64 ino;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 dev;		/* kernel dev_t: major << 20 | minor */
	__u32 gen;		/* i_generation */
	__u32 magic;		/* the file system's s_magic */
};

/*
 * A guard-exe's directory entry: its directory (device, inode) and its
 * name, NUL-padded (a longer name cut, as the BPF side reads it).  A
 * package upgrade renames a new file over the path: another inode, the
 * same entry, so VMMs started from it are still guarded.
 */
#define CG_EXE_NAME_LEN	64
struct cg_exe_name {
	__u64 dir_ino;
	__u32 dir_dev;		/* kernel dev_t: major << 20 | minor */
	__u32 pad;
	char name[CG_EXE_NAME_LEN];
};

/*
 * What the load-time iterator reads of a rule's open file: its key, and
 * how many open files of its inode may write it (i_writecount, negative
 * while it is exec'd), which the loader refuses when positive: the kernel's
 * own count, where a read lease cannot tell (leases off, or a file system
 * without them).
 */
struct cg_rule_key {
	struct cg_file_key key;
	__s32 writers;
	__u32 pad;
};

/* Counters (a per-CPU array, summed by cprx-guard status). */
enum cg_stat {
	CG_ST_EXECS = 0,	/* execs seen by the check */
	CG_ST_GUARDED,		/* of them, by guarded processes */
	CG_ST_ALLOWED,
	CG_ST_DENIED,
	CG_ST_WOULD_DENY,
	CG_ST_EVENTS,
	CG_ST_DROPPED,		/* ring buffer full: no trace reader */
	CG_ST_MAX
};

#endif /* CPRX_GUARD_H */
