// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live updates the kernel refuses at the exec (ENOENT, EACCES, ENOEXEC,
 * E2BIG, EPERM from seccomp): cprx_exec() returns the error, named in its
 * message with a hint, and the guest resumes intact in the same image, its
 * fds close-on-exec again and the keeper gone.  No exec case: nothing here
 * reaches a new image.
 */
#include "exec_util.h"
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

struct refusal {
	const char *path;
	int err;
	const char *word;	/* the message must name the cause */
	bool seccomp;
	bool huge_argv;
	bool inline_teardown;
};

static char **huge_argv(void)
{
	/* 64 x 128 KiB: past the 6 MiB the kernel allows even with no stack limit */
	char **argv = calloc(66, sizeof(char *));

	argv[0] = th_self;
	for (int i = 1; i <= 64; i++) {
		argv[i] = malloc(128 * 1024);
		memset(argv[i], 'x', 128 * 1024 - 1);
		argv[i][128 * 1024 - 1] = '\0';
	}
	return argv;
}

static void free_argv(char **argv)
{
	if (!argv)
		return;
	for (int i = 1; argv[i]; i++)
		free(argv[i]);
	free(argv);
}

static void refused_exec(const void *arg)
{
	const struct refusal *r = arg;
	struct cprx_options opts = { .size = sizeof(opts),
				     .no_deferred_teardown = r->inline_teardown };
	char *argv[] = { (char *)r->path, NULL };
	struct cprx_session *s;
	char **big = NULL;
	struct guest g;
	int ret;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	if (r->seccomp)
		install_exec_filter();
	if (r->huge_argv)
		big = huge_argv();
	ret = cprx_exec(s, r->path, big ? big : argv);
	free_argv(big);
	printf("# %s\n# hint: %s\n", cprx_errmsg(s), cprx_errhint(s));
	CHECK(ret == -r->err, "cprx_exec returned %d, expected %d", ret, -r->err);
	CHECK(strstr(cprx_errmsg(s), r->word), "message lacks '%s'", r->word);
	CHECK(*cprx_errhint(s), "no hint");
	/* Every fd flag back as it was: close-on-exec again. */
	CHECK(fcntl(g.ram_fd, F_GETFD) == FD_CLOEXEC, "ram fd flags");
	CHECK(fcntl(g.efd, F_GETFD) == FD_CLOEXEC, "eventfd flags");
	CHECK(fcntl(g.pipe[0], F_GETFD) == FD_CLOEXEC, "pipe flags");
	/* The keeper is gone already and the guest is intact. */
	CHECK(nr_children() == 0, "keeper still alive after a failed exec");
	check_guest(&g);
	cprx_session_close(s);
}

/*
 * Test Case: refused_enoent
 * A binary that does not exist: -ENOENT.
 */
TEST(refused_enoent)
{
	struct refusal r = { .path = "/nonexistent/cprx-next", .err = ENOENT,
			     .word = "ENOENT" };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

/*
 * Test Case: refused_eacces
 * A file without the exec bit: -EACCES.
 */
TEST(refused_eacces)
{
	struct refusal r = { .path = "/tmp/cprx-test-noexec", .err = EACCES,
			     .word = "EACCES" };

	write_file(r.path, "\177ELF", 4, 0644);
	ASSERT_EQ(0, in_child(refused_exec, &r));
	unlink(r.path);
}

/*
 * Test Case: refused_enoexec
 * An executable file of random bytes: -ENOEXEC.
 */
TEST(refused_enoexec)
{
	struct refusal r = { .path = "/tmp/cprx-test-garbage", .err = ENOEXEC,
			     .word = "ENOEXEC" };
	char junk[4096];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	write_file(r.path, junk, sizeof(junk), 0755);
	ASSERT_EQ(0, in_child(refused_exec, &r));
	unlink(r.path);
}

/*
 * Test Case: refused_e2big
 * This binary with 8 MiB of arguments, past what the kernel takes:
 * -E2BIG.
 */
TEST(refused_e2big)
{
	struct refusal r = { .path = th_self, .err = E2BIG, .word = "E2BIG",
			     .huge_argv = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

/*
 * Test Case: refused_eperm_seccomp
 * execve and execveat denied by a seccomp filter: -EPERM, the message
 * naming seccomp.
 */
TEST(refused_eperm_seccomp)
{
	struct refusal r = { .path = th_self, .err = EPERM, .word = "seccomp",
			     .seccomp = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

/*
 * Test Case: refused_eperm_inline_teardown
 * The same with the old mm's teardown inline (no_deferred_teardown).
 */
TEST(refused_eperm_inline_teardown)
{
	struct refusal r = { .path = th_self, .err = EPERM, .word = "seccomp",
			     .seccomp = true, .inline_teardown = true };

	ASSERT_EQ(0, in_child(refused_exec, &r));
}

/*
 * After a refused exec the keeper's stack is unmapped, and what the VMM maps
 * next often lands at its address.  Mappings of the stack's size, kept so
 * each takes the next hole, must be plain memory.
 */
static void maps_after_refusal(const void *arg)
{
	const size_t len = 64 * 1024;
	struct cprx_session *s;
	struct guest g;
	char *argv[] = { "/nonexistent/cprx-next", NULL };
	char *p;
	int ret;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, NULL);
	ret = cprx_exec(s, argv[0], argv);
	CHECK(ret == -ENOENT, "cprx_exec returned %d, expected -ENOENT", ret);
	for (int i = 0; i < 32; i++) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(p != MAP_FAILED, "mmap: %m");
#ifdef __SANITIZE_ADDRESS__
		CHECK(!__asan_region_is_poisoned(p, len),
		      "a fresh mapping at %p is poisoned at %p: a keeper frame "
		      "that never returned left ASan's redzones behind", (void *)p,
		      __asan_region_is_poisoned(p, len));
#endif
		memset(p, 0xa5, len);
	}
	check_guest(&g);
	cprx_session_close(s);
}

/*
 * Test Case: refused_keeper_stack_reusable
 * The keeper never returns (it exits by system call), so under ASan any
 * instrumented frame of it leaves its redzones poisoned in the shadow of
 * its stack; the stack is unmapped after a refused exec, and the VMM's
 * next mappings there would read as a stack-buffer-underflow.  Fresh
 * mappings after a refusal must be clean (a plain build checks only that
 * they are writable).
 */
TEST(refused_keeper_stack_reusable)
{
	ASSERT_EQ(0, in_child(maps_after_refusal, NULL));
}

TEST_HARNESS_MAIN
