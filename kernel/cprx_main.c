// SPDX-License-Identifier: GPL-2.0
/*
 * cprx.ko: a pinned fd-table handle for live update by exec.
 *
 * /dev/cprx creates and retrieves sessions; /proc/cprx/sessions lists the
 * live ones for operators.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pid_namespace.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include "cprx_internal.h"
#define CREATE_TRACE_POINTS
#include "cprx_trace.h"

LIST_HEAD(cprx_sessions);
DEFINE_MUTEX(cprx_sessions_lock);	/* the list; outside every s->lock */

unsigned int cprx_max_pins = 4096;
module_param_named(max_pins, cprx_max_pins, uint, 0644);
MODULE_PARM_DESC(max_pins, "Files one session may pin (ENOSPC beyond)");

unsigned int cprx_max_user_pins = 65536;
module_param_named(max_user_pins, cprx_max_user_pins, uint, 0644);
MODULE_PARM_DESC(max_user_pins,
		 "Files one user's sessions may pin in all (ENOSPC beyond)");

unsigned int cprx_max_total_pins = 262144;
module_param_named(max_total_pins, cprx_max_total_pins, uint, 0644);
MODULE_PARM_DESC(max_total_pins,
		 "Files all users' sessions may pin together (ENOSPC beyond)");

unsigned int cprx_max_sessions = 256;
module_param_named(max_sessions, cprx_max_sessions, uint, 0644);
MODULE_PARM_DESC(max_sessions,
		 "Sessions per user, finished ones until closed (ENOSPC)");

unsigned int cprx_max_total_sessions = 4096;
module_param_named(max_total_sessions, cprx_max_total_sessions, uint, 0644);
MODULE_PARM_DESC(max_total_sessions,
		 "Sessions of all users together (ENOSPC beyond)");

/* Larger structs than ours are fine if their tail is zero. */
#define CPRX_ARG_MAX	PAGE_SIZE

int cprx_copy_arg(void *dst, size_t ksize, size_t minsize,
		  void __user *uarg, u32 *usizep)
{
	u32 usize;

	if (get_user(usize, (u32 __user *)uarg))
		return -EFAULT;
	if (usize < minsize)
		return -EINVAL;
	if (usize > CPRX_ARG_MAX)
		return -E2BIG;
	*usizep = usize;
	return copy_struct_from_user(dst, ksize, uarg, usize);
}

int cprx_copy_back(void __user *uarg, const void *src, size_t ksize,
		   u32 usize)
{
	return copy_to_user(uarg, src, min_t(size_t, ksize, usize)) ?
	       -EFAULT : 0;
}

/*
 * A session name: NUL-terminated within the field, not empty, printable
 * ASCII only (it is a field of a line in /proc/cprx/sessions).
 */
static int check_name(const u8 *name)
{
	size_t i, len = strnlen(name, CPRX_SESSION_NAME_LEN);

	if (!len || len == CPRX_SESSION_NAME_LEN)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (name[i] < 0x20 || name[i] > 0x7e)
			return -EINVAL;
	return 0;
}

/*
 * Installs the file @get() returns under a new fd, whose number is written
 * to the caller's @fd field first: a fault, or a refusal, changes nothing.
 */
static long dev_get_session(struct cprx_ioctl_create_session *arg,
			    void __user *uarg,
			    struct file *(*get)(const char *name))
{
	struct cprx_ioctl_create_session __user *u = uarg;
	struct file *file;
	int fd;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	if (put_user(fd, &u->fd)) {
		put_unused_fd(fd);
		return -EFAULT;
	}
	file = get(arg->name);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		/* a refusal leaves the caller's struct as it was */
		return put_user(arg->fd, &u->fd) ? -EFAULT : PTR_ERR(file);
	}
	fd_install(fd, file);
	return 0;
}

/* RETRIEVE and ADOPT_SESSION take CREATE_SESSION's argument as it is */
static_assert(sizeof(struct cprx_ioctl_create_session) ==
	      sizeof(struct cprx_ioctl_retrieve_session));
static_assert(offsetof(struct cprx_ioctl_create_session, fd) ==
	      offsetof(struct cprx_ioctl_retrieve_session, fd));
static_assert(sizeof(struct cprx_ioctl_create_session) ==
	      sizeof(struct cprx_ioctl_adopt_session));
static_assert(offsetof(struct cprx_ioctl_create_session, fd) ==
	      offsetof(struct cprx_ioctl_adopt_session, fd));

static long dev_session(void __user *uarg,
			struct file *(*get)(const char *name))
{
	struct cprx_ioctl_create_session arg;
	u32 usize;
	int ret;

	/* up to the fd: a session the caller cannot learn of is no use */
	ret = CPRX_COPY_ARG(arg, fd, uarg, &usize);
	if (ret)
		return ret;
	if (arg.flags || arg.reserved || check_name(arg.name))
		return -EINVAL;
	return dev_get_session(&arg, uarg, get);
}

static long dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	long ret;

	switch (cmd) {
	case CPRX_IOCTL_CREATE_SESSION:
		ret = dev_session((void __user *)arg, cprx_session_create);
		break;
	case CPRX_IOCTL_RETRIEVE_SESSION:
		ret = dev_session((void __user *)arg, cprx_session_retrieve);
		break;
	case CPRX_IOCTL_ADOPT_SESSION:
		ret = dev_session((void __user *)arg, cprx_session_adopt);
		break;
	default:
		return -ENOTTY;
	}
	/* for cprx-guard: a session now exists in the caller's hands */
	if (!ret)
		trace_cprx_ioctl_done(cmd, 0, 0);
	return ret;
}

static const struct file_operations cprx_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice cprx_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cprx",
	.fops = &cprx_dev_fops,
	.mode = 0660,	/* kernel/60-cprx.rules gives it to group kvm */
};

/*
 * May the opener of @m see @s?  Its own sessions, or all of them with
 * CAP_SYS_ADMIN: the pids and names of other users' VMMs are not for
 * everyone (a /proc mounted hidepid= hides their /proc/N too).  The
 * opener's credentials, not the reader's, so that a file handed to a
 * privileged program shows it no more.
 */
static bool may_see(struct seq_file *m, struct cprx_session *s)
{
	return uid_eq(m->file->f_cred->euid, s->uid) ||
	       file_ns_capable(m->file, &init_user_ns, CAP_SYS_ADMIN);
}

/*
 * The live sessions whose owner this /proc's pid namespace can see, with
 * the pid it knows (a container's /proc shows its own VMMs, as its /proc/N),
 * and that the opener may see.
 */
static int sessions_show(struct seq_file *m, void *v)
{
	struct pid_namespace *ns = proc_pid_ns(file_inode(m->file)->i_sb);
	struct cprx_session *s;
	s64 now = ktime_to_ms(ktime_get());
	pid_t pid;

	seq_puts(m, "pid\tname\tpins\tarmed\tretrieved\tage_ms\n");
	mutex_lock(&cprx_sessions_lock);
	list_for_each_entry(s, &cprx_sessions, node) {
		pid = pid_nr_ns(s->owner, ns);
		if (READ_ONCE(s->dead) || !pid || !may_see(m, s))
			continue;
		seq_printf(m, "%d\t%s\t%u\t%d\t%d\t%lld\n",
			   pid, s->name, READ_ONCE(s->nr_pins),
			   READ_ONCE(s->armed), READ_ONCE(s->retrieved),
			   now - ktime_to_ms(s->created));
	}
	mutex_unlock(&cprx_sessions_lock);
	return 0;
}

static struct proc_dir_entry *cprx_proc;

static int __init cprx_init(void)
{
	int ret;

	cprx_proc = proc_mkdir("cprx", NULL);
	if (!cprx_proc)
		return -ENOMEM;
	if (!proc_create_single("sessions", 0444, cprx_proc, sessions_show)) {
		ret = -ENOMEM;
		goto err_proc;
	}
	ret = misc_register(&cprx_dev);
	if (ret)
		goto err_proc;
	return 0;

err_proc:
	proc_remove(cprx_proc);
	return ret;
}

/* Every session file holds a module reference: none is left here. */
static void __exit cprx_exit(void)
{
	misc_deregister(&cprx_dev);
	proc_remove(cprx_proc);
}

module_init(cprx_init);
module_exit(cprx_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cprx: pinned fd-table handle for live update by exec");
MODULE_AUTHOR("The cprx developers");
