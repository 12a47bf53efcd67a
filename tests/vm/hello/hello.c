// SPDX-License-Identifier: GPL-2.0
/*
 * The VM tier's toolchain check: a trivial out-of-tree module built by
 * tests/vm/kbuild.sh against a Debian kernel's headers and loaded in that
 * kernel under QEMU by tests/vm/smoke.sh.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/utsname.h>

static int magic = 42;
module_param(magic, int, 0444);
MODULE_PARM_DESC(magic, "a value the smoke test reads back from sysfs");

static int __init cprx_hello_init(void)
{
	pr_info("cprx_hello: loaded on %s, magic=%d\n", init_utsname()->release, magic);
	return 0;
}

static void __exit cprx_hello_exit(void)
{
	pr_info("cprx_hello: unloaded\n");
}

module_init(cprx_hello_init);
module_exit(cprx_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cprx VM tier toolchain check");
