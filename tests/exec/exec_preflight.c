// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx_preflight(): refuses MAP_PRIVATE RAM, a missing or garbage binary, a
 * seccomp policy that denies the exec and a probe that fails, each by the
 * check that failed and why; passes a good setup and changes nothing.  The
 * probe runs this binary with --version, as it would a VMM.
 */
#include <sys/eventfd.h>

#include "exec_util.h"

static const struct cprx_check *find_check(const struct cprx_preflight_report *r,
					   const char *name)
{
	for (unsigned int i = 0; i < r->nr_checks && i < r->max_checks; i++)
		if (!strcmp(r->checks[i].name, name))
			return &r->checks[i];
	return NULL;
}

static void preflight_private(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	char *probe[] = { th_self, "--version", NULL };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_PRIVATE);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, th_self, probe, &rep);
	CHECK(ret == -EINVAL, "preflight returned %d", ret);
	c = find_check(&rep, "ram:ram0");
	CHECK(c && c->verdict == CPRX_FAIL, "ram check did not fail");
	CHECK(strstr(c->reason, "MAP_PRIVATE"), "reason: %s", c->reason);
	CHECK(strstr(cprx_errmsg(s), "ram0"), "message: %s", cprx_errmsg(s));
	CHECK(strstr(cprx_errhint(s), "MAP_SHARED"), "hint: %s", cprx_errhint(s));
	c = find_check(&rep, "probe");
	CHECK(c && c->verdict == CPRX_PASS, "probe: %s", c ? c->reason : "none");
	check_guest(&g);	cprx_session_close(s);
}

/*
 * Test Case: preflight_refuses_private_ram
 * Guest RAM mapped MAP_PRIVATE: -EINVAL, the ram0 check fails naming
 * MAP_PRIVATE, the hint says MAP_SHARED; the probe still passes.
 */
TEST(preflight_refuses_private_ram)
{
	ASSERT_EQ(0, in_child(preflight_private, NULL));
}

static void preflight_ok(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	char *probe[] = { th_self, "--version", NULL };
	struct cprx_session *s;
	struct guest g;
	int ret;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, th_self, probe, &rep);
	for (unsigned int i = 0; i < rep.nr_checks && i < 32; i++)
		printf("# %-10s %s %s\n", rep.checks[i].name,
		       rep.checks[i].verdict == CPRX_PASS ? "pass" :
		       rep.checks[i].verdict == CPRX_WARN ? "warn" : "FAIL",
		       rep.checks[i].reason);
	CHECK(ret == 0, "preflight failed: %s", cprx_errmsg(s));
	CHECK(find_check(&rep, "probe") &&
	      strstr(find_check(&rep, "probe")->reason, "exec_preflight 0"),
	      "probe output missing");
	CHECK(find_check(&rep, "ram:ram0")->verdict == CPRX_PASS, "ram check");
	CHECK(strstr(find_check(&rep, "state")->reason, ", io_uring"),
	      "state check does not say how the state is written");
	/* preflight changes nothing */
	CHECK(fcntl(g.ram_fd, F_GETFD) == FD_CLOEXEC, "ram fd flags changed");
	/* the probe is reaped; the keeper stays, ready for the exec */
	CHECK(nr_children() == 1, "%d children: want the keeper alone",
	      nr_children());
	check_guest(&g);
	cprx_session_close(s);
	CHECK(nr_children() == 0, "the keeper outlived the session");
}

/*
 * Test Case: preflight_passes_good_setup
 * A good setup passes every check: the probe's output is seen, the state
 * says it goes by io_uring, and no fd flag is changed.  The one child left
 * is the keeper, ready for the exec; closing the session stops it.
 */
TEST(preflight_passes_good_setup)
{
	ASSERT_EQ(0, in_child(preflight_ok, NULL));
}

struct pf_bad {
	const char *path;
	int err;
	const char *check;
	const char *word;
	bool seccomp;
};

static void preflight_bad(const void *arg)
{
	const struct pf_bad *b = arg;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	char *probe[] = { (char *)b->path, "--version", NULL };
	const struct cprx_check *c;
	struct cprx_session *s;
	struct guest g;
	int ret;

	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	if (b->seccomp)
		install_exec_filter();
	ret = cprx_preflight(s, b->path, probe, &rep);
	printf("# %s\n", cprx_errmsg(s));
	CHECK(ret == -b->err, "preflight returned %d, expected %d", ret, -b->err);
	c = find_check(&rep, b->check);
	CHECK(c && c->verdict == CPRX_FAIL, "check %s did not fail", b->check);
	CHECK(strstr(c->reason, b->word), "reason: %s", c->reason);	cprx_session_close(s);
}

/*
 * Test Case: preflight_refuses_garbage_binary
 * A binary that is not ELF: -ENOEXEC from the binary check.
 */
TEST(preflight_refuses_garbage_binary)
{
	struct pf_bad b = { .path = "/tmp/cprx-test-pf-garbage", .err = ENOEXEC,
			    .check = "binary", .word = "ELF" };

	write_file(b.path, "garbage!", 8, 0755);
	ASSERT_EQ(0, in_child(preflight_bad, &b));
	unlink(b.path);
}

/*
 * Test Case: preflight_refuses_missing_binary
 * A binary that does not exist: -ENOENT from the binary check.
 */
TEST(preflight_refuses_missing_binary)
{
	struct pf_bad b = { .path = "/nonexistent/qemu", .err = ENOENT,
			    .check = "binary", .word = "not exist" };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

/*
 * Test Case: preflight_probe_sees_seccomp
 * A seccomp filter denying exec: -EPERM from the probe, naming seccomp.
 */
TEST(preflight_probe_sees_seccomp)
{
	struct pf_bad b = { .path = th_self, .err = EPERM, .check = "probe",
			    .word = "seccomp", .seccomp = true };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

/*
 * Test Case: preflight_probe_failing_binary
 * A probe that exits 1 (/bin/false): -ELIBBAD from the probe check.
 */
TEST(preflight_probe_failing_binary)
{
	struct pf_bad b = { .path = "/bin/false", .err = ELIBBAD,
			    .check = "probe", .word = "exited with 1" };

	ASSERT_EQ(0, in_child(preflight_bad, &b));
}

/* What the preflight probe runs: "exec_preflight --version". */
HARNESS_SETUP(argc, argv)
{
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("exec_preflight 0\n");
		exit(0);
	}
}

#define USER_PINS	"/sys/module/cprx/parameters/max_user_pins"

static long param(const char *path, long set)
{
	FILE *f = fopen(path, set < 0 ? "re" : "we");
	long v = -1;

	if (!f)
		return -1;
	if (set < 0 ? fscanf(f, "%ld", &v) != 1 : fprintf(f, "%ld", set) < 0)
		v = -1;
	return fclose(f) ? -1 : set < 0 ? v : 0;
}

/* max_user_pins is 2: three preserves pass, preflight names the third. */
static void preflight_kmod_limit(const void *arg)
{
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	const struct cprx_check *c;
	struct cprx_session *s;
	char token[16];
	int ret;

	(void)arg;
	CHECK(!cprx_session_open(&s, "test", NULL), "%s", cprx_errmsg(NULL));
	for (int i = 0; i < 3; i++) {
		snprintf(token, sizeof(token), "pf.%d", i);
		ret = cprx_preserve_fd(s, token, eventfd(0, EFD_CLOEXEC));
		CHECK(!ret, "preserve %s: %s", token, cprx_errmsg(s));
	}
	ret = cprx_preflight(s, th_self, NULL, &rep);
	CHECK(ret == -ENOSPC, "preflight returned %d", ret);
	c = find_check(&rep, "backend");
	CHECK(c && c->verdict == CPRX_FAIL && strstr(c->reason, "'pf.2'"),
	      "backend check: %s", c ? c->reason : "none");
	CHECK(strstr(cprx_errhint(s), "max_user_pins"), "hint: %s",
	      cprx_errhint(s));
	cprx_session_close(s);
}

/*
 * Test Case: preflight_reports_kmod_refusal
 * With the kmod backend and cprx.ko's max_user_pins at 2 (as root): three
 * preserves succeed (their pins are queued), and preflight, which makes
 * them, fails with -ENOSPC from the backend check, naming the third token
 * and max_user_pins.
 */
TEST(preflight_reports_kmod_refusal)
{
	const char *b = getenv("CPRX_BACKEND");
	long saved;
	int ret;

	if (!b || strcmp(b, "kmod") || geteuid())
		SKIP(return, "needs CPRX_BACKEND=kmod, as root");
	saved = param(USER_PINS, -1);
	if (saved < 0 || param(USER_PINS, 2))
		SKIP(return, "cannot set " USER_PINS);
	ret = in_child(preflight_kmod_limit, NULL);
	EXPECT_EQ(0, param(USER_PINS, saved));
	ASSERT_EQ(0, ret);
}

TEST_HARNESS_MAIN
