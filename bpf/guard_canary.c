// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The load-time canary: the proof, before cprx-guard says ENFORCING, that
 * the attached LSM programs really refuse.  Attached is not the same as
 * running: programs attached while 'bpf' is not an active LSM, or on a
 * kernel that accepts the link but never calls the hook, refuse nothing.
 *
 * The canary is a child placed in a cgroup of its own, which the loader
 * guards through a cgroup slot of its own, after the policy's (a full
 * policy keeps all of its slots); it execs a memfd copy of cprx-guard (an
 * inode no allow rule can name) and must get EPERM, and
 * this guard's own "denied" counter must have moved, so an EPERM from
 * anything else (another LSM, another guard during a reload) is not taken
 * for ours.  Afterwards the slot is emptied and the cgroup removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "guard_tool.h"

#ifndef MFD_EXEC
#define MFD_EXEC	0x0010U	/* Linux 6.3: exec allowed under memfd_noexec */
#endif

/* Directly under the cgroup2 root: at CG_CANARY_LEVEL. */
gboolean cg_canary_prepare(__u64 *slot_id, char **dir, GError **err)
{
	char mnt[PATH_MAX];
	struct stat st;

	*dir = NULL;
	if (!cg_cgroup2_mount(mnt, sizeof(mnt), err))
		return FALSE;
	*dir = g_strdup_printf("%s/cprx-guard-canary.%ld", mnt, (long)getpid());
	if (mkdir(*dir, 0700) < 0 && errno != EEXIST) {
		g_set_error(err, CG_ERROR, errno, "cannot create the canary "
			    "cgroup %s: %s", *dir, g_strerror(errno));
		g_clear_pointer(dir, g_free);
		return FALSE;
	}
	/* the cgroup's id is its directory's inode number */
	if (stat(*dir, &st) < 0) {
		g_set_error(err, CG_ERROR, errno, "cannot guard the canary "
			    "cgroup %s: %s", *dir, g_strerror(errno));
		rmdir(*dir);
		g_clear_pointer(dir, g_free);
		return FALSE;
	}
	*slot_id = st.st_ino;
	return TRUE;
}

void cg_canary_remove(__u64 *slot_id, const char *dir)
{
	int tries;

	if (!dir)
		return;
	*slot_id = 0;
	/* an exited child leaves its cgroup asynchronously */
	for (tries = 0; tries < 50 && rmdir(dir) < 0 && errno == EBUSY; tries++)
		g_usleep(20 * 1000);
}

/* The sum of a per-CPU counter of the guard's `stats` map. */
static __u64 counter(int stats_fd, __u32 key)
{
	int i, ncpu = libbpf_num_possible_cpus();
	g_autofree __u64 *vals = g_new0(__u64, ncpu > 0 ? ncpu : 1);
	__u64 sum = 0;

	if (ncpu <= 0 || bpf_map_lookup_elem(stats_fd, &key, vals))
		return 0;
	for (i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

/* A copy of this binary in a memfd: an inode no allow rule names. */
static int self_copy(GError **err)
{
	int src, fd = memfd_create("cprx-guard-canary", MFD_CLOEXEC | MFD_EXEC);
	struct stat sb;
	off_t off = 0;

	if (fd < 0 && errno == EINVAL)
		fd = memfd_create("cprx-guard-canary", MFD_CLOEXEC);
	src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || src < 0 || fstat(src, &sb) < 0)
		goto fail;
	while (off < sb.st_size)
		if (sendfile(fd, src, &off, sb.st_size - off) <= 0)
			goto fail;
	close(src);
	return fd;
fail:
	g_set_error(err, CG_ERROR, errno, "cannot make the canary binary: %s",
		    g_strerror(errno));
	if (src >= 0)
		close(src);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* In the child: join the canary cgroup, exec, report the errno. */
static void __attribute__((noreturn))
canary_child(const char *dir, int exe, int report)
{
	char *argv[] = { "cprx-guard", "canary-exec-was-allowed", NULL };
	char *envp[] = { NULL };
	g_autofree char *procs = g_build_filename(dir, "cgroup.procs", NULL);
	int fd = open(procs, O_WRONLY | O_CLOEXEC), null;
	int e;

	if (fd < 0 || write(fd, "0", 1) != 1) {
		e = -errno;	/* negative: could not join, not the exec */
		if (write(report, &e, sizeof(e)) < 0)
			_exit(126);
		_exit(126);
	}
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	fexecve(exe, argv, envp);
	e = errno;
	if (write(report, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

/* The errno of the child's exec, 0 if it ran, < 0 if it never tried. */
static int canary_exec(const char *dir, int exe, GError **err)
{
	int pipefd[2], e = 0, st;
	pid_t pid;
	ssize_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		g_set_error(err, CG_ERROR, errno, "canary: pipe: %s",
			    g_strerror(errno));
		return INT_MIN;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		canary_child(dir, exe, pipefd[1]);
	close(pipefd[1]);
	if (pid < 0) {
		g_set_error(err, CG_ERROR, errno, "canary: fork: %s",
			    g_strerror(errno));
		close(pipefd[0]);
		return INT_MIN;
	}
	do {
		n = read(pipefd[0], &e, sizeof(e));
	} while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return n == sizeof(e) ? e : 0;
}

gboolean cg_canary_run(const char *dir, int stats_fd, GError **err)
{
	__u64 before, after;
	int exe, e;

	exe = self_copy(err);
	if (exe < 0)
		return FALSE;
	before = counter(stats_fd, CG_ST_DENIED);
	e = canary_exec(dir, exe, err);
	after = counter(stats_fd, CG_ST_DENIED);
	close(exe);
	if (e == INT_MIN)
		return FALSE;
	if (e < 0) {
		g_set_error(err, CG_ERROR, -e, "the canary could not join its "
			    "cgroup %s: %s", dir, g_strerror(-e));
		return FALSE;
	}
	if (e == EPERM && after > before)
		return TRUE;
	if (e == 0)
		g_set_error(err, CG_ERROR, EPERM, "the canary, a guarded process, "
			    "exec'd a binary that is not allow-listed: the LSM "
			    "programs are attached but do not run (is 'bpf' in "
			    "the kernel's active LSMs? boot with lsm=...,bpf)");
	else if (e == EPERM)
		g_set_error(err, CG_ERROR, EPERM, "the canary's exec was refused "
			    "with EPERM, but not by this guard (its deny counter "
			    "did not move): its programs do not run");
	else
		g_set_error(err, CG_ERROR, e, "the canary's exec failed with %s, "
			    "not EPERM: enforcement is unproven", g_strerror(e));
	return FALSE;
}
