// SPDX-License-Identifier: GPL-2.0
/*
 * cprx.ko: a session's guardian.
 *
 * The owner names a process - the peer of a connected AF_UNIX socket,
 * typically its supervisor - as the session's guardian (SET_GUARDIAN).
 * Should the owner die in the middle of an update (armed, or retrieved and
 * not finished), the session is not ended with it but kept, as an orphan,
 * for the guardian: ADOPT_SESSION arms it anew for the guardian's next
 * child, which retrieves it after its exec as the owner's next image would
 * and becomes its owner.  The orphan is held by a file of its own, so that
 * it outlives the owner's fd table; that file goes to the guardian's fd
 * table on adoption, or is dropped when the guardian exits first.
 *
 * The guardian is held as a struct pid and watched, as the owner is, on its
 * pid wait queue.  Outside an update, or with the guardian gone, a session
 * dies with its owner as ever.  Locking is the session's: s->lock for every
 * field here, cprx_sessions_lock outside it for the lookups.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/file.h>
#include <linux/net.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <net/sock.h>
#include "cprx_internal.h"

/* Has every thread of the process behind @pid exited? */
bool cprx_pid_exited(struct pid *pid)
{
	struct task_struct *t;
	bool gone;

	rcu_read_lock();
	t = pid_task(pid, PIDTYPE_TGID);
	gone = !t || (t->exit_state && thread_group_empty(t));
	rcu_read_unlock();
	return gone;
}

/* Is the guardian of @s the parent of the calling process? */
static bool guardian_is_parent(struct cprx_session *s)
{
	bool ret;

	rcu_read_lock();
	ret = task_tgid(rcu_dereference(current->real_parent)) ==
	      READ_ONCE(s->guardian);
	rcu_read_unlock();
	return ret;
}

/* May the caller look at @s while it waits for the guardian's child? */
bool cprx_is_adopter(struct cprx_session *s)
{
	if (!READ_ONCE(s->adopted) || !uid_eq(current_euid(), s->uid))
		return false;
	return task_tgid(current) == READ_ONCE(s->guardian) ||
	       guardian_is_parent(s);
}

/*
 * Ends the orphan @s when its guardian has exited: nobody is left to
 * resume the guest.  A session not kept yet will die with its owner now.
 */
static void guardian_gone_work(struct work_struct *work)
{
	struct cprx_session *s = container_of(work, struct cprx_session,
					      guardian_gone);
	struct file *orphan_file;
	bool kept;

	mutex_lock(&s->lock);
	/* none: a SET_GUARDIAN that found the peer gone took it back */
	if (!s->guardian || !cprx_pid_exited(s->guardian)) {
		mutex_unlock(&s->lock);
		return;
	}
	WRITE_ONCE(s->guardian_exited, true);
	kept = s->orphan || s->adopted;
	orphan_file = s->orphan_file;
	s->orphan_file = NULL;
	WRITE_ONCE(s->orphan, false);
	WRITE_ONCE(s->adopted, false);
	mutex_unlock(&s->lock);
	if (kept)
		cprx_kill_session(s);
	/* from a worker, fput() defers the release: never freed under us */
	if (orphan_file)
		fput(orphan_file);
}

/* Runs under the wait queue's spinlock: defer to a work item. */
static int guardian_woken(struct wait_queue_entry *wait, unsigned int mode,
			  int flags, void *key)
{
	struct cprx_session *s = container_of(wait, struct cprx_session,
					      guardian_wait);

	schedule_work(&s->guardian_gone);
	return 0;
}

void cprx_guardian_init(struct cprx_session *s)
{
	INIT_WORK(&s->guardian_gone, guardian_gone_work);
	init_waitqueue_func_entry(&s->guardian_wait, guardian_woken);
}

/*
 * Every session ends here: no guardian work may outlive it, not even one
 * queued by a guardian a refused SET_GUARDIAN took back.
 */
void cprx_guardian_release(struct cprx_session *s)
{
	if (s->guardian)
		remove_wait_queue(&s->guardian->wait_pidfd, &s->guardian_wait);
	cancel_work_sync(&s->guardian_gone);
	WARN_ON_ONCE(s->orphan_file);	/* it holds a reference */
	put_pid(s->guardian);
	s->guardian = NULL;
}

/* Would the death of the owner now leave @s to its guardian? */
static bool may_keep(struct cprx_session *s)
{
	lockdep_assert_held(&s->lock);
	return s->guardian && !s->guardian_exited && !s->dead &&
	       !s->orphan && !s->adopted && (s->armed || s->retrieved) &&
	       !cprx_pid_exited(s->guardian);
}

/*
 * The owner's fd table is going away with the process, @s among its files.
 * Returns true when @s is kept for its guardian instead of ended: in the
 * middle of an update, with the guardian alive; or kept already, when the
 * table held more than one fd on it.  The file being closed holds a
 * reference: the one taken here is never the last.
 */
bool cprx_keep_for_guardian(struct cprx_session *s)
{
	struct file *file;
	bool keep, kept;

	mutex_lock(&s->lock);
	kept = cprx_kept(s);
	keep = may_keep(s);
	mutex_unlock(&s->lock);
	if (kept || !keep)
		return kept;
	kref_get(&s->ref);
	file = cprx_session_file(s);
	if (IS_ERR(file)) {
		cprx_session_put_never_last(s);
		return false;
	}
	mutex_lock(&s->lock);
	keep = may_keep(s);
	if (keep) {
		s->orphan_file = file;
		WRITE_ONCE(s->orphan, true);
		file = NULL;
	}
	kept = cprx_kept(s);
	mutex_unlock(&s->lock);
	if (file)
		fput(file);
	return kept;
}

/* Is @s kept for its guardian (orphan or adopted)?  Under s->lock. */
bool cprx_kept(struct cprx_session *s)
{
	lockdep_assert_held(&s->lock);
	return s->orphan || s->adopted;
}

/* The peer of AF_UNIX socket @fd and its credentials, referenced. */
static int socket_peer(int fd, struct pid **pidp, const struct cred **credp)
{
	struct socket *sock;
	struct sock *sk;
	int err;

	sock = sockfd_lookup(fd, &err);
	if (!sock)
		return err;
	sk = sock->sk;
	err = -EINVAL;
	if (sk && sk->sk_family == AF_UNIX) {
		spin_lock(&sk->sk_peer_lock);
		*pidp = get_pid(sk->sk_peer_pid);
		*credp = sk->sk_peer_cred ? get_cred(sk->sk_peer_cred) : NULL;
		spin_unlock(&sk->sk_peer_lock);
		err = *pidp && *credp ? 0 : -ENOTCONN;
	}
	sockfd_put(sock);
	if (err) {
		put_pid(*pidp);
		if (*credp)
			put_cred(*credp);
	}
	return err;
}

static int may_set_guardian(struct cprx_session *s, struct pid *peer,
			    const struct cred *peer_cred)
{
	lockdep_assert_held(&s->lock);
	if (!cprx_is_image(s))
		return -EPERM;
	if (s->dead)
		return -ESRCH;
	if (s->armed)
		return -EBUSY;
	if (s->guardian)
		return -EEXIST;
	if (peer == s->owner)
		return -EINVAL;
	if (!uid_eq(peer_cred->euid, s->uid))
		return -EPERM;
	return 0;
}

long cprx_session_set_guardian(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_set_guardian arg;
	const struct cred *peer_cred = NULL;
	struct pid *peer = NULL;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, fd, uarg, &usize);
	if (ret)
		return ret;
	ret = socket_peer(arg.fd, &peer, &peer_cred);
	if (ret)
		return ret;
	mutex_lock(&s->lock);
	ret = may_set_guardian(s, peer, peer_cred);
	if (!ret) {
		WRITE_ONCE(s->guardian, peer);
		add_wait_queue(&peer->wait_pidfd, &s->guardian_wait);
		/* an exit before the entry was queued woke nobody */
		if (cprx_pid_exited(peer)) {
			remove_wait_queue(&peer->wait_pidfd, &s->guardian_wait);
			WRITE_ONCE(s->guardian, NULL);
			ret = -ESRCH;
		}
	}
	if (!ret)
		peer = NULL;	/* the session's now */
	mutex_unlock(&s->lock);
	put_pid(peer);
	put_cred(peer_cred);
	return ret;
}

/* The orphan @name of a dead owner, waiting for the caller, its guardian. */
static struct cprx_session *find_orphan(const char *name)
{
	struct cprx_session *s;

	lockdep_assert_held(&cprx_sessions_lock);
	list_for_each_entry(s, &cprx_sessions, node)
		if (READ_ONCE(s->orphan) &&
		    READ_ONCE(s->guardian) == task_tgid(current) &&
		    !strcmp(s->name, name))
			return s;
	return NULL;
}

/*
 * ADOPT_SESSION: the orphan @name, armed anew with the guardian's
 * credentials for the guardian's child to retrieve, as a file for the
 * guardian to install: the orphan's own file, so its reference moves too.
 */
struct file *cprx_session_adopt(const char *name)
{
	struct cprx_session *s;
	struct file *file;

	mutex_lock(&cprx_sessions_lock);
	s = find_orphan(name);
	if (!s) {
		file = ERR_PTR(-ENOENT);
		goto out;
	}
	mutex_lock(&s->lock);
	if (!uid_eq(current_euid(), s->uid)) {
		file = ERR_PTR(-EPERM);
	} else if (!s->orphan || !s->orphan_file) {
		file = ERR_PTR(-ENOENT);	/* the guardian's exit ended it */
	} else {
		file = s->orphan_file;
		s->orphan_file = NULL;
		WRITE_ONCE(s->orphan, false);
		WRITE_ONCE(s->adopted, true);
		cprx_disarm(s);
		s->armed_cred = get_current_cred();
		cprx_lsm_subject(&s->armed_lsm);
		WRITE_ONCE(s->armed, true);
		WRITE_ONCE(s->retrieved, false);
		s->retrieved_before_arm = false;
		cprx_set_image(s, current->mm);
	}
	mutex_unlock(&s->lock);
out:
	mutex_unlock(&cprx_sessions_lock);
	return file;
}

/* The session @name the caller's parent adopted for it, if any. */
struct cprx_session *cprx_find_adopted(const char *name)
{
	struct cprx_session *s;

	lockdep_assert_held(&cprx_sessions_lock);
	list_for_each_entry(s, &cprx_sessions, node)
		if (READ_ONCE(s->adopted) && !READ_ONCE(s->dead) &&
		    guardian_is_parent(s) && !strcmp(s->name, name))
			return s;
	return NULL;
}

/*
 * The guardian's child retrieved adopted @s: it is the owner now, watched
 * as the creator was.  The owner-gone work reads s->owner under s->lock,
 * so the dead owner's pid can go at once.
 */
void cprx_take_adopted(struct cprx_session *s)
{
	struct pid *dead = s->owner;

	lockdep_assert_held(&cprx_sessions_lock);
	lockdep_assert_held(&s->lock);
	remove_wait_queue(&dead->wait_pidfd, &s->owner_wait);
	s->owner = get_pid(task_tgid(current));
	s->owner_start = current->group_leader->start_time;
	add_wait_queue(&s->owner->wait_pidfd, &s->owner_wait);
	put_pid(dead);
	WRITE_ONCE(s->adopted, false);
}
