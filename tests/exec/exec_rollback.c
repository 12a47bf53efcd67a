// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The automatic rollback (cprx_rollback_on_failure): a new image that
 * exits, or dies of a fatal signal, in any thread, before it commits is
 * replaced by the previous binary in the same pid, which finds the guest
 * intact, generation 0 and the reason.  What must not roll back: a fork's
 * or vfork's child, an image that committed or turned it off, and the
 * rollback image itself (never a loop).
 *
 * Each test's child first becomes exec case "old": it saves the guest and
 * execs into the new image's case, and is what the rollback re-runs, with
 * the same arguments (struct old_args): so the rollback image knows the
 * reason it must read (from libcprx, and from its own /proc/PID/environ as
 * cprx-qmp reads it), and whether it is to fail too.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "exec_util.h"
#include "handover.h"

#define PID_BLOB	"pid"
/* The rollback image fails too: its own exit status. */
#define LOST_STATUS	7

/* ---- the previous binary: first start, then the rollback image ---------- */

/* "old"'s arguments; "-" for none. */
struct old_args {
	const char *next, *arg;	/* the new image's case and its argument */
	const char *reason;	/* what the rollback image must read */
	const char *then;	/* the rollback image: "commit", "exit", "segv" */
};

static void become_old(const void *arg)
{
	const struct old_args *a = arg;

	execv(th_self, EXEC_CASE_ARGV("old", (char *)a->next, (char *)a->arg,
				      (char *)a->reason, (char *)a->then));
	_exit(97);
}

static void first_start(char **argv)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	pid_t pid = getpid();
	int ret;

	make_guest(&g, RAM_SIZE, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_add_blob(s, PID_BLOB, &pid, sizeof(pid)), "%s",
	      cprx_errmsg(s));
	ret = cprx_exec(s, th_self, EXEC_CASE_ARGV(argv[0], argv[1]));
	CHECK(0, "exec of case %s failed (%d): %s", argv[0], ret,
	      cprx_errmsg(s));
}

static void segv(void);

/* The rollback image fails too: it does not arm, its end is final. */
static void fail_again(const char *how)
{
	if (!strcmp(how, "exit"))
		exit(LOST_STATUS);
	if (!strcmp(how, "segv"))
		segv();
}

/* argv: struct old_args, in order. */
EXEC_CASE(old)
{
	char err[CPRX_MSG_MAX];
	struct cprx_handover h;
	struct cprx_session *s;
	const void *blob;
	struct guest g;
	size_t len;
	int ret = cprx_incoming(&s, NULL);

	CHECK(argc == 4, "old: %d arguments", argc);
	if (ret == 0) {
		CHECK(cprx_handover_of_pid(getpid(), &h, NULL, 0) == -ENOENT,
		      "a handover in a fresh start's environment");
		first_start(argv);
	}
	CHECK(ret == 1, "rollback image rejected the state: %s", cprx_errmsg(s));
	CHECK(cprx_is_rollback(s), "not marked as rollback");
	CHECK(cprx_generation(s) == 0, "generation %u after rollback",
	      cprx_generation(s));
	CHECK(cprx_rollback_reason(s) &&
	      !strcmp(cprx_rollback_reason(s), argv[2]),
	      "rollback reason '%s', expected '%s'", cprx_rollback_reason(s),
	      argv[2]);
	CHECK(!cprx_get_blob(s, PID_BLOB, &blob, &len) && len == sizeof(pid_t) &&
	      *(const pid_t *)blob == getpid(), "not the pid that saved the guest");
	/* what another process reads (cprx-qmp), though the image unset it */
	ret = cprx_handover_of_pid(getpid(), &h, err, sizeof(err));
	CHECK(!ret && h.rollback && !strcmp(h.why, argv[2]),
	      "handover in /proc/self/environ: %d %s, rb=%d, why '%s'", ret, err,
	      h.rollback, h.why);
	reclaim_guest(s, &g);
	check_guest(&g);
	/* never a loop: a rollback image does not arm */
	ret = cprx_rollback_on_failure(s, true);
	CHECK(ret == -ELOOP, "armed in a rollback image: %d", ret);
	CHECK(strstr(cprx_errmsg(s), "already the rollback"), "message: %s",
	      cprx_errmsg(s));
	fail_again(argv[3]);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	wait_no_children();
	cprx_session_close(s);
	return 0;
}

/* ---- new images that fail ------------------------------------------------ */

/*
 * A real fault: a write to a page mapped without access.  Not through a
 * NULL pointer, which UBSan would catch (and abort) first.
 */
static void segv(void)
{
	volatile int *p = mmap(NULL, 4096, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED, "mmap: %m");
	*p = 1;
}

/* The new image with the guest reclaimed and the rollback armed. */
static struct cprx_session *armed_new_image(struct guest *g)
{
	struct cprx_session *s = incoming();

	CHECK(!cprx_rollback_on_failure(s, true), "%s", cprx_errmsg(s));
	reclaim_guest(s, g);
	return s;
}

EXEC_CASE(exit1)
{
	struct guest g;

	armed_new_image(&g);
	printf("# the new image gives up\n");	/* flushed before the exec */
	exit(1);
}

EXEC_CASE(segv)
{
	struct guest g;

	armed_new_image(&g);
	segv();
	return 99;
}

EXEC_CASE(abort)
{
	struct guest g;

	armed_new_image(&g);
	abort();
}

static void *segv_thread(void *arg)
{
	(void)arg;
	segv();
	return NULL;
}

static void *exit_thread(void *arg)
{
	(void)arg;
	exit(3);
}

/* argv[0]: "segv" or "exit", done by a second thread. */
EXEC_CASE(thread)
{
	struct guest g;
	pthread_t t;

	armed_new_image(&g);
	CHECK(argc == 1, "thread: %d arguments", argc);
	CHECK(!pthread_create(&t, NULL, strcmp(argv[0], "segv") ? exit_thread :
			      segv_thread, NULL), "pthread_create");
	pthread_join(t, NULL);
	for (;;)
		pause();
}

/* ---- new images that must not roll back ----------------------------------- */

/* The handlers before arming: a child's fault is theirs to take. */
static void child_fault(int sig)
{
	_exit(sig == SIGSEGV ? 42 : 43);
}

/* A child's end, whatever it is, is the child's. */
static int child_status(pid_t pid)
{
	int status;

	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait: %m");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Children of the armed image exit and crash; it commits and carries on.
 * The handlers installed before arming get a child's SIGSEGV and SIGBUS,
 * and are back after the commit.
 */
EXEC_CASE(children)
{
	struct sigaction sa = { .sa_handler = child_fault }, cur;
	struct cprx_session *s;
	struct guest g;
	pid_t pid;

	CHECK(!sigaction(SIGSEGV, &sa, NULL) && !sigaction(SIGBUS, &sa, NULL),
	      "sigaction: %m");
	s = armed_new_image(&g);
	pid = fork();
	if (!pid)
		exit(3);
	CHECK(child_status(pid) == 3, "a fork's exit(3)");
	pid = fork();
	if (!pid)
		segv();
	CHECK(child_status(pid) == 42, "a fork's SIGSEGV, not chained");
	pid = fork();
	if (!pid)
		abort();
	CHECK(child_status(pid) == 128 + SIGABRT, "a fork's abort()");
	pid = vfork();
	if (!pid) {
		raise(SIGBUS);
		_exit(5);
	}
	CHECK(child_status(pid) == 43, "a vfork's SIGBUS, not chained");
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(!cprx_is_rollback(s) && cprx_generation(s) == 1, "not the update");
	CHECK(!sigaction(SIGSEGV, NULL, &cur) && cur.sa_handler == child_fault,
	      "the SIGSEGV handler is not put back");
	wait_no_children();
	cprx_session_close(s);
	return 0;
}

/* argv[0]: "commit" or "off"; then the exit is this image's own. */
EXEC_CASE(disarmed)
{
	struct cprx_session *s;
	struct guest g;

	s = armed_new_image(&g);
	CHECK(argc == 1, "disarmed: %d arguments", argc);
	if (!strcmp(argv[0], "commit"))
		CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	else
		CHECK(!cprx_rollback_on_failure(s, false), "%s", cprx_errmsg(s));
	exit(5);
}

/* The calls' refusals, in a real new image. */
EXEC_CASE(refusals)
{
	struct cprx_session *s = incoming(), *other = NULL;
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;
	int ret;

	ret = cprx_rollback_on_failure(NULL, true);
	CHECK(ret == -EINVAL, "NULL session: %d", ret);
	CHECK(!cprx_rollback_on_failure(s, false), "off when never armed");
	CHECK(!cprx_rollback_on_failure(s, true), "%s", cprx_errmsg(s));
	CHECK(!cprx_rollback_on_failure(s, true), "armed twice: %s",
	      cprx_errmsg(s));
	CHECK(!cprx_session_open(&other, "other", &opts), "%s",
	      cprx_errmsg(NULL));
	ret = cprx_rollback_on_failure(other, true);
	CHECK(ret == -EINVAL, "an outgoing session armed: %d", ret);
	cprx_session_close(other);
	reclaim_guest(s, &g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	ret = cprx_rollback_on_failure(s, true);
	CHECK(ret == -EINVAL, "armed after commit: %d", ret);
	cprx_session_close(s);
	return 0;
}

/* ---- tests --------------------------------------------------------------- */

#define EXITED(n)	"new image exited with status " #n " before commit"
#define GOT(sig)	"new image got " #sig " before commit"

/*
 * Test Case: exit_before_commit_rolls_back
 * The new image arms, then exit(1)s: the previous binary resumes in the
 * same pid with the guest intact, generation 0, and the reason "new image
 * exited with status 1 before commit".
 */
TEST(exit_before_commit_rolls_back)
{
	struct old_args a = { "exit1", "-", EXITED(1), "commit" };

	ASSERT_EQ(0, in_child(become_old, &a));
}

/*
 * Test Case: segv_before_commit_rolls_back
 * The new image dies of SIGSEGV before commit: rolled back, "new image got
 * SIGSEGV before commit".
 */
TEST(segv_before_commit_rolls_back)
{
	struct old_args a = { "segv", "-", GOT(SIGSEGV), "commit" };

	ASSERT_EQ(0, in_child(become_old, &a));
}

/*
 * Test Case: abort_before_commit_rolls_back
 * abort() (SIGABRT) before commit: rolled back.
 */
TEST(abort_before_commit_rolls_back)
{
	struct old_args a = { "abort", "-", GOT(SIGABRT), "commit" };

	ASSERT_EQ(0, in_child(become_old, &a));
}

/*
 * Test Case: other_thread_fails
 * A second thread of the new image crashes, or calls exit(3), while the
 * main thread waits: rolled back either way.
 */
TEST(other_thread_fails)
{
	struct old_args crash = { "thread", "segv", GOT(SIGSEGV), "commit" };
	struct old_args ex = { "thread", "exit", EXITED(3), "commit" };

	ASSERT_EQ(0, in_child(become_old, &crash));
	ASSERT_EQ(0, in_child(become_old, &ex));
}

/*
 * Test Case: children_do_not_roll_back
 * A fork's exit(3), SIGSEGV and abort(), and a vfork's SIGBUS (the faults
 * to the handlers installed before arming), are the children's own: the
 * armed image commits as the update (generation 1), its SIGSEGV handler
 * back.
 */
TEST(children_do_not_roll_back)
{
	struct old_args a = { "children", "-", "-", "commit" };

	ASSERT_EQ(0, in_child(become_old, &a));
}

/*
 * Test Case: commit_or_off_disarms
 * After cprx_commit, or cprx_rollback_on_failure(s, false), the new
 * image's exit(5) is its own.
 */
TEST(commit_or_off_disarms)
{
	struct old_args commit = { "disarmed", "commit", "-", "commit" };
	struct old_args off = { "disarmed", "off", "-", "commit" };

	ASSERT_EQ(5, in_child(become_old, &commit));
	ASSERT_EQ(5, in_child(become_old, &off));
}

/*
 * Test Case: rollback_image_never_loops
 * The rollback image cannot arm (-ELOOP); when it exits before commit too,
 * or dies of SIGSEGV, that is the process's end (the VM is lost), not
 * another rollback.
 */
TEST(rollback_image_never_loops)
{
	struct old_args ex = { "exit1", "-", EXITED(1), "exit" };
	struct old_args crash = { "segv", "-", GOT(SIGSEGV), "segv" };

	ASSERT_EQ(LOST_STATUS, in_child(become_old, &ex));
	ASSERT_EQ(128 + SIGSEGV, in_child(become_old, &crash));
}

/*
 * Test Case: arm_refusals
 * NULL, an outgoing session, and a committed one are refused (-EINVAL);
 * turning it off when not armed, or arming twice, is 0.
 */
TEST(arm_refusals)
{
	struct old_args a = { "refusals", "-", "-", "commit" };

	ASSERT_EQ(0, in_child(become_old, &a));
}

TEST_HARNESS_MAIN
