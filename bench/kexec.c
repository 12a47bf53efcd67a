/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --kexec: a guest's blackout across a host kernel update, in
 * the VM tier (tests/vm/run.sh --kexec, research kernel -> research
 * kernel), against a baseline measured in the same guest run.
 *
 * One guest run per RAM size and repetition.  In it two VMMs of that size
 * cross the same kexec (bench/kexec-guest.sh): cprx-vmm --kexec (RAM and
 * state preserved in a LUO session held by cprx-luod) and cprx-vmm
 * --kexec --baseline copy (RAM and state to a file on the host's share,
 * fsync'd, read back and verified).  Every boundary is a TSC read, the one
 * clock both kernels share; the new kernel's own boot is put on it by a
 * marker in its log (cprx-bench --kexec-clock, kexec_clock.c).  This file
 * runs the guests and turns their records into rows; kexec_report.c
 * writes them out.
 */
#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "kexec.h"

const char *const kpart_names[NR_KPARTS] = {
	"save", "handoff", "load", "kexec", "kernel_boot", "userspace",
	"retrieve", "resume", "other",
};
const char *const kpath_names[NR_KPATHS] = { "luo", "baseline" };

/* The one JSON line of @file whose "event" is @event; NULL if none. */
static JsonObject *event_in(const char *dir, const char *file, const char *event,
			    GPtrArray *keep, GString *why)
{
	g_autofree char *path = g_build_filename(dir, file, NULL);
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	unsigned int i;

	if (!g_file_get_contents(path, &text, NULL, NULL)) {
		g_string_append_printf(why, "%s missing; ", file);
		return NULL;
	}
	lines = g_strsplit(text, "\n", -1);
	for (i = 0; lines[i]; i++) {
		JsonParser *p;
		JsonNode *root;
		JsonObject *o;

		if (lines[i][0] != '{')
			continue;
		p = json_parser_new();
		if (!json_parser_load_from_data(p, lines[i], -1, NULL) ||
		    !(root = json_parser_get_root(p)) || !JSON_NODE_HOLDS_OBJECT(root)) {
			g_object_unref(p);
			continue;
		}
		o = json_node_get_object(root);
		if (!event || !g_strcmp0(json_object_get_string_member_with_default(
					 o, "event", ""), event)) {
			g_ptr_array_add(keep, p);	/* o lives as long as p */
			return o;
		}
		g_object_unref(p);
	}
	g_string_append_printf(why, "no %s event in %s; ", event ? event : "JSON", file);
	return NULL;
}

/* A number of @o, or of its member object @sub; NAN if absent or null. */
static double num(JsonObject *o, const char *sub, const char *key)
{
	JsonNode *n;

	if (!o)
		return NAN;
	if (sub) {
		if (!json_object_has_member(o, sub) ||
		    !JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, sub)))
			return NAN;
		o = json_object_get_object_member(o, sub);
	}
	n = json_object_get_member(o, key);
	if (!n || !JSON_NODE_HOLDS_VALUE(n))
		return NAN;
	if (json_node_get_value_type(n) == G_TYPE_INT64)
		return (double)json_node_get_int(n);
	return json_node_get_double(n);
}

/* "load_start=N load_end=N reboot=N", from kexec-boot. */
static bool kexec_stamps(const char *dir, double *load, double *reboot)
{
	g_autofree char *path = g_build_filename(dir, "kexec.tsc", NULL);
	g_autofree char *text = NULL;
	unsigned long long a, b, c;

	if (!g_file_get_contents(path, &text, NULL, NULL) ||
	    sscanf(text, "load_start=%llu load_end=%llu reboot=%llu", &a, &b, &c) != 3)
		return false;
	*load = (double)a;
	*reboot = (double)c;
	return true;
}

/* The stamps of one guest run, all TSC ticks. */
struct stamps {
	JsonObject *c2, *prep[NR_KPATHS], *upd[NR_KPATHS], *luo_exit;
	double hz, load, reboot, t0, run_init;
};

/* TSC ticks to ms; NAN propagates. */
static double ms(double ticks, double hz)
{
	return ticks * 1e3 / hz;
}

static void fill_row(struct krow *r, const struct stamps *st, enum kpath p)
{
	JsonObject *pr = st->prep[p], *up = st->upd[p];
	JsonObject *lp = st->prep[KPATH_LUO], *lu = st->upd[KPATH_LUO];
	double hz = st->hz, other1 = 0, other2 = 0;
	unsigned int k;

	/* the baseline's blackout holds the LUO VMM's life in both stages */
	if (p == KPATH_BASE) {
		other1 = num(lp, "tsc", "prepared") - num(lp, "tsc", "process_start");
		other2 = num(st->luo_exit, NULL, "tsc_exit") -
			 num(lu, "tsc", "process_start");
	}
	r->path = p;
	r->parts[KP_SAVE] = ms(num(pr, "tsc", "prepared") - num(pr, "tsc", "stop"), hz);
	r->parts[KP_HANDOFF] = ms(st->load - num(pr, "tsc", "prepared") - other1, hz);
	r->parts[KP_LOAD] = ms(st->reboot - st->load, hz);
	r->parts[KP_KEXEC] = ms(st->t0 - st->reboot, hz);
	r->parts[KP_BOOT] = ms(st->run_init - st->t0, hz);
	r->parts[KP_USERSPACE] = ms(num(up, "tsc", "incoming") - st->run_init - other2, hz);
	r->parts[KP_RETRIEVE] = ms(num(up, "tsc", "remap_end") - num(up, "tsc", "incoming"),
				   hz);
	r->parts[KP_RESUME] = ms(num(up, "tsc", "resumed") - num(up, "tsc", "verify_end"),
				 hz);
	r->parts[KP_OTHER] = ms(other1 + other2, hz);
	r->verify_ms = ms(num(up, "tsc", "verify_end") - num(up, "tsc", "remap_end"), hz);
	/*
	 * The VMM's own figure, from its own stamps, at the rate the parts
	 * are read with: the parts must then cover it to rounding.
	 */
	r->vmm_pause_ms = num(up, NULL, "pause_ms");
	r->vmm_hz = num(up, NULL, "tsc_hz");
	r->blackout_ms = r->vmm_pause_ms * r->vmm_hz / hz;
	r->sum_ms = 0;
	for (k = 0; k < NR_KPARTS; k++)
		r->sum_ms += r->parts[k];
	r->alone_ms = r->blackout_ms - r->parts[KP_OTHER];
	g_strlcpy(r->verify, json_object_get_string_member_with_default(up, "verify",
		  "?"), sizeof(r->verify));
	r->verified = !strcmp(r->verify, "ok");
}

/* Reads one guest run's records from @dir into two rows; false + why. */
static bool read_run(struct kexec_bench *kb, const char *dir, uint64_t size,
		     unsigned int rep, GString *why)
{
	g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_object_unref);
	struct stamps st = { 0 };
	JsonObject *c1;
	unsigned int p;

	st.c2 = event_in(dir, "clock.2", NULL, keep, why);
	c1 = event_in(dir, "clock.1", NULL, keep, why);
	st.prep[KPATH_LUO] = event_in(dir, "luo.1", "kexec-prepared", keep, why);
	st.prep[KPATH_BASE] = event_in(dir, "baseline.1", "kexec-prepared", keep, why);
	st.upd[KPATH_LUO] = event_in(dir, "luo.2", "update", keep, why);
	st.upd[KPATH_BASE] = event_in(dir, "baseline.2", "update", keep, why);
	st.luo_exit = event_in(dir, "luo.2", "exit", keep, why);
	if (!kexec_stamps(dir, &st.load, &st.reboot))
		g_string_append(why, "no kexec.tsc from the harness; ");
	if (why->len)
		return false;
	/* one TSC, two kernels' rates for it: the new one's converts */
	st.hz = num(st.c2, NULL, "hz");
	st.t0 = num(st.c2, NULL, "marker_tsc") - num(st.c2, NULL, "marker_us") * 1e-6 * st.hz;
	st.run_init = st.t0 + num(st.c2, NULL, "run_init_us") * 1e-6 * st.hz;
	kb->hz[0] = num(c1, NULL, "hz");
	kb->hz[1] = st.hz;
	kb->detected_hz = num(st.c2, NULL, "detected_hz");
	kb->refined_hz = num(st.c2, NULL, "refined_hz");
	g_strlcpy(kb->clocksource, json_object_get_string_member_with_default(st.c2,
		  "clocksource", "?"), sizeof(kb->clocksource));
	for (p = 0; p < NR_KPATHS; p++) {
		struct krow r = { .size = size, .rep = rep };

		size_label(size, r.size_label, sizeof(r.size_label));
		fill_row(&r, &st, (enum kpath)p);
		g_array_append_val(kb->rows, r);
	}
	return true;
}

/*
 * Guest memory for @size: both VMMs' RAM never coexists, but the LUO
 * session's does with the new kernel and its KASAN shadow.  The kexec'd
 * kernel has only KHO's scratch memory until the handover, where its
 * shadow (1/8) and memory map (1/64) must fit with room to spare.
 */
static void guest_mem(uint64_t size, uint64_t *mem_mib, uint64_t *scratch_mib)
{
	uint64_t mem = 2 * (size >> 20) + 512;

	*mem_mib = mem < 1536 ? 1536 : mem;
	*scratch_mib = (*mem_mib * 9 / 64 + 136 + 31) / 32 * 32;
}

static int guest_run(const struct options *o, const char *dir, uint64_t size)
{
	g_autofree char *run = g_build_filename(CPRX_SOURCE_ROOT, "tests/vm/run.sh", NULL);
	g_autofree char *script = g_build_filename(CPRX_SOURCE_ROOT, "bench",
						   "kexec-guest.sh", NULL);
	/* by its path in the build, not /proc/self/exe: a rebuild may replace it */
	g_autofree char *self = g_build_filename(CPRX_BUILD_ROOT, "bench", "cprx-bench",
						 NULL);
	g_autofree char *vmm = o->vmm ? g_canonicalize_filename(o->vmm, NULL) :
			       g_build_filename(CPRX_BUILD_ROOT, "tools", "cprx-vmm", NULL);
	g_autofree char *luod = g_build_filename(CPRX_BUILD_ROOT, "tools", "cprx-luod",
						 NULL);
	g_autofree char *mem = NULL, *append = NULL, *ram = NULL, *report = NULL;
	g_autofree char *dmesg = NULL;
	uint64_t mem_mib, scratch_mib;
	int status = 0;

	guest_mem(size, &mem_mib, &scratch_mib);
	mem = g_strdup_printf("%" G_GUINT64_FORMAT "M", mem_mib);
	append = g_strdup_printf("kho_scratch=32M,%" G_GUINT64_FORMAT "M,32M", scratch_mib);
	ram = g_strdup_printf("%" G_GUINT64_FORMAT "M", size >> 20);
	report = g_build_filename(dir, "stages", NULL);
	dmesg = g_build_filename(dir, "dmesg", NULL);
	{
		const char *cmd[] = {
			run, "--kernel", "research", "--kexec", "--kexec-kernel", "research",
			"--mem", mem, "--append", append, "--timeout", "2400",
			"--share", dir, "--stage-report", report, "--dmesg-out", dmesg, "--",
			"bash", script, "1", self, vmm, luod, dir, ram, ":::",
			"bash", script, "2", self, vmm, luod, dir, ram, NULL
		};

		g_printerr("cprx-bench: --kexec: %s guest of %s, %s: %s\n", ram, mem,
			   append, dir);
		if (!g_spawn_sync(CPRX_SOURCE_ROOT, (char **)cmd, NULL,
				  G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, NULL, NULL,
				  &status, NULL))
			return -1;
	}
	return g_spawn_check_wait_status(status, NULL) ? 0 : -1;
}

static bool research_cached(void)
{
	g_autofree char *k = g_build_filename(CPRX_SOURCE_ROOT, "tests/vm/kernels.sh", NULL);
	const char *cmd[] = { k, "--cached", "research", NULL };
	int status = 0;

	return g_spawn_sync(CPRX_SOURCE_ROOT, (char **)cmd, NULL,
			    G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
			    NULL, NULL, NULL, NULL, &status, NULL) &&
	       g_spawn_check_wait_status(status, NULL);
}

static void kb_free(struct kexec_bench *kb)
{
	g_array_free(kb->rows, TRUE);
	g_ptr_array_free(kb->notes, TRUE);
	g_free(kb->out);
	g_free(kb->command);
}

int run_kexec(const struct options *o, int argc, char **argv)
{
	struct kexec_bench kb = { 0 };
	g_auto(GStrv) sizes = split(o->sizes ? o->sizes : KEXEC_SIZES_DEFAULT);
	unsigned int reps = o->reps > 0 ? (unsigned int)o->reps : 1, i, rep;
	int ret = 0;

	if (reps > 10) {
		g_printerr("cprx-bench: --kexec: --reps 1..10 (one guest boot each)\n");
		return 1;
	}
	if (!o->kexec_reuse && !research_cached()) {
		g_printerr("cprx-bench: --kexec: the research kernel is not cached "
			   "(tests/vm/kernels.sh research builds it)\n");
		return 77;
	}
	kb.rows = g_array_new(FALSE, TRUE, sizeof(struct krow));
	kb.notes = g_ptr_array_new_with_free_func(g_free);
	kb.out = g_canonicalize_filename(o->out, NULL);
	kb.command = g_strjoinv(" ", argv);
	(void)argc;
	if (g_mkdir_with_parents(kb.out, 0755) < 0 || strpbrk(kb.out, " \t\n")) {
		g_printerr("cprx-bench: --kexec: output directory %s: %s\n", kb.out,
			   strpbrk(kb.out, " \t\n") ? "no spaces, please" : g_strerror(errno));
		kb_free(&kb);
		return 1;
	}
	machine_read(&kb.m);
	for (rep = 0; rep < reps; rep++)
		for (i = 0; sizes[i]; i++) {
			g_autoptr(GString) why = g_string_new(NULL);
			g_autofree char *dir = NULL;
			uint64_t size;

			if (parse_size(sizes[i], &size) < 0 || size < (1u << 20)) {
				g_printerr("cprx-bench: --kexec: bad size '%s'\n", sizes[i]);
				kb_free(&kb);
				return 1;
			}
			dir = g_strdup_printf("%s/kexec-%s-%u", kb.out, sizes[i], rep + 1);
			g_mkdir_with_parents(dir, 0777);
			if (!o->kexec_reuse && guest_run(o, dir, size) < 0)
				g_string_append(why, "the guest run failed; ");
			if (!read_run(&kb, dir, size, rep + 1, why)) {
				g_ptr_array_add(kb.notes, g_strdup_printf(
					"%s, repetition %u: %s(records in %s)", sizes[i], rep + 1,
					why->str, dir));
				ret = 1;
			}
		}
	kexec_report(&kb);
	if (kexec_files(&kb))
		ret = 1;
	kb_free(&kb);
	return ret;
}
