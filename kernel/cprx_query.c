// SPDX-License-Identifier: GPL-2.0
/*
 * QUERY: what a session holds and its state, for the owner (any image of
 * it): each pin's token and the kind of file it pins.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include "cprx_internal.h"

static u32 file_kind(struct file *file)
{
	struct inode *inode = file_inode(file);
	unsigned long magic = inode->i_sb->s_magic;
	umode_t mode = inode->i_mode;

	/* the type first: devtmpfs is a tmpfs, and /dev/kvm is no memfd */
	if (S_ISFIFO(mode))
		return CPRX_KIND_PIPE;
	if (S_ISSOCK(mode))
		return CPRX_KIND_SOCKET;
	if (S_ISCHR(mode))
		return CPRX_KIND_CHARDEV;
	/* by fs, before S_ISREG: an anon inode's mode is a kernel detail */
	if (magic == ANON_INODE_FS_MAGIC)
		return strcmp(file->f_path.dentry->d_name.name, "[eventfd]") ?
		       CPRX_KIND_ANON : CPRX_KIND_EVENTFD;
	if (!S_ISREG(mode))
		return CPRX_KIND_OTHER;
	/* by file system: the helpers for these are not all exported */
	if (magic == HUGETLBFS_MAGIC)
		return CPRX_KIND_HUGETLB;
	if (magic == TMPFS_MAGIC)
		return CPRX_KIND_MEMFD;
	return CPRX_KIND_REGULAR;
}

long cprx_session_query(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_query arg;
	struct cprx_query_entry *ents = NULL;
	struct cprx_pin *pin;
	u32 usize, cap, n = 0;
	int ret, bkt;

	ret = CPRX_COPY_ARG(arg, entries, uarg, &usize);
	if (ret)
		return ret;
	if (arg.flags || arg.owner_pid)
		return -EINVAL;
	/* an adopted session answers the guardian and the child it starts */
	if (!cprx_is_owner(s) && !cprx_is_adopter(s))
		return -EPERM;
	/* by the pins there are: nr_entries is only the caller's room */
	cap = min(arg.nr_entries, READ_ONCE(s->nr_pins));
	if (cap) {
		ents = kvcalloc(cap, sizeof(*ents), GFP_KERNEL_ACCOUNT);
		if (!ents)
			return -ENOMEM;
	}
	mutex_lock(&s->lock);
	hash_for_each(s->pins, bkt, pin, node) {
		if (n < cap) {
			ents[n].token = pin->token;
			ents[n].kind = file_kind(pin->file);
		}
		n++;
	}
	arg.flags = (s->armed ? CPRX_SESSION_ARMED : 0) |
		    (s->retrieved ? CPRX_SESSION_RETRIEVED : 0) |
		    (s->dead ? CPRX_SESSION_DEAD : 0) |
		    (s->guardian ? CPRX_SESSION_GUARDED : 0) |
		    (s->orphan || s->adopted ? CPRX_SESSION_ORPHAN : 0);
	/* the dead owner's number may be another process's by now */
	arg.owner_pid = s->adopted ? 0 : pid_vnr(s->owner);
	mutex_unlock(&s->lock);
	if (ents && copy_to_user(u64_to_user_ptr(arg.entries), ents,
				 min(n, cap) * sizeof(*ents)))
		ret = -EFAULT;
	kvfree(ents);
	if (ret)
		return ret;
	arg.nr_entries = n;
	memcpy(arg.name, s->name, sizeof(arg.name));
	return cprx_copy_back(uarg, &arg, sizeof(arg), usize);
}
