/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: shared types.  A *config* is one line of the pause plot (the
 * library with one set of options, or a baseline); a *cell* is a config at
 * one RAM size, with its samples.
 */
#ifndef CPRX_BENCH_H
#define CPRX_BENCH_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Contiguous spans of the update's timeline, STOP to RESUMED; the verify
 * span (cprx-vmm's own RAM check) is left out, as pause_ms leaves it out.
 * prepare: from the state written to execve (keeper, fd flags, arming).
 */
enum seg {
	SEG_STOP,	/* stop -> stopped */
	SEG_SAVE,	/* stopped -> save_end (copy: RAM written out) */
	SEG_PREPARE,	/* save_end -> exec */
	SEG_EXEC,	/* exec -> incoming (execve and the dynamic loader) */
	SEG_RECLAIM,	/* incoming -> reclaim_end */
	SEG_REMAP,	/* reclaim_end -> remap_end (copy: RAM read back) */
	SEG_RESUME,	/* verify_end -> resumed */
	NR_SEGS
};

extern const char *const seg_names[NR_SEGS];

enum kind { KIND_CPRX, KIND_FLOOR, KIND_NAIVE, KIND_COPY };

extern const char *const kind_names[];

struct config {
	enum kind kind;
	char pages[8];		/* 4k, thp, hugetlb */
	char backend[8];	/* cloexec, kmod; "-" for baselines */
	char teardown[10];	/* deferred, inline */
	char state[8];		/* memfd, file; "-" for baselines */
	unsigned int vcpus;
	unsigned int devices;	/* extra device fds (cprx-vmm --devices) */
	char label[96];
};

struct sample {
	double pause_ms;
	double seg[NR_SEGS];
	double kernel_ms;	/* guard's exec check -> commit; NAN if none */
};

struct cell {
	struct config *cfg;
	uint64_t size;
	char size_label[16];
	GArray *samples;	/* struct sample */
	char *skipped;		/* why it did not run, or NULL */
	/* filled by cell_stats() */
	double median, min, max, seg_median[NR_SEGS], kernel_median;
};

struct machine {
	char kernel[160];
	char cpu[128];
	unsigned int cores;
	uint64_t mem_bytes;
	char host[72];
};

struct bench {
	/* what to run */
	GPtrArray *configs;	/* struct config * */
	GArray *sizes;		/* uint64_t */
	unsigned int reps, copy_reps, run_ms, rounds;
	uint64_t copy_max;
	char *vmm, *out, *copy_dir;
	bool progress, plots;
	struct guard_trace *guard;	/* --guard-timeline: guard.c */
	bool timeline;			/* --guard-timeline: a kernel column */
	/* results */
	GPtrArray *cells;	/* struct cell *, in run order */
	GPtrArray *notes;	/* char *: skips and hooks, for every output */
	struct machine m;
	char *command;
	char started[32];
	double seconds;
};

/*
 * The command line (cprx-bench.c); the sweep's lists are parsed by
 * configs.c.  sizes unset: SIZES_DEFAULT, or QEMU_SIZES_DEFAULT with --qemu.
 */
#define SIZES_DEFAULT "256M,1G,4G,16G"
#define QEMU_SIZES_DEFAULT "256M,1G,4G"

struct options {
	char *sizes, *pages, *backends, *teardowns, *states, *vcpus, *devices;
	char *baselines;
	char *vmm, *out, *copy_dir, *copy_max, *vm_kernel, *vm_mem;
	int reps, copy_reps, run_ms, rounds;
	gboolean no_progress, no_plots, qemu, vm, guard, kexec, kexec_clock;
	gboolean kexec_reuse;
};

/* configs.c */
char **split(const char *list);
bool build_configs(struct bench *b, const struct options *o);

/* sweep.c */
void sweep(struct bench *b);

/*
 * guard.c: --guard-timeline.  start runs `cprx-guard trace --json` (false,
 * said, when it cannot); fill gives the @n samples of cprx-vmm @pid their
 * kernel_ms; stop ends the trace.
 */
struct guard_trace;
bool guard_trace_start(struct bench *b);
void guard_trace_fill(struct bench *b, pid_t pid, struct sample *s,
		      unsigned int n);
void guard_trace_stop(struct bench *b);

/* qemu.c */
int run_qemu(const struct options *o);

/* vm.c */
int run_vm(const struct options *o, int argc, char **argv);

/* sysinfo.c */
void machine_read(struct machine *m);
char *machine_line(const struct machine *m);
uint64_t mem_available(void);
uint64_t hugetlb_free_bytes(void);
bool thp_shmem_usable(char *why, size_t len);
int parse_size(const char *s, uint64_t *out);
void size_label(uint64_t n, char *buf, size_t len);

/* stats.c; median_of: @n values @stride doubles apart, NANs left out */
double median_of(const double *v, unsigned int n, size_t stride);
void cell_stats(struct cell *c);
/* pause over the floor's at the same size, pages and vCPUs; NAN if none */
double vs_floor(const struct bench *b, const struct cell *c);
/* the smallest and largest sizes at which @cfg ran */
void size_span(const struct bench *b, const struct config *cfg,
	       const struct cell **lo, const struct cell **hi);

/* report.c: every file in --out; 0 or 1 */
int report_files(const struct bench *b);
FILE *out_open(const struct bench *b, const char *name);
int out_close(FILE *f);

/* report_text.c */
void report_terminal(const struct bench *b);
int write_table_md(const struct bench *b);

/* report_csv.c */
int write_samples_csv(const struct bench *b);
int write_summary_csv(const struct bench *b);

/* report_json.c */
int write_json(const struct bench *b);

/* report_plots.c */
int report_plots(const struct bench *b);

/* progress.c */
void progress_start(bool on, unsigned int total);
void progress_step(const char *what);
void progress_note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void progress_end(void);

#endif /* CPRX_BENCH_H */
