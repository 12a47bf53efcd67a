// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of who may use a session: another process, another
 * uid, the owner under another euid, the image that armed, and the image
 * after a setgid exec or an exec that gains file capabilities (the
 * credentials that armed must be the retriever's).
 */
#include <endian.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/xattr.h>
#include <linux/capability.h>
#include "kmod_util.h"

/* --- Who may use a session ------------------------------------------------ */

/* In another process: the inherited session fd is not its own. */
static void not_owner_ops(long sfd, int dev)
{
	struct cprx_session_query q;
	int efd = eventfd(0, EFD_CLOEXEC), ret;

	/* another process's name: as unknown as a name nobody has */
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -ENOENT, "retrieve_session: %d", ret);
	ret = preserve(sfd, efd, 2);
	CHECK(ret == -EPERM, "preserve: %d", ret);
	ret = unpreserve(sfd, TOK_EVT);
	CHECK(ret == -EPERM, "unpreserve: %d", ret);
	ret = arm(sfd, CPRX_ARM_CANCEL);
	CHECK(ret == -EPERM, "arm cancel: %d", ret);
	ret = arm(sfd, 0);
	CHECK(ret == -EPERM, "arm: %d", ret);
	ret = retrieve_fd(sfd, TOK_EVT);
	CHECK(ret == -EPERM, "retrieve_fd: %d", ret);
	ret = finish(sfd);
	CHECK(ret == -EPERM, "finish: %d", ret);
	ret = query(sfd, &q, NULL, 0);
	CHECK(ret == -EPERM, "query: %d", ret);
}

static void other_process(long sfd)
{
	not_owner_ops(sfd, open_dev());
	/* nor after an exec of its own */
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("other", sfd, 0, 0);
}

KMOD_EXEC_CASE(other, sfd, a1, a2)
{
	(void)a1;
	(void)a2;
	not_owner_ops(sfd, open_dev());
	return 0;
}

/*
 * Test Case: other_process
 * Another process holding the owner's session fd, a forked child and then
 * that child after an exec of its own, gets EPERM from every session command
 * and ENOENT from RETRIEVE_SESSION of the owner's name (no oracle of other
 * processes' names); the owner's session is untouched.
 */
TEST_F(kmod, other_process)
{
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);
	struct cprx_session_query q;

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, run_child(self, other_process, sfd));
	/* and ours is untouched, the child's exit included */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
	EXPECT_EQ(1, q.nr_entries);
}

/* A child that became nobody: the inherited session is not its own. */
static void nobody_ops(long sfd)
{
	int dev = open_dev();	/* /dev/cprx is not nobody's to open */

	CHECK(!setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(NOBODY, NOBODY, NOBODY), "setresuid: %m");
	not_owner_ops(sfd, dev);
}

/* The owner itself under another euid: EPERM; back to root, it works. */
static void owner_euid(long dev)
{
	int sfd = create(dev, "euid"), efd = eventfd(0, EFD_CLOEXEC), ret;
	struct cprx_session_query q;

	CHECK(sfd >= 0 && !preserve(sfd, efd, 1), "setup");
	CHECK(!setresuid(-1, NOBODY, -1), "seteuid: %m");
	ret = preserve(sfd, efd, 2);
	CHECK(ret == -EPERM, "preserve: %d", ret);
	ret = unpreserve(sfd, 1);
	CHECK(ret == -EPERM, "unpreserve: %d", ret);
	ret = arm(sfd, 0);
	CHECK(ret == -EPERM, "arm: %d", ret);
	ret = query(sfd, &q, NULL, 0);
	CHECK(ret == -EPERM, "query: %d", ret);
	ret = finish(sfd);
	CHECK(ret == -EPERM, "finish: %d", ret);
	CHECK(!setresuid(-1, 0, -1), "seteuid back: %m");
	CHECK(!preserve(sfd, efd, 2) && nr_pins(sfd) == 2, "as root again");
}

/*
 * Test Case: other_uid
 * As root: a child turned nobody gets EPERM from everything on the session
 * it inherited; the owner itself under euid nobody gets EPERM, and as root
 * again it works.
 */
TEST_F(kmod, other_uid)
{
	int sfd, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "changing uid needs root");
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(0, run_child(self, nobody_ops, sfd));
	EXPECT_EQ(0, run_child(self, owner_euid, self->dev));
	EXPECT_EQ(1, proc_count(getpid(), SESS, NULL, 0));
}

/*
 * This binary where nobody can run it: the build dir may sit under a
 * directory only root can enter (mktemp -d).  Its path becomes th_self.
 */
static void copy_self_for_nobody(void)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/tmp/cprx-test-kmod-%d", getpid());
	ret = copy_self(path, -1);
	CHECK(!ret, "copy %s: %s", th_self, strerror(-ret));
	snprintf(th_self, sizeof(th_self), "%s", path);
}

/* Arms as root and execs as euid nobody; exit 4 if nobody may not exec. */
static void euid_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(0, EFD_CLOEXEC), ret;

	(void)unused;
	copy_self_for_nobody();
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	/* /dev/cprx is not nobody's to open: the new image inherits it */
	CHECK(!keep_on_exec(dev), "fcntl: %m");
	CHECK(!setresuid(-1, NOBODY, -1), "seteuid: %m");
	ret = exec_self("euid", sfd, dev, 0);
	if (ret == -EACCES)
		_exit(4);
	CHECK(0, "exec: %d", ret);
}

KMOD_EXEC_CASE(euid, old, dev, a2)
{
	int sfd;

	(void)old;
	(void)a2;
	CHECK(geteuid() == NOBODY, "euid %u", geteuid());
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd == -EPERM, "retrieve_session as nobody: %d", sfd);
	/* the real uid is still root: back to euid 0 */
	CHECK(!setresuid(-1, 0, -1), "seteuid: %m");
	unlink(th_self);	/* the copy made for nobody; root's to remove */
	/* an exec with euid != uid is a secure exec: still not ours */
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd == -EPERM, "retrieve_session as root again: %d", sfd);
	return 0;
}

/*
 * Test Case: retrieve_other_euid
 * As root: an update into an image with euid nobody gets EPERM from
 * RETRIEVE_SESSION, and still once back to euid root (the exec was a
 * secure one, and the saved uid differs).  SKIPs if nobody may not run
 * this binary.
 */
TEST_F(kmod, retrieve_other_euid)
{
	int ret;

	if (geteuid())
		SKIP(return, "changing uid needs root");
	ret = run_child(self, euid_old_image, 0);
	if (ret == 4)
		SKIP(return, "uid %d may not exec %s", NOBODY, th_self);
	EXPECT_EQ(0, ret);
}

/*
 * Test Case: retrieve_in_old_image
 * The image that armed a session may not retrieve it: RETRIEVE_SESSION and
 * RETRIEVE_FD EPERM before and after the arm, an unknown name ENOENT; the
 * refusals leave it armed.
 */
TEST_F(kmod, retrieve_in_old_image)
{
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, TOK_EVT));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));	/* unarmed */
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, TOK_EVT));
	ASSERT_EQ(0, arm(sfd, 0));
	EXPECT_EQ(-EPERM, retrieve_session(self->dev, SESS));
	EXPECT_EQ(-EPERM, retrieve_fd(sfd, TOK_EVT));
	EXPECT_EQ(-ENOENT, retrieve_session(self->dev, "kmod-unknown"));
	/* a refused retrieve leaves the session armed */
	ASSERT_EQ(0, query(sfd, &q, NULL, 0));
	EXPECT_EQ(CPRX_SESSION_ARMED, q.flags);
}

/* --- Credentials: the image after the exec must be the one that armed ----- */

#define SGID_DIR	"/tmp/cprx-kmod-sgid"

/* Arms, then execs @path (setgid or not) into the case "creds". */
static void creds_old_image(long setgid)
{
	char path[64];
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(0, EFD_CLOEXEC), ret;

	snprintf(path, sizeof(path), SGID_DIR "/%s", setgid ? "sgid" : "plain");
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	snprintf(th_self, sizeof(th_self), "%s", path);
	ret = exec_self("creds", sfd, setgid, 0);
	CHECK(0, "exec %s: %d", path, ret);
}

KMOD_EXEC_CASE(creds, old, setgid, a2)
{
	struct cprx_session_query q;
	int sfd;

	(void)a2;
	if (setgid) {
		if (getegid() != NOBODY || !getauxval(AT_SECURE))
			return 4;	/* the setgid bit was ignored */
		sfd = retrieve_session(open_dev(), SESS);
		CHECK(sfd == -EPERM, "retrieve_session after a setgid exec: %d",
		      sfd);
		/* refused, it stays armed */
		CHECK(!query(old, &q, NULL, 0) && q.flags == CPRX_SESSION_ARMED,
		      "flags %#x", q.flags);
		return 0;
	}
	CHECK(!getauxval(AT_SECURE), "a plain exec with AT_SECURE");
	sfd = retrieve_session(open_dev(), SESS);
	CHECK(sfd >= 0, "retrieve_session after a plain exec: %d", sfd);
	sfd = retrieve_fd(sfd, TOK_EVT);
	CHECK(sfd >= 0, "retrieve_fd after a plain exec: %d", sfd);
	return 0;
}

/*
 * Test Case: retrieve_after_setgid_exec
 * As root: armed, then exec'd into a setgid copy of this binary (group
 * nogroup, on a tmpfs of its own): the euid is unchanged, but the image is
 * a secure exec with other gids: RETRIEVE_SESSION EPERM, the session stays
 * armed.  Exec'd into a plain copy there, it retrieves the session and its
 * file.
 */
TEST_F(kmod, retrieve_after_setgid_exec)
{
	int ret;

	if (geteuid())
		SKIP(return, "a setgid file of another group needs root");
	mkdir(SGID_DIR, 0755);
	ASSERT_EQ(0, mount("cprx-sgid", SGID_DIR, "tmpfs", 0, "mode=755"));
	ASSERT_EQ(0, copy_self(SGID_DIR "/sgid", NOBODY));
	ASSERT_EQ(0, copy_self(SGID_DIR "/plain", -1));
	ret = run_child(self, creds_old_image, 1);
	if (ret == 4) {
		umount2(SGID_DIR, MNT_DETACH);
		SKIP(return, "the setgid bit had no effect");
	}
	EXPECT_EQ(0, ret);
	EXPECT_EQ(0, run_child(self, creds_old_image, 0));
	EXPECT_EQ(0, umount2(SGID_DIR, MNT_DETACH));
	rmdir(SGID_DIR);
}

/* --- File capabilities: same uids and gids, more privilege ---------------- */

/* Makes @path grant CAP_NET_RAW, effective, to whoever execs it. */
static int set_file_cap(const char *path)
{
	struct vfs_cap_data cap = {
		.magic_etc = htole32(VFS_CAP_REVISION_2 |
				     VFS_CAP_FLAGS_EFFECTIVE),
		.data[0].permitted = htole32(1u << CAP_NET_RAW),
	};

	return setxattr(path, "security.capability", &cap, XATTR_CAPS_SZ_2,
			0) ? -errno : 0;
}

/*
 * As nobody, with /dev/cprx opened as root: arms, then execs @path (with
 * file capabilities or not) into the case "fcaps", handing it the device.
 */
static void fcaps_old_image(long fcaps)
{
	char path[64];
	int dev = open_dev(), sfd, efd = eventfd(0, EFD_CLOEXEC), ret;

	CHECK(dev >= 0 && !keep_on_exec(dev), "open_dev: %m");
	CHECK(!setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(NOBODY, NOBODY, NOBODY), "setresuid: %m");
	sfd = create(dev, SESS);
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup as nobody: %d", sfd);
	snprintf(path, sizeof(path), SGID_DIR "/%s", fcaps ? "fcaps" : "plain");
	snprintf(th_self, sizeof(th_self), "%s", path);
	ret = exec_self("fcaps", sfd, fcaps, dev);
	CHECK(0, "exec %s as nobody: %d", path, ret);
}

KMOD_EXEC_CASE(fcaps, old, fcaps, dev)
{
	struct cprx_session_query q;
	int sfd;

	if (fcaps) {
		if (!getauxval(AT_SECURE))
			return 4;	/* the file capabilities were ignored */
		sfd = retrieve_session(dev, SESS);
		CHECK(sfd == -EPERM,
		      "retrieve_session after gaining file capabilities: %d",
		      sfd);
		CHECK(!query(old, &q, NULL, 0) && q.flags == CPRX_SESSION_ARMED,
		      "flags %#x", q.flags);
		return 0;
	}
	CHECK(!getauxval(AT_SECURE), "a plain exec with AT_SECURE");
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session as nobody after a plain exec: %d",
	      sfd);
	sfd = retrieve_fd(sfd, TOK_EVT);
	CHECK(sfd >= 0, "retrieve_fd as nobody after a plain exec: %d", sfd);
	return 0;
}

/*
 * Test Case: retrieve_after_file_caps_exec
 * A non-root VMM (nobody, handed /dev/cprx by root) arms, then execs a copy
 * of this binary that carries file capabilities (CAP_NET_RAW): the uids and
 * gids are unchanged, but the image is a secure exec with more privilege:
 * RETRIEVE_SESSION EPERM, the session stays armed.  Exec'd into a plain
 * copy, the same user retrieves the session and its file.
 */
TEST_F(kmod, retrieve_after_file_caps_exec)
{
	int ret;

	if (geteuid())
		SKIP(return, "setting file capabilities needs root");
	mkdir(SGID_DIR, 0755);
	ASSERT_EQ(0, mount("cprx-fcaps", SGID_DIR, "tmpfs", 0, "mode=755"));
	ASSERT_EQ(0, copy_self(SGID_DIR "/fcaps", -1));
	ASSERT_EQ(0, copy_self(SGID_DIR "/plain", -1));
	ret = set_file_cap(SGID_DIR "/fcaps");
	if (ret == -EOPNOTSUPP) {
		umount2(SGID_DIR, MNT_DETACH);
		SKIP(return, "tmpfs here stores no security.* attributes");
	}
	ASSERT_EQ(0, ret);
	ret = run_child(self, fcaps_old_image, 1);
	if (ret == 4) {
		umount2(SGID_DIR, MNT_DETACH);
		SKIP(return, "the file capabilities had no effect");
	}
	EXPECT_EQ(0, ret);
	EXPECT_EQ(0, run_child(self, fcaps_old_image, 0));
	EXPECT_EQ(0, umount2(SGID_DIR, MNT_DETACH));
	rmdir(SGID_DIR);
}

TEST_HARNESS_MAIN
