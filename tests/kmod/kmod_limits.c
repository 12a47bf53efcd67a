// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of the module parameters max_pins and max_sessions: the
 * limits, and QUERY while max_pins changes under it (root).
 */
#include <grp.h>
#include "kmod_util.h"

/* --- Limits --------------------------------------------------------------- */

/*
 * Test Case: limit_pins
 * As root, max_pins: the pin past it ENOSPC, a freed slot takes one more,
 * the limit is per session; lowered below what a session holds, no new pins
 * and the old ones stay.
 */
TEST_F(kmod, limit_pins)
{
	struct cprx_query_entry ents[16];
	struct cprx_session_query q;
	int sfd, other, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_PINS, 8);
	sfd = create(self->dev, SESS);
	other = create(self->dev, "other");
	ASSERT_GE(sfd, 0);
	ASSERT_GE(other, 0);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 8));
	EXPECT_EQ(8, nr_pins(sfd));
	ASSERT_EQ(0, unpreserve(sfd, 3));
	EXPECT_EQ(0, preserve(sfd, efd, 8));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 9));
	/* per session */
	EXPECT_EQ(0, preserve(other, efd, 0));
	/* lowered under what a session holds: no new pins, old ones stay */
	set_param(self, P_PINS, 4);
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 10));
	memset(ents, 0, sizeof(ents));
	ASSERT_EQ(0, query(sfd, &q, ents, ARRAY_SIZE(ents)));
	EXPECT_EQ(8, q.nr_entries);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(CPRX_KIND_EVENTFD, ents[i].kind);
}

static void two_sessions(long dev)
{
	CHECK(create(dev, "child-0") >= 0, "a child's first session");
	CHECK(create(dev, "child-1") >= 0, "a child's second session");
	CHECK(create(dev, "child-2") == -ENOSPC, "a fifth session of the uid");
}

/*
 * Test Case: limit_sessions
 * As root, max_sessions is per user: with 2 sessions of ours, a forked
 * child (same uid) gets 2 more and then ENOSPC, and so do we; a closed
 * session frees its slot, a finished one only once it is closed too.
 */
TEST_F(kmod, limit_sessions)
{
	int fds[2], ret;

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_SESSIONS, 4);
	fds[0] = create(self->dev, "s0");
	fds[1] = create(self->dev, "s1");
	ASSERT_GE(fds[0], 0);
	ASSERT_GE(fds[1], 0);
	/* the child's sessions are charged while it lives */
	EXPECT_EQ(0, run_child(self, two_sessions, self->dev));
	ret = create(self->dev, "s2");
	ASSERT_GE(ret, 0);
	EXPECT_GE(create(self->dev, "s3"), 0);
	EXPECT_EQ(-ENOSPC, create(self->dev, "fifth"));
	/* finished, still charged until its file goes */
	ASSERT_EQ(0, finish(fds[1]));
	EXPECT_EQ(-ENOSPC, create(self->dev, "fifth"));
	close(fds[1]);
	EXPECT_GE(create(self->dev, "fifth"), 0);
	EXPECT_EQ(-ENOSPC, create(self->dev, "sixth"));
	close(fds[0]);
	EXPECT_GE(create(self->dev, "sixth"), 0);
}

/* Holds @n sessions until killed; reports how many it got. */
__attribute__((noreturn))
static void hold_sessions(int dev, int n, int rep)
{
	char name[16];
	int got = 0;

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "held-%d", i);
		got += create(dev, name) >= 0;
	}
	report(rep, got);
	sleep_forever();
}

/* A forked child holding sessions: how many it got, or -1. */
static int holder(FIXTURE_DATA(kmod) *self, int n, uid_t uid)
{
	int rep[2], got = -1;
	pid_t pid;

	if (pipe2(rep, O_CLOEXEC))
		return -1;
	pid = fork_flushed();
	if (pid < 0)
		return -1;
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		CHECK(!setresuid(uid, uid, uid), "setresuid: %m");
		hold_sessions(self->dev, n, rep[1]);
	}
	track(self, pid);
	close(rep[1]);
	read_report(rep[0], &got, 30000);
	close(rep[0]);
	return got;
}

/*
 * Test Case: limit_sessions_per_uid_and_total
 * As root, with max_sessions 2 per user: 4 forked children of ours hold 2
 * sessions between them whatever each asks for, while a child turned
 * nobody still gets its own 2; with max_total_sessions 5 on top, a second
 * nobody child gets 1 (the fifth of all) and we get none.
 */
TEST_F(kmod, limit_sessions_per_uid_and_total)
{
	int got = 0;

	if (geteuid())
		SKIP(return, "module parameters and setuid need root");
	set_param(self, P_SESSIONS, 2);
	for (int i = 0; i < 4; i++)
		got += holder(self, 2, 0);
	EXPECT_EQ(2, got);
	EXPECT_EQ(2, holder(self, 2, NOBODY));
	EXPECT_EQ(-ENOSPC, create(self->dev, "ours"));
	set_param(self, P_TOTAL_SESSIONS, 5);
	set_param(self, P_SESSIONS, 3);
	EXPECT_EQ(1, holder(self, 3, NOBODY));
	EXPECT_EQ(-ENOSPC, create(self->dev, "ours"));
}

/* A child's own session: pins of the same uid until the limit. */
static void child_pins(long dev)
{
	int sfd = create(dev, "child"), efd = eventfd(0, EFD_CLOEXEC);

	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(!preserve(sfd, efd, 1) && !preserve(sfd, efd, 2),
	      "the uid's 5th and 6th pins");
	CHECK(preserve(sfd, efd, 3) == -ENOSPC, "the uid's 7th pin");
}

/*
 * Test Case: limit_user_pins
 * As root, max_user_pins 6: our session's 4 pins and a forked child's
 * session count together (it gets 2, then ENOSPC), as does a second
 * session of ours; an unpreserve or a closed session gives pins back.
 */
TEST_F(kmod, limit_user_pins)
{
	int sfd, other, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_USER_PINS, 6);
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	EXPECT_EQ(0, run_child(self, child_pins, self->dev));
	other = create(self->dev, "other");
	ASSERT_GE(other, 0);
	EXPECT_EQ(0, preserve(other, efd, 0));
	EXPECT_EQ(0, preserve(other, efd, 1));
	EXPECT_EQ(-ENOSPC, preserve(other, efd, 2));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 4));
	ASSERT_EQ(0, unpreserve(sfd, 0));
	EXPECT_EQ(0, preserve(other, efd, 2));
	close(other);
	for (int i = 4; i < 7; i++)
		EXPECT_EQ(0, preserve(sfd, efd, i));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 7));
}

/* As nobody (another user, its own charges): one pin, then ENOSPC. */
static void nobody_pins(long dev)
{
	int sfd, efd = eventfd(0, EFD_CLOEXEC);

	CHECK(!setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(NOBODY, NOBODY, NOBODY), "setresuid: %m");
	sfd = create(dev, "nobody");
	CHECK(sfd >= 0, "create as nobody: %d", sfd);
	CHECK(!preserve(sfd, efd, 1), "the 4th pin of all");
	CHECK(preserve(sfd, efd, 2) == -ENOSPC, "the 5th pin of all");
}

/*
 * Test Case: limit_total_pins
 * As root, max_total_pins 4 (per-user and per-session limits far above):
 * our 3 pins and another user's count together, so that user gets one pin
 * and then ENOSPC, as do we; pins given back are free for anyone.
 */
TEST_F(kmod, limit_total_pins)
{
	int sfd, efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_TOTAL_PINS, 4);
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	EXPECT_EQ(0, run_child(self, nobody_pins, self->dev));
	EXPECT_EQ(0, preserve(sfd, efd, 3));
	EXPECT_EQ(-ENOSPC, preserve(sfd, efd, 4));
	ASSERT_EQ(0, unpreserve(sfd, 0));
	EXPECT_EQ(0, preserve(sfd, efd, 4));
}

/*
 * Test Case: query_allocates_by_pins
 * As root, max_pins 2^28: a QUERY with room for 2^28 entries on a session
 * with one pin works and copies that one (the module allocates by the
 * pins there are, not by the caller's nr_entries: 4 GiB here).
 */
TEST_F(kmod, query_allocates_by_pins)
{
	struct cprx_query_entry ents[4];
	struct cprx_session_query q;
	int sfd = create(self->dev, SESS), efd = eventfd(0, EFD_CLOEXEC);

	if (geteuid())
		SKIP(return, "module parameters need root");
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve(sfd, efd, 7));
	set_param(self, P_PINS, 1L << 28);
	memset(ents, 0xa5, sizeof(ents));
	ASSERT_EQ(0, query(sfd, &q, ents, 1u << 28));
	EXPECT_EQ(1, q.nr_entries);
	EXPECT_EQ(7, ents[0].token);
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, ents[1].token);
}

/* --- /dev/cprx: root's, and the group the udev rule names ----------------- */

#define RULES	CPRX_SOURCE_ROOT "/kernel/60-cprx.rules"

/* KEY="value" from the rule for /dev/cprx, or -1. */
static int rule_value(const char *key, char *val, size_t size)
{
	char line[512], pat[32], *p, *q;
	FILE *f = fopen(RULES, "re");
	int ret = -1;

	if (!f)
		return -1;
	snprintf(pat, sizeof(pat), "%s=\"", key);
	while (ret && fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || !strstr(line, "KERNEL==\"cprx\""))
			continue;
		p = strstr(line, pat);
		q = p ? strchr(p + strlen(pat), '"') : NULL;
		if (!q || (size_t)(q - p - strlen(pat)) >= size)
			continue;
		snprintf(val, q - p - strlen(pat) + 1, "%s", p + strlen(pat));
		ret = 0;
	}
	fclose(f);
	return ret;
}

/* As @uid in group @gid only (-1: none): open's result, 0 or -errno. */
static void open_as(long arg)
{
	uid_t uid = arg >> 32;
	gid_t gid = (gid_t)(arg & 0xffffffff);
	int n = gid == (gid_t)-1 ? 0 : 1, fd;

	CHECK(!setgroups(n, &gid) && !setresgid(NOBODY, NOBODY, NOBODY) &&
	      !setresuid(uid, uid, uid), "drop: %m");
	fd = open_dev();
	_exit(fd >= 0 ? 0 : errno);
}

/*
 * Test Case: dev_mode_and_group
 * As root: /dev/cprx is 0660 root:root, so nobody without a group gets
 * EACCES from open; with the group and mode of kernel/60-cprx.rules
 * applied (its group or, where it does not exist, a stand-in gid), nobody
 * in that group opens it, and nobody outside it still may not.
 */
TEST_F(kmod, dev_mode_and_group)
{
	char group[64], mode[16];
	struct group *gr;
	struct stat st;
	gid_t gid;

	if (geteuid())
		SKIP(return, "chown of /dev/cprx and setuid need root");
	ASSERT_EQ(0, stat(CPRX_DEVICE, &st));
	EXPECT_EQ(0660, st.st_mode & 07777);
	EXPECT_EQ(0, st.st_gid);
	EXPECT_EQ(EACCES, run_child(self, open_as,
				    (long)NOBODY << 32 | 0xffffffff));
	ASSERT_EQ(0, rule_value("GROUP", group, sizeof(group)));
	ASSERT_EQ(0, rule_value("MODE", mode, sizeof(mode)));
	gr = getgrnam(group);
	gid = gr ? gr->gr_gid : 4242;
	if (!gr)
		TH_LOG("no group %s here: gid %u stands in", group, gid);
	ASSERT_EQ(0, chown(CPRX_DEVICE, 0, gid));
	ASSERT_EQ(0, chmod(CPRX_DEVICE, strtol(mode, NULL, 8)));
	EXPECT_EQ(0, run_child(self, open_as, (long)NOBODY << 32 | gid));
	EXPECT_EQ(EACCES, run_child(self, open_as,
				    (long)NOBODY << 32 | (gid + 1)));
	EXPECT_EQ(0, chown(CPRX_DEVICE, st.st_uid, st.st_gid));
	EXPECT_EQ(0, chmod(CPRX_DEVICE, st.st_mode & 07777));
}

/* --- QUERY against a max_pins that changes under it ----------------------- */

__attribute__((noreturn))
static void toggle_max_pins(void)
{
	for (;;) {
		write_long(PARAMS "max_pins", 1);
		write_long(PARAMS "max_pins", 4096);
	}
}

/* Untouched (all 0xa5) or one of the 64 pins: nothing else. */
static bool entry_ok(const struct cprx_query_entry *e)
{
	static const uint8_t untouched[sizeof(*e)] = {
		[0 ... sizeof(*e) - 1] = 0xa5,
	};

	if (!memcmp(e, untouched, sizeof(*e)))
		return true;
	return e->token >= 1 && e->token <= 64 &&
	       e->kind == CPRX_KIND_EVENTFD && !e->reserved;
}

/*
 * Test Case: query_races_max_pins
 * As root: QUERY for 3 s while another process flips max_pins between 1
 * and 4096 never fails, and every entry is untouched or one of the 64 pins.
 */
TEST_F_TIMEOUT(kmod, query_races_max_pins, 60)
{
	struct cprx_query_entry ents[64];
	struct cprx_session_query q;
	int sfd, efd = eventfd(0, EFD_CLOEXEC), n = 0, bad = 0, ret;
	long long end;
	pid_t pid;

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_PINS, 4096);
	sfd = create(self->dev, SESS);
	ASSERT_GE(sfd, 0);
	for (int i = 1; i <= 64; i++)
		ASSERT_EQ(0, preserve(sfd, efd, i));
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		toggle_max_pins();
	}
	track(self, pid);
	for (end = now_ns() + 3000000000LL; now_ns() < end; n++) {
		memset(ents, 0xa5, sizeof(ents));
		ret = query(sfd, &q, ents, ARRAY_SIZE(ents));
		if (ret) {
			EXPECT_EQ(0, ret);
			break;
		}
		for (size_t i = 0; i < ARRAY_SIZE(ents); i++)
			bad += !entry_ok(&ents[i]);
	}
	kill_kid(self, pid);
	TH_LOG("%d queries while max_pins flipped between 1 and 4096", n);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(64, nr_pins(sfd));
}

TEST_HARNESS_MAIN
