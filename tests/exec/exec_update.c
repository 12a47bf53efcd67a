// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live updates of this binary that go through: RAM and devices survive
 * (also with inline teardown and without io_uring); rollbacks to the
 * previous image.  (A state file damaged on disk: tests/faults/fault_state.c;
 * the exec carries the sealed memfd, so damage there changes nothing.)
 * Both halves of each are here, the new images as the exec cases the tests
 * exec into.
 */
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include "exec_util.h"

/* ---- old-image halves ---------------------------------------------------- */

static void update_to(const void *arg)
{
	const char *name = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), name);
}

/* io_uring refused (as some sandboxes do): the state moves with pwrite. */
static void update_without_io_uring(const void *arg)
{
	install_filter(__NR_io_uring_setup, __NR_io_uring_enter);
	update_to(arg);
}

static void update_inline_teardown(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .no_deferred_teardown = true };
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), "devices");
}

/* The child first becomes exec case NAME itself, so rollback returns there. */
static void become_case(const void *arg)
{
	execv(th_self, EXEC_CASE_ARGV(arg));
	_exit(97);
}

#define MANY_FDS	600	/* over two of the kmod backend's batches of 256 */

/* The pins cprx.ko holds for our session "test"; -1 if it is not listed. */
static int kmod_pins(void)
{
	FILE *f = fopen("/proc/cprx/sessions", "re");
	char line[256], name[80];
	int pid, pins, ret = -1;

	/* "pid\tname\tpins\t...", under a header line */
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%d\t%79[^\t]\t%d", &pid, name, &pins) == 3 &&
		    pid == getpid() && !strcmp(name, "test"))
			ret = pins;
	if (f)
		fclose(f);
	return ret;
}

/*
 * 600 eventfds, each with its own count; one unpreserved after the first
 * batch was pinned, one while still queued.  With kmod, pins are made 256
 * at a time and by preflight, not one ioctl per preserve.
 */
static void update_many_fds(const void *arg)
{
	struct cprx_session *s;
	char token[32];
	bool kmod;
	int fd;

	(void)arg;
	CHECK(!cprx_session_open(&s, "test", NULL), "%s", cprx_errmsg(NULL));
	kmod = !strcmp(cprx_backend_name(s), "kmod");
	for (int i = 0; i < MANY_FDS; i++) {
		fd = eventfd(i + 1, EFD_CLOEXEC);
		CHECK(fd >= 0, "eventfd: %m");
		snprintf(token, sizeof(token), "fd.%d", i);
		CHECK(!cprx_preserve_fd(s, token, fd), "%s", cprx_errmsg(s));
		CHECK(!kmod || i != 9 || kmod_pins() == 0,
		      "%d pins after 10 preserves: not batched", kmod_pins());
	}
	CHECK(!kmod || kmod_pins() == 512, "%d pins, not 2 batches of 256",
	      kmod_pins());
	CHECK(!cprx_unpreserve(s, "fd.5"), "%s", cprx_errmsg(s));
	CHECK(!cprx_unpreserve(s, "fd.590"), "%s", cprx_errmsg(s));
	cprx_preflight(s, th_self, NULL, NULL);
	CHECK(!kmod || kmod_pins() == MANY_FDS - 2, "%d pins after preflight",
	      kmod_pins());
	exec_case(s, "many");
}

/* ---- new-image halves ---------------------------------------------------- */

EXEC_CASE(many)
{
	struct cprx_session *s = incoming();
	char token[32];
	uint64_t v;
	int fd, ret;

	for (int i = 0; i < MANY_FDS; i++) {
		snprintf(token, sizeof(token), "fd.%d", i);
		ret = cprx_reclaim_fd(s, token, &fd);
		if (i == 5 || i == 590) {
			CHECK(ret == -ENOENT, "%s unpreserved, reclaimed: %d",
			      token, ret);
			continue;
		}
		CHECK(!ret, "%s", cprx_errmsg(s));
		CHECK(read(fd, &v, 8) == 8 && v == (uint64_t)i + 1,
		      "%s: count %llu", token, (unsigned long long)v);
	}
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	cprx_session_close(s);
	_exit(0);
}

EXEC_CASE(devices)
{
	struct cprx_session *s = incoming();
	uint64_t ts[CPRX_PH_MAX];
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	CHECK(cprx_generation(s) == 1, "generation %u", cprx_generation(s));
	CHECK(!cprx_is_rollback(s), "marked as rollback");
	CHECK(cprx_timeline(s, ts, CPRX_PH_MAX) == CPRX_PH_MAX, "timeline count");
	CHECK(ts[CPRX_PH_SAVE_START] && ts[CPRX_PH_SAVE_END] >= ts[CPRX_PH_SAVE_START] &&
	      ts[CPRX_PH_EXEC] >= ts[CPRX_PH_SAVE_END] &&
	      ts[CPRX_PH_INCOMING] >= ts[CPRX_PH_EXEC] &&
	      ts[CPRX_PH_COMMIT] >= ts[CPRX_PH_INCOMING], "timeline out of order");
	wait_no_children();
	cprx_session_close(s);
	_exit(0);
}

/* Old image of the rollback cases: first a fresh start, then the rollback. */
__attribute__((noreturn))
static void case_rollback_old(const char *next)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int ret = cprx_incoming(&s, NULL);

	if (ret == 0) {
		make_guest(&g, RAM_SIZE, MAP_SHARED);
		exec_case(preserve_guest(&g, &opts), next);
	}
	CHECK(ret == 1, "rollback image rejected the state: %s", cprx_errmsg(s));
	CHECK(cprx_is_rollback(s), "not marked as rollback");
	CHECK(cprx_generation(s) == 0, "generation %u after rollback",
	      cprx_generation(s));
	CHECK(cprx_rollback_reason(s) &&
	      !strcmp(cprx_rollback_reason(s), "simulated start failure, 100%"),
	      "rollback reason: %s", cprx_rollback_reason(s));
	reclaim_guest(s, &g);
	check_guest(&g);
	if (!strcmp(next, "rb_twice_new")) {
		ret = cprx_rollback(s, "second failure");
		CHECK(ret == -ELOOP, "second rollback returned %d", ret);
		CHECK(strstr(cprx_errmsg(s), "second rollback"), "message: %s",
		      cprx_errmsg(s));
	}
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	wait_no_children();
	_exit(0);
}

/* New image that cannot start: it rolls back to the previous binary. */
__attribute__((noreturn))
static void case_rollback_new(bool missing_token)
{
	struct cprx_session *s = incoming();
	int fd, ret;

	if (missing_token) {
		ret = cprx_reclaim_fd(s, "dev.extra", &fd);
		CHECK(ret == -ENOENT, "reclaim of a missing token: %d", ret);
		CHECK(strstr(cprx_errmsg(s), "dev.extra"), "message: %s",
		      cprx_errmsg(s));
	}
	ret = cprx_rollback(s, "simulated start failure, 100%");
	CHECK(0, "rollback returned %d: %s", ret, cprx_errmsg(s));
}

EXEC_CASE(rb_old)
{
	case_rollback_old("rb_new");
}

EXEC_CASE(rb_new)
{
	case_rollback_new(false);
}

EXEC_CASE(rb_twice_old)
{
	case_rollback_old("rb_twice_new");
}

EXEC_CASE(rb_twice_new)
{
	case_rollback_new(false);
}

EXEC_CASE(rb_token_old)
{
	case_rollback_old("rb_token_new");
}

EXEC_CASE(rb_token_new)
{
	case_rollback_new(true);
}


/* ---- tests --------------------------------------------------------------- */

/*
 * Test Case: ram_and_devices_survive
 * 64 MiB of RAM, an eventfd's count, unread pipe bytes and a file offset
 * cross the exec; the new image holds exactly stdio and those fds, is
 * generation 1 with its timeline in order, and the keeper is reaped.
 */
TEST(ram_and_devices_survive)
{
	ASSERT_EQ(0, in_child(update_to, "devices"));
}

/*
 * Test Case: inline_teardown_update
 * The same update with the old mm torn down inside the exec
 * (no_deferred_teardown).
 */
TEST(inline_teardown_update)
{
	ASSERT_EQ(0, in_child(update_inline_teardown, NULL));
}

/*
 * Test Case: update_without_io_uring
 * The same update with io_uring refused by seccomp: the state is written
 * with pwrite.
 */
TEST(update_without_io_uring)
{
	ASSERT_EQ(0, in_child(update_without_io_uring, "devices"));
}

/*
 * Test Case: rollback_resumes_previous_binary
 * A new image that cannot start rolls back: the previous image gets the
 * guest intact, marked as a rollback, generation 0, with the reason given.
 */
TEST(rollback_resumes_previous_binary)
{
	ASSERT_EQ(0, in_child(become_case, "rb_old"));
}

/*
 * Test Case: rollback_on_missing_token
 * The new image asks for a token the old one never preserved: -ENOENT
 * naming it, then the rollback.
 */
TEST(rollback_on_missing_token)
{
	ASSERT_EQ(0, in_child(become_case, "rb_token_old"));
}

/*
 * Test Case: second_rollback_refused
 * An image that was rolled back to cannot roll back again: -ELOOP.
 */
TEST(second_rollback_refused)
{
	ASSERT_EQ(0, in_child(become_case, "rb_twice_old"));
}

/*
 * Test Case: many_fds_update
 * 600 eventfds preserved, two unpreserved (one already pinned, one not),
 * updated: the new image reclaims the 598 with their counts, and the two
 * are ENOENT.  With the kmod backend, cprx.ko holds no pin after 10
 * preserves, 512 after 600 (batches of 256), and all 598 after preflight.
 */
TEST(many_fds_update)
{
	ASSERT_EQ(0, in_child(update_many_fds, NULL));
}

TEST_HARNESS_MAIN
