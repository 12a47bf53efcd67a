// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * common/guard_reader.c: what libcprx predicts and explains from
 * cprx-guard's status file, with fake status files ($CPRX_GUARD_STATUS):
 * no guard, a stale or malformed status, each selector (a guard-exe also
 * by its path), allow-listed or not, a binary replaced on disk, armed-only
 * for a VMM and for a launcher,
 * trace-only, the guard's program and map ids.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include "harness.h"
#include "guard_reader.h"

struct fake {
	char dir[64];
	char status[128];
	char bin[128];		/* an allow-listed "binary" */
	char other[128];	/* one that is not */
	struct stat bin_st;
};

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);

	if (fd >= 0) {
		if (write(fd, "#!/bin/sh\n", 10) != 10)
			TH_LOG("short write to %s", path);
		close(fd);
	}
}

static void fake_init(struct fake *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/cprx-guard-test.XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	snprintf(f->status, sizeof(f->status), "%s/status", f->dir);
	snprintf(f->bin, sizeof(f->bin), "%s/vmm-new", f->dir);
	snprintf(f->other, sizeof(f->other), "%s/other", f->dir);
	touch(f->bin);
	touch(f->other);
	stat(f->bin, &f->bin_st);
	setenv(CPRX_GUARD_STATUS_ENV, f->status, 1);
}

static void fake_fini(struct fake *f)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd))
		TH_LOG("cannot remove %s", f->dir);
}

/* A status file: the header, @extra lines, and "allow 1 <bin>". */
static void write_status(struct fake *f, const char *state, const char *extra)
{
	FILE *o = fopen(f->status, "we");

	fprintf(o, "cprx-guard 1\nstate %s\n", state);
	if (strcmp(state, "enforcing"))
		fprintf(o, "why the kernel refused the BPF LSM program (EPERM)\n");
	fprintf(o, "mode enforce\npid 0\npinned /sys/fs/bpf/cprx-guard\n"
		"policy /etc/cprx/guard.policy\n%s", extra);
	/* as cprx-guard writes it: a fingerprint, no inode number */
	fprintf(o, "allow 1 fp:%016llx %s\n",
		(unsigned long long)cprx_guard_fingerprint(&f->bin_st), f->bin);
	fclose(o);
}

static char *uid_line(void)
{
	static char line[64];

	snprintf(line, sizeof(line), "guard-uid %u\n", getuid());
	return line;
}

static enum cprx_guard_result verdict(const char *path, bool armed,
				      char *why, char *hint)
{
	return cprx_guard_verdict(path, armed, why, 1024, hint, 512);
}

FIXTURE(g) {
	struct fake f;
	char why[1024], hint[512];
};

FIXTURE_SETUP(g)
{
	fake_init(&self->f);
	self->why[0] = self->hint[0] = '\0';
}

FIXTURE_TEARDOWN(g)
{
	fake_fini(&self->f);
}

TEST_F(g, no_status_no_guard)
{
	EXPECT_EQ(CPRX_GUARD_NONE, verdict(self->f.bin, false, self->why, self->hint));
	EXPECT_NE_NULL(strstr(self->why, "no cprx-guard policy"));
	EXPECT_FALSE(cprx_guard_explain(self->f.bin, false, self->why, 1024,
					self->hint, 512));
}

TEST_F(g, default_path_and_env)
{
	unsetenv(CPRX_GUARD_STATUS_ENV);
	EXPECT_STREQ(CPRX_GUARD_STATUS_PATH, cprx_guard_status_path());
	setenv(CPRX_GUARD_STATUS_ENV, self->f.status, 1);
	EXPECT_STREQ(self->f.status, cprx_guard_status_path());
}

TEST_F(g, malformed_status_ignored_with_reason)
{
	static const char *const bad[] = {
		"cprx-guard 2\n",			/* a version we do not know */
		"cprx-guard 1\nstate maybe\n",
		"cprx-guard 1\nallow 1 8:1 /x\n",	/* no inode */
		"cprx-guard 1\nallow 1 8:1:2 relative\n",
		"cprx-guard 1\nguard-cgroup vmm\n",
		"state enforcing\n",			/* no magic line */
		"cprx-guard\n",
	};
	struct cprx_guard_status st;
	char err[256];
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *o = fopen(self->f.status, "we");

		fputs(bad[i], o);
		fclose(o);
		EXPECT_EQ(-EBADMSG, cprx_guard_status_read(NULL, &st, err, sizeof(err)));
		EXPECT_EQ(CPRX_GUARD_NONE, verdict(self->f.bin, false, self->why,
						   self->hint));
		EXPECT_NE_NULL(strstr(self->why, "ignored"));
	}
}

TEST_F(g, unknown_items_and_spaces_in_paths)
{
	struct cprx_guard_status st;
	FILE *o = fopen(self->f.status, "we");

	fprintf(o, "cprx-guard 1\nstate enforcing\nfuture-item 42\n"
		"guard-exe 8:1:77 /opt/my vmm/qemu\n"
		"guard-cgroup /machine.slice/vm1 /sys/fs/cgroup/machine.slice/vm1\n");
	fclose(o);
	ASSERT_EQ(0, cprx_guard_status_read(NULL, &st, NULL, 0));
	EXPECT_TRUE(st.enforcing);
	ASSERT_EQ(1, st.nr_exes);
	EXPECT_STREQ("/opt/my vmm/qemu", st.exes[0].path);
	EXPECT_EQ(77, st.exes[0].ino);
	ASSERT_EQ(1, st.nr_cgroups);
	EXPECT_STREQ("/machine.slice/vm1", st.cgroups[0].rel);
	EXPECT_STREQ("/sys/fs/cgroup/machine.slice/vm1", st.cgroups[0].mnt);
	cprx_guard_status_free(&st);
}

TEST_F(g, stale_status_of_a_dead_loader)
{
	pid_t pid = fork();
	char line[128];

	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
	snprintf(line, sizeof(line), "%spid %d\n", uid_line(), pid);
	write_status(&self->f, "enforcing", line);	/* last pid line wins */
	EXPECT_EQ(CPRX_GUARD_NONE, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "stale"));
}

TEST_F(g, not_guarded_by_another_uid)
{
	char line[64];

	snprintf(line, sizeof(line), "guard-uid %u\n", getuid() + 4242);
	write_status(&self->f, "enforcing", line);
	EXPECT_EQ(CPRX_GUARD_UNGUARDED, verdict(self->f.other, false, self->why,
						self->hint));
	EXPECT_NE_NULL(strstr(self->why, "does not guard this process"));
}

TEST_F(g, allow_listed_by_inode)
{
	write_status(&self->f, "enforcing", uid_line());
	EXPECT_EQ(CPRX_GUARD_ALLOW, verdict(self->f.bin, false, self->why,
					    self->hint));
	EXPECT_NE_NULL(strstr(self->why, "rule 1"));
	EXPECT_FALSE(cprx_guard_explain(self->f.bin, false, self->why, 1024,
					self->hint, 512));
}

TEST_F(g, not_listed_refused_and_explained)
{
	char msg[2048], hint[512];

	write_status(&self->f, "enforcing", uid_line());
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "cprx-guard (BPF LSM, enforcing)"));
	EXPECT_NE_NULL(strstr(self->why, self->f.other));
	EXPECT_NE_NULL(strstr(self->why, "not on the allow-list"));
	EXPECT_NE_NULL(strstr(self->why, "guarded (by uid"));
	EXPECT_NE_NULL(strstr(self->why, "/etc/cprx/guard.policy"));
	EXPECT_NE_NULL(strstr(self->hint, "allow "));
	ASSERT_TRUE(cprx_guard_explain(self->f.other, false, msg, sizeof(msg),
				       hint, sizeof(hint)));
	EXPECT_EQ(0, strncmp(msg, "exec of '", 9));
	EXPECT_NE_NULL(strstr(msg, "refused (EPERM) by cprx-guard (BPF LSM"));
	EXPECT_NE_NULL(strstr(msg, "not on the allow-list"));
	EXPECT_STRNE("", hint);
}

TEST_F(g, replaced_on_disk_names_the_rule)
{
	char tmp[160];

	write_status(&self->f, "enforcing", uid_line());
	/* what package managers do: a new file renamed over the old one */
	snprintf(tmp, sizeof(tmp), "%s.new", self->f.bin);
	touch(tmp);
	ASSERT_EQ(0, rename(tmp, self->f.bin));
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.bin, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "replaced on disk"));
	EXPECT_NE_NULL(strstr(self->why, "rule 1"));
	EXPECT_NE_NULL(strstr(self->hint, "reload"));
}

/* armed-only binds a VMM: here this test binary, allow-listed. */
TEST_F(g, armed_only_for_a_vmm)
{
	struct stat me;
	char extra[PATH_MAX + 128];

	ASSERT_EQ(0, stat("/proc/self/exe", &me));
	snprintf(extra, sizeof(extra), "%sarmed-only 1\nallow 2 %u:%u:%llu "
		 "/proc/self/exe\n", uid_line(), major(me.st_dev),
		 minor(me.st_dev), (unsigned long long)me.st_ino);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.bin, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "armed-only"));
	EXPECT_NE_NULL(strstr(self->hint, "kmod"));
	EXPECT_EQ(CPRX_GUARD_ALLOW, verdict(self->f.bin, true, self->why,
					    self->hint));
}

TEST_F(g, armed_only_lets_a_launcher_start_a_vmm)
{
	char extra[128];

	snprintf(extra, sizeof(extra), "%sarmed-only 1\n", uid_line());
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_ALLOW, verdict(self->f.bin, false, self->why,
					    self->hint));
}

TEST_F(g, trace_only_would_refuse_and_says_why)
{
	write_status(&self->f, "trace-only", uid_line());
	EXPECT_EQ(CPRX_GUARD_WOULD_DENY, verdict(self->f.other, false, self->why,
						 self->hint));
	EXPECT_NE_NULL(strstr(self->why, "NOT enforced"));
	EXPECT_NE_NULL(strstr(self->why, "would refuse"));
	EXPECT_NE_NULL(strstr(self->why, "EPERM"));	/* the "why" line */
	/* an EPERM is then not the guard's doing */
	EXPECT_FALSE(cprx_guard_explain(self->f.other, false, self->why, 1024,
					self->hint, 512));
}

TEST_F(g, guarded_by_cgroup)
{
	char line[4096], extra[8400] = "";
	FILE *cg = fopen("/proc/self/cgroup", "re");

	while (cg && fgets(line, sizeof(line), cg))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(extra, sizeof(extra), "guard-cgroup %s /sys/fs/cgroup%s\n",
				 line + 3, line + 3);
		}
	if (cg)
		fclose(cg);
	if (!*extra)
		SKIP(return, "no cgroup v2 membership in /proc/self/cgroup");
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "guarded (by cgroup"));
	write_status(&self->f, "enforcing",
		     "guard-cgroup /cprx-elsewhere /sys/fs/cgroup/cprx-elsewhere\n");
	EXPECT_EQ(CPRX_GUARD_UNGUARDED, verdict(self->f.other, false, self->why,
						self->hint));
}

TEST_F(g, guarded_by_running_binary)
{
	struct stat me;
	char extra[256];

	ASSERT_EQ(0, stat("/proc/self/exe", &me));
	snprintf(extra, sizeof(extra), "guard-exe %u:%u:%llu /proc/self/exe\n",
		 major(me.st_dev), minor(me.st_dev), (unsigned long long)me.st_ino);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "guarded (by its binary"));
}

/*
 * The kernel also guards a guard-exe by its name in its directory (a
 * package upgrade renames a new file over the path): a binary at the
 * rule's path is guarded whatever its fingerprint says.
 */
TEST_F(g, guarded_by_binary_at_rule_path)
{
	char extra[PATH_MAX + 64], real[PATH_MAX];

	ASSERT_NE_NULL(realpath("/proc/self/exe", real));
	snprintf(extra, sizeof(extra), "guard-exe fp:0123456789abcdef %s\n",
		 real);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "guarded (by its binary"));
}

/*
 * cprx-guard takes up to CG_MAX_RULES (256) guard-exe entries: the parser
 * must read as many, or a loaded guard reads as "not loaded" (and a second
 * one loads, and detach cannot find the first).
 */
TEST_F(g, many_guard_exe_entries_parse)
{
	struct cprx_guard_status st;
	char *extra = malloc(CPRX_GUARD_MAX_RULES * 64), *p = extra;
	char err[256] = "";
	int i;

	ASSERT_NE_NULL(extra);
	for (i = 0; i < CPRX_GUARD_MAX_RULES - 1; i++)
		p += sprintf(p, "guard-exe fp:%016x /opt/vmm%d\n", i + 1, i);
	write_status(&self->f, "enforcing", extra);
	free(extra);
	ASSERT_EQ(0, cprx_guard_status_read(NULL, &st, err, sizeof(err)));
	EXPECT_EQ(CPRX_GUARD_MAX_RULES - 1, st.nr_exes);
	cprx_guard_status_free(&st);
}

/*
 * The guard's programs and maps by id (how cprx-guard finds a foreground
 * guard).  Only cprx-guard needs them: a line past the limit or in another
 * form (a newer guard's) is skipped, as are unknown keys, as an older
 * libcprx skips these; the status still parses, the verdict is unchanged.
 */
TEST_F(g, program_and_map_ids_parse)
{
	static const char *const skipped =
		"prog x 29 cg_x\nprog 12 29\nprog 0 29 cg_x\n"
		"map 12 6 a_name_over_15_ch\nprog-tag 7 0123abcd\n";
	struct cprx_guard_status st;
	char lines[CPRX_GUARD_MAX_PROGS * 32 + 512], *p = lines;
	int i;

	p += sprintf(p, "%s%s", uid_line(), skipped);
	for (i = 0; i <= CPRX_GUARD_MAX_PROGS; i++)
		p += sprintf(p, "prog %d 29 cg_prog%d\n", 100 + i, i);
	for (i = 0; i <= CPRX_GUARD_MAX_MAPS; i++)
		p += sprintf(p, "map %d %d %s\n", 7 + i, 6 + 21 * i,
			     i ? "events" : "stats");
	write_status(&self->f, "enforcing", lines);
	ASSERT_EQ(0, cprx_guard_status_read(NULL, &st, NULL, 0));
	ASSERT_EQ(CPRX_GUARD_MAX_PROGS, st.ids.nr_progs);
	EXPECT_EQ(100, st.ids.progs[0].id);
	EXPECT_EQ(115, st.ids.progs[15].id);
	EXPECT_EQ(29, st.ids.progs[15].type);
	EXPECT_STREQ("cg_prog15", st.ids.progs[15].name);
	ASSERT_EQ(CPRX_GUARD_MAX_MAPS, st.ids.nr_maps);
	EXPECT_STREQ("stats", st.ids.maps[0].name);
	EXPECT_EQ(8, st.ids.maps[1].id);
	EXPECT_EQ(27, st.ids.maps[1].type);
	EXPECT_STREQ("events", st.ids.maps[1].name);
	EXPECT_EQ(1, st.nr_uids);
	cprx_guard_status_free(&st);
	EXPECT_EQ(CPRX_GUARD_ALLOW, verdict(self->f.bin, false, self->why,
					    self->hint));
}

/*
 * A SIGKILLed loader leaves its status behind; its pid may then belong to
 * anything (here: this test).  The start time tells them apart.
 */
TEST_F(g, stale_status_of_a_reused_pid)
{
	unsigned long long start;
	char line[256];

	ASSERT_EQ(0, cprx_guard_proc_start(getpid(), &start));
	snprintf(line, sizeof(line), "%spid %d\npid-start %llu\n", uid_line(),
		 getpid(), start + 1);
	write_status(&self->f, "enforcing", line);
	EXPECT_EQ(CPRX_GUARD_NONE, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "stale"));
	/* the same pid with its own start time is a live loader */
	snprintf(line, sizeof(line), "%spid %d\npid-start %llu\n", uid_line(),
		 getpid(), start);
	write_status(&self->f, "enforcing", line);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
}

/*
 * A pinned guard (pid 0) has no loader to outlive: a status kept across a
 * kexec or reboot (on a path that is not a fresh tmpfs) is known stale by
 * its boot id.
 */
TEST_F(g, stale_status_of_another_boot)
{
	char line[256], now[40];

	ASSERT_EQ(0, cprx_guard_boot_id(now, sizeof(now)));
	snprintf(line, sizeof(line), "%sboot-id %s\n", uid_line(),
		 "00000000-0000-0000-0000-000000000000");
	write_status(&self->f, "enforcing", line);
	EXPECT_EQ(CPRX_GUARD_NONE, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, "another boot"));
	/* this boot's: the pinned guard is believed */
	snprintf(line, sizeof(line), "%sboot-id %s\n", uid_line(), now);
	write_status(&self->f, "enforcing", line);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
}

TEST(proc_start_of_a_process)
{
	unsigned long long a = 0, b = 0;
	pid_t pid = fork();

	if (!pid) {
		pause();
		_exit(0);
	}
	ASSERT_EQ(0, cprx_guard_proc_start(pid, &a));
	ASSERT_EQ(0, cprx_guard_proc_start(getpid(), &b));
	EXPECT_TRUE(a >= b && a > 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	EXPECT_EQ(-ESRCH, cprx_guard_proc_start(pid, &a));
}

/* Not enforced, a binary that cannot be stat()ed would be refused, no more. */
TEST_F(g, unreadable_binary_when_trace_only)
{
	char gone[160];

	snprintf(gone, sizeof(gone), "%s/no-such-binary", self->f.dir);
	write_status(&self->f, "trace-only", uid_line());
	EXPECT_EQ(CPRX_GUARD_WOULD_DENY, verdict(gone, false, self->why,
						 self->hint));
	write_status(&self->f, "enforcing", uid_line());
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(gone, false, self->why, self->hint));
}

/* The status file names binaries without their inode numbers. */
TEST_F(g, no_inode_numbers_published)
{
	char buf[4096], ino[32];
	FILE *f;
	size_t n;

	write_status(&self->f, "enforcing", uid_line());
	f = fopen(self->f.status, "re");
	ASSERT_NE_NULL(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	snprintf(ino, sizeof(ino), ":%llu ", (unsigned long long)self->f.bin_st.st_ino);
	EXPECT_NULL(strstr(buf, ino));
	/* and the fingerprint still names the file, and only it */
	EXPECT_EQ(CPRX_GUARD_ALLOW, verdict(self->f.bin, false, self->why,
					    self->hint));
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
}

/*
 * The guard sees the kernel's uid (the initial user namespace's); a
 * process in a user namespace where it is uid 0 is still guarded by its
 * real uid.
 */
TEST_F(g, uid_of_the_initial_user_namespace)
{
	char map[64], extra[64];
	uid_t real = getuid();
	int pipefd[2], fd, st;
	char res = 'x';
	pid_t pid;

	snprintf(extra, sizeof(extra), "guard-uid %u\n", real);
	write_status(&self->f, "enforcing", extra);
	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	if (!pid) {
		if (unshare(CLONE_NEWUSER) < 0) {
			res = 's';
		} else {
			fd = open("/proc/self/setgroups", O_WRONLY);
			if (fd >= 0 && write(fd, "deny", 4) < 0)
				res = 'e';
			if (fd >= 0)
				close(fd);
			snprintf(map, sizeof(map), "4242 %u 1", real);
			fd = open("/proc/self/uid_map", O_WRONLY);
			if (fd < 0 || write(fd, map, strlen(map)) < 0)
				res = 'e';
			else if (getuid() != 4242)
				res = 'e';
			else
				res = cprx_guard_verdict(self->f.other, false, NULL,
							 0, NULL, 0) ==
				      CPRX_GUARD_DENY ? 'y' : 'n';
		}
		if (write(pipefd[1], &res, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(pipefd[1]);
	ASSERT_EQ(1, read(pipefd[0], &res, 1));
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	if (res == 's')
		SKIP(return, "no unprivileged user namespaces here");
	ASSERT_NE('e', res);
	EXPECT_EQ('y', res);
}

/* This process's cgroup v2 path (@rel) and its directory (@path), or false. */
static bool own_cgroup(char *rel, size_t rlen, char *path, size_t plen)
{
	char line[4096], mnt[4096] = "";
	FILE *f = fopen("/proc/self/cgroup", "re");

	*rel = '\0';
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(rel, rlen, "%s", line + 3);
		}
	if (f)
		fclose(f);
	f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char root[4096], mp[4096];

		if (strstr(line, " - cgroup2 ") &&
		    sscanf(line, "%*d %*d %*s %4095s %4095s", root, mp) == 2 &&
		    !strcmp(root, "/"))
			snprintf(mnt, sizeof(mnt), "%s", mp);
	}
	if (f)
		fclose(f);
	snprintf(path, plen, "%s%s", mnt, strcmp(rel, "/") ? rel : "");
	return *rel && *mnt;
}

/*
 * The guard follows a guard-cgroup path: a directory removed and created
 * again there (systemd's machine.slice) is guarded, and so is one created
 * only after the load.  Its status names the path alone (no
 * guard-cgroup-id), and the prediction goes by the path: whichever
 * directory is there, or none yet.
 */
TEST_F(g, cgroup_guarded_by_path_whatever_its_directory)
{
	char rel[4096], path[8300], extra[16800];

	if (!own_cgroup(rel, sizeof(rel), path, sizeof(path)))
		SKIP(return, "no cgroup v2 membership or mount");
	snprintf(extra, sizeof(extra), "guard-cgroup %s %s\n", rel, path);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	EXPECT_NE_NULL(strstr(self->why, path));
	/* a path below ours that does not exist: not us */
	snprintf(extra, sizeof(extra), "guard-cgroup %s/cprx-not-yet "
		 "/sys/fs/cgroup-nowhere/cprx-not-yet\n",
		 strcmp(rel, "/") ? rel : "");
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_UNGUARDED, verdict(self->f.other, false, self->why,
						self->hint));
}

/*
 * An older guard held the directory at its path at load: one removed and
 * created again there was another cgroup, which it did not match.  Its
 * status gives the id; the prediction follows it.
 */
TEST_F(g, older_guard_by_id_recreated_cgroup_is_not_the_held_one)
{
	char rel[4096], path[8300], extra[16800];
	struct stat sb;

	if (!own_cgroup(rel, sizeof(rel), path, sizeof(path)))
		SKIP(return, "no cgroup v2 membership or mount");
	ASSERT_EQ(0, stat(path, &sb));
	/* the directory we are in: guarded */
	snprintf(extra, sizeof(extra), "guard-cgroup %s %s\nguard-cgroup-id %llu %s\n",
		 rel, path, (unsigned long long)sb.st_ino, rel);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_DENY, verdict(self->f.other, false, self->why,
					   self->hint));
	/* the same path, another directory (as after rmdir and mkdir) */
	snprintf(extra, sizeof(extra), "guard-cgroup %s %s\nguard-cgroup-id %llu %s\n",
		 rel, path, (unsigned long long)sb.st_ino + 424242, rel);
	write_status(&self->f, "enforcing", extra);
	EXPECT_EQ(CPRX_GUARD_UNGUARDED, verdict(self->f.other, false, self->why,
						self->hint));
}

TEST_HARNESS_MAIN
