// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Preflight's probe: runs the new binary (e.g. with --version) the way the
 * update will exec it, and names why it does not run, before the guest
 * stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include "internal.h"
#include "preflight.h"
#include "errname.h"
#include "guard_reader.h"

#define PROBE_TIMEOUT_MS 10000

/* preflight.c's report() and hint(), under the names the checks use there */
#define report(...)	cprx_pf_report(__VA_ARGS__)
#define hint(pf, h)	cprx_pf_hint(pf, h)

extern char **environ;

/*
 * Collects what the probe printed and waits for it, within a deadline.
 * Only a probe still ours (not yet reaped by anyone) is killed at the end.
 */
static int probe_wait(pid_t pid, int rfd, char *out, size_t len, int *status)
{
	struct timespec t0, t;
	size_t got = 0;
	int elapsed = 0;
	ssize_t n;
	pid_t ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (elapsed < PROBE_TIMEOUT_MS) {
		struct pollfd p = { .fd = rfd, .events = POLLIN };

		if (poll(&p, 1, 100) > 0) {
			char tmp[512];

			n = read(rfd, tmp, sizeof(tmp));
			if (n > 0 && got < len - 1) {
				size_t k = (size_t)n < len - 1 - got ? (size_t)n
								      : len - 1 - got;
				memcpy(out + got, tmp, k);
				got += k;
			}
		}
		ret = waitpid(pid, status, WNOHANG);
		if (ret == pid || (ret < 0 && errno == ECHILD)) {
			/* ECHILD: gone, reaped by the kernel or the VMM */
			out[got] = '\0';
			return ret < 0 ? -ECHILD : 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		elapsed = (t.tv_sec - t0.tv_sec) * 1000 +
			  (t.tv_nsec - t0.tv_nsec) / 1000000;
	}
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	out[got] = '\0';
	return -ETIMEDOUT;
}

static void first_line(char *s)
{
	s[strcspn(s, "\n")] = '\0';
}

static void probe_spawned(struct preflight *pf, const char *path, pid_t pid,
			  int rfd)
{
	char out[1024];
	int status = 0, ret;

	ret = probe_wait(pid, rfd, out, sizeof(out), &status);
	if (ret == -ECHILD) {
		first_line(out);
		report(pf, "probe", CPRX_WARN, 0, "'%s' ran, but its exit status "
		       "was taken by the VMM (SIGCHLD ignored, SA_NOCLDWAIT or a "
		       "waitpid(-1)): %s", path, *out ? out : "(no output)");
		return;
	}
	if (ret) {
		hint(pf, "make the probe argv one that exits at once (--version)");
		report(pf, "probe", CPRX_FAIL, ETIMEDOUT, "'%s' did not exit within "
		       "%d s", path, PROBE_TIMEOUT_MS / 1000);
		return;
	}
	first_line(out);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		report(pf, "probe", CPRX_PASS, 0, "'%s' ran: %s", path,
		       *out ? out : "(no output)");
	} else if (WIFEXITED(status)) {
		hint(pf, WEXITSTATUS(status) == 127 ?
		     "install the libraries the new binary needs (ldd)" :
		     "run the probe command by hand to see why it fails");
		report(pf, "probe", CPRX_FAIL, ELIBBAD, "'%s' exited with %d: %s",
		       path, WEXITSTATUS(status), *out ? out : "(no output)");
	} else {
		hint(pf, "run the probe command by hand to see why it fails");
		report(pf, "probe", CPRX_FAIL, ELIBBAD, "'%s' killed by signal %d: %s",
		       path, WTERMSIG(status), *out ? out : "(no output)");
	}
}

static void probe_refused(struct preflight *pf, const char *path, int err)
{
	unsigned int nr;
	char lsm[256];

	if (err == EPERM) {
		char msg[CPRX_MSG_MAX], h[CPRX_MSG_MAX];

		if (cprx_guard_explain(path, pf->s->backend == &cprx_backend_kmod,
				       msg, sizeof(msg), h, sizeof(h))) {
			hint(pf, h);
			report(pf, "probe", CPRX_FAIL, EPERM, "%s", msg);
			return;
		}
		cprx_describe_lsm(lsm, sizeof(lsm));
		if (cprx_seccomp_mode(&nr) == 2) {
			hint(pf, "allow execve in the VMM's sandbox (e.g. QEMU "
			     "-sandbox on,spawn=allow) for live update");
			report(pf, "probe", CPRX_FAIL, EPERM, "exec of '%s' refused: "
			       "a seccomp filter (%u) blocks execve", path, nr);
		} else {
			hint(pf, "check the LSM policy for a rule that denies this exec");
			report(pf, "probe", CPRX_FAIL, EPERM, "exec of '%s' refused "
			       "by an LSM (active: %s)", path, lsm);
		}
		return;
	}
	hint(pf, "fix the new binary; the binary check above says more");
	report(pf, "probe", CPRX_FAIL, err, "exec of '%s' failed: %s (%s)", path,
	       strerror(err), cprx_errname(err));
}

/* vfork-style spawn: a large guest address space is not copied. */
void cprx_pf_probe(struct preflight *pf, const char *path,
			char *const probe_argv[])
{
	posix_spawn_file_actions_t fa;
	char **argv;
	int pfd[2], in[2] = { -1, -1 }, err, n;
	pid_t pid;

	for (n = 0; probe_argv[n]; n++)
		;
	argv = calloc(n + 2, sizeof(char *));
	if (!argv || pipe2(pfd, O_CLOEXEC) < 0) {
		free(argv);
		report(pf, "probe", CPRX_WARN, 0, "could not set up the probe");
		return;
	}
	/* stdin at EOF: a pipe with no writer, for a jail has no /dev/null */
	if (pipe2(in, O_CLOEXEC) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		free(argv);
		report(pf, "probe", CPRX_WARN, 0, "could not set up the probe");
		return;
	}
	close(in[1]);
	memcpy(argv, probe_argv, n * sizeof(char *));
	argv[0] = (char *)path;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	err = posix_spawn(&pid, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	close(in[0]);
	if (err)
		probe_refused(pf, path, err);
	else
		probe_spawned(pf, path, pid, pfd[0]);
	close(pfd[0]);
	free(argv);
}
