// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test_vmm's runs of cprx-vmm (vmm_run.h): spawning, output capture with a
 * deadline, and the JSON lines of a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "vmm_run.h"

/* One VMM run: below the harness's 120 s; an emulated guest is far slower. */
#define RUN_SECS	(getenv("CPRX_IN_VM") ? 900 : 60)
#define DUMP_LINES	20	/* of each end of a long output */

const char *vmm_path(void)
{
	const char *p = getenv("CPRX_VMM");

	return p && *p ? p : "build/tools/cprx-vmm";
}

/* The v2-state build; NULL when meson did not build it. */
const char *vmm_next_path(void)
{
	const char *p = getenv("CPRX_VMM_NEXT");

	if (p)
		return *p ? p : NULL;
	/* run by hand from the source root: the sibling of cprx-vmm */
	return getenv("CPRX_VMM") ? NULL : "build/tools/cprx-vmm-next";
}

/* Output capture ------------------------------------------------------------ */

static void buf_add(char **buf, size_t *len, const char *d, size_t n)
{
	char *b = realloc(*buf, *len + n + 1);

	if (!b)
		abort();
	memcpy(b + *len, d, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
}

/* Parses the run's stdout, a JSON value per line (NULL where it is not). */
static void parse_lines(struct run *r)
{
	const char *l, *nl;
	int n = 0;

	for (l = r->out; (nl = strchr(l, '\n')); l = nl + 1)
		n++;
	r->lines = calloc(n ? n : 1, sizeof(*r->lines));
	if (!r->lines)
		abort();
	for (l = r->out; (nl = strchr(l, '\n')); l = nl + 1)
		r->lines[r->nr_lines++] = ju_parse(l, nl - l);
}

/* The child: pipes on 1 and 2, nothing else but stdin inherited. */
static void vmm_child(const char *const *argv, int out, int err)
{
	int null = open("/dev/null", O_RDONLY);

	/* If the test dies (harness timeout), the VMM must not outlive it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(err, 2) < 0)
		_exit(126);
	/*
	 * Whatever the test runner leaked to us without O_CLOEXEC would show
	 * up in the VMM's fd list as token null, and trip its preflight.
	 */
	syscall(SYS_close_range, 3, ~0U, 0);
	execv(argv[0], (char *const *)argv);
	dprintf(2, "exec %s: %m\n", argv[0]);
	_exit(127);
}

/* Drains both pipes until EOF or @deadline; returns 0 or -ETIMEDOUT. */
static int drain(struct run *r, int out, int err, long long deadline)
{
	struct pollfd pfd[2] = { { out, POLLIN, 0 }, { err, POLLIN, 0 } };
	char buf[65536];
	long long left;
	ssize_t n;
	int i;

	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		left = deadline - th_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
			return -errno;
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[i].fd = -1;		/* negative: ignored */
				continue;
			}
			if (i == 0)
				buf_add(&r->out, &r->out_len, buf, n);
			else
				buf_add(&r->err, &r->err_len, buf, n);
		}
	}
	return 0;
}

/* Reaps @pid by @deadline, else kills it; returns 0 or -ETIMEDOUT. */
static int reap(pid_t pid, int *status, long long deadline)
{
	while (waitpid(pid, status, WNOHANG) == 0) {
		if (th_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	return 0;
}

void vmm_spawn(struct run *r, const char *const *args)
{
	prog_spawn(r, vmm_path(), args);
}

void prog_spawn(struct run *r, const char *prog, const char *const *args)
{
	const char *argv[MAX_ARGS + 2] = { prog };
	int out[2], err[2], status = 0, ret, n = 1;
	long long start, deadline;
	size_t off;

	memset(r, 0, sizeof(*r));
	off = snprintf(r->cmd, sizeof(r->cmd), "%s", argv[0]);
	for (; *args && n <= MAX_ARGS; args++, n++) {
		argv[n] = *args;
		if (off < sizeof(r->cmd))
			off += snprintf(r->cmd + off, sizeof(r->cmd) - off,
					" %s", *args);
	}
	ASSERT_NULL(*args);
	argv[n] = NULL;
	buf_add(&r->out, &r->out_len, "", 0);
	buf_add(&r->err, &r->err_len, "", 0);

	ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(err, O_CLOEXEC));
	fflush(stdout);
	start = th_now_ms();
	deadline = start + RUN_SECS * 1000LL;
	r->pid = fork();
	ASSERT_GE(r->pid, 0);
	if (!r->pid)
		vmm_child(argv, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	ret = drain(r, out[0], err[0], deadline);
	close(out[0]);
	close(err[0]);
	if (ret == -ETIMEDOUT) {
		kill(r->pid, SIGKILL);
		waitpid(r->pid, &status, 0);
	} else {
		ret = reap(r->pid, &status, deadline);
	}
	r->ms = th_now_ms() - start;
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) :
		  -WTERMSIG(status);
	parse_lines(r);
	TH_CHECK(ret != -ETIMEDOUT, 1, "'%s' to finish within %d s",
		 r->cmd, RUN_SECS);
	ASSERT_EQ(0, ret);
}


static void dump_text(const char *what, const char *text)
{
	const char *p, *nl;
	int lines = 0, i = 0;

	for (p = text; *p; p = nl ? nl + 1 : p + strlen(p), lines++)
		nl = strchr(p, '\n');
	for (p = text; *p; p = nl ? nl + 1 : p + strlen(p), i++) {
		nl = strchr(p, '\n');
		if (lines > 2 * DUMP_LINES && i == DUMP_LINES)
			TH_LOG("  ... %d lines ...", lines - 2 * DUMP_LINES);
		if (lines > 2 * DUMP_LINES && i >= DUMP_LINES &&
		    i < lines - DUMP_LINES)
			continue;
		TH_LOG("  %s: %.*s", what,
		       (int)(nl ? nl - p : (long)strlen(p)), p);
	}
}

/* A run's command line, status and output (the ends of a long one). */
void run_log(const struct run *r)
{
	TH_LOG("  pid %d, exit %d, %lld ms", r->pid, r->code, r->ms);
	dump_text("stdout", r->out ? r->out : "");
	dump_text("stderr", r->err ? r->err : "");
}

void runs_end(struct run *runs, int n, bool failed)
{
	for (int i = 0; i < n; i++) {
		if (failed) {
			TH_LOG("run %d: %s", i + 1, runs[i].cmd);
			run_log(&runs[i]);
		}
		run_free(&runs[i]);
	}
}

void run_free(struct run *r)
{
	int i;

	free(r->out);
	free(r->err);
	for (i = 0; i < r->nr_lines; i++)
		if (r->lines[i])
			json_node_unref(r->lines[i]);
	free(r->lines);
}

/* Reading the JSON lines ------------------------------------------------------- */

/* The @nth (from 0) line whose "event" is @ev: its index, or -1. */
int event_at(const struct run *r, const char *ev, int nth)
{
	const char *e;
	int i;

	for (i = 0; i < r->nr_lines; i++) {
		e = ju_str(r->lines[i], "event");
		if (e && !strcmp(e, ev) && nth-- == 0)
			return i;
	}
	return -1;
}

/* The @nth (from 0) line whose "event" is @ev, or NULL. */
JsonNode *event(const struct run *r, const char *ev, int nth)
{
	int i = event_at(r, ev, nth);

	return i < 0 ? NULL : r->lines[i];
}

int count_events(const struct run *r, const char *ev)
{
	int n = 0;

	while (event(r, ev, n))
		n++;
	return n;
}

/* Every stdout line is one whole object, as --help promises. */
void check_lines(const struct run *r)
{
	const char *l = r->out, *nl;
	int i;

	for (i = 0; i < r->nr_lines; i++, l = nl + 1) {
		nl = strchr(l, '\n');
		TH_CHECK(r->lines[i] && JSON_NODE_HOLDS_OBJECT(r->lines[i]), 0,
			 "one JSON object on the line '%.80s'", l);
	}
	TH_CHECK(!*l, 0, "a newline at the end of the output '%.80s'", l);
}


/* Reads the "fds" array of the exit line; -1 entries when malformed. */
struct fd_list fds_of(JsonNode *exit_line)
{
	struct fd_list f = { 0, 0, 0 };
	JsonArray *fds = ju_array(exit_line, "fds");
	const char *tok;
	JsonNode *fd;
	guint i;

	if (!fds)
		return (struct fd_list){ -1, -1, -1 };
	for (i = 0; i < json_array_get_length(fds); i++) {
		fd = json_array_get_element(fds, i);
		if (!JSON_NODE_HOLDS_OBJECT(fd))
			return (struct fd_list){ -1, -1, -1 };
		f.nr++;
		tok = ju_str(fd, "token");
		if (!tok)
			f.untokened++;
		else if (!strcmp(tok, "ram0"))
			f.ram = 1;
	}
	return f;
}
