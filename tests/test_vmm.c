// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Host tier, end to end: run the synthetic VMM (tools/cprx-vmm) through
 * live updates and injected faults and check what it reports.
 *
 * Each test spawns $CPRX_VMM with its stdout and stderr on pipes, waits for
 * it, and reads the JSON lines it printed, one per event (vmm_run.c).
 * When a test fails, the fixture's teardown logs every run's command line,
 * status and output.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "harness.h"
#include "vmm_run.h"

#define MAX_RUNS	3

FIXTURE(vmm) {
	struct run run[MAX_RUNS];
	int nr;
	char dir[PATH_MAX - 16];	/* for state files */
	char state[PATH_MAX];
};

/* Runs the VMM with @args (NULL-terminated), fully, and records it. */
static struct run *vmm_run(FIXTURE_DATA(vmm) *self, const char *const *args)
{
	struct run *r;

	ASSERT_LT(self->nr, MAX_RUNS);
	r = &self->run[self->nr++];
	vmm_spawn(r, args);
	return r;
}

#define VMM(...)	vmm_run(self, (const char *[]){ __VA_ARGS__, NULL })

FIXTURE_SETUP(vmm)
{
	const char *tmp = getenv("TMPDIR");

	ASSERT_EQ(0, access(vmm_path(), X_OK));
	snprintf(self->dir, sizeof(self->dir), "%s/cprx-vmm-test.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ASSERT_NE_NULL(mkdtemp(self->dir));
	snprintf(self->state, sizeof(self->state), "%s/state", self->dir);
}

FIXTURE_TEARDOWN(vmm)
{
	/* th_res: the harness's verdict so far; only a failure is logged */
	runs_end(self->run, self->nr, th_res->status == TH_FAIL);
	unlink(self->state);
	rmdir(self->dir);
}

static int contains(const char *s, const char *what)
{
	return s && strstr(s, what);
}

/* Common checks ------------------------------------------------------------------ */

/*
 * The run ended with @code and an exit line that agrees: same pid as the
 * one we spawned (the updates exec in place), guest verified, and no fd but
 * the ones the VMM preserves on purpose.
 */
static JsonNode *check_exit(const struct run *r, int code, long long gen)
{
	JsonNode *l;
	struct fd_list f;

	check_lines(r);
	ASSERT_EQ(code, r->code);
	l = event(r, "exit", 0);
	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, count_events(r, "exit"));
	EXPECT_EQ(r->pid, ju_int(l, "pid"));
	EXPECT_EQ(code, ju_int(l, "exit_code"));
	EXPECT_EQ(gen, ju_int(l, "generation"));
	EXPECT_STREQ("ok", ju_str(l, "verify"));
	f = fds_of(l);
	EXPECT_GT(f.nr, 0);
	EXPECT_EQ(0, f.untokened);
	EXPECT_EQ(1, f.ram);
	return l;
}

/* Update @nth succeeded: generation @nth + 1, in the spawned pid. */
static JsonNode *check_update_ok(const struct run *r, int nth)
{
	JsonNode *l = event(r, "update", nth);
	double pause;

	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, ju_bool(l, "ok"));
	EXPECT_EQ(0, ju_bool(l, "rollback"));
	EXPECT_EQ(nth + 1, ju_int(l, "generation"));
	EXPECT_EQ(r->pid, ju_int(l, "pid"));
	EXPECT_STREQ("ok", ju_str(l, "verify"));
	pause = ju_num(l, "pause_ms");
	EXPECT_TRUE(pause > 0);		/* false for NAN (null) too */
	return l;
}

/*
 * The update was refused in the old image at @stage with @err: the guest
 * came back verified and running, and the VMM exits 3 at generation 0.
 */
static JsonNode *check_refused(const struct run *r, const char *stage,
				 const char *err)
{
	JsonNode *l;

	check_exit(r, 3, 0);
	EXPECT_EQ(0, count_events(r, "rollback"));
	EXPECT_EQ(1, count_events(r, "update"));
	l = event(r, "update", 0);
	ASSERT_NE_NULL(l);
	EXPECT_EQ(0, ju_bool(l, "ok"));
	EXPECT_EQ(0, ju_bool(l, "rollback"));
	EXPECT_EQ(0, ju_int(l, "generation"));
	EXPECT_EQ(r->pid, ju_int(l, "pid"));
	EXPECT_STREQ(stage, ju_str(l, "stage"));
	EXPECT_STREQ(err, ju_str(l, "errno"));
	EXPECT_EQ(1, ju_bool(l, "resumed"));
	EXPECT_STREQ("ok", ju_str(l, "verify"));
	EXPECT_EQ(1, ju_int(event(r, "exit", 0), "refused"));
	EXPECT_EQ(0, ju_int(event(r, "exit", 0), "updates_ok"));
	return l;
}

/*
 * The previous binary resumed the guest after a rollback, verified, and
 * exits 3: its update line says so, with the reason the new image gave.
 * Returns that line.
 */
static JsonNode *check_resumed_by_old(const struct run *r)
{
	JsonNode *up;

	check_exit(r, 3, 0);
	EXPECT_EQ(0, count_events(r, "error"));
	up = event(r, "update", 0);
	ASSERT_NE_NULL(up);
	EXPECT_EQ(1, count_events(r, "update"));
	EXPECT_EQ(1, ju_bool(up, "rollback"));
	EXPECT_EQ(0, ju_bool(up, "ok"));
	EXPECT_EQ(0, ju_int(up, "generation"));
	EXPECT_EQ(r->pid, ju_int(up, "pid"));
	EXPECT_STREQ("ok", ju_str(up, "verify"));
	EXPECT_EQ(1, ju_int(event(r, "exit", 0), "refused"));
	return up;
}

/*
 * The new image gave up and rolled back to the old one, which resumed the
 * guest: one "rollback" line from the new image, then the old image's
 * update line saying so.  Returns the rollback line.
 */
static JsonNode *check_rolled_back(const struct run *r)
{
	JsonNode *rb, *up;

	up = check_resumed_by_old(r);
	EXPECT_EQ(1, count_events(r, "rollback"));
	rb = event(r, "rollback", 0);
	ASSERT_NE_NULL(rb);
	EXPECT_EQ(r->pid, ju_int(rb, "pid"));
	/* the new image spoke first */
	EXPECT_LT(event_at(r, "rollback", 0), event_at(r, "update", 0));
	EXPECT_STREQ(ju_str(rb, "error"), ju_str(up, "rollback_reason"));
	return rb;
}

/*
 * Both the new image and the rollback image refused: exit 4, @rollbacks
 * rollback lines (one from each image that asked for one) and the fatal
 * error of the second, refused rollback.
 */
static JsonNode *check_lost(const struct run *r, int rollbacks)
{
	JsonNode *l;

	check_lines(r);
	ASSERT_EQ(4, r->code);
	EXPECT_EQ(rollbacks, count_events(r, "rollback"));
	EXPECT_EQ(1, count_events(r, "error"));
	EXPECT_EQ(0, count_events(r, "update"));
	l = event(r, "error", 0);
	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, ju_bool(l, "fatal"));
	EXPECT_EQ(r->pid, ju_int(l, "pid"));
	EXPECT_STREQ("rollback", ju_str(l, "stage"));
	EXPECT_STREQ("ELOOP", ju_str(l, "errno"));
	EXPECT_TRUE(contains(ju_str(l, "error"), "second rollback"));
	return l;
}

/*
 * Descendants the VMM left behind: with us as subreaper they are ours once
 * it is gone.  Deferred-teardown keepers, probe runs: all must be reaped by
 * the VMM itself before it exits.
 */
static int strays(void)
{
	long long end = th_now_ms() + 1000;
	int n = 0, status;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG | __WALL);
		if (pid > 0) {
			TH_LOG("stray child %d reaped", pid);
			n++;
		} else if (pid < 0) {
			return n;		/* ECHILD: none left */
		} else if (th_now_ms() >= end) {
			TH_LOG("stray children still running");
			return n + 1;
		} else {
			usleep(10000);
		}
	}
}

/* Updates that work --------------------------------------------------------------- */

TEST_F(vmm, update_64m)
{
	const struct run *r;
	JsonNode *up;

	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
	r = VMM("--ram", "64M", "--updates", "1", "--json");
	check_exit(r, 0, 1);
	EXPECT_EQ(1, count_events(r, "update"));
	EXPECT_EQ(0, count_events(r, "rollback") + count_events(r, "error") +
		     count_events(r, "preflight"));
	up = check_update_ok(r, 0);
	EXPECT_EQ(64ll << 20, ju_int(up, "ram_bytes"));
	EXPECT_STREQ("deferred", ju_str(up, "teardown"));
	EXPECT_STREQ("memfd", ju_str(up, "state"));
	EXPECT_EQ(1, ju_int(event(r, "exit", 0), "updates_ok"));
	EXPECT_EQ(0, ju_int(event(r, "exit", 0), "refused"));
	EXPECT_EQ(0, strays());
}

TEST_F(vmm, three_updates_file_state)
{
	const struct run *r;
	int i;

	r = VMM("--ram", "32M", "--updates", "3", "--run-ms", "20",
		"--state", self->state);
	check_exit(r, 0, 3);
	EXPECT_EQ(3, count_events(r, "update"));
	for (i = 0; i < 3; i++)
		EXPECT_STREQ("file", ju_str(check_update_ok(r, i), "state"));
	EXPECT_EQ(3, ju_int(event(r, "exit", 0), "updates_ok"));
}

#define THP_KNOB	"/sys/kernel/mm/transparent_hugepage/shmem_enabled"

TEST_F(vmm, thp_pages)
{
	const struct run *r;
	char knob[128] = "";
	FILE *f = fopen(THP_KNOB, "r");

	if (!f)
		SKIP(return, "no %s: no shmem THP", THP_KNOB);
	if (!fgets(knob, sizeof(knob), f))
		knob[0] = '\0';
	fclose(f);
	/* With "never" the VMM warns and stays on 4k pages: still a run. */
	TH_LOG("shmem_enabled: %.*s", (int)strcspn(knob, "\n"), knob);
	r = VMM("--pages", "thp", "--ram", "64M", "--run-ms", "20");
	check_exit(r, 0, 1);
	EXPECT_STREQ("thp", ju_str(check_update_ok(r, 0), "pages"));
}

TEST_F(vmm, inline_teardown)
{
	const struct run *r;

	r = VMM("--teardown", "inline", "--ram", "16M", "--run-ms", "20");
	check_exit(r, 0, 1);
	EXPECT_STREQ("inline", ju_str(check_update_ok(r, 0), "teardown"));
}

/* Exec refused: the old image keeps the guest ------------------------------------ */

TEST_F(vmm, exec_refused_seccomp)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "seccomp-deny-exec", "--ram", "16M",
		"--run-ms", "20");
	l = check_refused(r, "exec", "EPERM");
	EXPECT_TRUE(contains(ju_str(l, "error"), "seccomp"));
	/* --help: the fault implies --force; preflight's probe saw it */
	l = event(r, "preflight", 0);
	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, ju_bool(l, "forced"));
	EXPECT_STREQ("EPERM", ju_str(l, "errno"));
}

/* --help does not ask --force for it: preflight cannot see argv's size. */
TEST_F(vmm, exec_refused_e2big)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "e2big", "--ram", "16M", "--run-ms", "20");
	l = check_refused(r, "exec", "E2BIG");
	EXPECT_TRUE(contains(ju_str(l, "error"), "E2BIG"));
	EXPECT_EQ(0, count_events(r, "preflight"));
}

/* Without --force, preflight's binary check refuses before the guest stops. */
TEST_F(vmm, exec_refused_enoent_preflight)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--exec", "/nonexistent/cprx-vmm", "--ram", "16M",
		"--run-ms", "20");
	l = check_refused(r, "preflight", "ENOENT");
	EXPECT_TRUE(contains(ju_str(l, "error"), "binary"));
	EXPECT_TRUE(contains(ju_str(l, "error"), "/nonexistent/cprx-vmm"));
	/* not stopped at all: no downtime to report */
	EXPECT_TRUE(isnan(ju_num(l, "pause_ms")));
}

/* With --force the exec itself fails, and the guest must still come back. */
TEST_F(vmm, exec_refused_enoent_forced)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--exec", "/nonexistent/cprx-vmm", "--force", "--ram", "16M",
		"--run-ms", "20");
	l = check_refused(r, "exec", "ENOENT");
	EXPECT_TRUE(ju_num(l, "pause_ms") > 0);
	l = event(r, "preflight", 0);
	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, ju_bool(l, "forced"));
	EXPECT_STREQ("ENOENT", ju_str(l, "errno"));
}

TEST_F(vmm, private_ram_refused)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "private-ram", "--ram", "16M", "--run-ms", "20");
	l = check_refused(r, "preflight", "EINVAL");
	EXPECT_TRUE(contains(ju_str(l, "error"), "MAP_PRIVATE"));
	EXPECT_TRUE(contains(ju_str(l, "error"), "ram0"));
}

/* The new image refuses: rollback -------------------------------------------------- */

TEST_F(vmm, rollback_reject_state)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "reject-state", "--ram", "16M", "--run-ms", "20");
	l = check_rolled_back(r);
	EXPECT_TRUE(contains(ju_str(l, "error"), "reject-state"));
}

TEST_F(vmm, rollback_require_token)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "require-token", "--ram", "16M", "--run-ms", "20");
	l = check_rolled_back(r);
	EXPECT_STREQ("ENOENT", ju_str(l, "errno"));
	EXPECT_TRUE(contains(ju_str(l, "error"), "dev.extra"));
}

/* cprx-vmm-next reads state version 2 only: it must hand the guest back. */
TEST_F(vmm, rollback_newer_state_version)
{
	const char *next = vmm_next_path();
	char abs[PATH_MAX];
	const struct run *r;
	JsonNode *l;

	if (!next || !realpath(next, abs))
		SKIP(return, "no cprx-vmm-next (%s)", next ? next : "not built");
	r = VMM("--exec", abs, "--ram", "16M", "--run-ms", "20");
	l = check_rolled_back(r);
	EXPECT_TRUE(contains(ju_str(l, "error"), "version"));
}

/* A rollback image that refuses too must not roll back again: no loop. */
TEST_F(vmm, rollback_refused_twice)
{
	const struct run *r;
	JsonNode *l;

	r = VMM("--inject", "reject-always", "--ram", "16M", "--run-ms", "20");
	check_lost(r, 2);
	l = event(r, "rollback", 1);
	ASSERT_NE_NULL(l);
	EXPECT_TRUE(contains(ju_str(l, "error"), "reject-always"));
	/* a handful of execs, not a loop cut short by the deadline */
	EXPECT_LT(r->ms, 20000);
}

/* The new image dies before commit, asking for nothing: libcprx rolls back ---------- */

/*
 * The new image dies of @fault, asking for nothing: the previous binary
 * resumes, and its update line gives @reason.
 */
static void died_before_commit(FIXTURE_DATA(vmm) *self, const char *fault,
			       const char *reason)
{
	const struct run *r;
	JsonNode *up;

	r = VMM("--inject", fault, "--ram", "16M", "--run-ms", "20");
	up = check_resumed_by_old(r);
	EXPECT_EQ(0, count_events(r, "rollback"));
	EXPECT_STREQ(reason, ju_str(up, "rollback_reason"));
}

TEST_F(vmm, rollback_exit_before_commit)
{
	died_before_commit(self, "exit-before-commit",
			   "new image exited with status 1 before commit");
}

TEST_F(vmm, rollback_crash_before_commit)
{
	died_before_commit(self, "crash-before-commit",
			   "new image got SIGSEGV before commit");
}

/*
 * The new image dies, and the rollback image refuses the guest too: the
 * VM is lost (exit 4) after one rollback, not a loop.
 */
TEST_F(vmm, rollback_after_death_refused)
{
	static const char *const deaths[] = { "exit-before-commit,reject-always",
					      "crash-before-commit,reject-always" };
	const struct run *r;

	for (unsigned int i = 0; i < 2; i++) {
		r = VMM("--inject", deaths[i], "--ram", "16M", "--run-ms", "20");
		/* the new image died without a word: one rollback line */
		check_lost(r, 1);
		EXPECT_LT(r->ms, 20000);
	}
}

/*
 * A state file corrupted between save and exec: the exec carries the sealed
 * memfd, of which the file is only a copy, so the update goes through with
 * the guest verified, and commit removes the file.
 */
TEST_F(vmm, corrupt_state)
{
	const struct run *r;

	r = VMM("--inject", "corrupt-state", "--state", self->state,
		"--ram", "16M", "--run-ms", "20");
	check_exit(r, 0, 1);
	check_update_ok(r, 0);
	EXPECT_EQ(0, count_events(r, "rollback"));
	EXPECT_NE(0, access(self->state, F_OK));
}

/*
 * The baseline of cprx-bench --kexec, without a kexec: the first run
 * writes RAM and state beside --state and exits 0; the second, same
 * options, reads them back, verifies the guest and reports its downtime
 * across both processes by the TSC, then removes the files.
 */
TEST_F(vmm, kexec_baseline_copy)
{
	char meta[PATH_MAX + 8];
	const struct run *r;
	JsonNode *l;

	snprintf(meta, sizeof(meta), "%s.meta", self->state);
	r = VMM("--kexec", "--baseline", "copy", "--state", self->state,
		"--ram", "16M", "--run-ms", "20");
	check_lines(r);
	ASSERT_EQ(0, r->code);
	l = event(r, "kexec-prepared", 0);
	ASSERT_NE_NULL(l);
	EXPECT_STREQ("copy", ju_str(l, "baseline"));
	EXPECT_TRUE(ju_num(l, "save_ms") > 0);
	EXPECT_TRUE(ju_num(l, "tsc_hz") > 0);
	EXPECT_EQ(0, access(self->state, F_OK));
	EXPECT_EQ(0, access(meta, F_OK));
	r = VMM("--kexec", "--baseline", "copy", "--state", self->state,
		"--ram", "16M", "--run-ms", "20");
	check_exit(r, 0, 1);
	l = check_update_ok(r, 0);
	EXPECT_EQ(1, ju_bool(l, "across_kexec"));
	EXPECT_TRUE(ju_num(l, "tsc_hz") > 0);
	EXPECT_NE(0, access(self->state, F_OK));
	EXPECT_NE(0, access(meta, F_OK));
}

/* Soak ------------------------------------------------------------------------------ */

/*
 * 200 chained updates leak nothing: the same fds as after one, and about the
 * same RSS.  RSS is mostly guest RAM (the vCPUs touch all of it) plus the
 * binary and libc; the slack covers page cache noise, malloc arenas and
 * stacks sized by timing, not a leak: 200 updates leaking even 64 KiB each
 * would be 12.5 MiB over.
 */
#define RSS_SLACK_KB	(8 * 1024)

TEST_F(vmm, no_growth_200_updates)
{
	JsonNode *one, *many;
	const struct run *r1, *r;
	struct fd_list f1, f;
	int i, ok = 0;

	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
	r1 = VMM("--ram", "16M", "--vcpus", "1", "--run-ms", "1",
		 "--updates", "1");
	one = check_exit(r1, 0, 1);
	r = VMM("--ram", "16M", "--vcpus", "1", "--run-ms", "1",
		"--updates", "200");
	many = check_exit(r, 0, 200);
	EXPECT_EQ(200, count_events(r, "update"));
	for (i = 0; i < 200; i++) {
		JsonNode *l = event(r, "update", i);

		ok += ju_bool(l, "ok") == 1 && ju_int(l, "generation") == i + 1 &&
		      ju_int(l, "pid") == r->pid && contains(ju_str(l, "verify"), "ok");
	}
	EXPECT_EQ(200, ok);
	EXPECT_EQ(200, ju_int(many, "updates_ok"));

	f1 = fds_of(one);
	f = fds_of(many);
	EXPECT_EQ(f1.nr, f.nr);
	TH_LOG("VmRSS after 1 update %lld KiB, after 200 %lld KiB",
	       ju_int(one, "vm_rss_kb"), ju_int(many, "vm_rss_kb"));
	EXPECT_GT(ju_int(one, "vm_rss_kb"), 0);
	EXPECT_LE(ju_int(many, "vm_rss_kb"), ju_int(one, "vm_rss_kb") + RSS_SLACK_KB);
	EXPECT_EQ(0, strays());
}

/* Usage errors ---------------------------------------------------------------------- */

TEST_F(vmm, bad_option)
{
	const struct run *r;

	r = VMM("--ram", "banana");
	ASSERT_EQ(1, r->code);
	EXPECT_EQ(0, r->out_len);
	EXPECT_TRUE(contains(r->err, "--ram"));
	EXPECT_TRUE(contains(r->err, "banana"));
}

/* A memfd state is sealed: corrupting it needs a file, and --help says so. */
TEST_F(vmm, corrupt_state_needs_file)
{
	const struct run *r;

	r = VMM("--inject", "corrupt-state", "--ram", "16M");
	ASSERT_EQ(1, r->code);
	EXPECT_EQ(0, count_events(r, "update"));
	EXPECT_TRUE(contains(r->err, "--state"));
}

TEST_HARNESS_MAIN
