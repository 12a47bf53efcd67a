// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko proofs of concept from a hostile review: each test states what a
 * sound module must do and fails on the module that does not.
 *
 * Kept in one file: each test is an attack with its helpers beside it, read
 * as one review; the topics they cross (batches, limits, /proc, identity)
 * have their ordinary tests in the other kmod_*.c.
 *
 * - batch_refusal_order: PRESERVE_FDS with @nr above max_pins answers
 *   ENOSPC (and the session's pin count in @failed) before it asks whether
 *   the caller owns the session, or whether it is armed or finished.
 * - subuid_range_limits: sessions are charged to the kuid, so a user who
 *   owns a subordinate uid range (newuidmap) has max_sessions per uid of
 *   the range, not in all.
 * - proc_hidepid: /proc/cprx/sessions shows a process that the reader's
 *   /proc (hidepid=invisible) hides.
 * - retrieved_bound_to_image: a session retrieved by one image stays
 *   "retrieved" through later execs, so a setgid image after it takes the
 *   pinned files with RETRIEVE_FD, without RETRIEVE_SESSION's checks.
 * - batch_nr_unbounded: with max_pins raised high ("no limit"), an @nr the
 *   parameter allows reaches kvmalloc with more than INT_MAX bytes, and the
 *   kernel WARNs (a panic under panic_on_warn) for any user of the device.
 * - at_secure_erasable: "exec'd with AT_SECURE" is read from the image's
 *   own saved auxv, which the image may rewrite (PR_SET_MM_MAP, no
 *   privilege): an image that gained file capabilities must stay refused
 *   once it has zeroed AT_SECURE.
 * - fcaps_vmm_updates: a VMM given capabilities by its file, exec'ing the
 *   same file, is the same subject (an AT_SECURE exec, nothing changed).
 * - rearm_after_unarmed_exec: an image exec'd without an arm (setgid, the
 *   fd kept) is refused RETRIEVE_FD but may ARM under its own credentials
 *   and exec again: the next image takes the pins.
 * - container_charged_to_host_root: every user namespace root made is
 *   charged to root, so one container's user exhausts host root's quota.
 * - plain_exec_same_subject: SECURE_KEEP_CAPS, or an effective set below
 *   the permitted one, at ARM makes a plain exec of the same file another
 *   subject (exec resets both).
 */
#include <grp.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/xattr.h>
#include <linux/capability.h>
#include <linux/prctl.h>
#include "kmod_util.h"

#define MAX_PINS	8
#define OWNER_PINS	3

/* A child that is not the owner: nothing about the session for it. */
static void batch_not_owner(long sfd)
{
	struct cprx_preserve_entry e[MAX_PINS + 1] = { 0 };
	uint32_t failed = 77;
	int ret = preserve_fds(sfd, e, MAX_PINS + 1, &failed);

	CHECK(ret == -EPERM && failed == 77,
	      "not the owner, PRESERVE_FDS nr %d: %d, failed %u (the "
	      "owner's pin count is %d: max_pins - failed)",
	      MAX_PINS + 1, ret, failed, OWNER_PINS);
}

/*
 * Test Case: batch_refusal_order
 * PRESERVE_FDS of more than max_pins entries from another process is EPERM
 * with @failed untouched, and from the owner on an armed session EBUSY, as
 * for any other batch: the size is no reason to skip who and when.
 */
TEST_F(kmod, batch_refusal_order)
{
	struct cprx_preserve_entry e[MAX_PINS + 1] = { 0 };
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	uint32_t failed = 77;

	ASSERT_GE(sfd, 0);
	set_param(self, P_PINS, MAX_PINS);
	for (int i = 0; i < OWNER_PINS; i++)
		ASSERT_EQ(0, preserve(sfd, efd, 100 + i));
	EXPECT_EQ(0, run_child(self, batch_not_owner, sfd));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(-EBUSY, preserve_fds(sfd, e, MAX_PINS + 1, &failed));
	EXPECT_EQ(77, failed);
	EXPECT_EQ(0, arm(sfd, CPRX_ARM_CANCEL));
	ASSERT_EQ(0, finish(sfd));
	EXPECT_EQ(-ESRCH, preserve_fds(sfd, e, MAX_PINS + 1, &failed));
	EXPECT_EQ(77, failed);
}

#define SUB_BASE	100000
#define SUB_COUNT	8
#define USER		1000

/*
 * An unprivileged user (uid USER) in a user namespace whose uid map its
 * parent writes, as newuidmap does for a subordinate range: it creates
 * sessions under each uid of the range and reports how many it got.
 */
__attribute__((noreturn))
static void subuid_user(int dev, int up, int down)
{
	int v, n = 0;

	CHECK(!setgroups(0, NULL) && !setresgid(USER, USER, USER) &&
	      !setresuid(USER, USER, USER), "drop: %m");
	if (unshare(CLONE_NEWUSER)) {
		report(up, errno);
		_exit(0);
	}
	report(up, 0);
	CHECK(!read_report(down, &v, 30000), "no uid map");
	CHECK(!setresuid(0, 0, 0), "setresuid 0 in the namespace: %m");
	for (uid_t k = 0; k < SUB_COUNT; k++) {
		CHECK(!setresuid(-1, k, -1), "seteuid %u: %m", k);
		for (int i = 0; i < 2; i++) {
			char name[32];

			snprintf(name, sizeof(name), "sub-%u-%d", k, i);
			n += create(dev, name) >= 0;
		}
		CHECK(!setresuid(-1, 0, -1), "seteuid 0: %m");
	}
	report(up, n);
	sleep_forever();
}

/*
 * Test Case: subuid_range_limits
 * With max_sessions 2, a user with a delegated range of SUB_COUNT uids gets
 * no more than 2 sessions in all (sessions charged to the user that owns
 * the namespace), not 2 per uid of its range.
 */
TEST_F(kmod, subuid_range_limits)
{
	int up[2], down[2], v = -1, n = -1, fd;
	char path[64], map[64];
	pid_t pid;

	if (geteuid())
		SKIP(return, "writing a user namespace's uid map needs root");
	set_param(self, P_SESSIONS, 2);
	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(down, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		subuid_user(self->dev, up[1], down[0]);
	}
	track(self, pid);
	ASSERT_EQ(0, read_report(up[0], &v, 30000));
	if (v) {
		kill_kid(self, pid);
		SKIP(return, "no unprivileged user namespace here: %s",
		     strerror(v));
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	snprintf(map, sizeof(map), "0 %d %d\n", SUB_BASE, SUB_COUNT);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ((ssize_t)strlen(map), write(fd, map, strlen(map)));
	close(fd);
	report(down[1], 0);
	ASSERT_EQ(0, read_report(up[0], &n, 60000));
	TH_LOG("uid %d with %d subordinate uids: %d sessions, max_sessions 2",
	       USER, SUB_COUNT, n);
	EXPECT_LE(n, 2);
	kill_kid(self, pid);
}

/*
 * As nobody, in a /proc of its own mounted hidepid=invisible: can it see
 * @owner (root's) session in cprx/sessions, where /proc/@owner is hidden?
 * Exit 0: hidden; 1: shown; 2: hidepid has no effect here.
 */
static void hidepid_reader(long owner)
{
	char dir[] = "/tmp/cprx-hidepid-XXXXXX", path[96], line[256];
	char want[32];
	bool shown = false;
	size_t len;
	FILE *f;

	CHECK(!unshare(CLONE_NEWNS) &&
	      !mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "ns: %m");
	CHECK(mkdtemp(dir), "mkdtemp: %m");
	CHECK(!mount("proc", dir, "proc", 0, "hidepid=2"), "mount: %m");
	CHECK(!setgroups(0, NULL) && !setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(NOBODY, NOBODY, NOBODY), "drop: %m");
	snprintf(path, sizeof(path), "%s/%ld", dir, owner);
	if (!access(path, F_OK))
		_exit(2);
	snprintf(path, sizeof(path), "%s/cprx/sessions", dir);
	f = fopen(path, "re");
	CHECK(f, "%s: %m", path);
	len = (size_t)snprintf(want, sizeof(want), "%ld\t", owner);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, want, len)) {
			printf("# seen by nobody: %s", line);
			fflush(stdout);
			shown = true;
		}
	fclose(f);
	_exit(shown);
}

/*
 * Test Case: proc_hidepid
 * A reader whose /proc hides other users' processes (hidepid=invisible)
 * does not learn from cprx/sessions the pid and session names of a
 * process that /proc hides from it.
 */
TEST_F(kmod, proc_hidepid)
{
	int sfd, ret;

	if (geteuid())
		SKIP(return, "mounting a /proc needs root");
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	ret = run_child(self, hidepid_reader, getpid());
	if (ret == 2)
		SKIP(return, "hidepid hides nothing here");
	EXPECT_EQ(0, ret);
}

#define SGID_DIR	"/tmp/cprx-kmod-attack-sgid"

/* Image 1: pins, arms, execs image 2 (this binary, plain). */
static void rt_image1(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(0, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("rt2", sfd, 0, 0);
}

/* Image 2: retrieves (checked), then execs a setgid image, fd kept. */
KMOD_EXEC_CASE(rt2, old, a1, a2)
{
	int sfd;

	(void)a1;
	(void)a2;
	sfd = retrieve_session(open_dev(), SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	snprintf(th_self, sizeof(th_self), SGID_DIR "/sgid");
	exec_or_die("rt3", old, 0, 0);
}

/* Image 3, setgid: exit 0 if refused, 1 if it got the file, 4 no setgid. */
KMOD_EXEC_CASE(rt3, old, a1, a2)
{
	int fd;

	(void)a1;
	(void)a2;
	if (getegid() != NOBODY || !getauxval(AT_SECURE))
		return 4;
	fd = retrieve_fd(old, TOK_EVT);
	if (fd >= 0)
		printf("# setgid image (AT_SECURE, egid %d) got fd %d\n",
		       (int)getegid(), fd);
	return fd >= 0;
}

/*
 * Test Case: retrieved_bound_to_image
 * As root: image 1 arms, image 2 retrieves, then execs a setgid copy of
 * this binary with the session fd kept: that image (AT_SECURE, other
 * gids, never through RETRIEVE_SESSION's checks) gets EPERM from
 * RETRIEVE_FD, as RETRIEVE_SESSION would have refused it.
 */
TEST_F(kmod, retrieved_bound_to_image)
{
	int ret;

	if (geteuid())
		SKIP(return, "a setgid file of another group needs root");
	mkdir(SGID_DIR, 0755);
	ASSERT_EQ(0, mount("cprx-sgid", SGID_DIR, "tmpfs", 0, "mode=755"));
	ASSERT_EQ(0, copy_self(SGID_DIR "/sgid", NOBODY));
	ret = run_child(self, rt_image1, 0);
	umount2(SGID_DIR, MNT_DETACH);
	rmdir(SGID_DIR);
	if (ret == 4)
		SKIP(return, "the setgid bit had no effect");
	EXPECT_EQ(0, ret);
}

/* "WARNING" lines in the kernel log after @fd was opened at its end. */
static int kmsg_warnings(int fd)
{
	char rec[2048];
	ssize_t n;
	int found = 0;

	while ((n = read(fd, rec, sizeof(rec) - 1)) != 0) {
		if (n < 0) {
			if (errno == EPIPE)
				continue;
			break;
		}
		rec[n] = 0;
		if (strstr(rec, "WARNING")) {
			found++;
			TH_LOG("kernel: %s", strtok(rec, "\n"));
		}
	}
	return found;
}

/*
 * Test Case: batch_nr_unbounded
 * As root: max_pins set to UINT_MAX, PRESERVE_FDS of 2^28 entries (from an
 * unmapped address) fails with an errno and without a kernel WARNING.
 */
TEST_F(kmod, batch_nr_unbounded)
{
	int sfd = create(self->dev, SESS), kmsg, ret;
	uint32_t failed = 0;

	if (geteuid())
		SKIP(return, "setting max_pins needs root");
	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg < 0)
		SKIP(return, "no /dev/kmsg");
	lseek(kmsg, 0, SEEK_END);
	ASSERT_GE(sfd, 0);
	set_param(self, P_PINS, 4294967295L);
	ret = preserve_fds(sfd, (void *)16, 1u << 28, &failed);
	TH_LOG("PRESERVE_FDS nr 2^28: %d", ret);
	EXPECT_LT(ret, 0);
	EXPECT_EQ(0, kmsg_warnings(kmsg));
	close(kmsg);
}

#define FCAP_DIR	"/tmp/cprx-kmod-attack-fcap"

/* Up to @size bytes of @path into @buf: the count, or -1. */
static ssize_t read_all(const char *path, void *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, size);

	if (fd >= 0)
		close(fd);
	return n;
}

/*
 * Zeroes AT_SECURE in the image's saved auxv with PR_SET_MM_MAP, every
 * other field as /proc/self/stat has it: 0, or -errno.
 */
static int erase_at_secure(void)
{
	unsigned long auxv[128], f[53] = { 0 };
	struct prctl_mm_map map = { .exe_fd = (__u32)-1 };
	char buf[2048], *p, *save = NULL;
	ssize_t n, an;
	int i;

	/* a privilege-gaining exec left the image undumpable: /proc/self/auxv
	 * is root's until the image says otherwise, as an attacker would */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		return -errno;
	an = read_all("/proc/self/auxv", auxv, sizeof(auxv));
	n = read_all("/proc/self/stat", buf, sizeof(buf) - 1);
	if (an <= 0 || n <= 0)
		return -EIO;
	for (i = 0; i + 1 < an / (ssize_t)sizeof(long); i += 2)
		if (auxv[i] == AT_SECURE)
			auxv[i + 1] = 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* field 3 (the state) is the first after the comm */
	for (i = 3, p = strtok_r(p + 1, " \n", &save); p && i < 53;
	     i++, p = strtok_r(NULL, " \n", &save))
		f[i] = strtoul(p, NULL, 10);
	map.start_code = f[26];
	map.end_code = f[27];
	map.start_stack = f[28];
	map.start_data = f[45];
	map.end_data = f[46];
	map.start_brk = f[47];
	map.arg_start = f[48];
	map.arg_end = f[49];
	map.env_start = f[50];
	map.env_end = f[51];
	map.brk = (uintptr_t)sbrk(0);
	map.auxv = (__u64 *)auxv;
	map.auxv_size = (__u32)an;
	return prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0) ? -errno
									 : 0;
}

/* The child: drops to uid 1000 with no capabilities, execs image 1. */
static int fc_flow;	/* FC_SAME or FC_GAIN, for run_child's child */
enum { FC_SAME = 1, FC_GAIN = 2 };

static void fcap_child(long dev)
{
	CHECK(!keep_on_exec(dev), "fcntl: %m");
	CHECK(!setgroups(0, NULL) && !setresgid(USER, USER, USER) &&
	      !setresuid(USER, USER, USER), "drop: %m");
	snprintf(th_self, sizeof(th_self), FCAP_DIR "/%s",
		 fc_flow == FC_SAME ? "fcap" : "plain");
	exec_or_die("fc1", dev, fc_flow, 0);
}

/* Image 1 (the fcap copy, or the plain one): arms, execs the fcap copy. */
KMOD_EXEC_CASE(fc1, dev, flow, a2)
{
	int sfd = create(dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	(void)a2;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup: %d", sfd);
	snprintf(th_self, sizeof(th_self), FCAP_DIR "/fcap");
	exec_or_die("fc2", dev, sfd, flow);
}

/*
 * Image 2, the fcap copy (AT_SECURE).  FC_SAME: image 1 had the same
 * capabilities, so it is the same subject: granted.  FC_GAIN: image 1 had
 * none: refused, and still refused once AT_SECURE is zeroed.  0 as
 * expected; 1 not; 4 no AT_SECURE; 5 no PR_SET_MM_MAP.
 */
KMOD_EXEC_CASE(fc2, dev, old, flow)
{
	int ret;

	(void)old;
	if (!getauxval(AT_SECURE))
		return 4;
	ret = retrieve_session(dev, SESS);
	if (flow == FC_SAME) {
		printf("# same capabilities, AT_SECURE: RETRIEVE_SESSION %d\n",
		       ret);
		return ret < 0;
	}
	if (ret != -EPERM) {
		printf("# capabilities gained: RETRIEVE_SESSION %d\n", ret);
		return 1;
	}
	ret = erase_at_secure();
	if (ret) {
		printf("# PR_SET_MM_MAP: %s\n", strerror(-ret));
		return 5;
	}
	ret = retrieve_session(dev, SESS);
	printf("# AT_SECURE zeroed in the kernel's saved auxv (libc keeps "
	       "its copy: %lu): RETRIEVE_SESSION %d\n",
	       getauxval(AT_SECURE), ret);
	return ret != -EPERM;
}

/* Runs @flow with a cap_net_raw+ep copy and a plain copy of this binary. */
static int fcap_flow(FIXTURE_DATA(kmod) *self, int flow)
{
	struct vfs_cap_data cap = {
		.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
		.data[0].permitted = 1u << CAP_NET_RAW,
	};
	int ret;

	mkdir(FCAP_DIR, 0755);
	if (mount("cprx-fcap", FCAP_DIR, "tmpfs", 0, "mode=755"))
		return -errno;
	ret = copy_self(FCAP_DIR "/fcap", -1) ?:
	      copy_self(FCAP_DIR "/plain", -1) ?:
	      setxattr(FCAP_DIR "/fcap", "security.capability", &cap,
		       XATTR_CAPS_SZ_2, 0);
	if (!ret) {
		fc_flow = flow;
		ret = run_child(self, fcap_child, self->dev);
	}
	umount2(FCAP_DIR, MNT_DETACH);
	rmdir(FCAP_DIR);
	return ret;
}

/*
 * Test Case: at_secure_erasable
 * As root: uid 1000 without capabilities arms, then execs a copy of this
 * binary with file capability cap_net_raw+ep (more privilege, an AT_SECURE
 * exec).  RETRIEVE_SESSION is refused, and stays refused after the image
 * rewrote its own auxv without AT_SECURE: what is compared is what the
 * image cannot rewrite, its credentials.
 */
TEST_F(kmod, at_secure_erasable)
{
	int ret;

	if (geteuid())
		SKIP(return, "file capabilities need root");
	ret = fcap_flow(self, FC_GAIN);
	if (ret == 4 || ret == 5)
		SKIP(return, "%s", ret == 4 ? "no AT_SECURE from file caps"
					    : "no PR_SET_MM_MAP here");
	EXPECT_EQ(0, ret);
}

/*
 * Test Case: fcaps_vmm_updates
 * As root: uid 1000 runs the cap_net_raw+ep copy (a VMM given a capability
 * by its file), arms, and execs the same copy: an AT_SECURE exec, but the
 * same credentials and label, so the same subject.  RETRIEVE_SESSION is
 * granted: AT_SECURE alone refuses no update.
 */
TEST_F(kmod, fcaps_vmm_updates)
{
	int ret;

	if (geteuid())
		SKIP(return, "file capabilities need root");
	ret = fcap_flow(self, FC_SAME);
	if (ret == 4)
		SKIP(return, "no AT_SECURE from file caps");
	EXPECT_EQ(0, ret);
}


/*
 * Image 3 of rearm_after_unarmed_exec, setgid, exec'd by a retrieving image
 * without an arm: RETRIEVE_FD is refused (the earlier fix), but ARM is not
 * bound to the image that retrieved.  It arms under its own credentials,
 * and CANCEL restores "retrieved" for it although it never retrieved.
 * Exit: 0 refused, 1 the arm went through, 4 no setgid.
 */
KMOD_EXEC_CASE(ra3, old, a1, a2)
{
	struct cprx_session_query q;
	int ret;

	(void)a1;
	(void)a2;
	if (getegid() != NOBODY || !getauxval(AT_SECURE))
		return 4;
	CHECK(retrieve_fd(old, TOK_EVT) == -EPERM, "RETRIEVE_FD not EPERM");
	ret = arm(old, 0);
	if (ret)
		return 0;
	printf("# unarmed setgid image armed the session\n");
	CHECK(!arm(old, CPRX_ARM_CANCEL), "cancel");
	CHECK(!query(old, &q, NULL, 0), "query");
	if (q.flags & CPRX_SESSION_RETRIEVED)
		printf("# after CANCEL: RETRIEVED in an image that never "
		       "retrieved (RETRIEVE_FD %d)\n", retrieve_fd(old, TOK_EVT));
	CHECK(!arm(old, 0), "re-arm");
	/* th_self is the setgid copy: image 4 has image 3's credentials */
	exec_or_die("ra4", old, 0, 0);
}

/* Image 4, setgid again: retrieves what image 1 pinned.  Exit 1 if so. */
KMOD_EXEC_CASE(ra4, old, a1, a2)
{
	int sfd, fd;

	(void)old;
	(void)a1;
	(void)a2;
	sfd = retrieve_session(open_dev(), SESS);
	if (sfd < 0)
		return 0;
	fd = retrieve_fd(sfd, TOK_EVT);
	if (fd >= 0)
		printf("# setgid image 4 (egid %d) got image 1's fd %d\n",
		       (int)getegid(), fd);
	return fd >= 0;
}

/* Image 2: retrieves, then execs the setgid image 3 without arming. */
KMOD_EXEC_CASE(ra2, old, a1, a2)
{
	int sfd;

	(void)old;
	(void)a1;
	(void)a2;
	sfd = retrieve_session(open_dev(), SESS);
	CHECK(sfd >= 0 && !keep_on_exec(sfd), "retrieve_session: %d", sfd);
	snprintf(th_self, sizeof(th_self), SGID_DIR "/sgid");
	exec_or_die("ra3", sfd, 0, 0);
}

static void ra_image1(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(0, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("ra2", sfd, 0, 0);
}

/*
 * Test Case: rearm_after_unarmed_exec
 * As root: image 1 pins and arms, image 2 retrieves and execs a setgid
 * image without arming (fd kept).  That image must not get the files by
 * arming the session itself and exec'ing once more: ARM, like RETRIEVE_FD,
 * belongs to the image that retrieved (or created) the session.
 */
TEST_F(kmod, rearm_after_unarmed_exec)
{
	int ret;

	if (geteuid())
		SKIP(return, "a setgid file of another group needs root");
	mkdir(SGID_DIR, 0755);
	ASSERT_EQ(0, mount("cprx-sgid", SGID_DIR, "tmpfs", 0, "mode=755"));
	ASSERT_EQ(0, copy_self(SGID_DIR "/sgid", NOBODY));
	ret = run_child(self, ra_image1, 0);
	umount2(SGID_DIR, MNT_DETACH);
	rmdir(SGID_DIR);
	if (ret == 4)
		SKIP(return, "the setgid bit had no effect");
	EXPECT_EQ(0, ret);
}

#define CT_BASE		200000

/*
 * A container's user: in a user namespace root made (owned by uid 0, as a
 * container manager's), under uid 0 of its own range (kuid CT_BASE), it
 * creates sessions until refused and reports how many it got.
 */
__attribute__((noreturn))
static void container_user(int dev, int up, int down)
{
	int v, n = 0;

	if (unshare(CLONE_NEWUSER)) {
		report(up, errno);
		_exit(0);
	}
	report(up, 0);
	CHECK(!read_report(down, &v, 30000), "no uid map");
	CHECK(!setresuid(0, 0, 0), "setresuid 0 in the namespace: %m");
	for (int i = 0; i < 8; i++) {
		char name[32];

		snprintf(name, sizeof(name), "ct-%d", i);
		n += create(dev, name) >= 0;
	}
	report(up, n);
	sleep_forever();
}

/*
 * Test Case: container_charged_to_host_root
 * With max_sessions 2: a container's user (kuid CT_BASE, in a user
 * namespace owned by root, as container managers make them) takes its
 * sessions, and host root - another user - can still create one.  Charging
 * by the namespace owner makes every such container, and root on the
 * host, one user with one quota.
 */
TEST_F(kmod, container_charged_to_host_root)
{
	int up[2], down[2], v = -1, n = -1, fd, sfd;
	char path[64], map[64];
	pid_t pid;

	if (geteuid())
		SKIP(return, "a root-owned user namespace needs root");
	set_param(self, P_SESSIONS, 2);
	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(down, O_CLOEXEC));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		container_user(self->dev, up[1], down[0]);
	}
	track(self, pid);
	ASSERT_EQ(0, read_report(up[0], &v, 30000));
	if (v) {
		kill_kid(self, pid);
		SKIP(return, "no user namespace here: %s", strerror(v));
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	snprintf(map, sizeof(map), "0 %d 8\n", CT_BASE);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ((ssize_t)strlen(map), write(fd, map, strlen(map)));
	close(fd);
	report(down[1], 0);
	ASSERT_EQ(0, read_report(up[0], &n, 60000));
	sfd = create(self->dev, SESS);
	TH_LOG("container user (kuid %d) got %d sessions; host root's "
	       "CREATE then: %d", CT_BASE, n, sfd);
	EXPECT_GE(sfd, 0);
	if (sfd >= 0)
		close(sfd);
	kill_kid(self, pid);
}

/* Image 2 of the plain-exec cases: exit 0 if RETRIEVE_SESSION took it. */
KMOD_EXEC_CASE(pe2, variant, a1, a2)
{
	int sfd;

	(void)a1;
	(void)a2;
	sfd = retrieve_session(open_dev(), SESS);
	if (sfd < 0)
		printf("# variant %ld: plain exec of the same file, "
		       "RETRIEVE_SESSION %d\n", variant, sfd);
	return sfd < 0;
}

/*
 * Image 1, root: 0 arms with SECURE_KEEP_CAPS set (exec clears it); 1
 * arms with CAP_SYS_NICE dropped from its effective set only (a root
 * exec raises it again).  Then execs itself, no setuid, no file caps.
 */
static void pe_image1(long variant)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[2];

	CHECK(sfd >= 0, "create");
	if (variant == 0) {
		CHECK(!prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps: %m");
	} else {
		CHECK(!syscall(SYS_capget, &h, d), "capget: %m");
		d[0].effective &= ~(1u << CAP_SYS_NICE);
		CHECK(!syscall(SYS_capset, &h, d), "capset: %m");
	}
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	exec_or_die("pe2", variant, 0, 0);
}

/*
 * Test Case: plain_exec_same_subject
 * As root: an image that arms with SECURE_KEEP_CAPS set, or with a
 * capability dropped from its effective set only, and execs the same
 * plain file (nothing setuid, no file capabilities, no LSM transition)
 * retrieves its session: exec itself resets these, no privilege came in
 * that root did not have.
 */
TEST_F(kmod, plain_exec_same_subject)
{
	if (geteuid())
		SKIP(return, "the cases are root's");
	EXPECT_EQ(0, run_child(self, pe_image1, 0));
	EXPECT_EQ(0, run_child(self, pe_image1, 1));
}

TEST_HARNESS_MAIN
