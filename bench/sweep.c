/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench: running the sweep.  Each cell is one cprx-vmm process doing
 * --reps updates; its JSON "update" lines become the cell's samples.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* timeline_ms keys of cprx-vmm (tools/cprx-vmm/report.c, json_timeline) per span */
static const char *const seg_from[NR_SEGS] = {
	"stop", "stopped", "save_end", "exec", "incoming", "reclaim_end", "verify_end",
};
static const char *const seg_to[NR_SEGS] = {
	"stopped", "save_end", "exec", "incoming", "reclaim_end", "remap_end", "resumed",
};

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
	guard_trace_fill(b, pid, &g_array_index(c->samples, struct sample,
			 c->samples->len - got), got);
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

void sweep(struct bench *b)
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
