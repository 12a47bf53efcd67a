// SPDX-License-Identifier: GPL-2.0
/**
 * DOC: cprx sessions
 *
 * A session is an anon-inode file that pins struct file references under
 * 64-bit tokens.  Its life, all in one process (the owner, by tgid):
 *
 * - CREATE_SESSION (on /dev/cprx) makes it, charged to the creator's euid;
 * - PRESERVE_FD pins files (PRESERVE_FDS many at once, all or none),
 *   UNPRESERVE_FD drops one;
 * - ARM lets it survive the owner's next exec, holding the arming
 *   credentials; ARM with CPRX_ARM_CANCEL undoes that when the exec failed;
 * - after the exec, RETRIEVE_SESSION (on /dev/cprx) hands it to the new
 *   image, only with the same credentials and never to the image that armed;
 * - RETRIEVE_FD gives the pinned files back by token, to that image only;
 * - FINISH drops every pin: the update is over.
 *
 * It belongs to one image at a time (image_mm): the creator's, then each
 * one that retrieves it; only that image changes it or takes files back.
 *
 * The pins never outlive the owner: the exit of its last thread flushes
 * them, and its pid wait queue catches the rest - unless the owner dies in
 * the middle of an update with a guardian (cprx_guardian.c) alive, which
 * then takes the session over for its own child.  Locks: cprx_sessions_lock
 * (the list) nests outside s->lock (one session), which nests outside
 * cprx_users_lock (the charges, a spinlock).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/cred.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include "cprx_internal.h"
#include "cprx_trace.h"

static const struct file_operations cprx_session_fops;

static void drop_pins(struct cprx_session *s)
{
	struct cprx_pin *pin;
	struct hlist_node *tmp;
	int bkt;

	lockdep_assert_held(&s->lock);
	hash_for_each_safe(s->pins, bkt, tmp, pin, node) {
		hash_del(&pin->node);
		fput(pin->file);
		kfree(pin);
	}
	if (s->nr_pins)
		cprx_uncharge_pins(s->user, s->nr_pins);
	WRITE_ONCE(s->nr_pins, 0);
}

void cprx_disarm(struct cprx_session *s)
{
	lockdep_assert_held(&s->lock);
	WRITE_ONCE(s->armed, false);
	if (s->armed_cred)
		put_cred(s->armed_cred);
	s->armed_cred = NULL;
}

/* The session belongs to image @mm now (NULL: to none). */
void cprx_set_image(struct cprx_session *s, struct mm_struct *mm)
{
	if (mm)
		mmgrab(mm);
	if (s->image_mm)
		mmdrop(s->image_mm);
	s->image_mm = mm;
}

/*
 * Tells cprx-guard that @s died (cprx_trace.h) and what its owner still
 * holds, counted after @s was marked dead so that it is not among them.
 */
static void announce_end(struct cprx_session *s, bool was_armed)
{
	unsigned int left = 0, left_armed = 0;
	struct cprx_session *o;

	if (!trace_cprx_session_end_enabled())
		return;
	mutex_lock(&cprx_sessions_lock);
	list_for_each_entry(o, &cprx_sessions, node) {
		if (o->owner != s->owner || READ_ONCE(o->dead))
			continue;
		left++;
		left_armed += READ_ONCE(o->armed);
	}
	mutex_unlock(&cprx_sessions_lock);
	trace_cprx_session_end(pid_nr(s->owner), s->owner_start, was_armed,
			       left, left_armed);
}

/* Ends @s; returns whether it was live, and @was_armed.  Under s->lock. */
static bool end_session(struct cprx_session *s, bool *was_armed)
{
	bool was_live = !s->dead;

	lockdep_assert_held(&s->lock);
	*was_armed = s->armed;
	drop_pins(s);
	cprx_disarm(s);
	cprx_set_image(s, NULL);
	WRITE_ONCE(s->dead, true);
	return was_live;
}

/*
 * Where a session dies unless it finished: owner gone, last file closed,
 * or the guardian of an orphan gone.  Called without cprx_sessions_lock,
 * from any task or a work item.
 */
void cprx_kill_session(struct cprx_session *s)
{
	bool was_live, was_armed;

	mutex_lock(&s->lock);
	was_live = end_session(s, &was_armed);
	mutex_unlock(&s->lock);
	if (was_live)
		announce_end(s, was_armed);
}

/*
 * The owner is read under s->lock: a guardian's child that retrieves an
 * adopted session becomes its owner under that lock.  A session kept for
 * the guardian (cprx_guardian.c) is not the dead owner's to end.
 */
static void owner_gone_work(struct work_struct *work)
{
	struct cprx_session *s = container_of(work, struct cprx_session,
					      owner_gone);
	bool end, was_live = false, was_armed;

	mutex_lock(&s->lock);
	end = cprx_pid_exited(s->owner) && !cprx_kept(s);
	if (end)
		was_live = end_session(s, &was_armed);
	mutex_unlock(&s->lock);
	if (was_live)
		announce_end(s, was_armed);
}

/* Runs under the wait queue's spinlock: defer to a work item. */
static int owner_woken(struct wait_queue_entry *wait, unsigned int mode,
		       int flags, void *key)
{
	struct cprx_session *s = container_of(wait, struct cprx_session,
					      owner_wait);

	schedule_work(&s->owner_gone);
	return 0;
}

/* Every session ends here, listed or not: no work item may outlive it. */
static void session_destroy(struct cprx_session *s)
{
	cancel_work_sync(&s->owner_gone);
	cprx_guardian_release(s);
	mutex_lock(&s->lock);	/* nobody else can reach @s: for the asserts */
	drop_pins(s);
	cprx_disarm(s);
	cprx_set_image(s, NULL);
	mutex_unlock(&s->lock);
	if (s->user)
		cprx_uncharge_session(s->user);
	put_pid(s->owner);
	mutex_destroy(&s->lock);
	kfree(s);
}

/* Final kref: called with cprx_sessions_lock held (kref_put_mutex). */
static void session_free(struct kref *ref)
{
	struct cprx_session *s = container_of(ref, struct cprx_session, ref);

	list_del(&s->node);
	mutex_unlock(&cprx_sessions_lock);
	/* no wakeup can queue the work once the entry is off the queue */
	remove_wait_queue(&s->owner->wait_pidfd, &s->owner_wait);
	/* closed before FINISH: armed or not, it ends here, and says so */
	cprx_kill_session(s);
	session_destroy(s);
}

/* For puts that can never be the last one. */
static void session_never_free(struct kref *ref)
{
	WARN_ON_ONCE(1);
}

void cprx_session_put_never_last(struct cprx_session *s)
{
	kref_put(&s->ref, session_never_free);
}

static void session_put(struct cprx_session *s)
{
	kref_put_mutex(&s->ref, session_free, &cprx_sessions_lock);
}

/* A file on @s; it takes over a reference the caller holds. */
struct file *cprx_session_file(struct cprx_session *s)
{
	return anon_inode_getfile("[cprx-session]", &cprx_session_fops, s,
				  O_RDWR);
}

static struct cprx_session *find_session(struct pid *owner, const char *name)
{
	struct cprx_session *s;

	lockdep_assert_held(&cprx_sessions_lock);
	list_for_each_entry(s, &cprx_sessions, node)
		if (s->owner == owner && !READ_ONCE(s->dead) &&
		    !strcmp(s->name, name))
			return s;
	return NULL;
}

/*
 * Called with cprx_sessions_lock held.  A name is unique among the live
 * sessions of its process; the session is charged to its creator
 * (cprx_charged_uid()), finished or not, until its last file is closed.
 */
static int may_create(struct cprx_session *s)
{
	struct cprx_user *u;

	lockdep_assert_held(&cprx_sessions_lock);
	if (find_session(s->owner, s->name))
		return -EEXIST;
	u = cprx_charge_session(cprx_charged_uid());
	if (IS_ERR(u))
		return PTR_ERR(u);
	s->user = u;
	return 0;
}

static struct cprx_session *session_alloc(const char *name)
{
	struct cprx_session *s;

	s = kzalloc_obj(*s, GFP_KERNEL_ACCOUNT);
	if (!s)
		return NULL;
	kref_init(&s->ref);
	mutex_init(&s->lock);
	hash_init(s->pins);
	strscpy(s->name, name, sizeof(s->name));
	s->owner = get_pid(task_tgid(current));
	s->owner_start = current->group_leader->start_time;
	s->uid = current_euid();
	cprx_set_image(s, current->mm);
	s->created = ktime_get();
	INIT_WORK(&s->owner_gone, owner_gone_work);
	init_waitqueue_func_entry(&s->owner_wait, owner_woken);
	cprx_guardian_init(s);
	return s;
}

/*
 * A new session owned by the calling process, as a file for the caller to
 * install.  The owner's exit can reach it only once it is live: listed,
 * with a file that will free it.
 */
struct file *cprx_session_create(const char *name)
{
	struct cprx_session *s = session_alloc(name);
	struct file *file;
	int ret;

	if (!s)
		return ERR_PTR(-ENOMEM);
	mutex_lock(&cprx_sessions_lock);
	ret = may_create(s);
	if (!ret) {
		file = cprx_session_file(s);
		if (IS_ERR(file))
			ret = PTR_ERR(file);
	}
	if (!ret) {
		list_add_tail(&s->node, &cprx_sessions);
		add_wait_queue(&s->owner->wait_pidfd, &s->owner_wait);
	}
	mutex_unlock(&cprx_sessions_lock);
	if (ret) {
		session_destroy(s);
		return ERR_PTR(ret);
	}
	return file;
}

/*
 * Is @s retrievable by current?  Called with s->lock held.  Only by the
 * image after an exec of the one that armed, with its credentials: a
 * setuid, setgid or file-capability binary, or an LSM domain change, gets
 * nothing another image pinned.
 */
static int may_retrieve(struct cprx_session *s)
{
	lockdep_assert_held(&s->lock);
	if (!uid_eq(current_euid(), s->uid))
		return -EPERM;
	if (!s->armed)
		return -EPERM;
	if (current->mm == s->image_mm)
		return -EPERM;		/* no exec since arm: the old image */
	if (!cprx_same_subject(s->armed_cred, &s->armed_lsm))
		return -EPERM;
	return 0;
}

/*
 * After an exec, the calling process's armed session @name as a new file
 * for the caller to install; the session is disarmed by it.
 */
struct file *cprx_session_retrieve(const char *name)
{
	struct cprx_session *s;
	struct file *file;
	int ret;

	mutex_lock(&cprx_sessions_lock);
	/* another process's name is no more known to us than a free one */
	s = find_session(task_tgid(current), name);
	if (!s)		/* or one its parent, a guardian, adopted for it */
		s = cprx_find_adopted(name);
	if (!s) {
		file = ERR_PTR(-ENOENT);
		goto out;
	}
	mutex_lock(&s->lock);
	ret = may_retrieve(s);
	if (ret) {
		file = ERR_PTR(ret);
	} else {
		kref_get(&s->ref);	/* our list lock keeps the count above zero */
		file = cprx_session_file(s);
		if (IS_ERR(file)) {
			/* never the last reference: the list lock is held */
			kref_put(&s->ref, session_never_free);
		} else {
			if (s->adopted)
				cprx_take_adopted(s);
			cprx_disarm(s);
			cprx_set_image(s, current->mm);
			WRITE_ONCE(s->retrieved, true);
		}
	}
	mutex_unlock(&s->lock);
out:
	mutex_unlock(&cprx_sessions_lock);
	return file;
}

static long session_arm(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_arm arg;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, flags, uarg, &usize);
	if (ret)
		return ret;
	if (arg.flags & ~CPRX_ARM_CANCEL)
		return -EINVAL;
	mutex_lock(&s->lock);
	/* the image that armed is the session's: CANCEL too comes from it */
	if (!cprx_is_image(s))
		ret = -EPERM;
	else if (s->dead)
		ret = -ESRCH;
	else if (arg.flags & CPRX_ARM_CANCEL)
		ret = !s->armed ? -EINVAL : 0;
	else if (s->armed)
		ret = -EBUSY;
	if (!ret && (arg.flags & CPRX_ARM_CANCEL)) {
		/* only the image that armed, whose exec failed */
		cprx_disarm(s);
		WRITE_ONCE(s->retrieved, s->retrieved_before_arm);
	} else if (!ret) {
		s->armed_cred = get_current_cred();
		cprx_lsm_subject(&s->armed_lsm);
		WRITE_ONCE(s->armed, true);
		/* a rollback re-arms a retrieved session: retrieve it anew */
		s->retrieved_before_arm = s->retrieved;
		WRITE_ONCE(s->retrieved, false);
	}
	mutex_unlock(&s->lock);
	return ret;
}

#ifdef CPRX_RECEIVE_FD_COPIES_OUT
/* receive_fd() copies the number out before it installs the fd. */
static int install_received(struct file *file, int __user *ufd, int was)
{
	return receive_fd(file, ufd, O_CLOEXEC);
}
#else
/*
 * receive_fd() installs at once and copies nothing out: a write of what is
 * there proves the field writable first, and a fault after closes the fd.
 */
static int install_received(struct file *file, int __user *ufd, int was)
{
	int fd;

	if (put_user(was, ufd))
		return -EFAULT;
	fd = receive_fd(file, O_CLOEXEC);
	if (fd >= 0 && put_user(fd, ufd)) {
		close_fd(fd);
		return -EFAULT;
	}
	return fd;
}
#endif

static long session_retrieve_fd(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_retrieve_fd __user *u = uarg;
	struct cprx_session_retrieve_fd arg;
	struct file *file = NULL;
	struct cprx_pin *pin;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, token, uarg, &usize);
	if (ret)
		return ret;
	mutex_lock(&s->lock);
	/* the image that retrieved, not one it exec'd without arming */
	if (!cprx_is_image(s) || !s->retrieved)
		ret = -EPERM;
	else if (s->dead)
		ret = -ESRCH;
	else
		pin = cprx_find_pin(s, arg.token);
	if (!ret && !pin)
		ret = -ENOENT;
	if (!ret)
		file = get_file(pin->file);
	mutex_unlock(&s->lock);
	if (ret)
		return ret;
	/* as any received file: the LSMs' file_receive hook has its say */
	ret = install_received(file, &u->fd, arg.fd);
	fput(file);
	return ret < 0 ? ret : 0;
}

static long session_finish(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_finish arg;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, reserved, uarg, &usize);
	if (ret)
		return ret;
	if (arg.reserved)
		return -EINVAL;
	mutex_lock(&s->lock);
	if (!cprx_is_image(s)) {
		ret = -EPERM;
	} else if (s->armed) {
		ret = -EBUSY;
	} else {
		drop_pins(s);
		WRITE_ONCE(s->dead, true);
	}
	mutex_unlock(&s->lock);
	return ret;
}

/* For PRESERVE_FDS: a session pinned in a session would never die. */
bool cprx_is_session(struct file *file)
{
	return file->f_op == &cprx_session_fops;
}

static long session_dispatch(struct cprx_session *s, unsigned int cmd,
			     void __user *uarg)
{
	switch (cmd) {
	case CPRX_SESSION_PRESERVE_FD:
		return cprx_session_preserve(s, uarg);
	case CPRX_SESSION_UNPRESERVE_FD:
		return cprx_session_unpreserve(s, uarg);
	case CPRX_SESSION_ARM:
		return session_arm(s, uarg);
	case CPRX_SESSION_RETRIEVE_FD:
		return session_retrieve_fd(s, uarg);
	case CPRX_SESSION_FINISH:
		return session_finish(s, uarg);
	case CPRX_SESSION_QUERY:
		return cprx_session_query(s, uarg);
	case CPRX_SESSION_PRESERVE_FDS:
		return cprx_session_preserve_fds(s, uarg);
	case CPRX_SESSION_SET_GUARDIAN:
		return cprx_session_set_guardian(s, uarg);
	}
	return -ENOTTY;
}

/* Success is announced (cprx_trace.h): cprx-guard's armed-only trusts it */
static long session_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct cprx_session *s = file->private_data;
	long ret = session_dispatch(s, cmd, (void __user *)arg);

	if (!ret && cmd != CPRX_SESSION_QUERY)
		trace_cprx_ioctl_done(cmd, READ_ONCE(s->nr_pins),
				      READ_ONCE(s->armed));
	return ret;
}

/*
 * Every close of an fd on the session lands here.  When it is the owner's
 * fd table going away with the process, the pins go too: nothing pinned may
 * outlive the VMM that pinned it, whatever else holds the session.  A thread
 * with a table of its own (clone without CLONE_FILES, unshare) exits while
 * its process lives on: only the exit of the last thread counts here, and
 * the owner's pid wait queue sees a process whose last table went earlier.
 */
static int session_flush(struct file *file, fl_owner_t id)
{
	struct cprx_session *s = file->private_data;

	if ((current->flags & PF_EXITING) && task_tgid(current) == s->owner &&
	    !atomic_read(&current->signal->live) && !cprx_keep_for_guardian(s))
		cprx_kill_session(s);
	return 0;
}

static int session_release(struct inode *inode, struct file *file)
{
	session_put(file->private_data);
	return 0;
}

static const struct file_operations cprx_session_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = session_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.flush = session_flush,
	.release = session_release,
	.llseek = noop_llseek,
};
