/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: the pause of cprx-vmm live updates over a sweep (RAM size,
 * page kind, backend, teardown, state target, vCPUs, device fds), with the
 * baselines measured in the same run so that ratios hold on a noisy machine.
 *
 * Each cell (a configuration at one RAM size) is one cprx-vmm process doing
 * --reps updates in a row: every sample is a real update of a populated
 * guest, and the guest is populated once per cell, not per sample.  Cells
 * are interleaved per size so that all configurations see the same load.
 *
 * This file: the command line and main.  The configurations are built in
 * configs.c, run in sweep.c (--qemu: qemu.c, --vm: vm.c), reported in
 * report*.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "kexec.h"

const char *const seg_names[NR_SEGS] = {
	"stop", "save", "prepare", "exec", "reclaim", "remap", "resume",
};
const char *const kind_names[] = { "cprx", "floor", "naive", "copy" };

/* Options ------------------------------------------------------------------ */

static struct options opts = {
	.pages = "4k", .backends = "cloexec", .teardowns = "deferred",
	.states = "memfd", .vcpus = "2", .devices = "0",
	.baselines = "floor,naive,copy", .out = "bench-out",
	.vm_kernel = "bookworm", .vm_mem = "3G",
	.reps = -1, .copy_reps = 0, .run_ms = 100, .rounds = 1,
};

static const GOptionEntry entries[] = {
	{ "sizes", 's', 0, G_OPTION_ARG_STRING, &opts.sizes,
	  "RAM sizes (256M,1G,4G,16G; with --qemu 256M,1G,4G)", "LIST" },
	{ "pages", 'p', 0, G_OPTION_ARG_STRING, &opts.pages,
	  "Page kinds: 4k, thp, hugetlb (4k)", "LIST" },
	{ "backends", 'b', 0, G_OPTION_ARG_STRING, &opts.backends,
	  "libcprx backends: cloexec, kmod (cloexec; kmod needs /dev/cprx)", "LIST" },
	{ "teardown", 't', 0, G_OPTION_ARG_STRING, &opts.teardowns,
	  "Old address space torn down: deferred, inline (deferred)", "LIST" },
	{ "states", 0, 0, G_OPTION_ARG_STRING, &opts.states,
	  "State target: memfd, file (memfd)", "LIST" },
	{ "vcpus", 'c', 0, G_OPTION_ARG_STRING, &opts.vcpus, "vCPU counts (2)", "LIST" },
	{ "devices", 'd', 0, G_OPTION_ARG_STRING, &opts.devices,
	  "Extra device fds, 0..1000, on top of the 6 standard ones (0)", "LIST" },
	{ "reps", 'r', 0, G_OPTION_ARG_INT, &opts.reps,
	  "Updates per cell, i.e. samples (5); with --kexec guest runs per size (1)", "N" },
	{ "rounds", 'R', 0, G_OPTION_ARG_INT, &opts.rounds,
	  "Run every size's cells this many times, interleaved, so that a burst "
	  "of load hits all configurations alike (1)", "N" },
	{ "baselines", 'B', 0, G_OPTION_ARG_STRING, &opts.baselines,
	  "Baselines: floor, naive, copy, or none (floor,naive,copy)", "LIST" },
	{ "copy-reps", 0, 0, G_OPTION_ARG_INT, &opts.copy_reps,
	  "Samples of the copy baseline (--reps)", "N" },
	{ "copy-max", 0, 0, G_OPTION_ARG_STRING, &opts.copy_max,
	  "Largest size the copy baseline runs at (no limit)", "SIZE" },
	{ "copy-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts.copy_dir,
	  "Where the copy baseline writes RAM ($TMPDIR or /var/tmp)", "DIR" },
	{ "qemu", 0, 0, G_OPTION_ARG_NONE, &opts.qemu,
	  "Real QEMU instead: cpr-exec pause of stock 10.2.2, 10.2.2 patched to "
	  "use libcprx and stock 11.x side by side, by hand, and migration to a "
	  "file + restart (qemu-integration/bench.sh; --sizes 256M,1G,4G)", NULL },
	{ "guard-timeline", 0, 0, G_OPTION_ARG_NONE, &opts.guard,
	  "Each update's kernel exec span (exec check -> commit) from the bpf/ "
	  "guard's timestamps, beside libcprx's own (root, a loaded guard that "
	  "sees cprx-vmm: the VM tier)", NULL },
	{ "run-ms", 0, 0, G_OPTION_ARG_INT, &opts.run_ms,
	  "Guest run time between updates (100)", "MS" },
	{ "vmm", 0, 0, G_OPTION_ARG_FILENAME, &opts.vmm,
	  "cprx-vmm binary (the build's, or $CPRX_VMM)", "PATH" },
	{ "out", 'o', 0, G_OPTION_ARG_FILENAME, &opts.out,
	  "Output directory (bench-out)", "DIR" },
	{ "no-progress", 0, 0, G_OPTION_ARG_NONE, &opts.no_progress,
	  "No progress bar (there is none off a terminal anyway)", NULL },
	{ "no-plots", 0, 0, G_OPTION_ARG_NONE, &opts.no_plots,
	  "Do not render plots (the gnuplot script is still written)", NULL },
	{ "vm", 0, 0, G_OPTION_ARG_NONE, &opts.vm,
	  "Run the same sweep in the VM tier's guest (kmod backend)", NULL },
	{ "vm-kernel", 0, 0, G_OPTION_ARG_STRING, &opts.vm_kernel,
	  "Guest kernel for --vm: bookworm, sid (bookworm)", "NAME" },
	{ "vm-mem", 0, 0, G_OPTION_ARG_STRING, &opts.vm_mem,
	  "Guest memory for --vm (3G)", "SIZE" },
	{ "kexec", 0, 0, G_OPTION_ARG_NONE, &opts.kexec,
	  "Blackout across a kexec of the VM tier's research kernel: cprx-vmm --kexec "
	  "(LUO) against RAM through a file, same guest run (sizes 256M,1G; reps 1)",
	  NULL },
	{ "kexec-reuse", 0, 0, G_OPTION_ARG_NONE, &opts.kexec_reuse,
	  "With --kexec: no guest run, report from the records already in --out", NULL },
	{ "kexec-clock", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &opts.kexec_clock,
	  "(in the guest) the TSC against the kernel log's clock", NULL },
	{ NULL }
};

static const char summary[] =
	"Pause of cprx-vmm live updates over a sweep, with baselines measured in\n"
	"the same run:\n"
	"  floor  execve of the same binary with the RAM mapped, old mm torn down\n"
	"         off the critical path; nothing saved, nothing reclaimed\n"
	"  naive  the same with the teardown inside execve\n"
	"  copy   RAM written to a file and read back after the exec\n"
	"Each cell (configuration x size) is one cprx-vmm doing --reps updates.\n"
	"Writes samples.csv, summary.csv, results.json, table.md, pause.{png,svg}\n"
	"and breakdown.{png,svg} (gnuplot) to --out.";

/* Hooks for what has not landed ------------------------------------------ */

/* main -------------------------------------------------------------------- */

static char *default_vmm(void)
{
	const char *env = g_getenv("CPRX_VMM");
	g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
	g_autofree char *dir = self ? g_path_get_dirname(self) : g_strdup(".");

	if (env && *env)
		return g_strdup(env);
	return g_build_filename(dir, "..", "tools", "cprx-vmm", NULL);
}

static void cell_free(void *p)
{
	struct cell *c = p;

	g_array_unref(c->samples);
	g_free(c->skipped);
	g_free(c);
}

static bool setup(struct bench *b, const struct options *o, int argc, char **argv)
{
	b->configs = g_ptr_array_new_with_free_func(g_free);
	b->sizes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	b->cells = g_ptr_array_new_with_free_func(cell_free);
	b->notes = g_ptr_array_new_with_free_func(g_free);
	b->reps = (unsigned int)o->reps;
	b->copy_reps = (unsigned int)o->copy_reps;
	b->run_ms = (unsigned int)o->run_ms;
	b->rounds = (unsigned int)o->rounds;
	b->vmm = o->vmm ? g_strdup(o->vmm) : default_vmm();
	b->out = o->out;
	b->copy_dir = g_strdup(o->copy_dir ? o->copy_dir : g_getenv("TMPDIR") ?
			       g_getenv("TMPDIR") : "/var/tmp");
	b->progress = !o->no_progress;
	b->plots = !o->no_plots;
	b->command = g_strjoinv(" ", argv);
	(void)argc;
	if (o->reps < 1 || o->reps > 10000 || o->copy_reps < 0 || o->run_ms < 0 ||
	    o->rounds < 1 || o->rounds > 1000) {
		g_printerr("cprx-bench: --reps 1..10000, --rounds 1..1000, --copy-reps "
			   "and --run-ms >= 0\n");
		return false;
	}
	if (o->copy_max && parse_size(o->copy_max, &b->copy_max) < 0) {
		g_printerr("cprx-bench: --copy-max: '%s' is not a size\n", o->copy_max);
		return false;
	}
	if (access(b->vmm, X_OK)) {
		g_printerr("cprx-bench: cprx-vmm not found at %s (--vmm PATH or $CPRX_VMM)\n",
			   b->vmm);
		return false;
	}
	if (g_mkdir_with_parents(b->out, 0755) < 0) {
		g_printerr("cprx-bench: --out %s: %s\n", b->out, g_strerror(errno));
		return false;
	}
	machine_read(&b->m);
	return build_configs(b, o);
}

/* Everything setup() and the sweep allocated: a leak checker sees none. */
static void bench_free(struct bench *b)
{
	if (b->cells)
		g_ptr_array_unref(b->cells);
	if (b->configs)
		g_ptr_array_unref(b->configs);
	if (b->sizes)
		g_array_unref(b->sizes);
	if (b->notes)
		g_ptr_array_unref(b->notes);
	g_free(b->vmm);
	g_free(b->copy_dir);
	g_free(b->command);
}

int main(int argc, char **argv)
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("- exec-downtime benchmark");
	g_autoptr(GError) err = NULL;
	g_auto(GStrv) args = g_strdupv(argv);
	struct bench b = { 0 };
	g_autoptr(GDateTime) now = g_date_time_new_now_utc();
	g_autofree char *started = NULL;
	int ret;

	g_option_context_set_summary(ctx, summary);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		g_printerr("cprx-bench: %s (see --help)\n", err->message);
		return 1;
	}
	if (argc > 1) {
		g_printerr("cprx-bench: unexpected argument '%s' (see --help)\n", argv[1]);
		return 1;
	}
	if (opts.kexec_clock)
		return kexec_clock();
	if (opts.kexec)
		return run_kexec(&opts, g_strv_length(args), args);
	if (opts.reps < 0)
		opts.reps = 5;
	if (opts.vm)
		return run_vm(&opts, g_strv_length(args), args);
	if (opts.qemu)
		return run_qemu(&opts);
	if (!setup(&b, &opts, g_strv_length(args), args)) {
		bench_free(&b);
		return 1;
	}
	started = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
	g_strlcpy(b.started, started, sizeof(b.started));
	b.timeline = opts.guard;
	if (opts.guard && !guard_trace_start(&b)) {
		bench_free(&b);
		return 1;
	}
	sweep(&b);
	guard_trace_stop(&b);
	report_terminal(&b);
	ret = report_files(&b);
	if (b.plots && ret == 0)
		ret = report_plots(&b);
	bench_free(&b);
	return ret;
}
