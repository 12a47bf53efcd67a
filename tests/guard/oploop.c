// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Tight loops for the guard's overhead benchmark (tests/guard/ratio.sh):
 * the time of one operation, in ns, so that the same loop with and without
 * the guard loaded gives the ns the guard adds.
 *
 *   oploop ioctl N    N ioctl(FIONREAD)s on a pipe: every ioctl of the
 *                     machine passes the guard's ioctl hook, if it has one
 *   oploop exec N     execs itself N times (one process, execve only: no
 *                     fork in the measure), then prints
 *
 * Prints "<op> <N> <ns per op>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int loop_ioctl(long n)
{
	unsigned long long t0;
	int p[2], avail;
	long i;

	if (pipe(p) < 0) {
		perror("oploop: pipe");
		return 1;
	}
	for (i = 0; i < n / 10 + 1; i++)	/* warm up */
		ioctl(p[0], FIONREAD, &avail);
	t0 = now_ns();
	for (i = 0; i < n; i++)
		if (ioctl(p[0], FIONREAD, &avail) < 0) {
			perror("oploop: FIONREAD");
			return 1;
		}
	printf("ioctl %ld %.1f\n", n, (double)(now_ns() - t0) / n);
	return 0;
}

/* argv: exec LEFT TOTAL T0: the chain of execs carries its start time. */
static int loop_exec(char **argv)
{
	long left = atol(argv[2]), total = argv[3] ? atol(argv[3]) : left;
	unsigned long long t0 = argv[3] && argv[4] ? strtoull(argv[4], NULL, 10) :
				now_ns();
	char l[32], tot[32], t[32];
	char *next[] = { argv[0], "exec", l, tot, t, NULL };

	if (left <= 0) {
		printf("exec %ld %.1f\n", total, (double)(now_ns() - t0) / total);
		return 0;
	}
	snprintf(l, sizeof(l), "%ld", left - 1);
	snprintf(tot, sizeof(tot), "%ld", total);
	snprintf(t, sizeof(t), "%llu", t0);
	execv("/proc/self/exe", next);
	fprintf(stderr, "oploop: exec: %s\n", strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "ioctl"))
		return loop_ioctl(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "exec"))
		return loop_exec(argv);
	fprintf(stderr, "usage: oploop ioctl|exec N\n");
	return 2;
}
