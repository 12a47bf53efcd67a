// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * common/errname.c: the names libcprx's messages and the tools' JSON give
 * errno values, glibc's and the kernel-internal ones, either sign.
 */
#include <errno.h>

#include "errname.h"
#include "harness.h"

TEST(glibc_names)
{
	EXPECT_STREQ("EPERM", cprx_errname(EPERM));
	EXPECT_STREQ("ENOENT", cprx_errname(ENOENT));
	EXPECT_STREQ("E2BIG", cprx_errname(E2BIG));
	EXPECT_STREQ("EBADMSG", cprx_errname(EBADMSG));
	EXPECT_STREQ("ELOOP", cprx_errname(ELOOP));
	EXPECT_STREQ("ECANCELED", cprx_errname(ECANCELED));
	EXPECT_STREQ("EOPNOTSUPP", cprx_errname(EOPNOTSUPP));
}

TEST(negative_is_the_same)
{
	EXPECT_STREQ("ENOENT", cprx_errname(-ENOENT));
	EXPECT_STREQ("ENOTSUPP", cprx_errname(-524));
}

/* What bpf(2) returns for a program the kernel cannot attach. */
TEST(kernel_internal)
{
	EXPECT_STREQ("ENOTSUPP", cprx_errname(524));
	EXPECT_STREQ("ERESTARTSYS", cprx_errname(512));
	EXPECT_STREQ("EPROBE_DEFER", cprx_errname(517));
	EXPECT_STREQ("ENOGRACE", cprx_errname(531));
}

TEST(unknown)
{
	EXPECT_STREQ("EUNKNOWN", cprx_errname(0));
	EXPECT_STREQ("EUNKNOWN", cprx_errname(520));
	EXPECT_STREQ("EUNKNOWN", cprx_errname(532));
	EXPECT_STREQ("EUNKNOWN", cprx_errname(100000));
}

TEST_HARNESS_MAIN
