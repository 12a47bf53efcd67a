// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-vmm --kexec over cprx-luod --fake-kexec, on the host: the whole
 * hand-over and resume of a guest by the reference VMM, what preflight
 * refuses, and what it says when the state is gone or not yet reachable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "harness.h"
#include "luo_util.h"
#include "luod_proto.h"

static const char *const fake[] = { "--fake-kexec", NULL };

/* Runs $CPRX_VMM with @args; its exit status and its stdout in @out. */
static int vmm(const char *args, char *out, size_t len)
{
	const char *bin = getenv("CPRX_VMM");
	char cmd[512];
	size_t n = 0;
	FILE *f;
	int st;

	if (!bin)
		return -1;
	snprintf(cmd, sizeof(cmd), "'%s' --json --ram 16M --run-ms 50 %s", bin,
		 args);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (n < len - 1 && fgets(out + n, len - n, f))
		n += strlen(out + n);
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A daemon for a cprx-vmm test, started with @extra; false: no cprx-vmm. */
static bool vmm_daemon(struct luod_run *r, const char *const extra[])
{
	if (!getenv("CPRX_VMM"))
		return false;
	ASSERT_EQ(0, luod_start(r, extra));
	return true;
}

/*
 * Test Case: vmm_kexec_roundtrip
 * cprx-vmm --kexec stops the guest, saves, hands the session over and
 * exits 0; started again after the "kexec" it resumes: RAM pattern and
 * the blob-held device state verified, generation 1, committed.
 */
TEST(vmm_kexec_roundtrip)
{
	static char out[65536];
	struct luod_run r = { 0 };
	char st[CPRX_LUOD_MSG_MAX];

	if (!vmm_daemon(&r, fake))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	EXPECT_TRUE(has(out, "\"event\":\"kexec-prepared\""));
	ASSERT_GT(luod_ask1(&r, "KEXEC", st, sizeof(st)), 0);
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	EXPECT_TRUE(has(out, "\"event\":\"update\",\"ok\":true,"
			"\"generation\":1,"));
	EXPECT_TRUE(has(out, "\"backend\":\"luo\""));
	EXPECT_TRUE(has(out, "\"verify\":\"ok\"}"));
	EXPECT_TRUE(has(out, "\"updates_ok\":1,\"refused\":0"));
	ASSERT_GT(luod_ask1(&r, "STATUS", st, sizeof(st)), 0);
	EXPECT_STREQ("OK 0", st);
	luod_cleanup(&r);
}

/*
 * Test Case: vmm_kexec_device_refused
 * cprx-vmm --kexec that also preserves its device fds: preflight refuses
 * the update naming the first device's token, the guest keeps running
 * (exit 3), and the daemon holds nothing.
 */
TEST(vmm_kexec_device_refused)
{
	static char out[65536];
	struct luod_run r = { 0 };
	char st[CPRX_LUOD_MSG_MAX];

	if (!vmm_daemon(&r, fake))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	EXPECT_EQ(3, vmm("--kexec --inject kexec-device", out, sizeof(out)));
	EXPECT_TRUE(has(out, "luo:dev.eventfd"));
	EXPECT_TRUE(has(out, "\"resumed\":true"));
	ASSERT_GT(luod_ask1(&r, "STATUS", st, sizeof(st)), 0);
	EXPECT_STREQ("OK 0", st);
	luod_cleanup(&r);
}

/*
 * Test Case: vmm_kexec_gone
 * After a kexec into a kernel without /dev/liveupdate, cprx-vmm --kexec
 * says the state is gone and why, and exits 4 (the VM is lost).
 */
TEST(vmm_kexec_gone)
{
	const char *const nolu[] = { "--device", "/nonexistent/liveupdate",
				     "--boot-id", "after-the-kexec", NULL };
	static char out[65536];
	struct luod_run r = { 0 };

	if (!vmm_daemon(&r, fake))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	EXPECT_EQ(0, vmm("--kexec", out, sizeof(out)));
	luod_stop(&r);
	ASSERT_EQ(0, luod_start(&r, nolu));
	EXPECT_EQ(4, vmm("--kexec", out, sizeof(out)));
	EXPECT_TRUE(has(out, "\"event\":\"error\",\"fatal\":true"));
	EXPECT_TRUE(has(out, "is gone: /nonexistent/liveupdate is missing: "
			"this kernel has no Live Update Orchestrator"));
	luod_cleanup(&r);
}

/*
 * Test Case: vmm_kexec_no_daemon
 * After the kexec, cprx-vmm --kexec started before cprx-luod is
 * reachable has not lost the VM: the session waits in the kernel.  It
 * must not say "lost" (exit 4, which an operator acts on by discarding
 * the guest) but a setup error naming the daemon (exit 1); started again
 * once the daemon answers, it resumes the guest.
 */
TEST(vmm_kexec_no_daemon)
{
	static char out[65536];
	struct luod_run r = { 0 };
	char st[CPRX_LUOD_MSG_MAX], sock[sizeof(r.sock)];

	if (!vmm_daemon(&r, fake))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	ASSERT_GT(luod_ask1(&r, "KEXEC", st, sizeof(st)), 0);
	snprintf(sock, sizeof(sock), "%s", getenv(CPRX_LUOD_ENV));
	setenv(CPRX_LUOD_ENV, "/nonexistent/cprx-luod.sock", 1);
	EXPECT_EQ(1, vmm("--kexec --name vm1", out, sizeof(out)));
	EXPECT_TRUE(has(out, "connecting to /nonexistent/cprx-luod.sock"));
	EXPECT_TRUE(has(out, "not lost"));
	EXPECT_FALSE(has(out, "\"fatal\":true"));
	setenv(CPRX_LUOD_ENV, sock, 1);
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	EXPECT_TRUE(has(out, "\"event\":\"update\",\"ok\":true,"
			"\"generation\":1,"));
	EXPECT_TRUE(has(out, "\"verify\":\"ok\"}"));
	luod_cleanup(&r);
}

TEST_HARNESS_MAIN
