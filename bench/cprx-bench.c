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
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

const char *const seg_names[NR_SEGS] = {
	"stop", "save", "prepare", "exec", "reclaim", "remap", "resume",
};
const char *const kind_names[] = { "cprx", "floor", "naive", "copy" };

/* timeline_ms keys (tools/cprx-vmm/report.c, json_timeline) per span */
static const char *const seg_from[NR_SEGS] = {
	"stop", "stopped", "save_end", "exec", "incoming", "reclaim_end", "verify_end",
};
static const char *const seg_to[NR_SEGS] = {
	"stopped", "save_end", "exec", "incoming", "reclaim_end", "remap_end", "resumed",
};

/* Options ------------------------------------------------------------------ */

/* --sizes; unset: SIZES_DEFAULT, or QEMU_SIZES_DEFAULT with --qemu */
#define SIZES_DEFAULT "256M,1G,4G,16G"
#define QEMU_SIZES_DEFAULT "256M,1G,4G"
static char *o_sizes, *o_pages = "4k", *o_backends = "cloexec";
static char *o_teardowns = "deferred", *o_states = "memfd", *o_vcpus = "2";
static char *o_devices = "0", *o_baselines = "floor,naive,copy";
static char *o_vmm, *o_out = "bench-out", *o_copy_dir, *o_copy_max;
static char *o_vm_kernel = "bookworm", *o_vm_mem = "3G";
static int o_reps = 5, o_copy_reps = 0, o_run_ms = 100, o_rounds = 1;
static gboolean o_no_progress, o_no_plots, o_qemu, o_vm, o_guard;

static const GOptionEntry entries[] = {
	{ "sizes", 's', 0, G_OPTION_ARG_STRING, &o_sizes,
	  "RAM sizes (256M,1G,4G,16G; with --qemu 256M,1G,4G)", "LIST" },
	{ "pages", 'p', 0, G_OPTION_ARG_STRING, &o_pages,
	  "Page kinds: 4k, thp, hugetlb (4k)", "LIST" },
	{ "backends", 'b', 0, G_OPTION_ARG_STRING, &o_backends,
	  "libcprx backends: cloexec, kmod (cloexec; kmod needs /dev/cprx)", "LIST" },
	{ "teardown", 't', 0, G_OPTION_ARG_STRING, &o_teardowns,
	  "Old address space torn down: deferred, inline (deferred)", "LIST" },
	{ "states", 0, 0, G_OPTION_ARG_STRING, &o_states,
	  "State target: memfd, file (memfd)", "LIST" },
	{ "vcpus", 'c', 0, G_OPTION_ARG_STRING, &o_vcpus, "vCPU counts (2)", "LIST" },
	{ "devices", 'd', 0, G_OPTION_ARG_STRING, &o_devices,
	  "Extra device fds, 0..1000, on top of the 6 standard ones (0)", "LIST" },
	{ "reps", 'r', 0, G_OPTION_ARG_INT, &o_reps,
	  "Updates per cell, i.e. samples (5)", "N" },
	{ "rounds", 'R', 0, G_OPTION_ARG_INT, &o_rounds,
	  "Run every size's cells this many times, interleaved, so that a burst "
	  "of load hits all configurations alike (1)", "N" },
	{ "baselines", 'B', 0, G_OPTION_ARG_STRING, &o_baselines,
	  "Baselines: floor, naive, copy, or none (floor,naive,copy)", "LIST" },
	{ "copy-reps", 0, 0, G_OPTION_ARG_INT, &o_copy_reps,
	  "Samples of the copy baseline (--reps)", "N" },
	{ "copy-max", 0, 0, G_OPTION_ARG_STRING, &o_copy_max,
	  "Largest size the copy baseline runs at (no limit)", "SIZE" },
	{ "copy-dir", 0, 0, G_OPTION_ARG_FILENAME, &o_copy_dir,
	  "Where the copy baseline writes RAM ($TMPDIR or /var/tmp)", "DIR" },
	{ "qemu", 0, 0, G_OPTION_ARG_NONE, &o_qemu,
	  "Real QEMU instead: cpr-exec pause of stock 10.2.2, 10.2.2 patched to "
	  "use libcprx and stock 11.x side by side, by hand, and migration to a "
	  "file + restart (qemu-integration/bench.sh; --sizes 256M,1G,4G)", NULL },
	{ "guard-timeline", 0, 0, G_OPTION_ARG_NONE, &o_guard,
	  "Kernel timeline from the bpf/ guard (not available yet)", NULL },
	{ "run-ms", 0, 0, G_OPTION_ARG_INT, &o_run_ms,
	  "Guest run time between updates (100)", "MS" },
	{ "vmm", 0, 0, G_OPTION_ARG_FILENAME, &o_vmm,
	  "cprx-vmm binary (the build's, or $CPRX_VMM)", "PATH" },
	{ "out", 'o', 0, G_OPTION_ARG_FILENAME, &o_out,
	  "Output directory (bench-out)", "DIR" },
	{ "no-progress", 0, 0, G_OPTION_ARG_NONE, &o_no_progress,
	  "No progress bar (there is none off a terminal anyway)", NULL },
	{ "no-plots", 0, 0, G_OPTION_ARG_NONE, &o_no_plots,
	  "Do not render plots (the gnuplot script is still written)", NULL },
	{ "vm", 0, 0, G_OPTION_ARG_NONE, &o_vm,
	  "Run the same sweep in the VM tier's guest (kmod backend)", NULL },
	{ "vm-kernel", 0, 0, G_OPTION_ARG_STRING, &o_vm_kernel,
	  "Guest kernel for --vm: bookworm, sid (bookworm)", "NAME" },
	{ "vm-mem", 0, 0, G_OPTION_ARG_STRING, &o_vm_mem,
	  "Guest memory for --vm (3G)", "SIZE" },
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

/* Sweep ------------------------------------------------------------------- */

static char **split(const char *list)
{
	char **v = g_strsplit(list, ",", -1);
	unsigned int i;

	for (i = 0; v[i]; i++)
		g_strstrip(v[i]);
	return v;
}

static bool one_of(const char *v, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(v, *names))
			return true;
	return false;
}

/* Every item of @list is one of @names; says which is not. */
static bool check_list(const char *opt, const char *list, const char *const *names)
{
	g_auto(GStrv) v = split(list);
	unsigned int i;

	for (i = 0; v[i]; i++)
		if (!one_of(v[i], names)) {
			g_printerr("cprx-bench: --%s: '%s' is not one of %s\n", opt, v[i],
				   g_strjoinv(", ", (char **)names));
			return false;
		}
	return i > 0;
}

static bool parse_uints(const char *opt, const char *list, unsigned int min,
			unsigned int max, GArray *out)
{
	g_auto(GStrv) v = split(list);
	unsigned int i;
	guint64 n;

	for (i = 0; v[i]; i++) {
		if (!g_ascii_string_to_unsigned(v[i], 10, min, max, &n, NULL)) {
			g_printerr("cprx-bench: --%s: '%s' is not a number from %u to %u\n",
				   opt, v[i], min, max);
			return false;
		}
		g_array_append_val(out, (unsigned int){ (unsigned int)n });
	}
	return i > 0;
}

static int cmp_u64(gconstpointer a, gconstpointer b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool parse_sizes(struct bench *b)
{
	g_auto(GStrv) v = split(o_sizes ? o_sizes : SIZES_DEFAULT);
	unsigned int i;
	uint64_t n;

	for (i = 0; v[i]; i++) {
		if (parse_size(v[i], &n) < 0 || n % 4096) {
			g_printerr("cprx-bench: --sizes: '%s' is not a size (256M, 1G...) "
				   "and a multiple of 4 KiB\n", v[i]);
			return false;
		}
		g_array_append_val(b->sizes, n);
	}
	g_array_sort(b->sizes, cmp_u64);
	return i > 0;
}

static struct config *config_new(enum kind k, const char *pages, const char *be,
				 const char *td, const char *st, unsigned int vcpus,
				 unsigned int devs)
{
	struct config *c = g_new0(struct config, 1);

	c->kind = k;
	g_strlcpy(c->pages, pages, sizeof(c->pages));
	g_strlcpy(c->backend, be, sizeof(c->backend));
	g_strlcpy(c->teardown, td, sizeof(c->teardown));
	g_strlcpy(c->state, st, sizeof(c->state));
	c->vcpus = vcpus;
	c->devices = devs;
	if (k == KIND_CPRX)
		snprintf(c->label, sizeof(c->label), "cprx %s %s %s %s %uvcpu %udev",
			 pages, be, td, st, vcpus, devs);
	else
		snprintf(c->label, sizeof(c->label), "%s %s %uvcpu", kind_names[k],
			 pages, vcpus);
	return c;
}

/* Kinds, backends that cannot run here are dropped with a note. */
static bool backend_usable(struct bench *b, const char *be)
{
	if (strcmp(be, "kmod") || access("/dev/cprx", R_OK | W_OK) == 0)
		return true;
	g_ptr_array_add(b->notes, g_strdup("backend kmod skipped: no /dev/cprx "
		"(insmod cprx.ko; or run with --vm)"));
	return false;
}

static void add_cprx_configs(struct bench *b, const char *pages, unsigned int vcpus,
			     GArray *devs)
{
	g_auto(GStrv) bes = split(o_backends), tds = split(o_teardowns);
	g_auto(GStrv) sts = split(o_states);
	unsigned int i, j, k, d;

	for (i = 0; bes[i]; i++) {
		if (!backend_usable(b, bes[i]))
			continue;
		for (j = 0; tds[j]; j++)
			for (k = 0; sts[k]; k++)
				for (d = 0; d < devs->len; d++)
					g_ptr_array_add(b->configs, config_new(KIND_CPRX,
						pages, bes[i], tds[j], sts[k], vcpus,
						g_array_index(devs, unsigned int, d)));
	}
}

/* Baselines do not depend on backend, state or devices: one per pages x vCPUs. */
static void add_baselines(struct bench *b, const char *pages, unsigned int vcpus)
{
	g_auto(GStrv) v = split(o_baselines);
	unsigned int i;

	for (i = 0; v[i]; i++) {
		if (!strcmp(v[i], "none"))
			continue;
		if (!strcmp(v[i], "floor"))
			g_ptr_array_add(b->configs, config_new(KIND_FLOOR, pages, "-",
						"deferred", "-", vcpus, 0));
		else if (!strcmp(v[i], "naive"))
			g_ptr_array_add(b->configs, config_new(KIND_NAIVE, pages, "-",
						"inline", "-", vcpus, 0));
		else
			g_ptr_array_add(b->configs, config_new(KIND_COPY, pages, "-",
						"inline", "file", vcpus, 0));
	}
}

static bool build_configs(struct bench *b)
{
	static const char *const pages[] = { "4k", "thp", "hugetlb", NULL };
	static const char *const bes[] = { "cloexec", "kmod", NULL };
	static const char *const tds[] = { "deferred", "inline", NULL };
	static const char *const sts[] = { "memfd", "file", NULL };
	static const char *const bls[] = { "floor", "naive", "copy", "none", NULL };
	g_autoptr(GArray) vcpus = g_array_new(FALSE, FALSE, sizeof(unsigned int));
	g_autoptr(GArray) devs = g_array_new(FALSE, FALSE, sizeof(unsigned int));
	g_auto(GStrv) pv = NULL;
	unsigned int i, j;

	if (!check_list("pages", o_pages, pages) || !check_list("backends", o_backends, bes) ||
	    !check_list("teardown", o_teardowns, tds) || !check_list("states", o_states, sts) ||
	    !check_list("baselines", o_baselines, bls) ||
	    !parse_uints("vcpus", o_vcpus, 1, 64, vcpus) ||
	    !parse_uints("devices", o_devices, 0, 1000, devs) || !parse_sizes(b))
		return false;
	pv = split(o_pages);
	for (i = 0; pv[i]; i++)
		for (j = 0; j < vcpus->len; j++) {
			add_cprx_configs(b, pv[i], g_array_index(vcpus, unsigned int, j), devs);
			add_baselines(b, pv[i], g_array_index(vcpus, unsigned int, j));
		}
	if (b->configs->len)
		return true;
	for (i = 0; i < b->notes->len; i++)
		g_printerr("cprx-bench: %s\n", (char *)b->notes->pdata[i]);
	g_printerr("cprx-bench: nothing to run\n");
	return false;
}

/* Running one cell --------------------------------------------------------- */

static double tl_get(JsonObject *tl, const char *key)
{
	JsonNode *n = json_object_get_member(tl, key);

	return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_double(n) : NAN;
}

/* One "update" line of cprx-vmm into a sample; false if it is not one. */
static bool parse_update(const char *line, struct sample *s, char **err)
{
	g_autoptr(JsonParser) p = json_parser_new();
	JsonObject *o, *tl;
	JsonNode *root;
	unsigned int i;

	if (!json_parser_load_from_data(p, line, -1, NULL))
		return false;
	root = json_parser_get_root(p);
	if (!JSON_NODE_HOLDS_OBJECT(root))
		return false;
	o = json_node_get_object(root);
	if (g_strcmp0(json_object_get_string_member_with_default(o, "event", ""), "update"))
		return false;
	if (!json_object_get_boolean_member_with_default(o, "ok", FALSE)) {
		*err = g_strdup_printf("update refused: %s",
			json_object_get_string_member_with_default(o, "error", line));
		return false;
	}
	memset(s, 0, sizeof(*s));
	s->pause_ms = json_object_get_double_member_with_default(o, "pause_ms", NAN);
	s->kernel_ms = NAN;
	tl = json_object_get_object_member(o, "timeline_ms");
	for (i = 0; i < NR_SEGS; i++)
		s->seg[i] = tl ? tl_get(tl, seg_to[i]) - tl_get(tl, seg_from[i]) : NAN;
	return true;
}

static GPtrArray *cell_argv(const struct bench *b, const struct cell *c,
			    unsigned int reps, char *copy_path)
{
	const struct config *cf = c->cfg;
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);

	g_ptr_array_add(a, g_strdup(b->vmm));
	g_ptr_array_add(a, g_strdup_printf("--ram=%s", c->size_label));
	g_ptr_array_add(a, g_strdup_printf("--pages=%s", cf->pages));
	g_ptr_array_add(a, g_strdup_printf("--vcpus=%u", cf->vcpus));
	g_ptr_array_add(a, g_strdup_printf("--updates=%u", reps));
	g_ptr_array_add(a, g_strdup_printf("--run-ms=%u", b->run_ms));
	g_ptr_array_add(a, g_strdup("--json"));
	/* each update starts with the last one's teardown over, in every mode */
	g_ptr_array_add(a, g_strdup("--settle"));
	if (cf->kind != KIND_CPRX) {
		g_ptr_array_add(a, g_strdup_printf("--baseline=%s", kind_names[cf->kind]));
		if (cf->kind == KIND_COPY)
			g_ptr_array_add(a, g_strdup_printf("--state=%s", copy_path));
	} else {
		g_ptr_array_add(a, g_strdup_printf("--backend=%s", cf->backend));
		g_ptr_array_add(a, g_strdup_printf("--teardown=%s", cf->teardown));
		g_ptr_array_add(a, g_strdup_printf("--devices=%u", cf->devices));
		if (!strcmp(cf->state, "file"))
			g_ptr_array_add(a, g_strdup_printf("--state=%s", copy_path));
	}
	g_ptr_array_add(a, NULL);
	return a;
}

/* The child's stderr goes to an unlinked file: shown only when it fails. */
static pid_t spawn(char **argv, int *out_fd, int *err_fd)
{
	char tmpl[] = "/tmp/cprx-bench-err.XXXXXX";
	int p[2];
	pid_t pid;

	*err_fd = mkostemp(tmpl, O_CLOEXEC);
	if (*err_fd < 0 || pipe2(p, O_CLOEXEC) < 0)
		return -1;
	unlink(tmpl);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		dup2(*err_fd, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

static char *read_tail(int fd)
{
	char buf[2048];
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n;

	n = pread(fd, buf, sizeof(buf) - 1, end > (off_t)sizeof(buf) - 1 ?
		  end - (off_t)sizeof(buf) + 1 : 0);
	buf[n > 0 ? n : 0] = '\0';
	return g_strdup(g_strstrip(buf));
}

/* Runs cprx-vmm for one cell; the samples it printed, or a reason in skipped. */
static void cell_run(struct bench *b, struct cell *c, unsigned int reps)
{
	g_autofree char *copy_path = g_strdup_printf("%s/cprx-bench-state.%d",
		b->copy_dir, (int)getpid());
	g_autoptr(GPtrArray) argv = cell_argv(b, c, reps, copy_path);
	g_autofree char *what = g_strdup_printf("%s %s", c->size_label, c->cfg->label);
	g_autofree char *err = NULL;
	char *line = NULL;
	size_t cap = 0;
	unsigned int got = 0;
	int out_fd, err_fd, status = 0;
	struct sample s;
	FILE *f;
	pid_t pid;

	progress_step(what);
	pid = spawn((char **)argv->pdata, &out_fd, &err_fd);
	if (pid < 0) {
		c->skipped = g_strdup_printf("cannot run %s: %s", b->vmm, g_strerror(errno));
		return;
	}
	f = fdopen(out_fd, "r");
	while (getline(&line, &cap, f) > 0)
		if (parse_update(line, &s, &err) && got < reps) {
			g_array_append_val(c->samples, s);
			progress_step(NULL);
			got++;
		}
	free(line);
	fclose(f);
	waitpid(pid, &status, 0);
	unlink(copy_path);
	if (got == reps && WIFEXITED(status) && !WEXITSTATUS(status)) {
		close(err_fd);
		return;
	}
	g_free(err);
	err = read_tail(err_fd);
	close(err_fd);
	c->skipped = g_strdup_printf("cprx-vmm failed (%s %d) after %u of %u samples: %s",
		WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ?
		WEXITSTATUS(status) : WTERMSIG(status), got, reps,
		*err ? err : "no message");
	progress_note("%s %s: %s", c->size_label, c->cfg->label, c->skipped);
}

/* Why @cf cannot run at @size here, or NULL. */
static char *cell_unfit(const struct bench *b, const struct config *cf, uint64_t size)
{
	uint64_t need = size + (512ull << 20), avail = mem_available();
	char why[256];

	if (cf->kind == KIND_COPY && b->copy_max && size > b->copy_max)
		return g_strdup("above --copy-max");
	if (!strcmp(cf->pages, "hugetlb")) {
		if (hugetlb_free_bytes() < size)
			return g_strdup_printf("needs %.1f GiB of free huge pages, %.1f GiB "
				"reserved and free (echo N > /proc/sys/vm/nr_hugepages)",
				size / 1073741824.0, hugetlb_free_bytes() / 1073741824.0);
		need = 512ull << 20;
	}
	if (!strcmp(cf->pages, "thp") && !thp_shmem_usable(why, sizeof(why)))
		return g_strdup(why);
	if (need > avail)
		return g_strdup_printf("needs %.1f GiB, %.1f GiB available", need / 1073741824.0,
				       avail / 1073741824.0);
	return NULL;
}

static unsigned int cell_reps(const struct bench *b, const struct config *cf)
{
	return cf->kind == KIND_COPY && b->copy_reps ? b->copy_reps : b->reps;
}

static struct cell *cell_new(struct bench *b, struct config *cf, uint64_t size)
{
	struct cell *c = g_new0(struct cell, 1);

	c->cfg = cf;
	c->size = size;
	size_label(size, c->size_label, sizeof(c->size_label));
	c->samples = g_array_new(FALSE, TRUE, sizeof(struct sample));
	g_ptr_array_add(b->cells, c);
	return c;
}

/* One round of one cell; a cell that failed or cannot run is not retried. */
static void cell_round(struct bench *b, struct cell *c, unsigned int round)
{
	unsigned int n = cell_reps(b, c->cfg);

	if (!round && (c->skipped = cell_unfit(b, c->cfg, c->size))) {
		g_ptr_array_add(b->notes, g_strdup_printf("skipped %s %s: %s",
			c->size_label, c->cfg->label, c->skipped));
		progress_note("skipping %s %s: %s", c->size_label, c->cfg->label,
			      c->skipped);
	}
	if (c->skipped) {
		while (n--)
			progress_step(NULL);
		return;
	}
	cell_run(b, c, n);
}

static void sweep(struct bench *b)
{
	unsigned int i, j, r, first, total = 0;
	gint64 t0 = g_get_monotonic_time();

	for (j = 0; j < b->configs->len; j++)
		total += cell_reps(b, b->configs->pdata[j]);
	progress_start(b->progress, total * b->sizes->len * b->rounds);
	for (i = 0; i < b->sizes->len; i++) {
		first = b->cells->len;
		for (j = 0; j < b->configs->len; j++)
			cell_new(b, b->configs->pdata[j], g_array_index(b->sizes, uint64_t, i));
		for (r = 0; r < b->rounds; r++)
			for (j = first; j < b->cells->len; j++)
				cell_round(b, b->cells->pdata[j], r);
		for (j = first; j < b->cells->len; j++)
			cell_stats(b->cells->pdata[j]);
	}
	progress_end();
	b->seconds = (g_get_monotonic_time() - t0) / 1e6;
}

/* Real QEMU ---------------------------------------------------------------- */

struct qemu_build {
	const char *label, *path;
};

/* In the chroot of qemu-integration/qemu-chroot.sh; built by qemu-build.sh. */
static const struct qemu_build qemu_builds[] = {
	{ "10.2.2", "/opt/qemu-10.2.2/bin/qemu-system-x86_64" },
	{ "10.2.2+cprx", "/opt/qemu-10.2.2-cprx/bin/qemu-system-x86_64" },
	{ "11.x", "/usr/bin/qemu-system-x86_64" },
};

/*
 * --qemu: the QEMU tier's benchmark, with the QEMU builds the chroot has,
 * first the stock 10.2.2 that the patched one is compared with.
 */
static int run_qemu(void)
{
	const char *cache = g_getenv("CPRX_CACHE") ? g_getenv("CPRX_CACHE") : "/var/cache/cprx";
	g_autofree char *croot = g_build_filename(cache, "qemu-chroot", NULL);
	g_autofree char *script = g_build_filename(CPRX_SOURCE_ROOT,
						   "qemu-integration/bench.sh", NULL);
	g_autofree char *out = g_build_filename(o_out, "qemu", NULL);
	g_autofree char *runs = g_strdup_printf("%d", o_reps);
	g_autoptr(GPtrArray) cmd = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GString) mib = g_string_new(NULL);
	g_auto(GStrv) v = split(o_sizes ? o_sizes : QEMU_SIZES_DEFAULT);
	unsigned int i, found = 0;
	int status = 0;
	uint64_t n;

	for (i = 0; v[i]; i++) {
		if (parse_size(v[i], &n) < 0 || n % (1 << 20) || n < (128 << 20)) {
			g_printerr("cprx-bench: --qemu --sizes: '%s' is not a guest RAM "
				   "size of at least 128M in whole MiB\n", v[i]);
			return 1;
		}
		g_string_append_printf(mib, "%s%" PRIu64, i ? " " : "", n >> 20);
	}
	g_ptr_array_add(cmd, g_strdup(script));
	g_ptr_array_add(cmd, g_strdup("--sizes"));
	g_ptr_array_add(cmd, g_strdup(mib->str));
	g_ptr_array_add(cmd, g_strdup("--runs"));
	g_ptr_array_add(cmd, g_strdup(runs));
	g_ptr_array_add(cmd, g_strdup("--out"));
	g_ptr_array_add(cmd, g_strdup(out));
	if (!strstr(o_baselines, "copy"))
		g_ptr_array_add(cmd, g_strdup("--no-baseline"));
	for (i = 0; i < G_N_ELEMENTS(qemu_builds); i++) {
		g_autofree char *host = g_strconcat(croot, qemu_builds[i].path, NULL);

		if (access(host, X_OK)) {
			g_printerr("cprx-bench: --qemu: no QEMU %s in %s (%s)\n",
				   qemu_builds[i].label, croot, i == 2 ?
				   "qemu-integration/qemu-chroot.sh builds it" : i == 1 ?
				   "qemu-integration/qemu-build.sh --cprx builds it" :
				   "qemu-integration/qemu-build.sh builds it");
			continue;
		}
		g_ptr_array_add(cmd, g_strdup("--qemu"));
		g_ptr_array_add(cmd, g_strdup_printf("%s=%s", qemu_builds[i].label,
						     qemu_builds[i].path));
		found++;
	}
	if (!found) {
		g_printerr("cprx-bench: --qemu: no QEMU to measure: run "
			   "qemu-integration/qemu-chroot.sh (and qemu-build.sh [--cprx])\n");
		return 1;
	}
	g_ptr_array_add(cmd, g_strdup(CPRX_BUILD_ROOT));
	g_ptr_array_add(cmd, NULL);
	if (!g_spawn_sync(CPRX_SOURCE_ROOT, (char **)cmd->pdata, NULL,
			  G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, NULL, NULL, &status, NULL))
		return 1;
	if (!g_spawn_check_wait_status(status, NULL)) {
		g_printerr("cprx-bench: --qemu: qemu-integration/bench.sh failed (status %d)\n",
			   status);
		return 1;
	}
	return 0;
}

/* Hooks for what has not landed ------------------------------------------ */

/*
 * The guard's kernel timeline (bpf/, `cprx-guard trace --json`: exec check
 * -> commit per pid) goes into struct sample.kernel_ms; every output already
 * has the column.  Until the guard's trace output is settled, say so.
 */
static void guard_hook(struct bench *b)
{
	if (!o_guard)
		return;
	g_ptr_array_add(b->notes, g_strdup("kernel timeline (bpf/ guard): not "
		"available yet; kernel_ms columns are empty"));
	progress_note("--guard-timeline: the guard's kernel timeline is not wired "
		      "up yet; kernel_ms stays empty");
}

/* --vm --------------------------------------------------------------------- */

/* Our arguments without the --vm ones, for the guest. */
static GPtrArray *guest_args(int argc, char **argv, const char *out)
{
	GPtrArray *a = g_ptr_array_new();
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--vm") || g_str_has_prefix(argv[i], "--out=") ||
		    g_str_has_prefix(argv[i], "--vm-"))
			continue;
		if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "-o") ||
		    !strcmp(argv[i], "--vm-kernel") || !strcmp(argv[i], "--vm-mem")) {
			i++;
			continue;
		}
		g_ptr_array_add(a, g_shell_quote(argv[i]));
	}
	g_ptr_array_add(a, g_strdup_printf("--out=%s", out));
	g_ptr_array_add(a, NULL);
	return a;
}

/*
 * Boots the VM tier's guest (tests/vm/run.sh) with the output directory
 * shared read-write, loads cprx.ko there and runs this same binary with the
 * same sweep; the results land in --out on the host.
 */
static int run_vm(int argc, char **argv)
{
	g_autofree char *out = g_canonicalize_filename(o_out, NULL);
	g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
	g_autofree char *ko = g_strdup_printf("%s/kmod-%s/cprx.ko", CPRX_BUILD_ROOT,
					      o_vm_kernel);
	g_autofree char *run = g_build_filename(CPRX_SOURCE_ROOT, "tests/vm/run.sh", NULL);
	g_autoptr(GPtrArray) ga = guest_args(argc, argv, out);
	g_autofree char *gargs = g_strjoinv(" ", (char **)ga->pdata);
	g_autofree char *script = NULL;
	char *cmd[16];
	int status = 0, n = 0;

	if (access(ko, R_OK)) {
		g_printerr("cprx-bench: --vm: %s is missing; build it: tests/vm/kbuild.sh "
			   "%s . build/kmod-%s\n", ko, o_vm_kernel, o_vm_kernel);
		return 1;
	}
	if (g_mkdir_with_parents(out, 0755) < 0 || strpbrk(out, " \t\n")) {
		g_printerr("cprx-bench: --vm: output directory %s: %s\n", out,
			   strpbrk(out, " \t\n") ? "no spaces, please" : g_strerror(errno));
		return 1;
	}
	/* kmod first: the point of the VM tier is the module on a stock kernel */
	/* the guest's ttyS1 is a terminal, but the bar would end up in a log */
	script = g_strdup_printf("insmod %s || exit 1; exec %s --no-progress %s%s", ko,
		self, gargs,
		strstr(gargs, "--backends") ? "" : " --backends=kmod,cloexec");
	cmd[n++] = run;
	cmd[n++] = "--kernel";
	cmd[n++] = o_vm_kernel;
	cmd[n++] = "--mem";
	cmd[n++] = o_vm_mem;
	cmd[n++] = "--share";
	cmd[n++] = out;
	cmd[n++] = "--";
	cmd[n++] = "sh";
	cmd[n++] = "-c";
	cmd[n++] = script;
	cmd[n] = NULL;
	g_printerr("cprx-bench: --vm: %s guest, %s: %s\n", o_vm_kernel, o_vm_mem, script);
	if (!g_spawn_sync(CPRX_SOURCE_ROOT, cmd, NULL, G_SPAWN_CHILD_INHERITS_STDIN,
			  NULL, NULL, NULL, NULL, &status, NULL))
		return 1;
	if (!g_spawn_check_wait_status(status, NULL)) {
		g_printerr("cprx-bench: --vm: the guest run failed (status %d)\n", status);
		return 1;
	}
	g_printerr("cprx-bench: --vm: results in %s\n", out);
	return 0;
}

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

static bool setup(struct bench *b, int argc, char **argv)
{
	b->configs = g_ptr_array_new_with_free_func(g_free);
	b->sizes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	b->cells = g_ptr_array_new();
	b->notes = g_ptr_array_new_with_free_func(g_free);
	b->reps = (unsigned int)o_reps;
	b->copy_reps = (unsigned int)o_copy_reps;
	b->run_ms = (unsigned int)o_run_ms;
	b->rounds = (unsigned int)o_rounds;
	b->vmm = o_vmm ? g_strdup(o_vmm) : default_vmm();
	b->out = o_out;
	b->copy_dir = g_strdup(o_copy_dir ? o_copy_dir : g_getenv("TMPDIR") ?
			       g_getenv("TMPDIR") : "/var/tmp");
	b->progress = !o_no_progress;
	b->plots = !o_no_plots;
	b->command = g_strjoinv(" ", argv);
	(void)argc;
	if (o_reps < 1 || o_reps > 10000 || o_copy_reps < 0 || o_run_ms < 0 ||
	    o_rounds < 1 || o_rounds > 1000) {
		g_printerr("cprx-bench: --reps 1..10000, --rounds 1..1000, --copy-reps "
			   "and --run-ms >= 0\n");
		return false;
	}
	if (o_copy_max && parse_size(o_copy_max, &b->copy_max) < 0) {
		g_printerr("cprx-bench: --copy-max: '%s' is not a size\n", o_copy_max);
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
	return build_configs(b);
}

int main(int argc, char **argv)
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("- exec-downtime benchmark");
	g_autoptr(GError) err = NULL;
	g_auto(GStrv) args = g_strdupv(argv);
	struct bench b = { 0 };
	GDateTime *now = g_date_time_new_now_utc();
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
	if (o_vm)
		return run_vm(g_strv_length(args), args);
	if (o_qemu)
		return run_qemu();
	if (!setup(&b, g_strv_length(args), args))
		return 1;
	g_strlcpy(b.started, g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ"),
		  sizeof(b.started));
	g_date_time_unref(now);
	guard_hook(&b);
	sweep(&b);
	report_terminal(&b);
	ret = report_files(&b);
	if (b.plots && ret == 0)
		ret = report_plots(&b);
	return ret;
}
