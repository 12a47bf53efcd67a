// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-vmm --kexec over cprx-luod --fake-kexec, on the host: the whole
 * hand-over and resume of a guest by the reference VMM, what preflight
 * refuses, and what it says when the state is gone or not yet reachable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
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

/* The VM after the kexec, as the daemon at @r serves it: resumed, exit 0. */
static void resumes(struct luod_run *r, char *out, size_t len)
{
	setenv(CPRX_LUOD_ENV, r->sock, 1);
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, len));
	EXPECT_TRUE(has(out, "\"event\":\"update\",\"ok\":true,"
			"\"generation\":1,"));
	EXPECT_TRUE(has(out, "\"verify\":\"ok\"}"));
}

/* What cprx-vmm --kexec says of a session it could not ask for. */
static void waits(const char *out, int rc)
{
	EXPECT_EQ(1, rc);
	EXPECT_TRUE(has(out, "not lost"));
	EXPECT_FALSE(has(out, "\"fatal\":true"));
}

/*
 * A stand-in at @path, listening as @uid: each connection is accepted and
 * closed unanswered, as by a daemon that died before it answered or a
 * socket unit whose daemon never started.  Its pid.
 */
static pid_t silent_socket(const char *path, uid_t uid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pid_t pid;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		/* SO_PEERCRED tells its peers who called listen() */
		if ((uid && (setresgid(uid, uid, uid) || setresuid(uid, uid, uid))) ||
		    listen(fd, 8) < 0)
			_exit(1);
		for (;;) {
			int c = accept(fd, NULL, NULL);

			if (c >= 0)
				close(c);
		}
	}
	close(fd);
	for (int i = 0; pid > 0 && i < 500; i++) {	/* until it listens */
		int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		int ok = !connect(c, (struct sockaddr *)&sa, sizeof(sa));

		close(c);
		if (ok)
			break;
		usleep(10000);
	}
	return pid;
}

static void silent_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/*
 * A guest handed over, the "kexec" done, and cprx-vmm --kexec run against
 * silent_socket(@uid) at @name in the test's directory: "not lost" and
 * @words; then a resume from the daemon.
 */
static void silent_case(const char *name, uid_t uid, const char *words)
{
	static char out[65536];
	struct luod_run r = { 0 };
	char st[CPRX_LUOD_MSG_MAX], sock[sizeof(r.sock) + 16];
	pid_t pid;

	ASSERT_TRUE(vmm_daemon(&r, fake));
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	ASSERT_GT(luod_ask1(&r, "KEXEC", st, sizeof(st)), 0);
	snprintf(sock, sizeof(sock), "%s/%s", r.dir, name);
	pid = silent_socket(sock, uid);
	ASSERT_GT(pid, 0);
	setenv(CPRX_LUOD_ENV, sock, 1);
	waits(out, vmm("--kexec --name vm1", out, sizeof(out)));
	EXPECT_TRUE(has(out, words));
	silent_stop(pid);
	resumes(&r, out, sizeof(out));
	luod_cleanup(&r);
}

/*
 * Test Case: vmm_kexec_unanswered
 * After the kexec, a socket that takes cprx-vmm's connection but never
 * answers (a daemon that died first, or a socket unit whose daemon never
 * started) has taken nothing either: "not lost", exit 1, and a resume
 * once the daemon answers.
 */
TEST(vmm_kexec_unanswered)
{
	if (!getenv("CPRX_VMM"))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	silent_case("silent.sock", 0, "did not answer");
}

/*
 * Test Case: vmm_kexec_foreign_socket
 * After the kexec, the socket is another user's (a path in a shared
 * directory taken first): libcprx asks it nothing, so nothing was taken.
 * Not "lost" (exit 4, an operator discards the guest) but exit 1, and a
 * resume from root's daemon after.
 */
TEST(vmm_kexec_foreign_socket)
{
	if (geteuid())
		SKIP(return, "needs root (a socket of another uid)");
	if (!getenv("CPRX_VMM"))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	silent_case("foreign.sock", 65534, "served by uid 65534");
}

/*
 * Test Case: vmm_kexec_connection_refused
 * After the kexec, the daemon refuses the connection itself (its uid has
 * every connection it may have, ERR 24 with the connection carried back):
 * the request was never read, nothing taken.  Exit 1, "not lost"; once
 * those connections close, the guest resumes.
 */
TEST(vmm_kexec_connection_refused)
{
	static char out[65536];
	struct luod_run r = { 0 };
	char st[CPRX_LUOD_MSG_MAX];
	int hog[64], n = 0;

	if (!vmm_daemon(&r, fake))
		SKIP(return, "CPRX_VMM is not set (meson sets it)");
	EXPECT_EQ(0, vmm("--kexec --name vm1", out, sizeof(out)));
	ASSERT_GT(luod_ask1(&r, "KEXEC", st, sizeof(st)), 0);
	/* every connection this uid may have, each answered: each counted */
	for (; n < 64; n++) {
		hog[n] = luod_connect(&r);
		if (hog[n] < 0 || luod_ask(hog[n], "STATUS", -1, st, sizeof(st),
					   NULL) <= 0 || strncmp(st, "OK", 2)) {
			if (hog[n] >= 0)
				close(hog[n]);
			break;
		}
	}
	ASSERT_LT(n, 64);
	ASSERT_TRUE(has(st, "ERR 24"));
	waits(out, vmm("--kexec --name vm1", out, sizeof(out)));
	while (n--)
		close(hog[n]);
	usleep(300000);	/* the readers exit, their slots free */
	resumes(&r, out, sizeof(out));
	luod_cleanup(&r);
}

TEST_HARNESS_MAIN
