/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * --crash-window MS, for cprx-guardian's tests: each update may end in a
 * SIGKILL of the VMM at a random point between its exec and the new
 * image's commit, the window a guardian covers.  A killer child, started
 * before cprx_exec, waits for the exec (its pipe's close-on-exec write end
 * closes then), sleeps what is left of a random delay of up to MS ms from
 * its start, and kills the VMM.  The new image stops it before it commits:
 * a killer that fired first has killed it by then, one stopped first never
 * fires, so no kill lands after the commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "vmm.h"

#define KILLER_ENV	"CPRX_VMM_KILLER"

static void __attribute__((noreturn)) killer(pid_t vmm, int rfd, uint64_t delay_ns)
{
	uint64_t t0 = now_ns(), left;
	struct timespec ts;
	char c;

	/* only the pipe: no copy of guest RAM or devices lives on in here */
	if (dup2(rfd, 0) == 0)
		syscall(SYS_close_range, 1, ~0u, 0);
	while (read(0, &c, 1) < 0 && errno == EINTR)
		;
	left = now_ns() - t0 < delay_ns ? delay_ns - (now_ns() - t0) : 0;
	ts.tv_sec = left / 1000000000u;
	ts.tv_nsec = left % 1000000000u;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	kill(vmm, SIGKILL);
	_exit(0);
}

/* Old image, just before cprx_exec. */
void crash_arm(struct vm *vm)
{
	uint64_t delay;
	char val[16];
	int p[2];
	pid_t pid;

	if (!vm->cfg.crash_window_ms)
		return;
	if (pipe2(p, O_CLOEXEC) < 0)
		die(EXIT_SETUP, "pipe2: %m");
	delay = mix64(now_ns() ^ ((uint64_t)getpid() << 32)) %
		((uint64_t)vm->cfg.crash_window_ms * 1000000u);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die(EXIT_SETUP, "fork: %m");
	if (!pid) {
		close(p[1]);
		killer(getppid(), p[0], delay);
	}
	close(p[0]);	/* p[1] stays until the exec closes it */
	snprintf(val, sizeof(val), "%d", (int)pid);
	setenv(KILLER_ENV, val, 1);
}

/* New image, before it commits; or the old one, its update refused. */
void crash_stop(void)
{
	const char *env = getenv(KILLER_ENV);
	pid_t pid = env ? (pid_t)atoi(env) : 0;

	unsetenv(KILLER_ENV);
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}
