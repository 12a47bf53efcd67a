// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The guardian, cloexec backend (tests/vm/kmod-tests.sh runs it again with
 * the kmod backend): cprx-guardian ($CPRX_GUARDIAN) running the synthetic
 * VMM ($CPRX_VMM), and libcprx's guardian calls.
 *
 *   kill_before_commit   the new image is SIGKILLed before its commit: the
 *                        guardian restarts the previous binary, which finds
 *                        guest RAM and devices verified
 *   updates_commit       guarded updates that commit: no restart, and the
 *                        guardian says each commit
 *   kill_outside_update  a VMM killed while no update runs is not restarted
 *   copies_dropped       after the commit the guardian holds no copy of
 *                        guest RAM or the state
 *   crash_chain          chained updates killed at random points (cprx-vmm
 *                        --crash-window): every guest completes or is resumed
 *                        verified; Shmem returns to where it was
 *   guardian_fd_cloexec  the new image's guardian socket is close-on-exec
 *   restart_runs_previous_binary  the restart runs the dead VMM's inode, not
 *                        what is at its path by now
 *   restart_runs_own_binary  the restart runs the binary the VMM ran, as
 *                        the kernel names it, not one the VMM sent as its own
 *   restart_notes_path_entry  an empty $PATH entry is the working
 *                        directory, as execvp takes it: the file a later
 *                        entry names, never run, is no binary to restart
 *   restart_refuses_reused_inode  a binary the VMM ran, unlinked and
 *                        left, keeps its inode: a file made afterwards
 *                        never passes for it
 *   set_guardian_refused cprx_set_guardian's refusals
 *   restart_refused      a handover naming a restart is believed only from
 *                        the guardian, the new image's parent
 *
 * Kept in one file: every case drives the same guardian and VMM through
 * the same background runner (struct bg) and binary copies; meson runs it
 * as one TAP test, serially.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cprx.h"
#include "harness.h"
#include "vmm_run.h"

#define RAM		"64M"
#define SHMEM_SLACK_KB	(32L << 10)	/* other processes of the host */

static const char *guardian_path(void)
{
	const char *p = getenv("CPRX_GUARDIAN");

	return p && *p ? p : "build/tools/cprx-guardian";
}

FIXTURE(g) {
	struct run run[4];
	int nr;
};

FIXTURE_SETUP(g)
{
	ASSERT_EQ(0, access(guardian_path(), X_OK));
	ASSERT_EQ(0, access(vmm_path(), X_OK));
}

FIXTURE_TEARDOWN(g)
{
	runs_end(self->run, self->nr, th_res->status == TH_FAIL);
}

/* cprx-guardian -- cprx-vmm ARGS..., run to its end. */
static struct run *guarded(FIXTURE_DATA(g) *self, const char *const *args)
{
	const char *argv[MAX_ARGS + 1] = { "--", vmm_path() };
	struct run *r;
	int n = 2;

	while (*args && n < MAX_ARGS)
		argv[n++] = *args++;
	argv[n] = NULL;
	ASSERT_LT(self->nr, 4);
	r = &self->run[self->nr++];
	prog_spawn(r, guardian_path(), argv);
	return r;
}

#define GUARDED(...) guarded(self, (const char *[]){ "--ram", RAM, \
	"--run-ms", "50", "--json", __VA_ARGS__, NULL })

static int count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle))) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

TEST_F(g, kill_before_commit)
{
	struct run *r = GUARDED("--updates", "1", "--inject",
				"kill-before-commit");
	JsonNode *up = event(r, "update", 0);

	/* 3: the update did not happen, the guest runs on intact */
	EXPECT_EQ(3, r->code);
	EXPECT_EQ(1, count(r->err, "event=restart pid="));
	ASSERT_NE_NULL(up);
	EXPECT_EQ(1, ju_bool(up, "rollback"));
	EXPECT_STREQ("ok", ju_str(up, "verify"));
	EXPECT_NE_NULL(strstr(ju_str(up, "rollback_reason"),
			      "restarted by its guardian"));
	EXPECT_STREQ("ok", ju_str(event(r, "exit", 0), "verify"));
}

TEST_F(g, updates_commit)
{
	struct run *r = GUARDED("--updates", "2");

	EXPECT_EQ(0, r->code);
	EXPECT_EQ(2, count(r->err, "event=armed"));
	EXPECT_EQ(2, count(r->err, "event=committed"));
	EXPECT_EQ(0, count(r->err, "event=restart"));
	EXPECT_EQ(2, count_events(r, "update"));
	EXPECT_STREQ("ok", ju_str(event(r, "exit", 0), "verify"));
}

/* A guardian running the VMM; its pid from the guardian's first line. */
struct bg {
	pid_t guardian, vmm;
	int err;		/* the guardian's stderr */
	char log[8192];
	size_t len;
};

static void bg_start(struct bg *b, const char *const *vmm_args)
{
	const char *argv[MAX_ARGS + 4] = { guardian_path(), "--", vmm_path() };
	int p[2], n = 3;
	char *at;

	while (*vmm_args && n < MAX_ARGS)
		argv[n++] = *vmm_args++;
	memset(b, 0, sizeof(*b));
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	b->guardian = fork();
	ASSERT_GE(b->guardian, 0);
	if (!b->guardian) {
		dup2(p[1], 2);
		dup2(open("/dev/null", O_WRONLY), 1);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(p[1]);
	b->err = p[0];
	while (!(at = strstr(b->log, "event=start pid="))) {
		ssize_t got = read(b->err, b->log + b->len,
				   sizeof(b->log) - 1 - b->len);

		ASSERT_GT(got, 0);
		b->len += got;
	}
	b->vmm = atoi(at + strlen("event=start pid="));
	ASSERT_GT(b->vmm, 0);
}

/* Waits until the guardian's log has @what; false at its end first. */
static bool bg_wait_for(struct bg *b, const char *what)
{
	while (!strstr(b->log, what)) {
		ssize_t got = read(b->err, b->log + b->len,
				   sizeof(b->log) - 1 - b->len);

		if (got <= 0)
			return false;
		b->len += got;
	}
	return true;
}

static int bg_end(struct bg *b)
{
	int status = 0;

	bg_wait_for(b, "\n\n");	/* to the end of its log */
	close(b->err);
	waitpid(b->guardian, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST(kill_outside_update)
{
	struct bg b;

	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "0",
				       "--run-ms", "60000", NULL });
	usleep(200 * 1000);
	ASSERT_EQ(0, kill(b.vmm, SIGKILL));
	EXPECT_EQ(128 + SIGKILL, bg_end(&b));
	EXPECT_NULL(strstr(b.log, "event=restart"));
	EXPECT_NE_NULL(strstr(b.log, "event=exit"));
}

/* Calls @fn with each fd of process @pid and what it links to; the count of
 * fds @fn says yes to, or -1. */
static int fd_walk(pid_t pid, bool (*fn)(pid_t, const char *, const char *, void *),
		   void *arg)
{
	char dir[64], path[320], link[256];
	struct dirent *d;
	int n = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	if (!dp)
		return -1;
	while ((d = readdir(dp))) {
		ssize_t len;

		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		n += fn(pid, d->d_name, link, arg);
	}
	closedir(dp);
	return n;
}

/* A socket; *inherited counts those without FD_CLOEXEC. */
static bool is_socket(pid_t pid, const char *fd, const char *link, void *inherited)
{
	char path[320], info[128];
	FILE *f;

	if (strncmp(link, "socket:", 7))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)pid, fd);
	f = fopen(path, "r");
	while (f && fgets(info, sizeof(info), f))
		if (!strncmp(info, "flags:", 6))
			*(int *)inherited += !(strtoul(info + 6, NULL, 8) & O_CLOEXEC);
	if (f)
		fclose(f);
	return true;
}

/* Process @pid's sockets: how many, and how many without FD_CLOEXEC. */
static int sockets(pid_t pid, int *inherited)
{
	*inherited = 0;
	return fd_walk(pid, is_socket, inherited);
}

/*
 * The new image's guardian socket came through the exec: libcprx's now, it
 * must not go on to what the VMM spawns (a child holding it would speak
 * for the VMM to the guardian, and hide its end).
 */
TEST(guardian_fd_cloexec)
{
	struct bg b;
	int n, inherited;

	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "1",
				       "--run-ms", "1500", NULL });
	if (!bg_wait_for(&b, "event=committed"))
		TH_LOG("%s", b.log);
	ASSERT_NE_NULL(strstr(b.log, "event=committed"));
	n = sockets(b.vmm, &inherited);
	EXPECT_GE(n, 1);
	EXPECT_EQ(0, inherited);
	EXPECT_EQ(0, bg_end(&b));
}

/* A copy of @from at @to, executable; its inode. */
static ino_t copy_exe(const char *from, const char *to)
{
	char buf[65536];
	struct stat st;
	ssize_t got;
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);

	while (in >= 0 && out >= 0 && (got = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, got) != got)
			break;
	if (in >= 0)
		close(in);
	if (out < 0 || fstat(out, &st))
		st.st_ino = 0;
	if (out >= 0)
		close(out);
	return st.st_ino;
}

/*
 * The restart runs the binary the dead VMM was, not the one at its path by
 * now: the path is replaced (by a copy, another inode) once the update is
 * armed; the new image killed before its commit, the guardian must restart
 * the first inode.
 */
TEST(restart_runs_previous_binary)
{
	char dir[] = "/tmp/cprx-guardian-exe.XXXXXX", exe[64], old[80];
	char *vmm = strdup(vmm_path()), *saved = getenv("CPRX_VMM");
	char link[128], *at;
	struct stat st, g;
	ino_t first;
	struct bg b;

	saved = saved ? strdup(saved) : NULL;
	ASSERT_NE_NULL(mkdtemp(dir));
	snprintf(exe, sizeof(exe), "%s/vmm", dir);
	snprintf(old, sizeof(old), "%s/vmm.old", dir);
	first = copy_exe(vmm, exe);
	ASSERT_NE(0, first);
	setenv("CPRX_VMM", exe, 1);
	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "1",
				       "--run-ms", "1500", "--inject",
				       "kill-before-commit", NULL });
	if (saved)
		setenv("CPRX_VMM", saved, 1);
	else
		unsetenv("CPRX_VMM");
	/* armed: the state names the path; another file is there at once */
	ASSERT_TRUE(bg_wait_for(&b, "event=armed"));
	EXPECT_NE(0, copy_exe(vmm, old));
	EXPECT_EQ(0, rename(old, exe));
	ASSERT_TRUE(bg_wait_for(&b, "event=restart pid="));
	at = strstr(b.log, "event=restart pid=") + strlen("event=restart pid=");
	snprintf(link, sizeof(link), "/proc/%d/exe", atoi(at));
	ASSERT_EQ(0, stat(guardian_path(), &g));
	/* said right after the fork: the child may not have exec'd yet */
	for (int i = 0; i < 300 && !stat(link, &st) && st.st_ino == g.st_ino; i++)
		usleep(10 * 1000);
	EXPECT_EQ(0, stat(link, &st));
	EXPECT_EQ(first, st.st_ino);
	bg_end(&b);
	unlink(exe);
	unlink(old);
	rmdir(dir);
	free(saved);
	free(vmm);
}

/*
 * The binary the guardian's restart runs, in *st once the child exec'd it
 * (the restart is said right after the fork): 1; 0 when the child is gone
 * by then; -1 with no restart (a refusal says why in the log).
 */
static int restarted_exe(struct bg *b, struct stat *st)
{
	char link[64];
	const char *at;
	struct stat g;

	if (!bg_wait_for(b, "event=restart pid=") || stat(guardian_path(), &g))
		return -1;
	at = strstr(b->log, "event=restart pid=") + strlen("event=restart pid=");
	snprintf(link, sizeof(link), "/proc/%d/exe", atoi(at));
	for (int i = 0; i < 300 && !stat(link, st) && st->st_ino == g.st_ino;
	     i++)
		usleep(10 * 1000);
	return !stat(link, st);
}

/*
 * A VMM does not name the binary its guardian restarts: one that sends
 * another file as its own (a compromised VMM, --inject forge-guardian-exe)
 * had the guardian exec that file, and a guardian selected by no guard
 * policy (a guard-exe names the VMM, not it) ran it unguarded.  The
 * restart must run the binary the VMM ran, as the kernel names it.
 */
TEST(restart_runs_own_binary)
{
	char dir[] = "/tmp/cprx-guardian-forged.XXXXXX", forged[64];
	struct stat st, vmm;
	ino_t other;
	struct bg b;

	ASSERT_NE_NULL(mkdtemp(dir));
	snprintf(forged, sizeof(forged), "%s/forged", dir);
	other = copy_exe(vmm_path(), forged);
	ASSERT_NE(0, other);
	ASSERT_EQ(0, stat(vmm_path(), &vmm));
	setenv("CPRX_VMM_FORGED_EXE", forged, 1);
	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "1",
				       "--run-ms", "1500", "--inject",
				       "kill-before-commit,forge-guardian-exe",
				       NULL });
	unsetenv("CPRX_VMM_FORGED_EXE");
	switch (restarted_exe(&b, &st)) {
	case 1:
		EXPECT_NE(other, st.st_ino);
		EXPECT_EQ(vmm.st_ino, st.st_ino);
		break;
	case -1:
		/* refusing the restart, saying why, is fine too */
		EXPECT_NE_NULL(strstr(b.log, "not restarted"));
	}
	bg_end(&b);
	unlink(forged);
	rmdir(dir);
}

/*
 * The guardian notes the binary it starts from the path execvp takes: an
 * empty $PATH entry is the working directory.  Taken as "/", the file a
 * later entry names was noted though never run, and a VMM that sent that
 * file as its own had the guardian exec it.
 */
TEST(restart_notes_path_entry)
{
	char dir[] = "/tmp/cprx-guardian-path.XXXXXX", sub[64], cwd[64];
	char exe[80], later[80], path[160], old_cwd[PATH_MAX];
	char gpath[PATH_MAX];
	char *saved_path = getenv("PATH"), *saved_vmm = getenv("CPRX_VMM");
	struct stat st;
	ino_t here, other;
	struct bg b;

	saved_path = saved_path ? strdup(saved_path) : NULL;
	saved_vmm = saved_vmm ? strdup(saved_vmm) : NULL;
	ASSERT_NE_NULL(mkdtemp(dir));
	snprintf(cwd, sizeof(cwd), "%s/cwd", dir);
	snprintf(sub, sizeof(sub), "%s/later", dir);
	ASSERT_EQ(0, mkdir(cwd, 0700));
	ASSERT_EQ(0, mkdir(sub, 0700));
	snprintf(exe, sizeof(exe), "%s/vmm", cwd);
	snprintf(later, sizeof(later), "%s/vmm", sub);
	here = copy_exe(vmm_path(), exe);
	other = copy_exe(vmm_path(), later);
	ASSERT_NE(0, here);
	ASSERT_NE(0, other);
	ASSERT_NE_NULL(getcwd(old_cwd, sizeof(old_cwd)));
	ASSERT_NE_NULL(realpath(guardian_path(), gpath));
	snprintf(path, sizeof(path), ":%s", sub);
	setenv("CPRX_VMM_FORGED_EXE", later, 1);
	setenv("CPRX_VMM", "vmm", 1);
	setenv("PATH", path, 1);
	/* the working directory moves: the guardian by its full path */
	setenv("CPRX_GUARDIAN", gpath, 1);
	ASSERT_EQ(0, chdir(cwd));
	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "1",
				       "--run-ms", "1500", "--inject",
				       "kill-before-commit,forge-guardian-exe",
				       NULL });
	ASSERT_EQ(0, chdir(old_cwd));
	unsetenv("CPRX_VMM_FORGED_EXE");
	if (saved_path)
		setenv("PATH", saved_path, 1);
	if (saved_vmm)
		setenv("CPRX_VMM", saved_vmm, 1);
	else
		unsetenv("CPRX_VMM");
	switch (restarted_exe(&b, &st)) {
	case 1:
		EXPECT_NE(other, st.st_ino);
		EXPECT_EQ(here, st.st_ino);
		break;
	case -1:
		EXPECT_NE_NULL(strstr(b.log, "not restarted"));
	}
	bg_end(&b);
	unlink(exe);
	unlink(later);
	rmdir(cwd);
	rmdir(sub);
	rmdir(dir);
	free(saved_path);
	free(saved_vmm);
}

/* An executable #! script at @path with @body. */
static int write_script(const char *path, const char *body)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	ssize_t n = fd < 0 ? -1 : write(fd, body, strlen(body));

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(body) ? 0 : -1;
}

/*
 * A copy of the VMM at @forged, made as a hostile VMM would: files are made
 * in @dir (kept meanwhile) until one gets inode number @want, if it is free
 * and the file system gives it, and that one is the copy; its inode.
 */
static ino_t make_with_ino(const char *dir, ino_t want, const char *forged)
{
	char name[96];
	struct stat st;
	ino_t got = 0;
	int i, n;

	for (n = 0; n < 2048 && !got; n++) {
		int fd;

		snprintf(name, sizeof(name), "%s/made.%d", dir, n);
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || fstat(fd, &st))
			break;
		close(fd);
		if (st.st_ino == want) {
			unlink(name);
			/* the number freed is the lowest free: taken again */
			got = copy_exe(vmm_path(), forged);
		}
	}
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s/made.%d", dir, i);
		unlink(name);
	}
	return got ? got : !stat(forged, &st) ? st.st_ino :
	       copy_exe(vmm_path(), forged);
}

/*
 * The guardian knows a binary the VMM ran by its device and inode number.
 * The first binary, unlinked and left by a committed update, was freed
 * (the guardian only stat()ed it), and ext4 gives a freed inode's number
 * to the next file made: a VMM that made a file then and sent it as its
 * binary had the guardian exec it.  The updates go through a script: the
 * first runs the next binary, whose update sends the file made as its
 * binary; the second dies before its commit.
 */
TEST(restart_refuses_reused_inode)
{
	char dir[] = "/tmp/cprx-guardian-reuse.XXXXXX", first[64], next[64];
	char wrap[64], forged[64], link[128];
	char *saved_vmm = getenv("CPRX_VMM");
	struct stat st;
	ino_t ino, other;
	struct bg b;

	saved_vmm = saved_vmm ? strdup(saved_vmm) : NULL;
	ASSERT_NE_NULL(mkdtemp(dir));
	snprintf(first, sizeof(first), "%s/vmm", dir);
	snprintf(next, sizeof(next), "%s/vmm-next", dir);
	snprintf(wrap, sizeof(wrap), "%s/update", dir);
	snprintf(forged, sizeof(forged), "%s/forged", dir);
	ino = copy_exe(vmm_path(), first);
	ASSERT_NE(0, ino);
	ASSERT_NE(0, copy_exe(vmm_path(), next));
	ASSERT_EQ(0, write_script(wrap, "#!/bin/sh\n"
		"[ -z \"$T_SECOND\" ] || kill -9 $$\n"
		"export T_SECOND=1 CPRX_VMM_FORGED_EXE=\"$T_FORGED\"\n"
		"exec \"$T_NEXT\" \"$@\"\n"));
	setenv("T_NEXT", next, 1);
	setenv("T_FORGED", forged, 1);
	/* the first update forges a live file, the second the one made */
	setenv("CPRX_VMM_FORGED_EXE", next, 1);
	setenv("CPRX_VMM", first, 1);
	/*
	 * Time to make the files before the second update: the debug
	 * kernel's guest took over 8 s for some 2000 of them.
	 */
	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "2",
				       "--run-ms", getenv("CPRX_IN_VM") ?
				       "40000" : "8000", "--no-probe",
				       "--inject", "forge-guardian-exe",
				       "--exec", wrap, NULL });
	if (saved_vmm)
		setenv("CPRX_VMM", saved_vmm, 1);
	else
		unsetenv("CPRX_VMM");
	/* unlinked once it runs, left at the first commit */
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)b.vmm);
	for (int i = 0; i < 300 && (stat(link, &st) || st.st_ino != ino); i++)
		usleep(10 * 1000);
	EXPECT_EQ(0, unlink(first));
	if (!bg_wait_for(&b, "event=committed"))
		TH_LOG("%s", b.log);
	ASSERT_NE_NULL(strstr(b.log, "event=committed"));
	other = make_with_ino(dir, ino, forged);
	ASSERT_NE(0, other);
	/* made before the second update (the VMM still there), or late */
	EXPECT_EQ(0, kill(b.vmm, 0));
	TH_LOG("first binary's inode %lu, the file made after it %lu",
	       (unsigned long)ino, (unsigned long)other);
	switch (restarted_exe(&b, &st)) {
	case 1:
		EXPECT_NE(other, st.st_ino);
		break;
	case -1:
		EXPECT_NE_NULL(strstr(b.log, "not restarted"));
	}
	bg_end(&b);
	if (!strstr(b.log, "event=restart pid=") &&
	    !strstr(b.log, "not restarted"))
		TH_LOG("%s", b.log);
	unsetenv("CPRX_VMM_FORGED_EXE");
	unsetenv("T_NEXT");
	unsetenv("T_FORGED");
	unlink(next);
	unlink(wrap);
	unlink(forged);
	rmdir(dir);
	free(saved_vmm);
}

static bool is_guest_fd(pid_t pid, const char *fd, const char *link, void *arg)
{
	(void)pid, (void)fd, (void)arg;
	return strstr(link, "memfd:cprx");
}

/* How many of process @pid's fds are guest RAM or a libcprx state. */
static int guest_fds(pid_t pid)
{
	return fd_walk(pid, is_guest_fd, NULL);
}

TEST(copies_dropped)
{
	struct bg b;

	bg_start(&b, (const char *[]){ "--ram", RAM, "--updates", "1",
				       "--run-ms", "1500", NULL });
	ASSERT_TRUE(bg_wait_for(&b, "event=armed"));
	if (!bg_wait_for(&b, "event=committed"))
		TH_LOG("%s", b.log);
	ASSERT_NE_NULL(strstr(b.log, "event=committed"));
	/* the VMM runs on for 1.5 s: the guardian must hold nothing now */
	EXPECT_EQ(0, guest_fds(b.guardian));
	EXPECT_EQ(0, bg_end(&b));
}

static long shmem_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Shmem: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/*
 * $CPRX_GUARDIAN_CRASHES (10 here; the VM tier asks for 200) SIGKILLs, each
 * within $CPRX_GUARDIAN_WINDOW_MS of an exec (about an update's length:
 * most updates die, at every stage of it).
 */
TEST_TIMEOUT(crash_chain, 3600)
{
	const char *env = getenv("CPRX_GUARDIAN_CRASHES");
	const char *win = getenv("CPRX_GUARDIAN_WINDOW_MS");
	int want = env ? atoi(env) : 10, kills = 0, runs = 0, completed = 0, i;
	long before = shmem_kb(), after;
	char window[16];

	snprintf(window, sizeof(window), "%s",
		 win ? win : getenv("CPRX_IN_VM") ? "300" : "15");
	while (kills < want && runs < want * 20) {
		struct run r = { 0 };
		int restarts;

		prog_spawn(&r, guardian_path(), (const char *[]){
			"--", vmm_path(), "--ram", "8M", "--vcpus", "1",
			"--run-ms", "2", "--no-probe", "--updates", "6",
			"--crash-window", window, "--json", NULL });
		runs++;
		restarts = count(r.err, "event=restart");
		kills += count(r.err, "mid-update");
		completed += r.code == 0;
		/* completed (0), or resumed by the guardian (3), verified */
		if ((r.code != 0 && r.code != 3) || strstr(r.out, "FAIL") ||
		    (r.code == 3) != (restarts > 0) ||
		    count(r.out, "\"event\":\"exit\"") != 1) {
			TH_LOG("run %d: exit %d, %d restarts", runs, r.code,
			       restarts);
			run_log(&r);
			run_free(&r);
			ASSERT_TRUE(false);
		}
		run_free(&r);
	}
	TH_LOG("%d SIGKILLs mid-update in %d runs (%d completed)", kills, runs,
	       completed);
	EXPECT_GE(kills, want);
	/* the dead VMMs' address spaces go away in the background */
	for (i = 0; i < 300 && (after = shmem_kb()) >= before + SHMEM_SLACK_KB;
	     i++)
		usleep(100 * 1000);
	TH_LOG("Shmem %ld kB before, %ld kB after", before, after);
	EXPECT_LT(after, before + SHMEM_SLACK_KB);
}

/*
 * One end of an AF_UNIX SOCK_SEQPACKET pair a child of ours made (so the
 * child is its peer), passed to us; the child, in *pid, waits to be killed.
 */
static int pair_of_child(pid_t *pid)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, x = 0;
	struct iovec iov = { .iov_base = &x, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int st[2], fd = -1, pair[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st))
		return -errno;
	*pid = fork();
	if (*pid < 0)
		return -errno;
	if (!*pid) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair))
			_exit(1);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pair[1], sizeof(int));
		if (sendmsg(st[1], &mh, 0) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	if (recvmsg(st[0], &mh, 0) == 1 && CMSG_FIRSTHDR(&mh))
		memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
	close(st[0]);
	close(st[1]);
	return fd;
}

TEST(set_guardian_refused)
{
	struct cprx_options o = { .size = sizeof(o),
				  .backend = CPRX_BACKEND_CLOEXEC };
	struct cprx_session *s = NULL;
	int sv[2], st[2], fd, gfd;
	pid_t child;

	EXPECT_EQ(0, cprx_guardian_pid(NULL));
	EXPECT_FALSE(cprx_is_guardian_restart(NULL));
	EXPECT_EQ(-EINVAL, cprx_set_guardian(NULL, 0));
	ASSERT_EQ(0, cprx_session_open(&s, "guardian-test", &o));
	EXPECT_EQ(0, cprx_guardian_pid(s));
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	EXPECT_EQ(-ENOTSOCK, cprx_set_guardian(s, fd));
	EXPECT_EQ(-EBADF, cprx_set_guardian(s, -1));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st));
	EXPECT_EQ(-EINVAL, cprx_set_guardian(s, st[0]));
	/* our own socketpair: the peer is this process */
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	EXPECT_EQ(-EINVAL, cprx_set_guardian(s, sv[0]));
	close(sv[0]);
	close(sv[1]);
	/* one a child made: the child is the peer */
	gfd = pair_of_child(&child);
	ASSERT_GE(gfd, 0);
	EXPECT_EQ(0, cprx_set_guardian(s, gfd));
	EXPECT_EQ(child, cprx_guardian_pid(s));
	EXPECT_EQ(-EBUSY, cprx_set_guardian(s, gfd));
	EXPECT_FALSE(cprx_is_guardian_restart(s));
	close(gfd);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	cprx_session_close(s);
	close(fd);
	close(st[0]);
	close(st[1]);
}

/* In a child: what cprx_incoming says of CPRX_INCOMING=@handover. */
static int incoming_in_child(const char *handover, char *msg, size_t len)
{
	struct cprx_session *s = NULL;
	int p[2], ret = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int r;

		setenv(CPRX_ENV, handover, 1);
		r = cprx_incoming(&s, NULL);
		dprintf(p[1], "%d %s", r, cprx_errmsg(s));
		_exit(0);
	}
	close(p[1]);
	memset(msg, 0, len);
	if (read(p[0], msg, len - 1) <= 0)
		ret = -EIO;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return ret ? ret : atoi(msg);
}

/*
 * A restart is believed only from the guardian, the new image's parent:
 * restart= without a guardian socket, or with one whose peer is not the
 * parent, is refused before the state is looked at.
 */
TEST(restart_refused)
{
	char h[128], msg[CPRX_MSG_MAX + 16];
	int sv[2], gfd, nul = open("/dev/null", O_RDONLY);
	pid_t other;

	ASSERT_GE(nul, 0);
	snprintf(h, sizeof(h), "v=1,fd=%d,rb=1,restart=%d", nul, (int)getpid());
	EXPECT_EQ(-EPERM, incoming_in_child(h, msg, sizeof(msg)));
	EXPECT_NE_NULL(strstr(msg, "without a guardian socket"));
	/* a pair another child made: its peer is not the new image's parent */
	gfd = pair_of_child(&other);
	ASSERT_GE(gfd, 0);
	fcntl(gfd, F_SETFD, 0);
	snprintf(h, sizeof(h), "v=1,fd=%d,rb=1,restart=%d,guardian=%d", nul,
		 (int)getpid(), gfd);
	EXPECT_EQ(-EPERM, incoming_in_child(h, msg, sizeof(msg)));
	EXPECT_NE_NULL(strstr(msg, "but this process's parent is"));
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	close(gfd);
	/* ours, made before the fork: the parent is the peer, the state next */
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	snprintf(h, sizeof(h), "v=1,fd=%d,rb=1,restart=%d,guardian=%d", nul,
		 (int)getpid(), sv[1]);
	EXPECT_EQ(-EPERM, incoming_in_child(h, msg, sizeof(msg)));
	EXPECT_NULL(strstr(msg, "parent"));
	EXPECT_NE_NULL(strstr(msg, "not the sealed memfd"));
	close(sv[0]);
	close(sv[1]);
	close(nul);
}

TEST_HARNESS_MAIN
