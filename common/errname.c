// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Errno names: glibc's (strerrorname_np) and the kernel-internal ones that
 * leak to user space (the kernel's include/linux/errno.h), which glibc
 * does not know.
 */
#include <string.h>

#include "errname.h"

/* 512 upwards: never meant for user space, seen all the same (bpf(2)). */
static const char *const kernel_names[] = {
	"ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ENOIOCTLCMD",
	"ERESTART_RESTARTBLOCK", "EPROBE_DEFER", "EOPENSTALE", "ENOPARAM",
	NULL, "EBADHANDLE", "ENOTSYNC", "EBADCOOKIE", "ENOTSUPP",
	"ETOOSMALL", "ESERVERFAULT", "EBADTYPE", "EJUKEBOX", "EIOCBQUEUED",
	"ERECALLCONFLICT", "ENOGRACE",
};
#define KERNEL_FIRST	512

const char *cprx_errname(int err)
{
	const char *name;

	if (err < 0)
		err = -err;
	if (err >= KERNEL_FIRST &&
	    err - KERNEL_FIRST < (int)(sizeof(kernel_names) /
				       sizeof(kernel_names[0]))) {
		name = kernel_names[err - KERNEL_FIRST];
		return name ? name : "EUNKNOWN";
	}
	/* glibc names 0 "0": not an error */
	name = strerrorname_np(err);
	return name && name[0] == 'E' ? name : "EUNKNOWN";
}
