// SPDX-License-Identifier: GPL-2.0
/*
 * The pins: PRESERVE_FD and UNPRESERVE_FD one at a time, and
 * PRESERVE_FDS: many pins in one ioctl, all or nothing.  The files are
 * taken before the session's lock; the pins go into the session under it,
 * one by one with PRESERVE_FD's checks and charges, and come out again if
 * any entry is refused, so that no one ever sees half a batch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hashtable.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "cprx_internal.h"

/* The caller's entries, or an ERR_PTR. */
static struct cprx_preserve_entry *read_entries(u64 uptr, u32 nr)
{
	struct cprx_preserve_entry *ents;

	ents = kvmalloc_array(nr, sizeof(*ents),
			      GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!ents)
		return ERR_PTR(-ENOMEM);
	if (copy_from_user(ents, u64_to_user_ptr(uptr),
			   array_size(nr, sizeof(*ents)))) {
		kvfree(ents);
		return ERR_PTR(-EFAULT);
	}
	return ents;
}

static void put_pins(struct cprx_pin **pins, u32 n)
{
	while (n--) {
		fput(pins[n]->file);
		kfree(pins[n]);
	}
}

/*
 * A pin with its file for each entry, in order, up to the first one
 * refused: how many were made, and in *@err why the next one was not.
 */
static u32 take_files(const struct cprx_preserve_entry *ents,
		      struct cprx_pin **pins, u32 nr, int *err)
{
	struct cprx_pin *pin;
	struct file *file;
	u32 i;

	*err = 0;
	for (i = 0; i < nr; i++) {
		if (ents[i].reserved) {
			*err = -EINVAL;
			break;
		}
		file = fget(ents[i].fd);
		if (!file) {
			*err = -EBADF;
			break;
		}
		if (cprx_is_session(file)) {
			fput(file);	/* a session pinned in a session */
			*err = -EINVAL;
			break;
		}
		pin = kmalloc(sizeof(*pin), GFP_KERNEL_ACCOUNT);
		if (!pin) {
			fput(file);
			*err = -ENOMEM;
			break;
		}
		pin->token = ents[i].token;
		pin->file = file;
		pins[i] = pin;
	}
	return i;
}

/* Takes the first @n pins out of @s again. */
static void remove_pins(struct cprx_session *s, struct cprx_pin **pins, u32 n)
{
	u32 i;

	lockdep_assert_held(&s->lock);
	for (i = 0; i < n; i++)
		hash_del(&pins[i]->node);
	if (n)
		cprx_uncharge_pins(s->user, n);
}

/*
 * PRESERVE_FD's checks and charge for each pin in turn, against the pins of
 * @s and the earlier ones of the batch.  Returns how many went in, and in
 * *@err why the next one did not.  s->nr_pins is the caller's to update.
 */
static u32 add_pins(struct cprx_session *s, struct cprx_pin **pins, u32 n,
		    int *err)
{
	unsigned int max = READ_ONCE(cprx_max_pins);
	u32 i;

	lockdep_assert_held(&s->lock);
	*err = 0;
	for (i = 0; i < n; i++) {
		if (cprx_find_pin(s, pins[i]->token))
			*err = -EEXIST;
		else if (s->nr_pins >= max || i >= max - s->nr_pins)
			*err = -ENOSPC;
		else
			*err = cprx_charge_pin(s->user);
		if (*err)
			break;
		hash_add(s->pins, &pins[i]->node, pins[i]->token);
	}
	return i;
}

/*
 * Pins @got files of a batch of @nr in @s, all or none: 0, or the error of
 * entry *@failed (left alone for an error that names no entry).  @ferr is
 * why entry @got has no file, when @got < @nr.
 */
static int pin_batch(struct cprx_session *s, struct cprx_pin **pins,
		     u32 got, u32 nr, int ferr, u32 *failed)
{
	u32 added;
	int ret;

	mutex_lock(&s->lock);
	ret = cprx_may_pin(s);
	if (!ret) {
		added = add_pins(s, pins, got, &ret);
		if (!ret && got < nr)
			ret = ferr;
		if (ret) {
			remove_pins(s, pins, added);
			if (ret != -ENOMEM)
				*failed = added;
		} else {
			WRITE_ONCE(s->nr_pins, s->nr_pins + nr);
		}
	}
	mutex_unlock(&s->lock);
	return ret;
}

/*
 * The answers any batch gets before its files are taken: who, when, and
 * whether @nr fits the room @s has left (*@failed is then that room).
 */
static int batch_allowed(struct cprx_session *s, u32 nr, u32 *failed)
{
	unsigned int max = READ_ONCE(cprx_max_pins);
	unsigned int room;
	int ret = 0;

	mutex_lock(&s->lock);
	room = max - min(s->nr_pins, max);
	ret = cprx_may_pin(s);
	if (!ret && nr > room) {
		*failed = room;
		ret = -ENOSPC;
	}
	mutex_unlock(&s->lock);
	return ret;
}

static int preserve_entries(struct cprx_session *s,
			    const struct cprx_session_preserve_fds *arg,
			    u32 *failed)
{
	struct cprx_preserve_entry *ents;
	struct cprx_pin **pins;
	int ferr, ret;
	u32 got;

	ents = read_entries(arg->entries, arg->nr);
	if (IS_ERR(ents))
		return PTR_ERR(ents);
	pins = kvcalloc(arg->nr, sizeof(*pins),
			GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!pins) {
		kvfree(ents);
		return -ENOMEM;
	}
	got = take_files(ents, pins, arg->nr, &ferr);
	kvfree(ents);
	ret = pin_batch(s, pins, got, arg->nr, ferr, failed);
	if (ret)
		put_pins(pins, got);
	kvfree(pins);
	return ret;
}

long cprx_session_preserve_fds(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_preserve_fds __user *u = uarg;
	struct cprx_session_preserve_fds arg;
	u32 usize, failed;
	int ret;

	ret = CPRX_COPY_ARG(arg, reserved, uarg, &usize);
	if (ret)
		return ret;
	if (arg.reserved)
		return -EINVAL;
	/* bounded whatever max_pins says: the arrays below are this big */
	if (arg.nr > CPRX_PRESERVE_FDS_MAX)
		return -E2BIG;
	/* @failed is proven writable before anything is pinned */
	if (put_user(arg.failed, &u->failed))
		return -EFAULT;
	failed = arg.failed;
	ret = batch_allowed(s, arg.nr, &failed);
	if (ret == -EPERM || ret == -ESRCH || ret == -EBUSY)
		return ret;	/* names no entry: the struct is unchanged */
	if (!ret) {
		/* the arrays are made only for a batch that may fit */
		ret = preserve_entries(s, &arg, &failed);
		if (!ret)
			failed = arg.nr;
	}
	/* proven writable above: a fault now is the caller's own unmap */
	(void)put_user(failed, &u->failed);
	return ret;
}

long cprx_session_preserve(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_preserve_fd arg;
	struct cprx_pin *pin;
	struct file *file;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, token, uarg, &usize);
	if (ret)
		return ret;
	file = fget(arg.fd);
	if (!file)
		return -EBADF;
	if (cprx_is_session(file)) {
		fput(file);	/* a session pinned in a session never dies */
		return -EINVAL;
	}
	pin = kmalloc(sizeof(*pin), GFP_KERNEL_ACCOUNT);
	if (!pin) {
		fput(file);
		return -ENOMEM;
	}
	pin->token = arg.token;
	pin->file = file;

	mutex_lock(&s->lock);
	ret = cprx_may_pin(s);
	if (!ret && cprx_find_pin(s, arg.token))
		ret = -EEXIST;
	else if (!ret && s->nr_pins >= READ_ONCE(cprx_max_pins))
		ret = -ENOSPC;
	else if (!ret)
		ret = cprx_charge_pin(s->user);
	if (!ret) {
		hash_add(s->pins, &pin->node, pin->token);
		WRITE_ONCE(s->nr_pins, s->nr_pins + 1);
	}
	mutex_unlock(&s->lock);
	if (ret) {
		fput(file);
		kfree(pin);
	}
	return ret;
}

long cprx_session_unpreserve(struct cprx_session *s, void __user *uarg)
{
	struct cprx_session_unpreserve_fd arg;
	struct cprx_pin *pin = NULL;
	u32 usize;
	int ret;

	ret = CPRX_COPY_ARG(arg, token, uarg, &usize);
	if (ret)
		return ret;
	if (arg.reserved)
		return -EINVAL;
	mutex_lock(&s->lock);
	if (!cprx_is_image(s))
		ret = -EPERM;
	else if (s->armed)
		ret = -EBUSY;
	else
		pin = cprx_find_pin(s, arg.token);
	if (!ret && !pin)
		ret = -ENOENT;
	if (!ret) {
		hash_del(&pin->node);
		WRITE_ONCE(s->nr_pins, s->nr_pins - 1);
		cprx_uncharge_pins(s->user, 1);
	}
	mutex_unlock(&s->lock);
	if (ret)
		return ret;
	fput(pin->file);
	kfree(pin);
	return 0;
}
