/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small kselftest-style test harness, header only.
 *
 *   TEST(name) { ASSERT_EQ(2, 1 + 1); }
 *
 *   FIXTURE(fx) { int fd; };
 *   FIXTURE_SETUP(fx) { self->fd = open(...); ASSERT_GE(self->fd, 0); }
 *   FIXTURE_TEARDOWN(fx) { close(self->fd); }
 *   TEST_F(fx, name) { EXPECT_EQ(0, fsync(self->fd)); }
 *
 *   TEST_HARNESS_MAIN
 *
 * Each test runs in a child process, so a crash, an exit() or a hang fails
 * that test only.  Timeouts: 120 s, TEST_TIMEOUT(name, s) or
 * TEST_F_TIMEOUT(fx, name, s) per test, $CPRX_TEST_TIMEOUT for all (0: none).
 * ASSERT_*() fails the test and leaves it (teardown still runs); EXPECT_*()
 * fails it and goes on.  Both work in helpers the test calls, from the
 * test's own thread.  _EQ and friends compare integers by value, whatever
 * their signedness.  Output is TAP version 13, as meson's 'tap' reads it.
 *
 *   ./test -l          list the tests
 *   ./test -t name     run only these ("name" or "fx.name"), repeatable
 *
 * Exec cases, for what must be seen from the image after an execve: a test
 * forks a child that execs this binary into a named case; the new image
 * (same pid) runs it, and its return value is the child's exit status.
 *
 *   EXEC_CASE(name) { return strcmp(argv[0], "x"); }  argc, argv: its args
 *   execv(th_self, EXEC_CASE_ARGV("name", "x"));
 *
 * which runs "./test --exec-case name x".  An unknown name exits 2, saying
 * so on stderr.  th_self is this binary's path; a test may point it at a
 * copy.  A binary with exec cases closes the fds 3 and up it was started
 * with before its tests: they would cross every exec.
 * HARNESS_SETUP(argc, argv) { ... }, one per binary, runs before the tests
 * (not in an exec case): to record what the tests must put back, or take
 * an option of the binary's own and exit.
 *
 * A test binary may have several source files: one of them has
 * TEST_HARNESS_MAIN, and its tests are listed in source order as long as
 * they are all in one file.
 */
#ifndef CPRX_HARNESS_H
#define CPRX_HARNESS_H

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define TH_TIMEOUT	120
#define TH_PASS		0
#define TH_FAIL		1
#define TH_SKIP		4		/* kselftest's KSFT_SKIP */

struct th_test {
	const char *name;		/* "name" or "fx.name" */
	const char *base;		/* "name" */
	void (*run)(void);
	unsigned int timeout;
	int line;
	struct th_test *next;
};

/* Written by the test's child, read by the runner: MAP_SHARED. */
struct th_result {
	int done;			/* the test returned or asserted */
	int status;			/* TH_PASS, TH_FAIL or TH_SKIP */
	char reason[200];		/* of a skip */
};

struct th_exec_case {
	const char *name;
	int (*run)(int argc, char **argv);
	struct th_exec_case *next;
};

/* Shared by the binary's files; TEST_HARNESS_MAIN defines them. */
extern struct th_test *th_tests;
extern struct th_result *th_res;
extern jmp_buf *th_jmp;			/* where a failed ASSERT goes */
extern struct th_exec_case *th_exec_cases;
extern void (*th_setup_fn)(int argc, char **argv);
extern char th_self[PATH_MAX];		/* this binary, for exec cases */

/*
 * Kept in source order whatever order constructors run in: the harness
 * serves one test file, so __LINE__ is that order.
 */
static inline void th_register(struct th_test *t)
{
	struct th_test **p = &th_tests;

	while (*p && (*p)->line < t->line)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
}

#define TH_REGISTER(id, full, base, secs)				\
	static void th_run_##id(void);					\
	static struct th_test th_t_##id = {				\
		full, base, th_run_##id, secs, __LINE__, NULL };	\
	__attribute__((constructor)) static void th_reg_##id(void)	\
	{								\
		th_register(&th_t_##id);				\
	}

#define TEST(name)		TEST_TIMEOUT(name, TH_TIMEOUT)
#define TEST_TIMEOUT(name, secs)					\
	TH_REGISTER(name, #name, #name, secs)				\
	static void th_run_##name(void)

#define TH_UNUSED		__attribute__((unused))
#define FIXTURE_DATA(fx)	struct th_fx_##fx
/* Unused where a shared header declares a fixture for several files. */
#define FIXTURE(fx)							\
	FIXTURE_DATA(fx);						\
	static void th_setup_##fx(FIXTURE_DATA(fx) *self) TH_UNUSED;	\
	static void th_teardown_##fx(FIXTURE_DATA(fx) *self) TH_UNUSED;	\
	FIXTURE_DATA(fx)
#define FIXTURE_SETUP(fx)						\
	static void th_setup_##fx(FIXTURE_DATA(fx) *self TH_UNUSED)
#define FIXTURE_TEARDOWN(fx)						\
	static void th_teardown_##fx(FIXTURE_DATA(fx) *self TH_UNUSED)

#define TEST_F(fx, name)	TEST_F_TIMEOUT(fx, name, TH_TIMEOUT)
/*
 * A failed ASSERT in setup skips body and teardown; a SKIP or a failed
 * EXPECT there skips the body.  self is static: zero in each fresh child,
 * and safe to read after the longjmp.
 */
#define TEST_F_TIMEOUT(fx, name, secs)					\
	static void th_body_##fx##__##name(FIXTURE_DATA(fx) *self);	\
	TH_REGISTER(fx##__##name, #fx "." #name, #name, secs)		\
	static void th_run_##fx##__##name(void)				\
	{								\
		static FIXTURE_DATA(fx) self;				\
		jmp_buf env, *outer = th_jmp;				\
									\
		th_setup_##fx(&self);					\
		th_jmp = &env;						\
		if (th_res->status == TH_PASS && !setjmp(env))		\
			th_body_##fx##__##name(&self);			\
		th_jmp = outer;						\
		th_teardown_##fx(&self);				\
	}								\
	static void th_body_##fx##__##name(FIXTURE_DATA(fx) *self TH_UNUSED)

/* Exec cases ----------------------------------------------------------- */

#define EXEC_CASE(name)							\
	static int th_case_##name(int argc, char **argv);		\
	static struct th_exec_case th_c_##name = {			\
		#name, th_case_##name, NULL };				\
	__attribute__((constructor)) static void th_creg_##name(void)	\
	{								\
		th_c_##name.next = th_exec_cases;			\
		th_exec_cases = &th_c_##name;				\
	}								\
	static int th_case_##name(int argc TH_UNUSED, char **argv TH_UNUSED)

/* The argv of th_self running case @name with the arguments that follow. */
#define EXEC_CASE_ARGV(name, ...)					\
	((char *[]){ th_self, "--exec-case", (char *)(name),		\
		     ##__VA_ARGS__, NULL })

#define HARNESS_SETUP(argc, argv)					\
	static void th_setup_main(int argc, char **argv);		\
	__attribute__((constructor)) static void th_sreg_main(void)	\
	{								\
		th_setup_fn = th_setup_main;				\
	}								\
	static void th_setup_main(int argc TH_UNUSED, char **argv TH_UNUSED)

/* Reporting ------------------------------------------------------------ */

#define TH_LOG(fmt, ...)	th_log(fmt, ##__VA_ARGS__)

__attribute__((format(printf, 1, 2)))
static inline void th_log(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* Marks the test failed; @fatal: and leaves it, as ASSERT_*() do. */
static inline void th_failed(int fatal)
{
	th_res->status = TH_FAIL;
	if (fatal)
		longjmp(*th_jmp, 1);
}

#define SKIP(statement, fmt, ...)					\
	do {								\
		th_skip(fmt, ##__VA_ARGS__);				\
		statement;						\
	} while (0)

__attribute__((format(printf, 1, 2)))
static inline void th_skip(const char *fmt, ...)
{
	va_list ap;
	char *nl;

	va_start(ap, fmt);
	vsnprintf(th_res->reason, sizeof(th_res->reason), fmt, ap);
	va_end(ap);
	while ((nl = strchr(th_res->reason, '\n')))	/* one TAP line */
		*nl = ' ';
	if (th_res->status == TH_PASS)
		th_res->status = TH_SKIP;
}

/* Assertions ----------------------------------------------------------- */

#define th_signed(x)	((__typeof__(x))-1 < (__typeof__(x))1)

/* Three-way compare by value: -1 < 0u here, unlike in C. */
static inline int th_cmp(int sa, intmax_t a, int sb, intmax_t b)
{
	if (sa && a < 0)
		return sb && b < 0 ? (a > b) - (a < b) : -1;
	if (sb && b < 0)
		return 1;
	return ((uintmax_t)a > (uintmax_t)b) - ((uintmax_t)a < (uintmax_t)b);
}

static inline const char *th_val(char *buf, size_t n, int sgn, intmax_t v)
{
	if (sgn)
		snprintf(buf, n, "%jd", v);
	else
		snprintf(buf, n, "%ju", (uintmax_t)v);
	return buf;
}

#define TH_CMP(a, b, op, fatal)						\
	do {								\
		__typeof__(a) th_a = (a);				\
		__typeof__(b) th_b = (b);				\
		int th_sa = th_signed(th_a), th_sb = th_signed(th_b);	\
		char th_x[24], th_y[24];				\
									\
		if (!(th_cmp(th_sa, (intmax_t)th_a, th_sb,		\
			     (intmax_t)th_b) op 0)) {			\
			th_log("%s:%d: Expected %s (%s) %s %s (%s)",	\
			       __FILE__, __LINE__, #a,			\
			       th_val(th_x, 24, th_sa, (intmax_t)th_a),	\
			       #op, #b,					\
			       th_val(th_y, 24, th_sb, (intmax_t)th_b));\
			th_failed(fatal);				\
		}							\
	} while (0)

#define TH_CHECK(ok, fatal, fmt, ...)					\
	do {								\
		if (!(ok)) {						\
			th_log("%s:%d: Expected " fmt, __FILE__,	\
			       __LINE__, ##__VA_ARGS__);		\
			th_failed(fatal);				\
		}							\
	} while (0)

#define TH_PTR(p, null, fatal)						\
	do {								\
		const void *th_p = (p);					\
		TH_CHECK((th_p == NULL) == (null), fatal,		\
			 "%s (%p) %s NULL", #p, th_p,			\
			 (null) ? "==" : "!=");				\
	} while (0)

#define TH_STR(a, b, eq, fatal)						\
	do {								\
		const char *th_a = (a), *th_b = (b);			\
		TH_CHECK(th_a && th_b && (strcmp(th_a, th_b) == 0) == (eq),\
			 fatal, "%s (\"%s\") %s %s (\"%s\")", #a,	\
			 th_a ? th_a : "(null)", (eq) ? "==" : "!=",	\
			 #b, th_b ? th_b : "(null)");			\
	} while (0)

#define ASSERT_EQ(a, b)		TH_CMP(a, b, ==, 1)
#define ASSERT_NE(a, b)		TH_CMP(a, b, !=, 1)
#define ASSERT_LT(a, b)		TH_CMP(a, b, <, 1)
#define ASSERT_LE(a, b)		TH_CMP(a, b, <=, 1)
#define ASSERT_GT(a, b)		TH_CMP(a, b, >, 1)
#define ASSERT_GE(a, b)		TH_CMP(a, b, >=, 1)
#define ASSERT_TRUE(c)		TH_CHECK(c, 1, "%s to be true", #c)
#define ASSERT_FALSE(c)		TH_CHECK(!(c), 1, "%s to be false", #c)
#define ASSERT_NULL(p)		TH_PTR(p, 1, 1)
#define ASSERT_NE_NULL(p)	TH_PTR(p, 0, 1)
#define ASSERT_STREQ(a, b)	TH_STR(a, b, 1, 1)
#define ASSERT_STRNE(a, b)	TH_STR(a, b, 0, 1)
#define EXPECT_EQ(a, b)		TH_CMP(a, b, ==, 0)
#define EXPECT_NE(a, b)		TH_CMP(a, b, !=, 0)
#define EXPECT_LT(a, b)		TH_CMP(a, b, <, 0)
#define EXPECT_LE(a, b)		TH_CMP(a, b, <=, 0)
#define EXPECT_GT(a, b)		TH_CMP(a, b, >, 0)
#define EXPECT_GE(a, b)		TH_CMP(a, b, >=, 0)
#define EXPECT_TRUE(c)		TH_CHECK(c, 0, "%s to be true", #c)
#define EXPECT_FALSE(c)		TH_CHECK(!(c), 0, "%s to be false", #c)
#define EXPECT_NULL(p)		TH_PTR(p, 1, 0)
#define EXPECT_NE_NULL(p)	TH_PTR(p, 0, 0)
#define EXPECT_STREQ(a, b)	TH_STR(a, b, 1, 0)
#define EXPECT_STRNE(a, b)	TH_STR(a, b, 0, 0)

/* Runner --------------------------------------------------------------- */

/* In the child.  exit(), not _exit(): LeakSanitizer runs at exit. */
static inline void th_child(const struct th_test *t)
{
	jmp_buf env;

	th_jmp = &env;
	if (!setjmp(env))
		t->run();
	th_res->done = 1;
	fflush(stdout);
	exit(th_res->status);
}

static inline long long th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reaps @pid, killing it after @secs (0: never); SIGCHLD is blocked. */
static inline int th_wait(pid_t pid, unsigned int secs, int *status)
{
	long long end = th_now_ms() + secs * 1000LL, left;
	struct timespec ts;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	while (waitpid(pid, status, WNOHANG) == 0) {
		left = end - th_now_ms();
		if (secs && left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		ts.tv_sec = left / 1000;
		ts.tv_nsec = left % 1000 * 1000000;
		sigtimedwait(&set, NULL, secs ? &ts : NULL);
	}
	return 0;
}

/* Runs test number @n in a child, prints its TAP line; returns TH_*. */
static inline int th_run(const struct th_test *t, int n, int env_secs)
{
	unsigned int secs = env_secs >= 0 ? (unsigned int)env_secs : t->timeout;
	int status = 0, ret;
	sigset_t set, old;
	pid_t pid;

	memset(th_res, 0, sizeof(*th_res));
	fflush(stdout);
	fflush(stderr);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &old);
	pid = fork();
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		th_child(t);
	}
	ret = pid < 0 ? -errno : th_wait(pid, secs, &status);
	sigprocmask(SIG_SETMASK, &old, NULL);

	if (ret == -ETIMEDOUT) {
		th_log("%s: timed out after %u s", t->name, secs);
	} else if (ret) {
		th_log("%s: fork: %s", t->name, strerror(-ret));
	} else if (WIFSIGNALED(status)) {
		th_log("%s: killed by signal %d (%s)", t->name,
		       WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else if (!th_res->done || WEXITSTATUS(status) != th_res->status) {
		/* exit() in the test, or a sanitizer's or valgrind's verdict */
		th_log("%s: exited with status %d", t->name,
		       WEXITSTATUS(status));
	} else if (th_res->status == TH_SKIP) {
		printf("ok %d %s # SKIP %s\n", n, t->name, th_res->reason);
		return TH_SKIP;
	} else if (th_res->status == TH_PASS) {
		printf("ok %d %s\n", n, t->name);
		return TH_PASS;
	}
	printf("not ok %d %s\n", n, t->name);
	return TH_FAIL;
}

/*
 * Left out by CPRX_TEST_EXCLUDE (names separated by spaces): not listed, not
 * run.  For a tier that runs a binary where one of its tests costs too much
 * (the VM tier's debug kernel), said by the script that sets it.
 */
static inline int th_named(const char *list, const char *name)
{
	size_t len = strlen(name);
	const char *p;

	for (p = list ? strstr(list, name) : NULL; p; p = strstr(p + 1, name))
		if ((p == list || p[-1] == ' ') && (!p[len] || p[len] == ' '))
			return 1;
	return 0;
}

static inline int th_excluded(const struct th_test *t)
{
	const char *ex = getenv("CPRX_TEST_EXCLUDE");

	return th_named(ex, t->name) || th_named(ex, t->base);
}

static inline int th_selected(const struct th_test *t, char **names, int nr)
{
	if (th_excluded(t))
		return 0;
	for (int i = 0; i < nr; i++)
		if (!strcmp(names[i], t->name) || !strcmp(names[i], t->base))
			return 1;
	return !nr;
}

static inline int th_main(int argc, char **argv)
{
	int nr = 0, list = 0, total = 0, n = 0, env_secs = -1, i, opt;
	int counts[TH_SKIP + 1] = { 0 };
	const char *env = getenv("CPRX_TEST_TIMEOUT");
	char *names[argc + 1];
	struct th_test *t;

	while ((opt = getopt(argc, argv, "lt:h")) != -1) {
		if (opt == 'l') {
			list = 1;
		} else if (opt == 't') {
			names[nr++] = optarg;
		} else {
			fprintf(stderr, "usage: %s [-l] [-t name]...\n",
				argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	for (i = 0; i < nr; i++) {
		t = th_tests;
		while (t && !th_selected(t, names + i, 1))
			t = t->next;
		if (!t) {
			fprintf(stderr, "%s: no test '%s'\n", argv[0],
				names[i]);
			return 2;
		}
	}
	for (t = th_tests; t; t = t->next) {
		if (!th_selected(t, names, nr))
			continue;
		total++;
		if (list)
			printf("%s\n", t->name);
	}
	if (list)
		return 0;
	if (env && *env)
		env_secs = atoi(env);
	th_res = mmap(NULL, sizeof(*th_res), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (th_res == MAP_FAILED) {
		perror("mmap");
		return 1;
	}

	printf("TAP version 13\n1..%d\n", total);
	for (t = th_tests; t; t = t->next)
		if (th_selected(t, names, nr))
			counts[th_run(t, ++n, env_secs)]++;
	printf("# Totals: pass:%d fail:%d skip:%d\n", counts[TH_PASS],
	       counts[TH_FAIL], counts[TH_SKIP]);
	return counts[TH_FAIL] ? 1 : 0;
}

/* "--exec-case NAME ARG...": runs that case, in a new image. */
static inline int th_exec_case(const char *prog, int argc, char **argv)
{
	struct th_exec_case *c;

	for (c = th_exec_cases; argc >= 1 && c; c = c->next)
		if (!strcmp(c->name, argv[0]))
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "%s: no exec case '%s'; there are:", prog,
		argc >= 1 ? argv[0] : "");
	for (c = th_exec_cases; c; c = c->next)
		fprintf(stderr, " %s", c->name);
	fputs(th_exec_cases ? "\n" : " none\n", stderr);
	return 2;
}

static inline int th_harness_main(int argc, char **argv)
{
	ssize_t n;

	n = readlink("/proc/self/exe", th_self, sizeof(th_self) - 1);
	if (n > 0) {
		th_self[n] = '\0';
	} else if (th_exec_cases) {
		perror("/proc/self/exe");
		return 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "--exec-case"))
		return th_exec_case(argv[0], argc - 2, argv + 2);
	if (th_setup_fn)
		th_setup_fn(argc, argv);
	/*
	 * Every test starts with stdin, stdout and stderr only: fds a runner
	 * leaked to us would cross every exec into a case, and would count
	 * in the tests that look for stray fds.
	 */
	close_range(3, ~0U, 0);
	return th_main(argc, argv);
}

#define TEST_HARNESS_MAIN						\
	struct th_test *th_tests;					\
	struct th_result *th_res;					\
	jmp_buf *th_jmp;						\
	struct th_exec_case *th_exec_cases;				\
	void (*th_setup_fn)(int argc, char **argv);			\
	char th_self[PATH_MAX];						\
									\
	int main(int argc, char **argv)					\
	{								\
		return th_harness_main(argc, argv);			\
	}

#endif /* CPRX_HARNESS_H */
