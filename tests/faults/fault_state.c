// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The saved state under faults: a state file damaged or replaced by a
 * symlink, preserve/unpreserve after the save, a reclaim that fails its
 * checks, a preflight report that runs out of room, and an argv that does
 * not fit.  Each of these once lost a guest, leaked an fd or passed a
 * preflight that should have failed.  Kept in one file: the exec cases
 * and the tests that exec into them make one binary, fault-state.
 */
#include <dirent.h>
#include <sys/eventfd.h>
#include <grp.h>
#include <sys/resource.h>

#include "exec_util.h"
#include "state.h"

#define NR_ARGS		3401	/* about 70 KiB of argv */
#define TOO_MANY_ARGS	(CPRX_STATE_MAX_ARGS + 4)

static void read_all(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	CHECK(fd >= 0, "%s: %m", path);
	n = read(fd, buf, len - 1);
	CHECK(n >= 0, "read %s: %m", path);
	buf[n] = '\0';
	close(fd);
}

static void state_path(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "/tmp/cprx-fault-state-%d-%s.state", getpid(), what);
	unlink(buf);
}

/* Execs case @name with @arg; never returns. */
static void exec_with(struct cprx_session *s, const char *name, char *arg)
{
	int ret = cprx_exec(s, th_self, EXEC_CASE_ARGV(name, arg));

	CHECK(0, "exec of case %s failed (%d): %s; %s", name, ret,
	      cprx_errmsg(s), cprx_errhint(s));
}

/* ---- a damaged state file ------------------------------------------------- */

enum damage { TRUNCATE, OVERWRITE, SYMLINK };

static void update_damaged(const void *arg)
{
	enum damage how = *(const enum damage *)arg;
	char path[128], victim[160];
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = path };
	struct cprx_session *s;
	struct guest g;
	int fd;

	state_path(path, sizeof(path), "damaged");
	snprintf(victim, sizeof(victim), "%s.victim", path);
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_save(s), "%s", cprx_errmsg(s));
	switch (how) {
	case TRUNCATE:
		CHECK(!truncate(path, 7), "truncate: %m");
		break;
	case OVERWRITE:
		fd = open(path, O_WRONLY);
		CHECK(fd >= 0 && pwrite(fd, "garbage!", 8, 40) == 8, "write: %m");
		close(fd);
		break;
	case SYMLINK:
		write_file(victim, "precious", 8, 0600);
		CHECK(!unlink(path) && !symlink(victim, path), "symlink: %m");
		break;
	}
	exec_with(s, "damaged_new", path);
}

/* The new image: the sealed memfd carried the state, whatever the file. */
EXEC_CASE(damaged_new)
{
	char victim[160], buf[16];
	struct cprx_session *s = incoming();
	struct stat st;
	struct guest g;

	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	CHECK(lstat(argv[0], &st) < 0 && errno == ENOENT,
	      "state file %s still there after commit", argv[0]);
	snprintf(victim, sizeof(victim), "%s.victim", argv[0]);
	if (!access(victim, F_OK)) {
		read_all(victim, buf, sizeof(buf));
		CHECK(!strcmp(buf, "precious"), "symlink target changed: %s", buf);
		unlink(victim);
	}
	wait_no_children();
	_exit(0);
}

/*
 * Test Case: state_file_truncated
 * The state file is cut short between cprx_save and cprx_exec.  The state
 * that the exec carries is the sealed memfd, so the update goes through
 * with the guest intact, and commit removes the file.
 */
TEST(state_file_truncated)
{
	enum damage how = TRUNCATE;

	ASSERT_EQ(0, in_child(update_damaged, &how));
}

/*
 * Test Case: state_file_overwritten
 * Bytes in the middle of the state file are overwritten after the save:
 * the update still goes through and commit removes the file.
 */
TEST(state_file_overwritten)
{
	enum damage how = OVERWRITE;

	ASSERT_EQ(0, in_child(update_damaged, &how));
}

/*
 * Test Case: state_file_replaced_by_symlink
 * The state file is replaced by a symlink to another file after the save:
 * the update goes through, commit removes the link and never touches the
 * file it points to.
 */
TEST(state_file_replaced_by_symlink)
{
	enum damage how = SYMLINK;

	ASSERT_EQ(0, in_child(update_damaged, &how));
}

/* ---- a state path that is a symlink ---------------------------------------- */

static void save_through_symlink(const void *arg)
{
	char path[128], victim[160], buf[16];
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = path };
	struct cprx_session *s;
	struct stat st;
	struct guest g;
	int ret;

	(void)arg;
	state_path(path, sizeof(path), "link");
	snprintf(victim, sizeof(victim), "%s.victim", path);
	write_file(victim, "precious", 8, 0644);
	CHECK(!symlink(victim, path), "symlink: %m");
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_save(s);
	read_all(victim, buf, sizeof(buf));
	CHECK(!strcmp(buf, "precious"), "save wrote through the symlink: "
	      "target now holds '%s'", buf);
	if (!ret) {	/* the link was replaced, not followed */
		CHECK(!lstat(path, &st) && S_ISREG(st.st_mode) &&
		      (st.st_mode & 0777) == 0600, "state path: mode %o",
		      st.st_mode);
	}
	cprx_session_close(s);
	CHECK(lstat(path, &st) < 0 || S_ISLNK(st.st_mode),
	      "state file left behind by a session that never exec'd");
	unlink(path);
	unlink(victim);
}

/*
 * Test Case: state_path_symlink_not_followed
 * opts.state_path is a symlink to another file: the save must not write
 * through it (it used to truncate the target); the path ends up as a
 * 0600 file of the library's own, removed when the session closes.
 */
TEST(state_path_symlink_not_followed)
{
	ASSERT_EQ(0, in_child(save_through_symlink, NULL));
}

/* ---- a rollback keeps the file ---------------------------------------------- */

static void mirror_rollback_start(const void *arg)
{
	char path[128];

	(void)arg;
	state_path(path, sizeof(path), "rollback");
	execv(th_self, EXEC_CASE_ARGV("mirror_rb_old", path));
	_exit(97);
}

EXEC_CASE(mirror_rb_old)
{
	struct cprx_options opts = { .size = sizeof(opts),
				     .target = CPRX_STATE_FILE,
				     .state_path = argv[0] };
	struct cprx_session *s;
	struct stat st;
	struct guest g;
	int ret = cprx_incoming(&s, NULL);

	if (ret == 0) {
		make_guest(&g, 1 << 20, MAP_SHARED);
		exec_with(preserve_guest(&g, &opts), "mirror_rb_new", argv[0]);
	}
	CHECK(ret == 1, "rollback image: %s", cprx_errmsg(s));
	CHECK(!stat(argv[0], &st), "rollback lost the state file: %m");
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	CHECK(stat(argv[0], &st) < 0, "state file left after the commit");
	wait_no_children();
	_exit(0);
}

EXEC_CASE(mirror_rb_new)
{
	struct cprx_session *s = incoming();
	struct stat st;

	CHECK(!stat(argv[0], &st), "no state file in the new image: %m");
	cprx_rollback(s, "new image gives up");
	CHECK(0, "rollback failed: %s", cprx_errmsg(s));
	return 1;
}

/*
 * Test Case: rollback_keeps_state_file
 * A new image that rolls back leaves the state file in place for the
 * rollback image, whose commit then removes it: no device state stays on
 * disk after the update is over.
 */
TEST(rollback_keeps_state_file)
{
	ASSERT_EQ(0, in_child(mirror_rollback_start, NULL));
}

/* ---- preserve/unpreserve after the save ------------------------------------ */

static void preserve_after_save(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int efd;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	CHECK(!cprx_save(s), "%s", cprx_errmsg(s));
	efd = eventfd(42, EFD_CLOEXEC);
	CHECK(efd >= 0, "eventfd: %m");
	CHECK(!cprx_preserve_fd(s, "dev.late", efd), "%s", cprx_errmsg(s));
	exec_case(s, "late_new");
}

EXEC_CASE(late_new)
{
	struct cprx_session *s = incoming();
	struct guest g;
	uint64_t v;
	int efd;

	CHECK(!cprx_reclaim_fd(s, "dev.late", &efd),
	      "fd preserved after the save did not come through: %s",
	      cprx_errmsg(s));
	CHECK(read(efd, &v, 8) == 8 && v == 42, "late eventfd lost its count");
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	close(efd);
	check_fd_set(&g);
	wait_no_children();
	_exit(0);
}

/*
 * Test Case: preserve_after_save_crosses
 * An fd preserved after cprx_save: the save is stale, cprx_exec saves
 * again, and the new image reclaims the fd (it used to cross unlisted,
 * never reclaimed nor closed).
 */
TEST(preserve_after_save_crosses)
{
	ASSERT_EQ(0, in_child(preserve_after_save, NULL));
}

static void unpreserve_after_save(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int efd;

	(void)arg;
	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	efd = eventfd(7, EFD_CLOEXEC);
	CHECK(efd >= 0, "eventfd: %m");
	CHECK(!cprx_preserve_fd(s, "dev.gone", efd), "%s", cprx_errmsg(s));
	CHECK(!cprx_save(s), "%s", cprx_errmsg(s));
	CHECK(!cprx_unpreserve(s, "dev.gone"), "%s", cprx_errmsg(s));
	close(efd);
	exec_case(s, "gone_new");
}

EXEC_CASE(gone_new)
{
	struct cprx_session *s = incoming();
	struct guest g;
	int fd, ret;

	ret = cprx_reclaim_fd(s, "dev.gone", &fd);
	CHECK(ret == -ENOENT, "state still names the unpreserved fd "
	      "(reclaim: %d, %s)", ret, cprx_errmsg(s));
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	check_fd_set(&g);
	wait_no_children();
	_exit(0);
}

/*
 * Test Case: unpreserve_after_save_drops
 * An fd unpreserved (and closed) after cprx_save: the exec saves again, so
 * the state does not name the closed fd.
 */
TEST(unpreserve_after_save_drops)
{
	ASSERT_EQ(0, in_child(unpreserve_after_save, NULL));
}

/* ---- a failed reclaim_ram ----------------------------------------------------- */

EXEC_CASE(badreclaim_new)
{
	struct cprx_session *s = incoming();
	uint64_t size;
	struct rlimit old, low;
	struct guest g;
	char buf[64];
	FILE *f;
	long vm_kb = 0;
	void *p;
	int n, ret;

	/* kind check: a device is not RAM; the fd stays the session's */
	ret = cprx_reclaim_ram(s, "dev.eventfd", &p, &size, &g.efd);
	CHECK(ret == -EINVAL, "reclaim_ram of a device: %d", ret);
	/* mmap check: no room for the mapping; then a retry works */
	f = fopen("/proc/self/status", "re");
	while (f && fgets(buf, sizeof(buf), f))
		sscanf(buf, "VmSize: %ld", &vm_kb);
	if (f)
		fclose(f);
	CHECK(vm_kb > 0 && !getrlimit(RLIMIT_AS, &old), "VmSize");
	low = old;
	low.rlim_cur = (vm_kb + 8192) * 1024;
	CHECK(!setrlimit(RLIMIT_AS, &low), "setrlimit: %m");
	ret = cprx_reclaim_ram(s, "ram0", &p, &size, &g.ram_fd);
	CHECK(!setrlimit(RLIMIT_AS, &old), "setrlimit: %m");
	CHECK(ret == -ENOMEM, "reclaim_ram under RLIMIT_AS: %d", ret);
	CHECK(!cprx_reclaim_ram(s, "ram0", &p, &g.size, &g.ram_fd),
	      "retry of reclaim_ram: %s", cprx_errmsg(s));
	g.ram = p;
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.r", &g.pipe[0]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.pipe.w", &g.pipe[1]), "%s", cprx_errmsg(s));
	CHECK(!cprx_reclaim_fd(s, "dev.file", &g.file_fd), "%s", cprx_errmsg(s));
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	/* stdio, RAM, two pipe ends, the file: the eventfd was dropped */
	n = fd_count();
	CHECK(n == 7, "%d fds open after commit, expected 7: a failed "
	      "reclaim leaked its fd", n);
	wait_no_children();
	_exit(0);
}

static void update_badreclaim(const void *arg)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct guest g;

	(void)arg;
	make_guest(&g, RAM_SIZE, MAP_SHARED);
	exec_case(preserve_guest(&g, &opts), "badreclaim_new");
}

/*
 * Test Case: failed_reclaim_ram_leaks_no_fd
 * cprx_reclaim_ram refused by its kind check and by a failing mmap: the
 * fd stays with the session, so the retry works and commit closes what
 * was never taken (it used to be marked reclaimed and leak).
 */
TEST(failed_reclaim_ram_leaks_no_fd)
{
	ASSERT_EQ(0, in_child(update_badreclaim, NULL));
}

/* ---- an execute-only binary ---------------------------------------------------- */

#define NOBODY	65534

static void copy_file(const char *from, const char *to, mode_t mode)
{
	static char buf[1 << 16];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
	CHECK(in >= 0 && out >= 0, "copy %s to %s: %m", from, to);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, n) == n, "write %s: %m", to);
	close(in);
	close(out);
	CHECK(!chmod(to, mode), "chmod %s: %m", to);
}

/* @dir/vmm, execute-only for the user that runs it, who owns @dir. */
static void xonly_start(const void *arg)
{
	const char *dir = arg;
	char bin[160];

	snprintf(bin, sizeof(bin), "%s/vmm", dir);
	if (geteuid()) {	/* our own file: its owner may not read it */
		copy_file(th_self, bin, 0111);
	} else {		/* root reads anything: run as nobody */
		struct stat dev;
		/* in /dev/cprx's group, as a VMM is (kvm, by its udev rule) */
		int n = !stat("/dev/cprx", &dev);

		copy_file(th_self, bin, 0711);
		CHECK(!chown(dir, NOBODY, NOBODY), "chown: %m");
		CHECK(!setgroups(n, &dev.st_gid) && !setgid(NOBODY) &&
		      !setuid(NOBODY), "drop to nobody: %m");
	}
	execv(bin, (char *[]){ bin, "--exec-case", "xonly_old", bin, NULL });
	_exit(97);
}

EXEC_CASE(xonly_old)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int ret = cprx_incoming(&s, NULL);

	if (ret == 0) {
		CHECK(open("/proc/self/exe", O_RDONLY) < 0, "binary is readable");
		make_guest(&g, 1 << 20, MAP_SHARED);
		s = preserve_guest(&g, &opts);
		if (!strcmp(cprx_backend_name(s), "kmod")) {
			/* cprx.ko pins readable files only: refused, by name */
			ret = cprx_exec(s, th_self,
					EXEC_CASE_ARGV("xonly_new", argv[0]));
			printf("# %s\n# hint: %s\n", cprx_errmsg(s),
			       cprx_errhint(s));
			CHECK(ret < 0 && strstr(cprx_errmsg(s), "held open") &&
			      strstr(cprx_errhint(s), "readable"),
			      "kmod: exec gave %d: %s", ret, cprx_errmsg(s));
			check_guest(&g);
			cprx_session_close(s);
			_exit(0);
		}
		exec_with(s, "xonly_new", argv[0]);
	}
	CHECK(ret == 1, "rollback image: %s", cprx_errmsg(s));
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	_exit(0);
}

/* Replaces the binary on disk, as an upgrade does, then rolls back. */
EXEC_CASE(xonly_new)
{
	struct cprx_session *s = incoming();
	char tmp[200];

	snprintf(tmp, sizeof(tmp), "%s.new", argv[0]);
	write_file(tmp, "#!/bin/sh\nexit 3\n", 17, 0755);
	CHECK(!rename(tmp, argv[0]), "rename: %m");
	cprx_rollback(s, "new image gives up");
	CHECK(0, "rollback failed: %s", cprx_errmsg(s));
	return 1;
}

/*
 * Test Case: execute_only_binary_rolls_back
 * A VMM binary that may be executed but not read (mode 0711, not ours),
 * replaced on disk after the update: the rollback still runs the previous
 * binary, through an O_PATH fd (an O_RDONLY one could not be opened, so
 * the rollback ran whatever was at the path by then).  With the kmod
 * backend, which pins readable files only, the update is refused by name
 * before the exec, the guest intact.
 */
TEST(execute_only_binary_rolls_back)
{
	char dir[64], bin[80];

	snprintf(dir, sizeof(dir), "/tmp/cprx-fault-xonly-%d", getpid());
	ASSERT_EQ(0, mkdir(dir, 0755));
	EXPECT_EQ(0, in_child(xonly_start, dir));
	snprintf(bin, sizeof(bin), "%s/vmm", dir);
	unlink(bin);
	rmdir(dir);
}

/* ---- preflight with a full report --------------------------------------------- */

/*
 * Test Case: full_report_still_fails
 * 31 RAM regions fill the report before the probe runs; the probe exits
 * 1.  Preflight must fail and count every check (it used to pass).
 */
TEST(full_report_still_fails)
{
	struct cprx_check checks[32];
	struct cprx_preflight_report rep = { .size = sizeof(rep),
		.max_checks = 32, .checks = checks };
	char *probe[] = { "false", NULL };
	struct cprx_session *s;
	char tok[16];
	int i, fd, ret;
	void *p;

	ASSERT_EQ(0, cprx_session_open(&s, "full", NULL));
	for (i = 0; i < 31; i++) {
		fd = memfd_create("ram", MFD_CLOEXEC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(0, ftruncate(fd, 4096));
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT_NE(MAP_FAILED, p);
		snprintf(tok, sizeof(tok), "ram%d", i);
		ASSERT_EQ(0, cprx_preserve_ram(s, tok, fd, p, 4096, CPRX_PAGE_4K));
	}
	ret = cprx_preflight(s, "/bin/false", probe, &rep);
	TH_LOG("preflight: %d, %u checks: %s", ret, rep.nr_checks,
	       cprx_errmsg(s));
	ASSERT_NE(0, ret);
	ASSERT_NE(NULL, strstr(cprx_errmsg(s), "probe"));
	ASSERT_GT(rep.nr_checks, rep.max_checks);
	ASSERT_GE(rep.nr_failed, 1);
	cprx_session_close(s);
}

/* ---- argv ---------------------------------------------------------------------- */

static char **many_args(const char *name, int n)
{
	char **argv = calloc(n + 4, sizeof(char *));

	argv[0] = th_self;
	argv[1] = "--exec-case";
	argv[2] = (char *)name;
	for (int i = 0; i < n; i++) {
		argv[3 + i] = malloc(32);
		snprintf(argv[3 + i], 32, "argument-%05d-of-the-vmm", i);
	}
	return argv;
}

static void check_args(int argc, char **argv, int n)
{
	char want[32];

	CHECK(argc == n, "rollback image got %d arguments, expected %d", argc, n);
	for (int i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "argument-%05d-of-the-vmm", i);
		CHECK(!strcmp(argv[i], want), "argument %d is '%s'", i, argv[i]);
	}
}

static void start_args(const void *arg)
{
	execv(th_self, many_args(arg, NR_ARGS));
	_exit(97);
}

EXEC_CASE(args_old)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int ret = cprx_incoming(&s, NULL);

	check_args(argc, argv, NR_ARGS);
	if (ret == 0) {
		make_guest(&g, 1 << 20, MAP_SHARED);
		exec_case(preserve_guest(&g, &opts), "args_new");
	}
	CHECK(ret == 1, "rollback image: %s", cprx_errmsg(s));
	reclaim_guest(s, &g);
	check_guest(&g);
	CHECK(!cprx_commit(s), "%s", cprx_errmsg(s));
	wait_no_children();
	_exit(0);
}

EXEC_CASE(args_new)
{
	struct cprx_session *s = incoming();

	cprx_rollback(s, "to check argv");
	CHECK(0, "rollback failed: %s", cprx_errmsg(s));
	return 1;
}

/*
 * Test Case: rollback_gets_all_arguments
 * A VMM started with 3401 arguments (about 70 KiB) rolls back: the
 * rollback image gets every one of them, whole (it used to get 2623,
 * the last one cut).
 */
TEST(rollback_gets_all_arguments)
{
	ASSERT_EQ(0, in_child(start_args, "args_old"));
}

static void start_args_many(const void *arg)
{
	(void)arg;
	execv(th_self, many_args("too_many_args", TOO_MANY_ARGS));
	_exit(97);
}

EXEC_CASE(too_many_args)
{
	struct cprx_preflight_report rep = { .size = sizeof(rep) };
	struct cprx_options opts = { .size = sizeof(opts) };
	struct cprx_session *s;
	struct guest g;
	int ret;

	make_guest(&g, 1 << 20, MAP_SHARED);
	s = preserve_guest(&g, &opts);
	ret = cprx_preflight(s, th_self, NULL, &rep);
	printf("# preflight: %d: %s\n", ret, cprx_errmsg(s));
	CHECK(ret != 0, "preflight passed an argv the state cannot carry");
	CHECK(strstr(cprx_errmsg(s), "argv"), "message: %s", cprx_errmsg(s));
	ret = cprx_exec(s, th_self, EXEC_CASE_ARGV("devices_never"));
	CHECK(ret != 0 && strstr(cprx_errmsg(s), "argv"), "exec: %d %s", ret,
	      cprx_errmsg(s));
	check_guest(&g);
	_exit(0);
}

/*
 * Test Case: too_many_arguments_refused
 * More arguments than the state can carry for a rollback: preflight fails
 * naming argv, before the guest stops, and so does cprx_exec.
 */
TEST(too_many_arguments_refused)
{
	ASSERT_EQ(0, in_child(start_args_many, NULL));
}

/*
 * Test Case: arg_len_max_boundary
 * One argv string is at most MAX_ARG_STRLEN bytes with its NUL: 131071
 * characters are carried, 131072 are refused by the encoder (no exec can
 * produce them).
 */
TEST(arg_len_max_boundary)
{
	struct cprx_state st = { .exe_fd = -1 }, out;
	char *args[2] = { NULL, NULL };
	size_t len;
	void *buf;

	snprintf(st.session, sizeof(st.session), "vm");
	st.exe_path = "/usr/bin/vmm";
	st.argc = 1;
	st.argv = args;
	args[0] = malloc(131073);
	memset(args[0], 'a', 131072);
	args[0][131071] = '\0';
	ASSERT_EQ(0, cprx_state_encode(&st, &buf, &len));
	ASSERT_EQ(0, cprx_state_decode(buf, len, &out, NULL, 0));
	ASSERT_EQ(131071, strlen(out.argv[0]));
	cprx_state_free(&out);
	free(buf);
	args[0][131071] = 'a';
	args[0][131072] = '\0';
	ASSERT_NE(0, cprx_state_encode(&st, &buf, &len));
	free(args[0]);
}

TEST_HARNESS_MAIN
