// SPDX-License-Identifier: GPL-2.0
/*
 * cprx users and subjects: what each user (the euid that creates sessions,
 * or the owner of the user namespace it is in) is charged, and whether the
 * current task is the subject that armed a session - same credentials,
 * same LSM labels.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/hashtable.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/securebits.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/user_namespace.h>
#include "cprx_internal.h"

/* --- What each user is charged -------------------------------------------- */

static DEFINE_HASHTABLE(cprx_users, 6);
static DEFINE_SPINLOCK(cprx_users_lock);	/* innermost lock */
static unsigned int cprx_nr_sessions;		/* of all users */
static unsigned int cprx_nr_pins;		/* of all users */

/*
 * Whom current's sessions are charged to: the user that made the outermost
 * user namespace around it that root did not make, so that a user with a
 * range of subordinate ids (newuidmap) is one user, not one per id of the
 * range; with none (the host, or a container root set up), its euid, so
 * that root's containers are not all root.
 */
kuid_t cprx_charged_uid(void)
{
	const struct user_namespace *ns;
	kuid_t uid = current_euid();

	for (ns = current_user_ns(); ns != &init_user_ns; ns = ns->parent)
		if (!uid_eq(ns->owner, GLOBAL_ROOT_UID))
			uid = ns->owner;
	return uid;
}

static struct cprx_user *user_of(kuid_t uid)
{
	struct cprx_user *u;

	hash_for_each_possible(cprx_users, u, node, __kuid_val(uid))
		if (uid_eq(u->uid, uid))
			return u;
	return NULL;
}

/*
 * Charges one session to @uid (ENOSPC past max_sessions or
 * max_total_sessions): the user charged, or an ERR_PTR.
 */
struct cprx_user *cprx_charge_session(kuid_t uid)
{
	struct cprx_user *u, *fresh;

	fresh = kzalloc_obj(*fresh, GFP_KERNEL_ACCOUNT);
	if (!fresh)
		return ERR_PTR(-ENOMEM);
	spin_lock(&cprx_users_lock);
	u = user_of(uid);
	if (cprx_nr_sessions >= READ_ONCE(cprx_max_total_sessions) ||
	    (u && u->sessions >= READ_ONCE(cprx_max_sessions)) ||
	    !READ_ONCE(cprx_max_sessions)) {
		u = ERR_PTR(-ENOSPC);
	} else {
		if (!u) {
			u = fresh;
			fresh = NULL;
			u->uid = uid;
			hash_add(cprx_users, &u->node, __kuid_val(uid));
		}
		u->sessions++;
		cprx_nr_sessions++;
	}
	spin_unlock(&cprx_users_lock);
	kfree(fresh);
	return u;
}

void cprx_uncharge_session(struct cprx_user *u)
{
	spin_lock(&cprx_users_lock);
	cprx_nr_sessions--;
	if (--u->sessions) {
		u = NULL;
	} else {
		WARN_ON_ONCE(u->pins);
		hash_del(&u->node);
	}
	spin_unlock(&cprx_users_lock);
	kfree(u);
}

/* One more pin for @u: ENOSPC past max_user_pins or max_total_pins. */
int cprx_charge_pin(struct cprx_user *u)
{
	int ret = -ENOSPC;

	spin_lock(&cprx_users_lock);
	if (u->pins < READ_ONCE(cprx_max_user_pins) &&
	    cprx_nr_pins < READ_ONCE(cprx_max_total_pins)) {
		u->pins++;
		cprx_nr_pins++;
		ret = 0;
	}
	spin_unlock(&cprx_users_lock);
	return ret;
}

void cprx_uncharge_pins(struct cprx_user *u, unsigned int n)
{
	spin_lock(&cprx_users_lock);
	u->pins -= n;
	cprx_nr_pins -= n;
	spin_unlock(&cprx_users_lock);
}

/* --- The subject that armed ---------------------------------------------- */

static bool same_groups(const struct group_info *a,
			const struct group_info *b)
{
	return a == b ||
	       (a->ngroups == b->ngroups &&
		!memcmp(a->gid, b->gid, a->ngroups * sizeof(a->gid[0])));
}

/*
 * Has @c no capability @a had not?  A plain exec resets some: it gives root
 * (without SECURE_NOROOT) its bounding set, and clears SECURE_KEEP_CAPS; what
 * an exec of the same file gives back is no gain.  Effective is within
 * permitted, so permitted is what counts.
 */
static bool no_new_caps(const struct cred *a, const struct cred *c)
{
	kernel_cap_t may = a->cap_permitted;

	if ((uid_eq(a->uid, GLOBAL_ROOT_UID) ||
	     uid_eq(a->euid, GLOBAL_ROOT_UID)) &&
	    !(a->securebits & issecure_mask(SECURE_NOROOT)))
		may = cap_combine(may, a->cap_bset);
	return cap_issubset(c->cap_permitted, may) &&
	       cap_issubset(c->cap_inheritable, a->cap_inheritable) &&
	       cap_issubset(c->cap_ambient, a->cap_ambient) &&
	       cap_issubset(c->cap_bset, a->cap_bset) &&
	       (a->securebits & ~issecure_mask(SECURE_KEEP_CAPS)) ==
	       (c->securebits & ~issecure_mask(SECURE_KEEP_CAPS));
}

/* Current's LSM labels (AppArmor's too, which has no cred_getsecid). */
void cprx_lsm_subject(struct cprx_lsm_subject *subj)
{
	memset(subj, 0, sizeof(*subj));
#ifdef CPRX_HAVE_LSM_PROP
	security_current_getlsmprop_subj(&subj->prop);
#else
	security_current_getsecid_subj(&subj->secid);
#endif
}

/*
 * Is current the subject that armed with credentials @a and LSM labels
 * @lsm?  What a setuid, setgid or file-capability exec or an LSM domain
 * transition changes is compared here: ids, groups and labels must be the
 * same, capabilities no more.  AT_SECURE itself is not: the image may
 * rewrite its saved auxv (PR_SET_MM_MAP), and with nothing changed it would
 * refuse only a VMM given capabilities by its own file.
 */
bool cprx_same_subject(const struct cred *a,
		       const struct cprx_lsm_subject *lsm)
{
	const struct cred *c = current_cred();
	struct cprx_lsm_subject now;

	cprx_lsm_subject(&now);
	return uid_eq(a->uid, c->uid) && uid_eq(a->euid, c->euid) &&
	       uid_eq(a->suid, c->suid) && uid_eq(a->fsuid, c->fsuid) &&
	       gid_eq(a->gid, c->gid) && gid_eq(a->egid, c->egid) &&
	       gid_eq(a->sgid, c->sgid) && gid_eq(a->fsgid, c->fsgid) &&
	       same_groups(a->group_info, c->group_info) &&
	       no_new_caps(a, c) && a->user_ns == c->user_ns &&
	       !memcmp(lsm, &now, sizeof(now));
}
