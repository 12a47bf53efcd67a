/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The symbolic name of an errno value ("EPERM"), for messages and JSON
 * output: one table for libcprx, the tools and the tests.
 */
#ifndef CPRX_ERRNAME_H
#define CPRX_ERRNAME_H

/*
 * The name of @err (its sign is ignored): glibc's name for it, or the
 * kernel-internal one (524 "ENOTSUPP", which BPF program loading returns
 * to user space), else (0 too) "EUNKNOWN".  Never NULL.
 */
const char *cprx_errname(int err);

#endif /* CPRX_ERRNAME_H */
