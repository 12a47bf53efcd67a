/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_vmm's runs of the synthetic VMM: spawn $CPRX_VMM with its stdout and
 * stderr on pipes, collect both until it exits (or a deadline), and read
 * its stdout as JSON lines, one per event (json_util.h).
 */
#ifndef CPRX_TESTS_VMM_RUN_H
#define CPRX_TESTS_VMM_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "json_util.h"

#define MAX_ARGS	32

struct run {
	char cmd[1024];
	pid_t pid;
	int code;		/* exit status, or -signal */
	long long ms;		/* wall time of the run */
	char *out, *err;	/* NUL-terminated */
	size_t out_len, err_len;
	JsonNode **lines;	/* stdout parsed, a line each; NULL: not JSON */
	int nr_lines;
};

/* $CPRX_VMM, else the build tree's, for a run by hand from the source root. */
const char *vmm_path(void);
/* The v2-state build; NULL when meson did not build it. */
const char *vmm_next_path(void);

/*
 * Runs the VMM with @args (NULL-terminated), fully, and records it in @r;
 * a fatal assertion when it cannot be run or does not finish in time.
 */
void vmm_spawn(struct run *r, const char *const *args);
/* The same for another program @prog (cprx-guardian running the VMM). */
void prog_spawn(struct run *r, const char *prog, const char *const *args);
/* Logs @r's pid, status, time and output (TH_LOG); its command is not. */
void run_log(const struct run *r);
void run_free(struct run *r);
/* Frees @n runs, logging each first when the test @failed. */
void runs_end(struct run *runs, int n, bool failed);

/* The @nth (from 0) line whose "event" is @ev: its index, or -1. */
int event_at(const struct run *r, const char *ev, int nth);
/* The @nth (from 0) line whose "event" is @ev, or NULL. */
JsonNode *event(const struct run *r, const char *ev, int nth);
int count_events(const struct run *r, const char *ev);
/* Every stdout line is one whole object, as --help promises. */
void check_lines(const struct run *r);

struct fd_list {
	int nr;			/* entries */
	int untokened;		/* fds the VMM did not preserve: "token":null */
	int ram;		/* the guest RAM memfd is among them */
};

/* Reads the "fds" array of the exit line; -1 entries when malformed. */
struct fd_list fds_of(JsonNode *exit_line);

#endif /* CPRX_TESTS_VMM_RUN_H */
