// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guardian [options] -- VMM [ARGS...]
 *
 * Runs VMM with the guardian socket in $CPRX_GUARDIAN_FD and watches it by
 * pidfd.  When it dies after an update armed (cprx_exec) and before the
 * new image committed, restarts the previous binary from the guest's RAM,
 * devices and state, and watches that one.  Otherwise exits as the VMM
 * did.  Events go to stderr, one line each: "cprx-guardian: event=...".
 *
 * Exit: the VMM's status (128+N when killed by signal N); 4 when the VMM
 * died mid-update and could not be restarted (the guest is lost); 1 on a
 * usage or setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "guardian.h"
#include "cprx.h"

#define EXIT_SETUP	1
#define EXIT_LOST	4

void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "cprx-guardian: %s\n", line);
	fflush(stderr);
}

static void usage(FILE *f)
{
	fputs("usage: cprx-guardian [options] -- VMM [ARGS...]\n"
	      "Starts VMM as the guardian of its live updates: should it die\n"
	      "between cprx_exec and the new image's commit, the previous\n"
	      "binary is restarted from the guest's RAM, devices and state.\n"
	      "  --max-restarts N  restarts without a commit between them (3)\n"
	      "  --help            this text\n"
	      "  --version         cprx's version\n", f);
}

static int parse(int argc, char **argv, struct guardian *g)
{
	static const struct option opts[] = {
		{ "max-restarts", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	char *end;
	int c;

	g->max_restarts = 3;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			errno = 0;
			g->max_restarts = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || g->max_restarts > 1000) {
				fprintf(stderr, "cprx-guardian: --max-restarts: "
					"'%s' is not a number up to 1000\n", optarg);
				return -1;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("cprx-guardian %s\n", cprx_version_string());
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return -1;
	}
	g->argv = argv + optind;
	return 0;
}

/* Reaps the VMM; its status as an exit code, and in words. */
static int reap(struct guardian *g, char *how, size_t len)
{
	siginfo_t si = { 0 };

	if (waitid(P_PID, g->pid, &si, WEXITED) < 0)
		return snprintf(how, len, "lost"), EXIT_LOST;
	if (si.si_code == CLD_EXITED) {
		snprintf(how, len, "exit %d", si.si_status);
		return si.si_status;
	}
	snprintf(how, len, "signal %d (%s)", si.si_status,
		 strsignal(si.si_status));
	return 128 + si.si_status;
}

/*
 * The VMM died: what it sent before is read first, so that a commit it
 * made just before it died is never taken for an update in flight.
 */
static int vmm_died(struct guardian *g, bool *done)
{
	struct held *h = &g->held;
	char how[96], why[160];
	int status, ret;

	if (g->sock >= 0)
		held_receive(h, g->sock);
	status = reap(g, how, sizeof(how));
	if (!h->complete) {
		say("event=exit pid=%d status=\"%s\"", (int)g->pid, how);
		*done = true;
		return status;
	}
	snprintf(why, sizeof(why), "pid %d died mid-update (%s): restarted "
		 "by its guardian", (int)g->pid, how);
	say("event=died pid=%d status=\"%s\" mid-update", (int)g->pid, how);
	if (g->restarts++ >= g->max_restarts) {
		say("event=lost pid=%d what=\"%u restarts without a commit\"",
		    (int)g->pid, g->max_restarts);
		*done = true;
		return EXIT_LOST;
	}
	ret = vmm_restart(g, why);
	if (ret < 0) {
		say("event=lost pid=%d what=\"restart failed: %s\"",
		    (int)g->pid, strerror(-ret));
		*done = true;
		return EXIT_LOST;
	}
	return 0;
}

/* Signals asking us to stop go to the VMM: it decides, we follow. */
static void forward(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	static struct guardian g = { .sock = -1, .pidfd = -1 };
	struct sigaction sa = { .sa_handler = forward };
	bool done = false;
	int status = 0;

	if (parse(argc, argv, &g))
		return EXIT_SETUP;
	held_init(&g.held);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (vmm_start(&g) < 0) {
		fprintf(stderr, "cprx-guardian: cannot start %s: %m\n", g.argv[0]);
		return EXIT_SETUP;
	}
	while (!done) {
		struct pollfd p[2] = {
			{ .fd = g.pidfd, .events = POLLIN },
			{ .fd = g.sock, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) {
				kill(g.pid, SIGTERM);
				continue;
			}
			return EXIT_LOST;
		}
		if ((p[1].revents & POLLIN) && held_receive(&g.held, g.sock) > 0)
			g.restarts = 0;	/* a commit: the restarts start over */
		/* an image it committed may be the previous one of the next */
		if (p[1].revents & POLLIN)
			vmm_note_exe(&g);
		if (p[0].revents & POLLIN) {
			status = vmm_died(&g, &done);
			continue;
		}
		if (p[1].revents & (POLLHUP | POLLERR)) {
			/* the VMM closed its end: only its exit counts now */
			held_receive(&g.held, g.sock);
			close(g.sock);
			g.sock = -1;
		}
	}
	held_drop(&g.held);
	return status;
}
