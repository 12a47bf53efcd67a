/* SPDX-License-Identifier: GPL-2.0 */
/* cprx.ko internals: sessions and the pins they hold. */
#ifndef _CPRX_INTERNAL_H
#define _CPRX_INTERNAL_H

#include <linux/cred.h>
#include <linux/hashtable.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/sched/signal.h>
#include <linux/security.h>
#include <linux/uidgid.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/slab.h>
#include <linux/cprx.h>

/* Allocation by type came with 7.0; older kernels get it from sizeof. */
#ifndef kzalloc_obj
#define kzalloc_obj(P, gfp)	kzalloc(sizeof(P), gfp)
#endif

/*
 * What one user (the euid that created the sessions) is charged: sessions
 * with a file, finished or not, and the pins in them.  Under
 * cprx_users_lock; freed with the user's last session.
 */
struct cprx_user {
	struct hlist_node node;
	kuid_t uid;
	unsigned int sessions;
	unsigned int pins;
};

/*
 * The LSM side of a subject: every LSM's label where the kernel has struct
 * lsm_prop (6.13), the one secid they map it to before.
 */
struct cprx_lsm_subject {
#ifdef CPRX_HAVE_LSM_PROP
	struct lsm_prop prop;
#else
	u32 secid;
#endif
};

struct cprx_pin {
	struct hlist_node node;
	u64 token;
	struct file *file;
};

/**
 * struct cprx_session - a set of pinned files that can outlive an exec
 * @ref: one reference per file on the session (and one while it is created)
 * @node: on cprx_sessions, under cprx_sessions_lock
 * @lock: guards the pins and every field below it
 * @pins: the pinned files, hashed by token
 * @nr_pins: entries in @pins (read locklessly by /proc: WRITE_ONCE)
 * @name: unique among the owner's live sessions, printable ASCII
 * @owner: tgid of the creator; only it may use or retrieve the session
 * @owner_start: its leader's start time: with the tgid, cprx-guard's name
 *	for the owner (cprx_trace.h), which a reused pid does not take
 * @uid: euid of the creator
 * @user: what @uid is charged for this session and its pins
 * @created: for the age /proc shows
 * @armed_cred: the credentials that armed: RETRIEVE_SESSION must match them
 * @armed_lsm: and the LSM labels too
 * @image_mm: the owner's image the session belongs to: the creator's, then
 *	each one that retrieves it.  Only it may change the session, arm or
 *	cancel it, or take files back, so an image exec'd without arming
 *	(setgid, say) may not arm it for itself; and an armed session is
 *	retrieved only where current->mm differs from it, after an exec.  Held
 *	by mmgrab() so that no later image's mm can reuse its address;
 *	compared, never dereferenced
 * @owner_wait: on the owner's pid wait queue, woken when the process exits
 * @owner_gone: the work that ends the session once the owner is gone
 * @armed: the session survives the owner's next exec
 * @retrieved: taken back after that exec: RETRIEVE_FD works
 * @retrieved_before_arm: what CPRX_ARM_CANCEL restores
 * @dead: owner gone or finished: no pins, only QUERY answers
 * @guardian: who is left the session if the owner dies mid-update, or NULL
 *	(cprx_guardian.c); held until the session is freed
 * @guardian_wait: on the guardian's pid wait queue, woken when it exits
 * @guardian_gone: the work that ends an orphan once the guardian is gone
 * @orphan_file: the reference that keeps an orphan alive, for ADOPT
 * @guardian_exited: the guardian is gone: the session dies with its owner
 * @orphan: the owner died mid-update: kept for the guardian to adopt
 * @adopted: adopted by the guardian, for its child to retrieve
 *
 * A session lives while a file refers to it.  The owner keeps an fd on it
 * across the exec (libcprx clears its FD_CLOEXEC when it arms), so the pins
 * are bound to the owner's fd table: whatever ends the process - exit,
 * crash, SIGKILL in any phase - closes that table, and flush() drops the
 * pins even if another process still holds a copy.  The owner's pid wait
 * queue covers the rest: an owner that closed its own fd while a copy
 * lives elsewhere, or a session whose fd is in flight in a socket it pins.
 */
struct cprx_session {
	struct kref ref;
	struct list_head node;
	struct mutex lock;		/* the pins and all below */
	DECLARE_HASHTABLE(pins, 8);
	unsigned int nr_pins;
	char name[CPRX_SESSION_NAME_LEN];
	struct pid *owner;
	u64 owner_start;
	kuid_t uid;
	struct cprx_user *user;
	ktime_t created;
	const struct cred *armed_cred;
	struct cprx_lsm_subject armed_lsm;
	struct mm_struct *image_mm;
	struct wait_queue_entry owner_wait;
	struct work_struct owner_gone;
	bool armed;
	bool retrieved;
	bool retrieved_before_arm;
	bool dead;
	struct pid *guardian;
	struct wait_queue_entry guardian_wait;
	struct work_struct guardian_gone;
	struct file *orphan_file;
	bool guardian_exited;
	bool orphan;
	bool adopted;
};

/* Only the creating process, under the creating euid, uses a session. */
static inline bool cprx_is_owner(struct cprx_session *s)
{
	return task_tgid(current) == s->owner && uid_eq(current_euid(), s->uid);
}

/* The owner, in the image the session belongs to: it may change it. */
static inline bool cprx_is_image(struct cprx_session *s)
{
	return cprx_is_owner(s) && current->mm == s->image_mm;
}

/*
 * May current pin files in @s now?  Called with s->lock held: EPERM not its
 * image, ESRCH finished or owner gone, EBUSY armed; 0 if it may.
 */
static inline int cprx_may_pin(struct cprx_session *s)
{
	lockdep_assert_held(&s->lock);
	if (!cprx_is_image(s))
		return -EPERM;
	if (s->dead)
		return -ESRCH;
	return s->armed ? -EBUSY : 0;
}

static inline struct cprx_pin *cprx_find_pin(struct cprx_session *s,
					     u64 token)
{
	struct cprx_pin *pin;

	lockdep_assert_held(&s->lock);
	hash_for_each_possible(s->pins, pin, node, token)
		if (pin->token == token)
			return pin;
	return NULL;
}

/* Every session with a file; cprx_sessions_lock nests outside s->lock. */
extern struct list_head cprx_sessions;
extern struct mutex cprx_sessions_lock;
extern unsigned int cprx_max_pins;
extern unsigned int cprx_max_user_pins;
extern unsigned int cprx_max_total_pins;
extern unsigned int cprx_max_sessions;
extern unsigned int cprx_max_total_sessions;

kuid_t cprx_charged_uid(void);
struct cprx_user *cprx_charge_session(kuid_t uid);
void cprx_uncharge_session(struct cprx_user *u);
int cprx_charge_pin(struct cprx_user *u);
void cprx_uncharge_pins(struct cprx_user *u, unsigned int n);
void cprx_lsm_subject(struct cprx_lsm_subject *subj);
bool cprx_same_subject(const struct cred *armed,
		       const struct cprx_lsm_subject *lsm);

struct file *cprx_session_create(const char *name);
struct file *cprx_session_file(struct cprx_session *s);
void cprx_session_put_never_last(struct cprx_session *s);
void cprx_kill_session(struct cprx_session *s);
void cprx_disarm(struct cprx_session *s);
void cprx_set_image(struct cprx_session *s, struct mm_struct *mm);
bool cprx_is_session(struct file *file);
long cprx_session_preserve_fds(struct cprx_session *s, void __user *uarg);
long cprx_session_preserve(struct cprx_session *s, void __user *uarg);
long cprx_session_unpreserve(struct cprx_session *s, void __user *uarg);
long cprx_session_query(struct cprx_session *s, void __user *uarg);
struct file *cprx_session_retrieve(const char *name);

/* cprx_guardian.c */
bool cprx_pid_exited(struct pid *pid);
void cprx_guardian_init(struct cprx_session *s);
void cprx_guardian_release(struct cprx_session *s);
bool cprx_keep_for_guardian(struct cprx_session *s);
bool cprx_kept(struct cprx_session *s);
bool cprx_is_adopter(struct cprx_session *s);
long cprx_session_set_guardian(struct cprx_session *s, void __user *uarg);
struct file *cprx_session_adopt(const char *name);
struct cprx_session *cprx_find_adopted(const char *name);
void cprx_take_adopted(struct cprx_session *s);

int cprx_copy_arg(void *dst, size_t ksize, size_t minsize,
		  void __user *uarg, u32 *usizep);
/* @arg's size prefix checked and its bytes copied up to at least @last. */
#define CPRX_COPY_ARG(arg, last, uarg, usizep)				\
	cprx_copy_arg(&(arg), sizeof(arg), offsetofend(typeof(arg), last),	\
		      uarg, usizep)
int cprx_copy_back(void __user *uarg, const void *src, size_t ksize,
		   u32 usize);

#endif /* _CPRX_INTERNAL_H */
