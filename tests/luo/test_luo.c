// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The luo backend and cprx-luod, on the host: no /dev/liveupdate here, so
 * the daemon runs with --fake-kexec (it keeps the memfds itself and acts a
 * kexec on KEXEC) or with a --device path that does not exist.  What only
 * a real kexec shows is the VM tier's (tests/vm).
 *
 * Backend selection; preflight refusing, by token, what LUO cannot keep;
 * the daemon's SO_PEERCRED naming (another uid neither sees nor retrieves
 * a session); a session dropped with its connection; the status verb
 * after a "kexec"; the messages when the state is gone (no LUO in the new
 * kernel, or the daemon stopped before the kexec).  cprx-vmm --kexec over
 * the same daemon is test_luo_vmm.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "harness.h"
#include "cprx.h"
#include "luo_util.h"
#include "luod_proto.h"

#define RAM_SIZE	(4u << 20)
#define NOBODY		65534

static const char *const fake[] = { "--fake-kexec", NULL };

static struct cprx_session *open_luo(const char *name)
{
	struct cprx_options o = { .size = sizeof(o), .backend = CPRX_BACKEND_LUO };
	struct cprx_session *s = NULL;
	int ret = cprx_session_open(&s, name, &o);

	if (ret)
		TH_LOG("cprx_session_open: %s", cprx_errmsg(NULL));
	return s;
}

/* A VMM's side before the kexec: RAM in a memfd, a blob, held. */
static int prepare(const char *name, int byte)
{
	struct cprx_session *s = open_luo(name);
	int fd = luo_memfd("ram", RAM_SIZE, byte), ret;

	if (!s || fd < 0)
		return -1;
	ret = cprx_preserve_ram(s, "ram0", fd, NULL, RAM_SIZE, CPRX_PAGE_4K);
	if (!ret)
		ret = cprx_add_blob(s, "dev", "device-state", 13);
	if (!ret)
		ret = cprx_kexec_prepare(s);
	if (ret)
		TH_LOG("prepare %s: %s", name, cprx_errmsg(s));
	cprx_session_close(s);
	close(fd);
	return ret;
}

static int incoming(const char *name, struct cprx_session **sp)
{
	struct cprx_options o = { .size = sizeof(o), .backend = CPRX_BACKEND_LUO,
				  .kexec_session = name };

	return cprx_incoming(sp, &o);
}

/* ---- backend selection ------------------------------------------------ */

/*
 * Test Case: luo_needs_daemon
 * CPRX_BACKEND=luo with no cprx-luod: refused at open, naming the daemon,
 * its socket and how to start it.
 */
TEST(luo_needs_daemon)
{
	struct cprx_session *s = NULL;

	setenv(CPRX_LUOD_ENV, "/nonexistent/cprx-luod.sock", 1);
	setenv(CPRX_ENV_BACKEND, "luo", 1);
	EXPECT_EQ(-ENODEV, cprx_session_open(&s, "vm", NULL));
	EXPECT_EQ(NULL, s);
	EXPECT_TRUE(has(cprx_errmsg(NULL), "cprx-luod"));
	EXPECT_TRUE(has(cprx_errmsg(NULL), "/nonexistent/cprx-luod.sock"));
	EXPECT_TRUE(has(cprx_errhint(NULL), "cprx-luod.socket"));
}

/*
 * Test Case: luo_selected
 * opts.backend = luo and CPRX_BACKEND=luo both give a "luo" session; auto
 * never picks luo, daemon or not (a kexec is not an exec).
 */
TEST(luo_selected)
{
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	ASSERT_EQ(0, luod_start(&r, fake));
	s = open_luo("vm");
	ASSERT_NE(NULL, s);
	EXPECT_STREQ("luo", cprx_backend_name(s));
	cprx_session_close(s);
	unsetenv(CPRX_ENV_BACKEND);
	ASSERT_EQ(0, cprx_session_open(&s, "vm", NULL));
	EXPECT_STRNE("luo", cprx_backend_name(s));
	cprx_session_close(s);
	setenv(CPRX_ENV_BACKEND, "luo", 1);
	ASSERT_EQ(0, cprx_session_open(&s, "vm2", NULL));
	EXPECT_STREQ("luo", cprx_backend_name(s));
	cprx_session_close(s);
	luod_cleanup(&r);
}

/*
 * Test Case: no_state_file
 * The luo backend keeps the state in its session: a state file (which
 * nothing after the kexec would remove) is refused at open.
 */
TEST(no_state_file)
{
	struct cprx_options o = { .size = sizeof(o), .backend = CPRX_BACKEND_LUO,
				  .target = CPRX_STATE_FILE,
				  .state_path = "/tmp/cprx-luo-state" };
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	ASSERT_EQ(0, luod_start(&r, fake));
	EXPECT_EQ(-EINVAL, cprx_session_open(&s, "vm", &o));
	EXPECT_TRUE(has(cprx_errmsg(NULL), "state file would outlive it"));
	luod_cleanup(&r);
}

/*
 * Test Case: exec_and_prepare_mismatch
 * cprx_exec on a luo session and cprx_kexec_prepare on another backend's
 * are refused, saying which call fits.
 */
TEST(exec_and_prepare_mismatch)
{
	char *argv[] = { "/bin/true", NULL };
	struct luod_run r = { 0 };
	struct cprx_session *s;

	ASSERT_EQ(0, luod_start(&r, fake));
	s = open_luo("vm");
	ASSERT_NE(NULL, s);
	EXPECT_EQ(-EOPNOTSUPP, cprx_exec(s, "/bin/true", argv));
	EXPECT_TRUE(has(cprx_errhint(s), "cprx_kexec_prepare"));
	cprx_session_close(s);
	unsetenv(CPRX_ENV_BACKEND);
	ASSERT_EQ(0, cprx_session_open(&s, "vm", NULL));
	EXPECT_EQ(-EINVAL, cprx_kexec_prepare(s));
	EXPECT_TRUE(has(cprx_errmsg(s), "not a kexec"));
	cprx_session_close(s);
	luod_cleanup(&r);
}

/* ---- preflight ---------------------------------------------------------- */

static const struct cprx_check *check(const struct cprx_preflight_report *rep,
				      const char *name)
{
	unsigned int i;

	for (i = 0; i < rep->nr_checks && i < rep->max_checks; i++)
		if (!strcmp(rep->checks[i].name, name))
			return &rep->checks[i];
	TH_LOG("no check '%s'", name);
	return NULL;
}

/*
 * Test Case: preflight_refuses_by_name
 * With luo, preflight fails a device fd (eventfd), a hugetlb memfd and a
 * plain file each under "luo:<token>", with what it is; the RAM memfd
 * passes; nothing is sent to the daemon; the first refusal is the error.
 */
TEST(preflight_refuses_by_name)
{
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	const struct cprx_check *c;
	struct luod_run r = { 0 };
	struct cprx_session *s;
	int ram = luo_memfd("ram", RAM_SIZE, 1), efd = eventfd(0, EFD_CLOEXEC);
	int huge = memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB);
	int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	char out[CPRX_LUOD_MSG_MAX];

	ASSERT_EQ(0, luod_start(&r, fake));
	s = open_luo("vm");
	ASSERT_NE(NULL, s);
	ASSERT_EQ(0, cprx_preserve_ram(s, "ram0", ram, NULL, RAM_SIZE,
				       CPRX_PAGE_4K));
	ASSERT_EQ(0, cprx_preserve_fd(s, "dev.efd", efd));
	ASSERT_EQ(0, cprx_preserve_fd(s, "dev.file", file));
	if (huge >= 0 && ftruncate(huge, 2 << 20) < 0) {
		close(huge);
		huge = -1;
	}
	if (huge >= 0)
		ASSERT_EQ(0, cprx_preserve_ram(s, "ram.huge", huge, NULL, 2 << 20,
					       CPRX_PAGE_HUGETLB));
	else
		TH_LOG("no hugetlb memfd here (%s): that case is not run",
		       strerror(errno));
	EXPECT_EQ(-EOPNOTSUPP, cprx_preflight(s, "/proc/self/exe", NULL, &rep));
	c = check(&rep, "luo:ram0");
	ASSERT_NE(NULL, c);
	EXPECT_EQ(CPRX_PASS, c->verdict);
	c = check(&rep, "luo:dev.efd");
	ASSERT_NE(NULL, c);
	EXPECT_EQ(CPRX_FAIL, c->verdict);
	EXPECT_TRUE(has(c->reason, "eventfd"));
	c = check(&rep, "luo:dev.file");
	ASSERT_NE(NULL, c);
	EXPECT_EQ(CPRX_FAIL, c->verdict);
	EXPECT_TRUE(has(c->reason, "not a memfd"));
	if (huge >= 0) {
		c = check(&rep, "luo:ram.huge");
		ASSERT_NE(NULL, c);
		EXPECT_EQ(CPRX_FAIL, c->verdict);
		EXPECT_TRUE(has(c->reason, "hugetlb"));
	}
	EXPECT_TRUE(has(cprx_errmsg(s), "luo:dev.efd"));
	c = check(&rep, "keeper");	/* no exec: nothing to tear down */
	ASSERT_NE(NULL, c);
	EXPECT_TRUE(has(c->reason, "off (luo"));
	c = check(&rep, "backend");
	ASSERT_NE(NULL, c);
	EXPECT_EQ(CPRX_WARN, c->verdict);
	/* the daemon's session holds nothing yet: only the CREATE was sent */
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "vm open"));
	cprx_session_close(s);
	luod_cleanup(&r);
}

/*
 * Test Case: preflight_passes_memfds
 * Only memfds: every luo: check passes, preflight returns 0 and the daemon
 * has them (a second PRESERVE of the same token is refused by it).
 */
TEST(preflight_passes_memfds)
{
	struct luod_run r = { 0 };
	struct cprx_session *s;
	int ram = luo_memfd("ram", RAM_SIZE, 1), ram1 = luo_memfd("ram1", 4096, 2);

	ASSERT_EQ(0, luod_start(&r, fake));
	s = open_luo("vm");
	ASSERT_NE(NULL, s);
	ASSERT_EQ(0, cprx_preserve_ram(s, "ram0", ram, NULL, RAM_SIZE,
				       CPRX_PAGE_4K));
	ASSERT_EQ(0, cprx_preserve_ram(s, "ram1", ram1, NULL, 4096,
				       CPRX_PAGE_4K));
	EXPECT_EQ(0, cprx_preflight(s, "/proc/self/exe", NULL, NULL));
	TH_LOG("%s", cprx_errmsg(s));
	cprx_session_close(s);
	luod_cleanup(&r);
}

/* ---- the daemon --------------------------------------------------------- */

/*
 * Test Case: dropped_with_connection
 * A session whose connection closes before HOLD is dropped: an update
 * that never got that far pins nothing.
 */
TEST(dropped_with_connection)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	int fd;

	ASSERT_EQ(0, luod_start(&r, fake));
	fd = luod_connect(&r);
	ASSERT_LE(0, fd);
	ASSERT_GT(luod_ask(fd, "CREATE vm", -1, out, sizeof(out), NULL), 0);
	EXPECT_STREQ("OK", out);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "OK 1\n0 vm open"));
	close(fd);
	usleep(100000);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	luod_cleanup(&r);
}

/*
 * Test Case: per_uid_limit
 * One uid may hold 32 sessions at most: the 33rd CREATE is refused
 * (ENOSPC) saying so, and slots stay for the other uids.
 */
TEST(per_uid_limit)
{
	char out[CPRX_LUOD_MSG_MAX], req[32];
	struct luod_run r = { 0 };
	int fds[33], i;

	ASSERT_EQ(0, luod_start(&r, fake));
	for (i = 0; i < 33; i++) {
		fds[i] = luod_connect(&r);
		ASSERT_LE(0, fds[i]);
		snprintf(req, sizeof(req), "CREATE vm%d", i);
		ASSERT_GT(luod_ask(fds[i], req, -1, out, sizeof(out), NULL), 0);
		if (i < 32)
			EXPECT_STREQ("OK", out);
	}
	EXPECT_TRUE(has(out, "ERR 28 uid 0 holds 32 sessions"));
	for (i = 0; i < 33; i++)
		close(fds[i]);
	luod_cleanup(&r);
}

static int nobody_status(void *arg)
{
	const struct luod_run *r = arg;
	char out[CPRX_LUOD_MSG_MAX];

	/* nobody's view: none of root's sessions */
	if (luod_ask1(r, "STATUS", out, sizeof(out)) <= 0 || strcmp(out, "OK 0"))
		return printf("# nobody's STATUS: %s\n", out), 1;
	/* the same name is another session: named after this uid */
	if (prepare("vm-a", 0x77))
		return 2;
	if (luod_ask1(r, "STATUS", out, sizeof(out)) <= 0 ||
	    strncmp(out, "OK 1\n65534 vm-a held ", 21))
		return printf("# nobody's STATUS: %s\n", out), 3;
	return 0;
}

static int nobody_retrieve(void *arg)
{
	struct cprx_session *s = NULL;
	int ret;

	(void)arg;
	/* root's vm-b is not nobody's: no such session, a fresh start */
	ret = incoming("vm-b", &s);
	if (ret != 0)
		return printf("# nobody's incoming vm-b: %d %s\n", ret,
			      cprx_errmsg(s)), 1;
	return 0;
}

/*
 * Test Case: peercred_uid_apart
 * Sessions are named after the peer's uid (SO_PEERCRED): root and nobody
 * both hold a "vm-a" that are two sessions; nobody's STATUS shows only
 * its own, root's both; after the kexec nobody cannot retrieve root's
 * "vm-b" (it is told there is none), and root still can.
 */
TEST(peercred_uid_apart)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	if (geteuid())
		SKIP(return, "needs root: the test runs a client as uid %d", NOBODY);
	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, prepare("vm-a", 0x11));
	ASSERT_EQ(0, prepare("vm-b", 0x22));
	EXPECT_EQ(0, as_uid(NOBODY, nobody_status, &r));
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "OK 3"));
	EXPECT_TRUE(has(out, "0 vm-a held"));
	EXPECT_TRUE(has(out, "65534 vm-a held"));
	ASSERT_GT(luod_ask1(&r, "KEXEC", out, sizeof(out)), 0);
	EXPECT_STREQ("OK", out);
	EXPECT_EQ(0, as_uid(NOBODY, nobody_retrieve, NULL));
	EXPECT_EQ(1, incoming("vm-b", &s));
	cprx_session_close(s);
	luod_cleanup(&r);
}

/*
 * Test Case: kexec_roundtrip_status
 * Prepared, "kexec", retrieved: RAM and blob come back, generation 1; the
 * status verb lists the session as incoming until retrieved, as retrieved
 * while not finished, and no more once committed.
 */
TEST(kexec_roundtrip_status)
{
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;
	const void *blob;
	unsigned char *ram;
	uint64_t size;
	size_t len;
	int fd;

	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, prepare("vm", 0x5a));
	ASSERT_GT(luod_ask1(&r, "KEXEC", out, sizeof(out)), 0);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "0 vm incoming prepared "));
	ASSERT_EQ(1, incoming("vm", &s));
	EXPECT_STREQ("luo", cprx_backend_name(s));
	EXPECT_EQ(1, cprx_generation(s));
	ASSERT_EQ(0, cprx_get_blob(s, "dev", &blob, &len));
	EXPECT_EQ(13, len);
	EXPECT_STREQ("device-state", blob);
	ASSERT_EQ(0, cprx_reclaim_ram(s, "ram0", (void **)&ram, &size, &fd));
	EXPECT_EQ(RAM_SIZE, size);
	EXPECT_EQ(0x5a, ram[0]);
	EXPECT_EQ(0x5a, ram[RAM_SIZE - 1]);
	EXPECT_EQ(-EOPNOTSUPP, cprx_rollback(s, "no"));
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "0 vm retrieved"));
	EXPECT_EQ(0, cprx_commit(s));
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_STREQ("OK 0", out);
	cprx_session_close(s);
	close(fd);
	luod_cleanup(&r);
}

/*
 * Test Case: no_liveupdate_state_gone
 * The reboot went into a kernel without /dev/liveupdate: the incoming
 * VMM's cprx_incoming fails with -ENODEV, saying the state is gone, when
 * it was prepared, and that the kernel lacks LUO.  A VMM that never
 * prepared a session just starts afresh (0).
 */
TEST(no_liveupdate_state_gone)
{
	const char *const nolu[] = { "--device", "/nonexistent/liveupdate",
				     "--boot-id", "after-the-kexec", NULL };
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, prepare("vm", 0x33));
	luod_stop(&r);
	ASSERT_EQ(0, luod_start(&r, nolu));
	EXPECT_EQ(-ENODEV, incoming("vm", &s));
	ASSERT_NE(NULL, s);
	EXPECT_TRUE(has(cprx_errmsg(s), "state of session 'vm'"));
	EXPECT_TRUE(has(cprx_errmsg(s), "is gone"));
	EXPECT_TRUE(has(cprx_errmsg(s), "/nonexistent/liveupdate is missing"));
	EXPECT_TRUE(has(cprx_errmsg(s), "prepared "));
	EXPECT_TRUE(has(cprx_errhint(s), "liveupdate=on"));
	cprx_session_close(s);
	s = NULL;
	EXPECT_EQ(0, incoming("other", &s));
	EXPECT_EQ(NULL, s);
	luod_cleanup(&r);
}

/*
 * Test Case: daemon_stopped_state_gone
 * cprx-luod stopped before the kexec (same boot): the session's fd went
 * with it, so its state is gone; -ENOENT says so.  And a CREATE on a
 * daemon whose device is missing names the device.
 */
TEST(daemon_stopped_state_gone)
{
	const char *const nolu[] = { "--device", "/nonexistent/liveupdate", NULL };
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, prepare("vm", 0x44));
	luod_stop(&r);
	ASSERT_EQ(0, luod_start(&r, nolu));
	EXPECT_EQ(-ENOENT, incoming("vm", &s));
	EXPECT_TRUE(has(cprx_errmsg(s), "cprx-luod stopped before the kexec"));
	cprx_session_close(s);
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "0 vm lost"));
	ASSERT_GT(luod_ask1(&r, "CREATE vm2", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "ERR 19 /nonexistent/liveupdate is missing"));
	ASSERT_GT(luod_ask1(&r, "KEXEC", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "ERR 1 KEXEC is for --fake-kexec"));
	luod_cleanup(&r);
}

/*
 * Test Case: dead_session_name_free
 * A session whose state is known gone (lost with a daemon that stopped
 * before the kexec, or retrieved in vain after one) holds nothing: the
 * VMM told so starts afresh and must be able to prepare under its name
 * again, and the dead record must not keep a slot of its uid.
 */
TEST(dead_session_name_free)
{
	const char *const nolu[] = { "--device", "/nonexistent/liveupdate",
				     "--boot-id", "after-the-kexec", NULL };
	char out[CPRX_LUOD_MSG_MAX];
	struct luod_run r = { 0 };
	struct cprx_session *s = NULL;

	ASSERT_EQ(0, luod_start(&r, fake));
	ASSERT_EQ(0, prepare("vm", 0x44));
	luod_stop(&r);
	ASSERT_EQ(0, luod_start(&r, fake));
	EXPECT_EQ(-ENOENT, incoming("vm", &s));
	cprx_session_close(s);
	s = NULL;
	/* lost: the same name prepares again */
	EXPECT_EQ(0, prepare("vm", 0x45));
	ASSERT_GT(luod_ask1(&r, "STATUS", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "OK 1\n0 vm held"));
	luod_stop(&r);
	ASSERT_EQ(0, luod_start(&r, nolu));
	EXPECT_EQ(-ENODEV, incoming("vm", &s));
	cprx_session_close(s);
	/* gone: the name is free, this kernel's lack of LUO the refusal */
	ASSERT_GT(luod_ask1(&r, "CREATE vm", out, sizeof(out)), 0);
	EXPECT_TRUE(has(out, "ERR 19 /nonexistent/liveupdate is missing"));
	luod_cleanup(&r);
}

TEST_HARNESS_MAIN
