// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests of the module parameters max_pins and max_sessions: the
 * limits, and QUERY while max_pins changes under it (root).
 */
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

static void four_sessions(long dev)
{
	char name[16];

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		CHECK(create(dev, name) >= 0, "session %d", i);
	}
	CHECK(create(dev, "fifth") == -ENOSPC, "a fifth session");
}

/*
 * Test Case: limit_sessions
 * As root, max_sessions: the session past it ENOSPC, per process; closed
 * and finished sessions do not count.
 */
TEST_F(kmod, limit_sessions)
{
	char name[16];
	int fds[4];

	if (geteuid())
		SKIP(return, "module parameters need root");
	set_param(self, P_SESSIONS, 4);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		fds[i] = create(self->dev, name);
		ASSERT_GE(fds[i], 0);
	}
	EXPECT_EQ(-ENOSPC, create(self->dev, "fifth"));
	/* per process */
	EXPECT_EQ(0, run_child(self, four_sessions, self->dev));
	close(fds[0]);
	EXPECT_GE(create(self->dev, "fifth"), 0);
	/* finished sessions do not count */
	ASSERT_EQ(0, finish(fds[1]));
	EXPECT_GE(create(self->dev, "sixth"), 0);
	EXPECT_EQ(-ENOSPC, create(self->dev, "seventh"));
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
