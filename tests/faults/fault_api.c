// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libcprx's API under careless or hostile callers: NULL everywhere, options
 * from a newer header, a preflight report smaller than the checks, a short
 * timeline, error codes that say what happened; and its ABI: the version
 * calls agree with the header and the build, and the shared library exports
 * only cprx_* symbols, each at its release's node.
 */
#include <stddef.h>

#include "exec_util.h"

static bool errmsg_has(const char *word)
{
	if (strstr(cprx_errmsg(NULL), word))
		return true;
	printf("# cprx_errmsg(NULL) is '%s', not naming '%s'\n",
	       cprx_errmsg(NULL), word);
	return false;
}

/*
 * Test Case: null_session_refused
 * Every call given a NULL session returns -EINVAL and names itself in
 * cprx_errmsg(NULL); none crashes.  A VMM's error path may well hold a
 * session pointer that an earlier failure left NULL.
 */
TEST(null_session_refused)
{
	char *argv[] = { "true", NULL };
	uint64_t ts[CPRX_PH_MAX], size;
	const void *data;
	size_t len;
	void *addr;
	int fd;

	EXPECT_EQ(-EINVAL, cprx_preserve_ram(NULL, "r", 0, NULL, 4096,
					     CPRX_PAGE_4K));
	EXPECT_TRUE(errmsg_has("cprx_preserve_ram"));
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(NULL, "f", 0));
	EXPECT_TRUE(errmsg_has("cprx_preserve_fd"));
	EXPECT_EQ(-EINVAL, cprx_unpreserve(NULL, "f"));
	EXPECT_TRUE(errmsg_has("cprx_unpreserve"));
	EXPECT_EQ(-EINVAL, cprx_add_blob(NULL, "b", "x", 1));
	EXPECT_TRUE(errmsg_has("cprx_add_blob"));
	EXPECT_EQ(-EINVAL, cprx_preflight(NULL, "/bin/true", NULL, NULL));
	EXPECT_TRUE(errmsg_has("cprx_preflight"));
	EXPECT_EQ(-EINVAL, cprx_save(NULL));
	EXPECT_TRUE(errmsg_has("cprx_save"));
	EXPECT_EQ(-EINVAL, cprx_exec(NULL, "/bin/true", argv));
	EXPECT_TRUE(errmsg_has("cprx_exec"));
	EXPECT_EQ(-EINVAL, cprx_reclaim_fd(NULL, "f", &fd));
	EXPECT_TRUE(errmsg_has("cprx_reclaim_fd"));
	EXPECT_EQ(-EINVAL, cprx_reclaim_ram(NULL, "r", &addr, &size, NULL));
	EXPECT_TRUE(errmsg_has("cprx_reclaim_ram"));
	EXPECT_EQ(-EINVAL, cprx_get_blob(NULL, "b", &data, &len));
	EXPECT_TRUE(errmsg_has("cprx_get_blob"));
	EXPECT_EQ(-EINVAL, cprx_commit(NULL));
	EXPECT_TRUE(errmsg_has("cprx_commit"));
	EXPECT_EQ(-EINVAL, cprx_rollback(NULL, "why"));
	EXPECT_EQ(-EINVAL, cprx_timeline(NULL, ts, CPRX_PH_MAX));
	EXPECT_TRUE(errmsg_has("cprx_timeline"));
	EXPECT_EQ(-EINVAL, cprx_session_open(NULL, "n", NULL));
	EXPECT_TRUE(errmsg_has("cprx_session_open"));
	unsetenv(CPRX_ENV);
	EXPECT_EQ(-EINVAL, cprx_incoming(NULL, NULL));
	EXPECT_TRUE(errmsg_has("cprx_incoming"));
	cprx_mark(NULL, CPRX_PH_STOP);
	cprx_session_close(NULL);
}

/*
 * Test Case: null_getters_defaults
 * The getters return the defaults cprx.h names for a NULL session instead
 * of reading through it.
 */
TEST(null_getters_defaults)
{
	EXPECT_FALSE(cprx_is_rollback(NULL));
	EXPECT_EQ(NULL, cprx_rollback_reason(NULL));
	EXPECT_EQ(0, cprx_generation(NULL));
	EXPECT_STREQ("none", cprx_backend_name(NULL));
	EXPECT_STREQ("unknown", cprx_phase_name(CPRX_PH_MAX));
}

/*
 * Test Case: null_pointer_refused
 * A live session with a NULL pointer the call needs (a token, the blob's
 * data, preflight's path, the place for an fd or a blob) gives -EINVAL
 * with a message in the session, not a crash or a silent success.
 */
TEST(null_pointer_refused)
{
	struct cprx_session *s;
	const void *data;
	uint64_t size;
	void *addr;
	int fd;

	ASSERT_EQ(0, cprx_session_open(&s, "nulls", NULL));
	EXPECT_EQ(-EINVAL, cprx_add_blob(s, "b", NULL, 4));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "data"));
	EXPECT_EQ(0, cprx_add_blob(s, "empty", NULL, 0));
	EXPECT_EQ(-EINVAL, cprx_unpreserve(s, NULL));
	EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, NULL, 0));
	EXPECT_EQ(-EINVAL, cprx_preflight(s, NULL, NULL, NULL));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "path"));
	EXPECT_EQ(-EINVAL, cprx_exec(s, NULL, NULL));
	EXPECT_EQ(-EINVAL, cprx_reclaim_fd(s, "f", NULL));
	EXPECT_EQ(-EINVAL, cprx_reclaim_ram(s, "r", NULL, &size, NULL));
	EXPECT_EQ(-EINVAL, cprx_reclaim_ram(s, "r", &addr, NULL, &fd));
	EXPECT_EQ(-EINVAL, cprx_get_blob(s, "b", NULL, NULL));
	EXPECT_EQ(-EINVAL, cprx_get_blob(s, NULL, &data, &(size_t){ 0 }));
	cprx_session_close(s);
}

/* struct cprx_options as a newer header could have it: one more field. */
struct options_next {
	struct cprx_options known;
	uint64_t future;
};

/*
 * Test Case: options_nonzero_tail
 * Options from a newer header whose unknown tail is non-zero ask for
 * something this library cannot do: -EINVAL naming the offset, from both
 * cprx_session_open and cprx_incoming.  A zero tail is accepted.
 */
TEST(options_nonzero_tail)
{
	struct options_next o = { .known.size = sizeof(o), .future = 0 };
	struct cprx_session *s;
	char off[32];

	snprintf(off, sizeof(off), "offset %zu",
		 offsetof(struct options_next, future));
	ASSERT_EQ(0, cprx_session_open(&s, "tail", &o.known));
	cprx_session_close(s);
	o.future = 1;
	EXPECT_EQ(-EINVAL, cprx_session_open(&s, "tail", &o.known));
	EXPECT_TRUE(errmsg_has(off));
	EXPECT_EQ(NULL, s);
	unsetenv(CPRX_ENV);
	EXPECT_EQ(-EINVAL, cprx_incoming(&s, &o.known));
	EXPECT_TRUE(errmsg_has(off));
	EXPECT_EQ(NULL, s);
	o.future = 0;
	EXPECT_EQ(0, cprx_incoming(&s, &o.known));
	/* a newer field may sit where this header has padding */
	((unsigned char *)&o)[offsetof(struct cprx_options,
				       no_deferred_teardown) + 1] = 1;
	EXPECT_EQ(-EINVAL, cprx_session_open(&s, "tail", &o.known));
	snprintf(off, sizeof(off), "offset %zu",
		 offsetof(struct cprx_options, no_deferred_teardown) + 1);
	EXPECT_TRUE(errmsg_has(off));
}

/*
 * Test Case: options_short_size
 * A size that does not even cover the size field is refused by both calls;
 * a size that covers only it gives the defaults.
 */
TEST(options_short_size)
{
	struct cprx_options o = { .size = 3 };
	struct cprx_session *s;

	EXPECT_EQ(-EINVAL, cprx_session_open(&s, "short", &o));
	EXPECT_TRUE(errmsg_has("size is 3"));
	unsetenv(CPRX_ENV);
	EXPECT_EQ(-EINVAL, cprx_incoming(&s, &o));
	o.size = 0;
	EXPECT_EQ(-EINVAL, cprx_session_open(&s, "short", &o));
	o.size = sizeof(o.size);
	o.target = CPRX_STATE_FILE;	/* past size: must not be read */
	ASSERT_EQ(0, cprx_session_open(&s, "short", &o));
	cprx_session_close(s);
}

/*
 * Test Case: timeline_count
 * cprx_timeline fills no more than the caller's count and says how many it
 * filled, so a newer library with more phases cannot overrun an older
 * caller's array.
 */
TEST(timeline_count)
{
	uint64_t ts[CPRX_PH_MAX + 4];
	struct cprx_session *s;

	ASSERT_EQ(0, cprx_session_open(&s, "timeline", NULL));
	cprx_mark(s, CPRX_PH_PREFLIGHT_START);
	cprx_mark(s, CPRX_PH_PREFLIGHT_END);
	memset(ts, 0xa5, sizeof(ts));
	EXPECT_EQ(1, cprx_timeline(s, ts, 1));
	EXPECT_NE(0, ts[0]);
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, ts[1]);
	EXPECT_EQ(CPRX_PH_MAX, cprx_timeline(s, ts, CPRX_PH_MAX + 4));
	EXPECT_NE(0, ts[CPRX_PH_PREFLIGHT_END]);
	EXPECT_EQ(0, ts[CPRX_PH_COMMIT]);
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, ts[CPRX_PH_MAX]);
	EXPECT_EQ(0, cprx_timeline(s, NULL, 0));
	EXPECT_EQ(-EINVAL, cprx_timeline(s, NULL, 2));
	cprx_session_close(s);
}

#define NR_REGIONS 33

/* NR_REGIONS RAM regions, all shared but the last: its check fails. */
static struct cprx_session *many_regions(void)
{
	struct cprx_session *s;
	char tok[16];
	int i, fd;

	if (cprx_session_open(&s, "regions", NULL))
		return NULL;
	for (i = 0; i < NR_REGIONS; i++) {
		void *p;

		fd = memfd_create("region", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, 4096))
			return NULL;
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 i == NR_REGIONS - 1 ? MAP_PRIVATE : MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return NULL;
		snprintf(tok, sizeof(tok), "r%d", i);
		if (cprx_preserve_ram(s, tok, fd, p, 4096, CPRX_PAGE_4K))
			return NULL;
	}
	return s;
}

/*
 * Test Case: preflight_report_capacity
 * More checks than the caller's array holds: the failure past the array
 * still decides the verdict (-EINVAL from the private region), nr_checks
 * counts every check, nr_failed the failure, and nothing is written past
 * max_checks.  With no report at all the verdict is the same.
 */
TEST(preflight_report_capacity)
{
	struct cprx_check checks[5];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 4, .checks = checks };
	struct cprx_session *s = many_regions();

	ASSERT_NE(NULL, s);
	memset(&checks[4], 0x5a, sizeof(checks[4]));
	EXPECT_EQ(-EINVAL, cprx_preflight(s, th_self, NULL, &rep));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "r32"));
	EXPECT_GE(rep.nr_checks, NR_REGIONS + 1);
	EXPECT_EQ(1, rep.nr_failed);
	EXPECT_STREQ("binary", checks[0].name);
	EXPECT_EQ(0x5a, (unsigned char)checks[4].name[0]);
	EXPECT_EQ(-EINVAL, cprx_preflight(s, th_self, NULL, NULL));
	rep.max_checks = 0;
	rep.checks = NULL;
	EXPECT_EQ(-EINVAL, cprx_preflight(s, th_self, NULL, &rep));
	EXPECT_GE(rep.nr_checks, NR_REGIONS + 1);
	rep.max_checks = 1;
	EXPECT_EQ(-EINVAL, cprx_preflight(s, th_self, NULL, &rep));
	EXPECT_TRUE(errmsg_has("report->checks"));
	rep.size = 4;
	EXPECT_EQ(-EINVAL, cprx_preflight(s, th_self, NULL, &rep));
	cprx_session_close(s);
}

/*
 * Test Case: version_agrees
 * The library's version calls agree with the header's macros and with the
 * version the build gave the project ($CPRX_PROJECT_VERSION from meson).
 */
TEST(version_agrees)
{
	const char *project = getenv("CPRX_PROJECT_VERSION");
	char macros[32];

	snprintf(macros, sizeof(macros), "%d.%d.%d", CPRX_VERSION_MAJOR,
		 CPRX_VERSION_MINOR, CPRX_VERSION_PATCH);
	EXPECT_EQ(CPRX_VERSION_MAJOR, cprx_version_major());
	EXPECT_EQ(CPRX_VERSION_MINOR, cprx_version_minor());
	EXPECT_STREQ(macros, cprx_version_string());
	ASSERT_NE(NULL, project);
	EXPECT_STREQ(project, cprx_version_string());
	EXPECT_TRUE(CPRX_VERSION_AT_LEAST(0, 4));
	EXPECT_TRUE(CPRX_VERSION_AT_LEAST(CPRX_VERSION_MAJOR, 0));
	EXPECT_FALSE(CPRX_VERSION_AT_LEAST(CPRX_VERSION_MAJOR,
					   CPRX_VERSION_MINOR + 1));
	EXPECT_FALSE(CPRX_VERSION_AT_LEAST(CPRX_VERSION_MAJOR + 1, 0));
}

/*
 * Test Case: symbols_versioned
 * The shared library ($CPRX_LIBCPRX, from meson) exports only cprx_*
 * functions, every one at a version node (CPRX_0.2, CPRX_0.3, CPRX_0.4),
 * and at least the calls this header declares: nothing internal leaks into
 * the ABI.  0.4's calls are at CPRX_0.4, 0.3's at CPRX_0.3, 0.2's at CPRX_0.2.
 */
TEST(symbols_versioned)
{
	const char *lib = getenv("CPRX_LIBCPRX");
	unsigned int n = 0, bad = 0, at_new = 0, at_old = 0, at_04 = 0;
	char cmd[PATH_MAX + 64], line[512];
	FILE *f;

	ASSERT_NE(NULL, lib);
	snprintf(cmd, sizeof(cmd), "readelf --dyn-syms -W '%s'", lib);
	f = popen(cmd, "r");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		char type[16], bind[16], vis[16], ndx[16], name[256];

		/* Num: Value Size Type Bind Vis Ndx Name */
		if (sscanf(line, "%*s %*s %*s %15s %15s %15s %15s %255s",
			   type, bind, vis, ndx, name) != 5 ||
		    !strcmp(ndx, "UND") || !strcmp(ndx, "Ndx"))
			continue;
		if (!strcmp(type, "OBJECT") && (!strcmp(name, "CPRX_0.2") ||
						 !strcmp(name, "CPRX_0.3") ||
						 !strcmp(name, "CPRX_0.4")))
			continue;	/* the version nodes themselves */
		if (strncmp(name, "cprx_", 5) || (!strstr(name, "@@CPRX_0.2") &&
						   !strstr(name, "@@CPRX_0.3") &&
						   !strstr(name, "@@CPRX_0.4"))) {
			printf("# exported: %s (%s %s)\n", name, type, bind);
			bad++;
		}
		at_new += !strcmp(name, "cprx_rollback_on_failure@@CPRX_0.3");
		at_04 += !strcmp(name, "cprx_set_guardian@@CPRX_0.4") ||
			 !strcmp(name, "cprx_guardian_pid@@CPRX_0.4") ||
			 !strcmp(name, "cprx_is_guardian_restart@@CPRX_0.4");
		at_old += !strcmp(name, "cprx_rollback@@CPRX_0.2");
		at_04 += !strcmp(name, "cprx_kexec_prepare@@CPRX_0.4");
		n++;
	}
	ASSERT_EQ(0, pclose(f));
	EXPECT_EQ(0, bad);
	EXPECT_GE(n, 32);
	EXPECT_EQ(1, at_new);
	EXPECT_EQ(4, at_04);
	EXPECT_EQ(1, at_old);
}

/* ---- error codes in a real new image -------------------------------------- */

static void update_to(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;

	make_guest(&g, 1 << 20, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), arg);
}

EXEC_CASE(api_codes)
{
	struct cprx_session *s = incoming();
	const void *data;
	struct guest g;
	size_t len;
	int ret;

	/* an incoming session's fds are reclaimed, never unpreserved */
	ret = cprx_unpreserve(s, "dev.eventfd");
	CHECK(ret == -EINVAL, "unpreserve in the new image: %d", ret);
	CHECK(strstr(cprx_errmsg(s), "incoming"), "%s", cprx_errmsg(s));
	ret = cprx_unpreserve(s, "never-preserved");
	CHECK(ret == -EINVAL, "unpreserve of a stranger: %d", ret);
	ret = cprx_get_blob(s, "no-such-blob", &data, &len);
	CHECK(ret == -ENOENT, "missing blob: %d", ret);
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	ret = cprx_commit(s);
	CHECK(ret == -EALREADY, "second commit: %d", ret);
	CHECK(strstr(cprx_errmsg(s), "already committed"), "%s",
	      cprx_errmsg(s));
	cprx_session_close(s);
	return 0;
}

/*
 * Test Case: error_codes_say_what
 * cprx_unpreserve in an incoming session is -EINVAL (the call does not
 * belong there), not -ENOENT (which says the token is unknown); a second
 * cprx_commit is -EALREADY; a missing blob stays -ENOENT.  Checked in a
 * new image of a real update.
 */
TEST(error_codes_say_what)
{
	ASSERT_EQ(0, in_child(update_to, "api_codes"));
}

/*
 * Test Case: get_blob_in_old_image
 * cprx_get_blob on a session that is not incoming is -EINVAL naming that,
 * not -ENOENT claiming the blob is missing from a state that does not
 * exist.
 */
TEST(get_blob_in_old_image)
{
	struct cprx_session *s;
	const void *data;
	size_t len;

	ASSERT_EQ(0, cprx_session_open(&s, "old", NULL));
	ASSERT_EQ(0, cprx_add_blob(s, "b", "x", 1));
	EXPECT_EQ(-EINVAL, cprx_get_blob(s, "b", &data, &len));
	EXPECT_NE(NULL, strstr(cprx_errmsg(s), "not an incoming session"));
	cprx_session_close(s);
}

/* The fds open now, as a bitmap of the first 1024 numbers. */
static void open_fds(unsigned char map[1024])
{
	memset(map, 0, 1024);
	for (int fd = 0; fd < 1024; fd++)
		map[fd] = fcntl(fd, F_GETFD) >= 0;
}

/*
 * Test Case: own_fds_not_preserved
 * A VMM that preserves every fd it has open also names the fds libcprx
 * opened for the session (the state memfd, this binary, the io_uring).
 * Each is refused with -EINVAL naming it as libcprx's own: the new image
 * would hand the state out as a device and commit would close it.
 */
TEST(own_fds_not_preserved)
{
	unsigned char before[1024], after[1024];
	struct cprx_session *s;
	unsigned int own = 0;
	char tok[32];

	open_fds(before);
	ASSERT_EQ(0, cprx_session_open(&s, "own-fds", NULL));
	open_fds(after);
	for (int fd = 0; fd < 1024; fd++) {
		if (!after[fd] || before[fd])
			continue;
		own++;
		snprintf(tok, sizeof(tok), "fd%d", fd);
		EXPECT_EQ(-EINVAL, cprx_preserve_fd(s, tok, fd));
		EXPECT_NE(NULL, strstr(cprx_errmsg(s), "libcprx's own"));
		TH_LOG("fd %d: %s", fd, cprx_errmsg(s));
	}
	EXPECT_GE(own, 2);	/* the state memfd and this binary at least */
	cprx_session_close(s);
}

TEST_HARNESS_MAIN
