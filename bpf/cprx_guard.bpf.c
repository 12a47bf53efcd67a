// SPDX-License-Identifier: GPL-2.0
/*
 * cprx guard: authorizes and traces live updates ("cpr-exec") of VMMs.
 *
 * Kept in one file: it is one BPF object (one skeleton for the
 * loader), and the hooks of both modes share its maps, the per-process
 * state and the event helpers.  Split sources would need bpftool's static
 * linking of several objects for no gain in reading.
 *
 * Enforcing mode (BPF LSM):
 *   lsm/bprm_check_security  a guarded process may exec only allow-listed
 *                            content (file_key()), at every stage of the
 *                            exec (the file, a #! interpreter, a binfmt_misc
 *                            handler), and with armed-only only while it
 *                            holds an armed session; otherwise -EPERM.
 *   lsm/userns_create        (policy: userns deny) a guarded task may not
 *                            create a user namespace.
 *   lsm/ptrace_access_check, lsm/ptrace_traceme
 *                            a guarded task may not ptrace, or write the
 *                            memory of, a task that is not guarded.
 *   lsm/task_prctl           nor change its exe file (PR_SET_MM).
 *   lsm/file_fcntl           F_SETFD: the cloexec backend making fds
 *                            inheritable before the exec, and back after.
 *   tp_btf/sched_process_exec  the new image runs (a guard-exe's is marked
 *                            then).
 *
 * Both modes:
 *   tp_btf/sched_process_fork  "guarded" is sticky: a mark in the task,
 *                            set when a selector first matches and handed
 *                            to every child; no exec, cgroup move or exe
 *                            change takes it away.
 *   tp_btf/task_newtask      and to io_uring's threads, which no fork
 *                            tracepoint sees.
 *   tp_btf/cgroup_mkdir      a guard-cgroup is a path: a cgroup created at
 *                            it (again) takes its slot.
 *   raw_tp/cprx_ioctl_done   cprx.ko's own tracepoint after an ioctl that
 *                            succeeded: session created, pins, armed,
 *                            retrieved, finished.  No hook runs on the
 *                            host's other ioctls.
 *   raw_tp/cprx_session_end  and when a session dies without FINISH (closed,
 *                            owner gone): no longer armed.
 *   iter/task_file           at load only: the rules' keys, computed by
 *                            file_key() from the loader's open rule files.
 *   iter/task                at load only: marks the tasks the selectors
 *                            match already (started before the guard).
 *
 * Trace-only fallback (no BPF LSM, or the kernel refuses trampolines): the
 * exec events from tp_btf/sys_enter and tp_btf/sys_exit (x86-64 syscall
 * numbers) and tp_btf/sched_process_exec; nothing is refused, and the
 * verdict the policy would have given is computed at commit, on the last
 * stage of the exec only (a script's own file is not seen there).
 *
 * Events go to a ring buffer without a wakeup, except for the last event of
 * an update or when a lot is pending: a wakeup per event costs ~20 us, the
 * reader polls anyway.
 *
 * Only tracepoints whose first arguments are the same in 6.1 and 7.x are
 * used; sched_process_exit (which gained an argument) is not.  Kernel
 * structs are read directly through BTF pointers (CO-RE relocated by
 * vmlinux.h's preserve_access_index): the JIT makes those plain loads with
 * a fault handler, far cheaper than a bpf_probe_read_kernel call each.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cprx_guard.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM		1
#define F_SETFD		2
#define FD_CLOEXEC	1
#define PR_SET_MM	35
#define PTRACE_MODE_ATTACH	0x02
#define PF_IO_WORKER	0x00000010

/* x86-64 syscall numbers, for the trace-only fallback. */
#define NR_execve	59
#define NR_fcntl	72
#define NR_execveat	322

#define RB_SIZE		(256 * 1024)	/* events' ring buffer, bytes */
/* kept free for refusals: a flood of other events cannot drop a DENY */
#define RB_DENY_RESERVE	(32 * 1024)

/* The policy; a new policy is a new load. */
const volatile __u32 cfg_enforce = 0;		/* refuse, or only report */
const volatile __u32 cfg_armed_only = 0;
const volatile __u32 cfg_fallback = 0;		/* trace-only programs */
const volatile __u32 cfg_nr_uids = 0;
const volatile __u32 cfg_uids[CG_MAX_UIDS] = {};
const volatile __u32 cfg_nr_cgroups = 0;	/* the policy's, + the canary's */
const volatile __u32 cfg_cgroup_levels[CG_CGROUP_SLOTS] = {};
/* in the cgroup2 hierarchy, as cgroup_mkdir gives them; the canary's: "" */
const volatile char cfg_cgroup_paths[CG_CGROUP_SLOTS][CG_CGROUP_PATH_LEN] = {};
const volatile __u32 cfg_nr_exes = 0;
/* bit N: a guard-exe's name is N characters long (63: 63 or more) */
const volatile __u64 cfg_exe_name_lens = 0;
const volatile __u32 cfg_deny_userns = 0;
const volatile __u64 cfg_wakeup_bytes = 64 * 1024;

/* iter/task_file (at load): whose open files are the rules */
volatile __u32 iter_tgid;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RB_SIZE);
} events SEC(".maps");

/* Binaries guarded processes may exec: value is the 1-based rule. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CG_MAX_RULES);
	__type(key, struct cg_file_key);
	__type(value, __u32);
} allow SEC(".maps");

/*
 * Processes running one of these binaries are guarded.  Keyed by
 * exe_key(): the file whatever its change time, which unprivileged acts
 * move (a hard link where fs.protected_hardlinks is 0, a rename by the
 * directory's owner) as well as an upgrade's unlink racing an exec; a
 * guard-exe that stopped matching would start its VMMs unguarded.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CG_MAX_RULES);
	__type(key, struct cg_file_key);
	__type(value, __u32);
} guard_exes SEC(".maps");

/*
 * And those whose binary has a guard-exe's directory entry (struct
 * cg_exe_name), checked when an image commits and at load: a new file
 * renamed over the path by an upgrade is still the guard-exe.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CG_MAX_RULES);
	__type(key, struct cg_exe_name);
	__type(value, __u32);
} exe_names SEC(".maps");

/*
 * Processes in the cgroup (v2) at cfg_cgroup_paths[i], or below, are
 * guarded: the one at that path now.  Its id (kernfs id, the directory's
 * inode number) is set by the loader and, when a cgroup is created at the
 * path again (systemd removes machine.slice when it empties and creates it
 * for the next VM), by cg_cgroup_mkdir.  0: none there.  After an rmdir the
 * slot keeps a dead id, which no cgroup has again.  cgroup v2 has no
 * rename (EPERM), so a path changes its cgroup only by rmdir and mkdir.
 */
__u64 cgroup_ids[CG_CGROUP_SLOTS];

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CG_ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/*
 * The rules' keys by the loader's fd, filled by cg_rule_keys at load: the
 * rules' files, their guard-exes' directories, and the loader's other fds.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * CG_MAX_RULES);
	__type(key, __u32);
	__type(value, struct cg_rule_key);
} rule_keys SEC(".maps");

/*
 * Per-process state of an update: guarded processes only (an unguarded
 * process can neither evict a VMM's state nor forge a timeline).
 */
#define P_SESSION	(1u << 0)	/* holds a cprx.ko session */
#define P_ARMED		(1u << 1)	/* a session is armed for the next exec */
#define P_CHECKED	(1u << 2)	/* exec checked, not committed yet */
#define P_COMMITTED	(1u << 3)	/* new image, nothing retrieved yet */
#define P_GUARDED	(1u << 4)	/* fallback: guarded when the exec began */
#define P_WAS_VMM	(1u << 5)	/* fallback: ran an allow-listed binary */
#define P_WAS_PROBE	(1u << 6)	/* fallback: a session holder's probe */
#define P_UPDATE	(1u << 7)	/* the exec in flight is an update's */

struct proc {
	__u64 start;	/* leader's start_time: a reused pid is not us */
	__u64 t_arm;	/* cloexec: first fd made inheritable */
	__u32 flags;
	__u32 pins;	/* kmod: PRESERVE_FD - UNPRESERVE_FD */
	__u32 inherit;	/* cloexec: fds made inheritable */
	__u32 retrieved;	/* kmod: RETRIEVE_FD calls */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct proc);
} procs SEC(".maps");

static __always_inline void stat_inc(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);

	if (v)
		(*v)++;
}

static __always_inline __u64 leader_start(struct task_struct *t)
{
	return t->group_leader->start_time;
}

/*
 * "Guarded", kept in the task itself (task local storage, freed with it):
 * set the first time a selector matches, copied to every child at fork,
 * never cleared.  So exec'ing an allowed binary that is no guard-exe,
 * PR_SET_MM or leaving the cgroup do not un-guard.  The exec path of other
 * tasks reads the task, not a hash table whose cold buckets cost more than
 * the whole check.  A reload (load --pin --replace) hands this map to the
 * new guard, so the marks outlive the guard that set them.
 *
 * M_VMM: the task runs, or ran, an allow-listed binary (set at commit,
 * copied at fork).  Armed-only binds such a VMM although its binary's key
 * no longer matches a rule (a package upgrade unlinks it, which moves its
 * change time): it may not turn into a launcher by its file changing.
 */
#define M_GUARDED	(1u << 0)
#define M_VMM		(1u << 1)

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} marks SEC(".maps");

static __always_inline __u32 marks_of(struct task_struct *t)
{
	__u32 *m = bpf_task_storage_get(&marks, t, NULL, 0);

	return m ? *m : 0;
}

static __always_inline bool marked(struct task_struct *t)
{
	return marks_of(t) & M_GUARDED;
}

static __always_inline void mark_bits(struct task_struct *t, __u32 bits)
{
	__u32 init = bits, *m;

	m = bpf_task_storage_get(&marks, t, &init,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (m)
		*m |= bits;
}

static __always_inline void mark(struct task_struct *t)
{
	mark_bits(t, M_GUARDED);
}

static struct proc *proc_get(struct task_struct *t, __u32 tgid, bool create)
{
	struct proc *p = bpf_map_lookup_elem(&procs, &tgid);
	struct proc fresh = {};
	__u64 start;

	if (!p && !create)
		return NULL;
	start = leader_start(t);
	if (p && p->start == start)
		goto found;
	if (!create)
		return NULL;
	fresh.start = start;
	bpf_map_update_elem(&procs, &tgid, &fresh, BPF_ANY);
	p = bpf_map_lookup_elem(&procs, &tgid);
found:
	return p;
}

/* The inode's change time; its field changed name in 6.6 and 6.11. */
struct inode___ctime_v61 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct inode___ctime_v66 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

struct inode___ctime_v611 {
	time64_t i_ctime_sec;
	u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

static __always_inline void inode_ctime(struct inode *inode,
					struct cg_file_key *k)
{
	struct inode___ctime_v611 *n = (void *)inode;
	struct inode___ctime_v66 *m = (void *)inode;
	struct inode___ctime_v61 *o = (void *)inode;

	if (bpf_core_field_exists(n->i_ctime_sec)) {
		k->ctime_sec = n->i_ctime_sec;
		k->ctime_nsec = n->i_ctime_nsec;
	} else if (bpf_core_field_exists(m->__i_ctime)) {
		k->ctime_sec = m->__i_ctime.tv_sec;
		k->ctime_nsec = m->__i_ctime.tv_nsec;
	} else {
		k->ctime_sec = o->i_ctime.tv_sec;
		k->ctime_nsec = o->i_ctime.tv_nsec;
	}
}

/* What a rule names: see struct cg_file_key. */
static __always_inline void file_key(struct file *f, struct cg_file_key *k)
{
	struct inode *inode = f->f_inode;

	k->ino = inode->i_ino;
	k->dev = inode->i_sb->s_dev;
	k->gen = inode->i_generation;
	k->magic = (__u32)inode->i_sb->s_magic;
	inode_ctime(inode, k);
}

/*
 * A guard-exe's key (guard_exes): file_key() without the change time.
 * Over-matching only guards more; the generation still tells a reused
 * inode number apart on the file systems that keep one.
 */
static __always_inline void exe_key(struct file *f, struct cg_file_key *k)
{
	file_key(f, k);
	k->ctime_sec = 0;
	k->ctime_nsec = 0;
}

/*
 * Has @f a guard-exe's directory entry (exe_names)?  Runs at every commit
 * of an unguarded exec: a name of no guard-exe's length leaves before the
 * name is copied.
 */
static bool exe_named(struct file *f)
{
	struct cg_exe_name n = {};
	struct dentry *d = f->f_path.dentry;
	struct inode *dir;
	__u32 len = d->d_name.len;

	if (!((cfg_exe_name_lens >> (len < 63 ? len : 63)) & 1))
		return false;
	dir = d->d_parent->d_inode;
	n.dir_ino = dir->i_ino;
	n.dir_dev = dir->i_sb->s_dev;
	if (bpf_probe_read_kernel_str(n.name, sizeof(n.name),
				      d->d_name.name) <= 0)
		return false;
	return bpf_map_lookup_elem(&exe_names, &n) != NULL;
}

/*
 * The selectors, for the current task @t; cheapest first.  A guard-exe by
 * its inode only: one by its name was marked when its image committed.
 */
static bool selected(struct task_struct *t)
{
	struct cg_file_key k;
	__u32 uid, i;

	if (cfg_nr_uids) {
		uid = (__u32)bpf_get_current_uid_gid();
		for (i = 0; i < CG_MAX_UIDS && i < cfg_nr_uids; i++)
			if (cfg_uids[i] == uid)
				return true;
	}
	for (i = 0; i < CG_CGROUP_SLOTS && i < cfg_nr_cgroups; i++) {
		__u64 id = cgroup_ids[i];

		/* the ancestor at the path's depth is the cgroup there */
		if (id && bpf_get_current_ancestor_cgroup_id(cfg_cgroup_levels[i]) == id)
			return true;
	}
	if (cfg_nr_exes) {
		exe_key(t->mm->exe_file, &k);
		if (bpf_map_lookup_elem(&guard_exes, &k))
			return true;
	}
	return false;
}

/*
 * The id of @t's cgroup v2 ancestor at @level, 0 if it is not that deep:
 * bpf_get_current_ancestor_cgroup_id() for a task that is not current.
 * Read with probe reads: an index into ancestors[] is no BTF access.
 */
static __u64 task_ancestor_cgroup_id(struct task_struct *t, __u32 level)
{
	struct cgroup *c = BPF_CORE_READ(t, cgroups, dfl_cgrp), *a = NULL;
	__u32 off = bpf_core_field_offset(struct cgroup, ancestors);

	if (!c || level > (__u32)BPF_CORE_READ(c, level) || level > 4096)
		return 0;
	bpf_probe_read_kernel(&a, sizeof(a),
			      (void *)c + off + level * sizeof(a));
	return a ? BPF_CORE_READ(a, kn, id) : 0;
}

/* selected() for a task that need not be current: at load, by the iterator. */
static bool task_selected(struct task_struct *t)
{
	struct cg_file_key k;
	__u32 uid, i;

	if (cfg_nr_uids) {
		uid = BPF_CORE_READ(t, cred, uid.val);
		for (i = 0; i < CG_MAX_UIDS && i < cfg_nr_uids; i++)
			if (cfg_uids[i] == uid)
				return true;
	}
	for (i = 0; i < CG_CGROUP_SLOTS && i < cfg_nr_cgroups; i++) {
		__u64 id = cgroup_ids[i];

		if (id && task_ancestor_cgroup_id(t, cfg_cgroup_levels[i]) == id)
			return true;
	}
	if (cfg_nr_exes && t->mm) {
		exe_key(t->mm->exe_file, &k);
		if (bpf_map_lookup_elem(&guard_exes, &k) ||
		    exe_named(t->mm->exe_file))
			return true;
	}
	return false;
}

/* Does @t run an allow-listed binary now? */
static bool runs_allowed(struct task_struct *t)
{
	struct cg_file_key k;

	if (!t->mm)
		return false;
	file_key(t->mm->exe_file, &k);
	return bpf_map_lookup_elem(&allow, &k) != NULL;
}

/*
 * Is the current task @t guarded: marked, or selected now (and marked from
 * then on).  Runs for every exec and fork on the machine.  One selected
 * only after its exec (a uid dropped, a cgroup joined later) and running
 * an allow-listed binary is a VMM, as at load (cg_mark_tasks): it may not
 * pass for a launcher once that binary's file changes.
 */
static bool is_guarded(struct task_struct *t)
{
	if (marked(t))
		return true;
	if (!selected(t))
		return false;
	mark_bits(t, M_GUARDED | (runs_allowed(t) ? M_VMM : 0));
	return true;
}

/* @deny: a refusal, which may use the room kept for refusals. */
static struct cg_event *ev_new_v(__u32 type, struct task_struct *t, bool deny)
{
	__u64 room = deny ? RB_SIZE - 2 * sizeof(struct cg_event) :
			    RB_SIZE - RB_DENY_RESERVE;
	struct cg_event *e = NULL;

	/* nobody reading (a pinned guard, no `trace`): the ring fills */
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < room)
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(CG_ST_DROPPED);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->type = type;
	e->pid = t->tgid;
	e->tid = t->pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

static __always_inline struct cg_event *ev_new(__u32 type,
					       struct task_struct *t)
{
	return ev_new_v(type, t, false);
}

/*
 * Wake the reader at the end of an update, and when the pending data
 * crosses cfg_wakeup_bytes; otherwise not: it reads every 100 ms anyway.
 * A wakeup per event costs ~20 us (and ~10 us with nobody reading).
 */
static void ev_send(struct cg_event *e, bool last)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (last || (avail >= cfg_wakeup_bytes &&
		     avail < cfg_wakeup_bytes + 2 * sizeof(*e)))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	stat_inc(CG_ST_EVENTS);
}

static void ev_simple(__u32 type, struct task_struct *t, __u32 count,
		      __u32 flags, bool last)
{
	struct cg_event *e = ev_new(type, t);

	if (!e)
		return;
	e->count = count;
	e->flags = flags;
	ev_send(e, last);
}

/* cloexec: the fds made inheritable since the last exec, as one event. */
static void flush_inherit(struct task_struct *t, struct proc *p)
{
	struct cg_event *e;

	if (!p->inherit)
		return;
	e = ev_new(CG_EV_ARM, t);
	if (e) {
		e->ts = p->t_arm;
		e->count = p->inherit;
		ev_send(e, false);
	}
	p->inherit = 0;
}

/* A vfork child (preflight's posix_spawn probe) of a session holder. */
static bool probe_of_session(struct task_struct *t)
{
	struct task_struct *parent;
	struct proc *pp;
	__u32 ptgid;

	if (!t->vfork_done)
		return false;
	parent = t->real_parent;
	ptgid = parent->tgid;
	pp = bpf_map_lookup_elem(&procs, &ptgid);
	return pp && pp->start == leader_start(parent) && (pp->flags & P_SESSION);
}

/*
 * Is the process a VMM: it runs an allow-listed binary, or did since it
 * was guarded (M_VMM), though that binary's key no longer matches?
 */
static bool runs_vmm(struct task_struct *t)
{
	return (marks_of(t) & M_VMM) || runs_allowed(t);
}

/* One exec event: the verdict, the rule behind it and the binary @path. */
static __always_inline void send_verdict(__u32 type, struct task_struct *t,
					 __u32 v, __u32 reason, __u32 rule,
					 const struct cg_file_key *k, __u32 flags,
					 const char *path, bool last)
{
	struct cg_event *e;

	e = ev_new_v(type, t, v == CG_V_DENY || v == CG_V_WOULD_DENY);
	if (!e)
		return;
	e->verdict = v;
	e->reason = reason;
	e->rule = rule;
	e->dev = k->dev;
	e->ino = k->ino;
	e->flags = flags;
	bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	ev_send(e, last);
}

/*
 * The policy's answer for @k: verdict and reason, *rule set when listed.
 * Armed-only binds a VMM (a process running an allow-listed binary): it may
 * replace itself only with an armed session.  A launcher (anything else)
 * may start a VMM, and a VMM's vfork probe may run the new binary.
 */
static __u32 decide(struct task_struct *t, struct proc *p,
		    struct cg_file_key *k, __u32 *rule, __u32 *reason)
{
	__u32 *r = bpf_map_lookup_elem(&allow, k);

	*rule = r ? *r : 0;
	if (!r) {
		*reason = CG_R_NOT_LISTED;
		return CG_V_DENY;
	}
	*reason = CG_R_LISTED;
	if (!cfg_armed_only || (p && (p->flags & P_ARMED)))
		return CG_V_ALLOW;
	/* trace-only decides at commit: the old image was looked at before */
	if (cfg_fallback ? p && (p->flags & P_WAS_PROBE) : probe_of_session(t)) {
		*reason = CG_R_PROBE;
		return CG_V_ALLOW;
	}
	if (cfg_fallback ? !(p && (p->flags & P_WAS_VMM)) : !runs_vmm(t)) {
		*reason = CG_R_LAUNCH;
		return CG_V_ALLOW;
	}
	*reason = CG_R_NOT_ARMED;
	return CG_V_DENY;
}

static void count_verdict(__u32 v)
{
	stat_inc(CG_ST_GUARDED);
	if (v == CG_V_ALLOW)
		stat_inc(CG_ST_ALLOWED);
	else if (v == CG_V_DENY)
		stat_inc(CG_ST_DENIED);
	else
		stat_inc(CG_ST_WOULD_DENY);
}

/*
 * The exec check: 0, or -EPERM when the policy refuses and enforces.  Runs
 * at every stage of every exec on the machine: the file, then a #!
 * script's interpreter, a binfmt_misc handler (bprm->file is the stage's
 * file, bprm->interp its path); each must be allowed.  Unguarded processes
 * leave after the mark and the selectors.
 */
static __always_inline int check_exec(struct linux_binprm *bprm)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 tgid = t->tgid, v, rule = 0, reason = CG_R_NONE, flags;
	bool first = bprm->interp == bprm->filename, update = false;
	struct cg_file_key k;
	struct proc *p;

	if (first)
		stat_inc(CG_ST_EXECS);
	if (!is_guarded(t))
		return 0;
	/*
	 * Only processes in an update (a session, fds made inheritable) have
	 * state; a plain exec gets a verdict and one event, without creating
	 * any (fresh pids would churn the LRU).
	 */
	p = proc_get(t, tgid, false);
	file_key(bprm->file, &k);
	v = decide(t, p, &k, &rule, &reason);
	if (v == CG_V_DENY && !cfg_enforce)
		v = CG_V_WOULD_DENY;
	/* a later stage speaks only to refuse: one CHECK per exec */
	if (!first && v == CG_V_ALLOW)
		return 0;
	count_verdict(v);
	flags = CG_F_GUARDED;
	if (p) {
		/* an update: something was armed, which a failure will undo */
		update = p->inherit || (p->flags & (P_ARMED | P_UPDATE));
		flush_inherit(t, p);
		p->flags &= ~P_COMMITTED;
		p->flags |= P_CHECKED | (update ? P_UPDATE : 0);
		flags |= (p->flags & P_ARMED ? CG_F_ARMED : 0) |
			 (p->flags & P_SESSION ? CG_F_KMOD : 0);
	} else {
		flags |= CG_F_LONE;
	}
	send_verdict(CG_EV_CHECK, t, v, reason, rule, &k,
		     flags | (v == CG_V_DENY ? CG_F_ENFORCED : 0), bprm->interp,
		     v == CG_V_DENY && !update);
	if (v != CG_V_DENY)
		return 0;
	/* the exec ends here; an update's undo (disarm) ends its timeline */
	if (p && !update)
		p->flags &= ~P_CHECKED;
	return -EPERM;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(cg_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return check_exec(bprm);
}

/*
 * Benchmark only (cprx-guard load --bench, kernels >= 6.10): the same check
 * from a tracepoint early in the same exec, enforcing nothing, to measure
 * its cost natively where LSM programs are refused.
 */
SEC("tp_btf/sched_prepare_exec")
int BPF_PROG(cg_bench_check, struct task_struct *t, struct linux_binprm *bprm)
{
	check_exec(bprm);
	return 0;
}

/*
 * cprx.ko did something for the current task (its tracepoint fires only
 * after an ioctl succeeded): @pins and @armed are the session's state after
 * it.  So a rejected ARM, or an ioctl on some other file, arms nothing.
 */
static void on_cprx_done(struct task_struct *t, unsigned int cmd,
			 unsigned int pins, unsigned int armed)
{
	__u32 tgid = t->tgid;
	struct proc *p;

	if (!is_guarded(t))
		return;
	p = proc_get(t, tgid, true);
	if (!p)
		return;
	switch (cmd) {
	case CG_IOC_CREATE:
		p->flags |= P_SESSION;
		break;
	case CG_IOC_PRESERVE:
	case CG_IOC_UNPRESERVE:
	case CG_IOC_PRESERVE_FDS:
		p->flags |= P_SESSION;
		p->pins = pins;
		break;
	case CG_IOC_ARM:
		p->flags |= P_SESSION;
		if (!armed) {
			p->flags &= ~(P_ARMED | P_CHECKED | P_UPDATE);
			ev_simple(CG_EV_DISARM, t, 0, CG_F_KMOD, true);
		} else {
			p->flags |= P_ARMED;
			ev_simple(CG_EV_ARM, t, pins, CG_F_KMOD | CG_F_ARMED,
				  false);
		}
		break;
	case CG_IOC_RETRIEVE:
		p->flags |= P_SESSION;
		p->retrieved = 0;
		p->flags &= ~P_COMMITTED;
		ev_simple(CG_EV_RETRIEVE, t, 0, CG_F_KMOD, false);
		break;
	case CG_IOC_RETRIEVE_FD:
		p->retrieved++;
		break;
	case CG_IOC_FINISH:
		ev_simple(CG_EV_FINISH, t, p->retrieved, CG_F_KMOD, true);
		p->flags &= ~(P_SESSION | P_ARMED);
		p->pins = 0;
		p->retrieved = 0;
		break;
	}
}

/* kernel/cprx_trace.h: (cmd, pins, armed) */
SEC("raw_tp/" CG_MOD_TRACEPOINT)
int BPF_PROG(cg_cprx_ioctl, unsigned int cmd, unsigned int pins,
	     unsigned int armed)
{
	on_cprx_done(bpf_get_current_task_btf(), cmd, pins, armed);
	return 0;
}

/*
 * A cgroup created at a guard-cgroup path takes its slot: processes
 * started in it are guarded like those in the one it replaces.  Under
 * cgroup_mutex, which moving a task into it also takes: none is in it yet.
 * @path is from the hierarchy's root, whatever the caller's cgroup
 * namespace.  Hierarchy 0 is cgroup v2's ("0::" in /proc/PID/cgroup).
 */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(cg_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	char buf[CG_CGROUP_PATH_LEN];
	__u32 i, level = cgrp->level;

	if (cgrp->root->hierarchy_id != 0 ||
	    bpf_probe_read_kernel_str(buf, sizeof(buf), path) <= 0)
		return 0;
	/* unrolled: bpf_strncmp wants a constant offset into .rodata */
#pragma unroll
	for (i = 0; i < CG_CGROUP_SLOTS; i++) {
		if (i >= cfg_nr_cgroups)
			break;
		if (cfg_cgroup_levels[i] == level && cfg_cgroup_paths[i][0] &&
		    !bpf_strncmp(buf, sizeof(buf), (const char *)cfg_cgroup_paths[i]))
			cgroup_ids[i] = cgrp->kn->id;
	}
	return 0;
}

/*
 * A session of @owner died without FINISH: its last fd closed, or the owner
 * gone.  This may run in a work item or another process: the owner is
 * @owner and @start, never current.  @left and @left_armed are what the
 * owner still holds, so its state follows the module's: none armed, nothing
 * is armed for its next exec; none at all, it holds no session.
 */
SEC("raw_tp/" CG_MOD_TP_END)
int BPF_PROG(cg_cprx_end, unsigned int owner, __u64 start, unsigned int armed,
	     unsigned int left, unsigned int left_armed)
{
	__u32 tgid = owner;
	struct proc *p = bpf_map_lookup_elem(&procs, &tgid);

	if (!p || p->start != start)
		return 0;
	if (!left_armed)
		p->flags &= ~P_ARMED;
	if (!left) {
		p->flags &= ~P_SESSION;
		p->pins = 0;
		p->retrieved = 0;
	}
	return 0;
}

/* "Guarded" is inherited by every new task, thread or process. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(cg_fork, struct task_struct *parent, struct task_struct *child)
{
	if (is_guarded(parent))
		mark_bits(child, M_GUARDED | (marks_of(parent) & M_VMM));
	return 0;
}

/*
 * io_uring's threads (its workers, a SQPOLL thread) are made without a fork
 * tracepoint, and run the process's requests as themselves: an open of
 * /proc/PID/mem among them (IOSQE_ASYNC) must meet the ptrace check as the
 * guarded process, even one guarded by its mark alone.  Their creator is a
 * thread of that process (the submitter, or a task_work of it).
 */
SEC("tp_btf/task_newtask")
int BPF_PROG(cg_io_thread, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *t;

	if (!(task->flags & PF_IO_WORKER))
		return 0;
	t = bpf_get_current_task_btf();
	if (is_guarded(t))
		mark_bits(task, M_GUARDED | (marks_of(t) & M_VMM));
	return 0;
}

/* A refusal of something other than an exec, as a lone CHECK event. */
static int refuse(struct task_struct *t, __u32 reason, const char *what)
{
	__u32 v = cfg_enforce ? CG_V_DENY : CG_V_WOULD_DENY;
	struct cg_event *e;

	count_verdict(v);
	e = ev_new_v(CG_EV_CHECK, t, true);
	if (e) {
		e->verdict = v;
		e->reason = reason;
		e->flags = CG_F_GUARDED | CG_F_LONE |
			   (cfg_enforce ? CG_F_ENFORCED : 0);
		__builtin_memcpy(e->path, what, 16);
		ev_send(e, true);
	}
	return cfg_enforce ? -EPERM : 0;
}

/*
 * A user namespace lets its creator mount binfmt_misc (since 6.7) and bind
 * mounts: ways to make an allowed exec run something else.  Every stage is
 * checked anyway; this closes the door itself (policy: userns deny).
 */
SEC("lsm/userns_create")
int BPF_PROG(cg_userns_create, const struct cred *cred, int ret)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (ret || !cfg_deny_userns || !is_guarded(t))
		return ret;
	return refuse(t, CG_R_USERNS, "(user namespace)");
}

/*
 * A guarded task may not take over one that is not guarded (ptrace attach,
 * /proc/PID/mem, process_vm_writev, pidfd_getfd: all PTRACE_MODE_ATTACH)
 * and make it exec.  Reads (ps, /proc) return at the first test.
 */
SEC("lsm/ptrace_access_check")
int BPF_PROG(cg_ptrace_access, struct task_struct *child, unsigned int mode,
	     int ret)
{
	struct task_struct *t;

	if (ret || !(mode & PTRACE_MODE_ATTACH))
		return ret;
	t = bpf_get_current_task_btf();
	if (!is_guarded(t) || marked(child))
		return 0;
	return refuse(t, CG_R_PTRACE, "(ptrace attach)\0");
}

/* PTRACE_TRACEME: an unguarded task offering itself to a guarded tracer. */
SEC("lsm/ptrace_traceme")
int BPF_PROG(cg_ptrace_traceme, struct task_struct *parent, int ret)
{
	struct task_struct *t;

	if (ret || !marked(parent))
		return ret;
	t = bpf_get_current_task_btf();
	if (is_guarded(t))
		return 0;
	return refuse(t, CG_R_PTRACE, "(ptrace traceme)");
}

/*
 * PR_SET_MM (exe file, or the whole map) would let a guarded VMM look like
 * a launcher to armed-only, or like a guard-exe nobody guards.
 */
SEC("lsm/task_prctl")
int BPF_PROG(cg_task_prctl, int option, unsigned long arg2,
	     unsigned long arg3, unsigned long arg4, unsigned long arg5, int ret)
{
	struct task_struct *t;

	if (ret || option != PR_SET_MM)
		return ret;
	t = bpf_get_current_task_btf();
	if (!is_guarded(t))
		return 0;
	return refuse(t, CG_R_SET_MM, "(PR_SET_MM)\0\0\0\0\0");
}

/*
 * At load: the key of each file the loader (iter_tgid) holds open, by fd,
 * and its inode's writers.  The rules are computed by the same file_key()
 * as the exec check, so they match whatever the file system keeps in
 * i_generation and the change time.
 */
SEC("iter/task_file")
int cg_rule_keys(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct cg_rule_key rk = {};
	__u32 fd = ctx->fd;

	if (!task || !file || task->tgid != iter_tgid)
		return 0;
	file_key(file, &rk.key);
	rk.writers = file->f_inode->i_writecount.counter;
	bpf_map_update_elem(&rule_keys, &fd, &rk, BPF_ANY);
	return 0;
}

/*
 * At load, after the hooks are attached: the tasks the selectors match
 * already (started before this guard, never through a hook since) are
 * marked now, or one could leave its cgroup and exec unguarded.  Those
 * running an allow-listed binary are VMMs.  Every task, threads included.
 */
SEC("iter/task")
int cg_mark_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!t)
		return 0;
	if (!marked(t) && task_selected(t))
		mark(t);
	if (marked(t) && runs_allowed(t))
		mark_bits(t, M_VMM);
	return 0;
}

/*
 * The cloexec backend: F_SETFD without FD_CLOEXEC before the exec (arm);
 * with it after the exec (first reclaim) or after a failed exec (restore).
 * Processes using cprx.ko are followed through their ioctls instead.
 */
static void on_setfd(struct task_struct *t, bool cloexec)
{
	__u32 tgid = t->tgid;
	struct proc *p = proc_get(t, tgid, false);

	if (!p) {
		if (cloexec || !is_guarded(t))
			return;
		p = proc_get(t, tgid, true);
		if (!p)
			return;
	}
	if (p->flags & P_SESSION)
		return;
	if (!cloexec) {
		/* this thread will exec: mark it */
		proc_get(t, tgid, true);
		if (!p->inherit)
			p->t_arm = bpf_ktime_get_ns();
		p->inherit++;
	} else if (p->flags & P_CHECKED || p->inherit) {
		/* a failed exec (checked or not) puts the flags back */
		p->flags &= ~(P_CHECKED | P_UPDATE);
		p->inherit = 0;
		ev_simple(CG_EV_DISARM, t, 0, 0, true);
	} else if (p->flags & P_COMMITTED) {
		p->flags &= ~P_COMMITTED;
		ev_simple(CG_EV_RETRIEVE, t, 0, 0, true);
	}
}

SEC("lsm/file_fcntl")
int BPF_PROG(cg_file_fcntl, struct file *file, unsigned int cmd,
	     unsigned long arg, int ret)
{
	if (ret || cmd != F_SETFD)
		return ret;
	on_setfd(bpf_get_current_task_btf(), arg & FD_CLOEXEC);
	return 0;
}

/*
 * An exec of a guarded process begins: its state, and a CHECK whose verdict
 * comes at commit.  @at_commit: first seen at commit (see cg_exec), where
 * the old image is gone: a VMM by its mark then, and no vfork probe (the
 * parent was released already); @path is the kernel's, else the caller's.
 */
static struct proc *exec_begins(struct task_struct *t, const char *path,
				bool at_commit)
{
	__u32 tgid = t->tgid;
	bool guarded = is_guarded(t), update;
	struct cg_event *e;
	struct proc *p;

	stat_inc(CG_ST_EXECS);
	if (!guarded)
		return NULL;
	p = proc_get(t, tgid, true);
	if (!p)
		return NULL;
	update = p->inherit || (p->flags & P_ARMED);
	flush_inherit(t, p);
	p->flags &= ~(P_WAS_VMM | P_WAS_PROBE | P_COMMITTED);
	p->flags |= P_CHECKED | P_GUARDED | (update ? P_UPDATE : 0);
	if (cfg_armed_only) {
		if (at_commit ? (marks_of(t) & M_VMM) : runs_vmm(t))
			p->flags |= P_WAS_VMM;
		if (!at_commit && probe_of_session(t))
			p->flags |= P_WAS_PROBE;
	}
	e = ev_new(CG_EV_CHECK, t);
	if (!e)
		return p;
	e->verdict = CG_V_UNCHECKED;
	e->flags = CG_F_GUARDED |
		   (p->flags & P_ARMED ? CG_F_ARMED : 0) |
		   (p->flags & P_SESSION ? CG_F_KMOD : 0);
	if (at_commit)
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	else
		bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	ev_send(e, false);
	return p;
}

/*
 * A guard-exe's image commits: guarded (and a VMM, below) from its first
 * instruction, not from its first fork or exec, and a VMM then if it is
 * allow-listed: by its first fork its allow rule may match no more (an
 * upgrade moves its change time), and under armed-only it would pass for
 * a launcher.
 */
static bool guard_exe_commits(struct task_struct *t, struct file *f)
{
	struct cg_file_key k;

	if (!cfg_nr_exes)
		return false;
	exe_key(f, &k);
	if (!bpf_map_lookup_elem(&guard_exes, &k) && !exe_named(f))
		return false;
	mark(t);
	return true;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(cg_exec, struct task_struct *t, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	__u32 tgid = t->tgid, v = CG_V_NONE, rule = 0;
	__u32 reason = CG_R_NONE, flags = 0;
	struct cg_file_key k;
	struct proc *p;

	if (!(cfg_fallback ? is_guarded(t) : marked(t)) &&
	    !guard_exe_commits(t, bprm->file))
		return 0;
	p = proc_get(t, tgid, false);
	/*
	 * Trace-only: an exec the syscall decoder did not see (an int 0x80
	 * or x32 entry, numbered otherwise) is seen here, not missed.
	 */
	if (cfg_fallback && !(p && (p->flags & P_CHECKED)))
		p = exec_begins(t, bprm->filename, true);
	file_key(bprm->file, &k);
	/* a VMM from now on, whatever happens to its binary's file later */
	if (bpf_map_lookup_elem(&allow, &k))
		mark_bits(t, M_VMM);
	if (!p || !(p->flags & P_CHECKED))
		return 0;
	if (cfg_fallback && (p->flags & P_GUARDED)) {
		/* trace-only: what the policy would have said */
		v = decide(t, p, &k, &rule, &reason);
		if (v == CG_V_DENY)
			v = CG_V_WOULD_DENY;
		count_verdict(v);
		flags |= CG_F_GUARDED;
	}
	if (p->flags & P_SESSION)
		flags |= CG_F_KMOD;
	send_verdict(CG_EV_COMMIT, t, v, reason, rule, &k, flags,
		     bprm->filename, false);
	/* only an update's new image retrieves anything */
	if (p->flags & P_UPDATE)
		p->flags |= P_COMMITTED;
	/* a session not armed for this exec is not the new image's */
	if (!(p->flags & P_ARMED))
		p->flags &= ~P_SESSION;
	p->flags &= ~(P_CHECKED | P_ARMED | P_GUARDED | P_WAS_VMM |
		      P_WAS_PROBE | P_UPDATE);
	p->inherit = 0;
	return 0;
}

/* --- trace-only fallback: syscalls instead of LSM hooks ------------------ */

static void on_exec_enter(struct task_struct *t, const char *upath)
{
	exec_begins(t, upath, false);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(cg_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *t;

	/* cprx.ko's ioctls: its own tracepoint, raw_tp/cprx_ioctl_done */
	if (id == NR_fcntl) {
		if (regs->si != F_SETFD)
			return 0;
		on_setfd(bpf_get_current_task_btf(),
			 regs->dx & FD_CLOEXEC);
	} else if (id == NR_execve) {
		t = bpf_get_current_task_btf();
		on_exec_enter(t, (const char *)regs->di);
	} else if (id == NR_execveat) {
		t = bpf_get_current_task_btf();
		on_exec_enter(t, (const char *)regs->si);
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(cg_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *t;
	struct proc *p;
	long id;

	if (ret >= 0)
		return 0;
	id = regs->orig_ax;
	if (id != NR_execve && id != NR_execveat)
		return 0;
	t = bpf_get_current_task_btf();
	p = proc_get(t, t->tgid, false);
	if (!p || !(p->flags & P_CHECKED))
		return 0;
	p->flags &= ~(P_CHECKED | P_GUARDED | P_UPDATE);
	p->inherit = 0;
	{
		struct cg_event *e = ev_new(CG_EV_EXEC_FAIL, t);

		if (e) {
			e->err = ret;
			ev_send(e, true);
		}
	}
	return 0;
}
