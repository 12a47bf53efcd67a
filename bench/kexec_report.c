/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --kexec outputs: the terminal table, and in --out kexec.md,
 * kexec.csv (one line per sample) and kexec.json (samples, medians per
 * size and path, the ratio LUO / baseline and the kernel boot's share).
 */
#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>

#include "kexec.h"
#include "report_json.h"

/* Medians of one size and path over the repetitions. */
struct kmed {
	double blackout, alone, parts[NR_KPARTS];
	unsigned int n;
	bool verified;		/* every sample's RAM */
};

static void kmed_of(const struct kexec_bench *kb, uint64_t size, enum kpath p,
		    struct kmed *m)
{
	const unsigned int stride = sizeof(struct krow) / sizeof(double);
	g_autoptr(GArray) rows = g_array_new(FALSE, FALSE, sizeof(struct krow));
	const struct krow *r;
	unsigned int i, k;

	m->verified = true;
	for (i = 0; i < kb->rows->len; i++) {
		r = &g_array_index(kb->rows, struct krow, i);
		if (r->size == size && r->path == p) {
			g_array_append_val(rows, *r);
			m->verified &= r->verified;
		}
	}
	m->n = rows->len;
	r = (const struct krow *)(void *)rows->data;
	/* struct krow's doubles sit at a double's alignment: a stride works */
	G_STATIC_ASSERT(sizeof(struct krow) % sizeof(double) == 0);
	m->blackout = median_of(&r->blackout_ms, m->n, stride);
	m->alone = median_of(&r->alone_ms, m->n, stride);
	for (k = 0; k < NR_KPARTS; k++)
		m->parts[k] = median_of(&r->parts[k], m->n, stride);
	if (!m->n)
		m->verified = false;
}

/* The sizes, in first-run order. */
static GArray *sizes_of(const struct kexec_bench *kb)
{
	GArray *s = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	unsigned int i, j;

	for (i = 0; i < kb->rows->len; i++) {
		uint64_t z = g_array_index(kb->rows, struct krow, i).size;

		for (j = 0; j < s->len && g_array_index(s, uint64_t, j) != z; j++)
			;
		if (j == s->len)
			g_array_append_val(s, z);
	}
	return s;
}

static const char tcg_note[] =
	"Guest under QEMU TCG (tests/vm/run.sh): every instruction is emulated, so "
	"absolute times are 10-50x a real machine's; compare the ratios.";

static void md_table(FILE *f, const struct kexec_bench *kb)
{
	g_autoptr(GArray) sizes = sizes_of(kb);
	unsigned int i, p, k;

	fprintf(f, "| RAM | path | blackout ms (median) | without other | ");
	for (k = 0; k < NR_KPARTS; k++)
		fprintf(f, "%s | ", kpart_names[k]);
	fprintf(f, "RAM verified | n |\n|---|---|---|---|");
	for (k = 0; k < NR_KPARTS; k++)
		fprintf(f, "---|");
	fprintf(f, "---|---|\n");
	for (i = 0; i < sizes->len; i++)
		for (p = 0; p < NR_KPATHS; p++) {
			uint64_t z = g_array_index(sizes, uint64_t, i);
			char label[16];
			struct kmed m;

			kmed_of(kb, z, (enum kpath)p, &m);
			size_label(z, label, sizeof(label));
			fprintf(f, "| %s | %s | %.0f | %.0f | ", label, kpath_names[p],
				m.blackout, m.alone);
			for (k = 0; k < NR_KPARTS; k++)
				fprintf(f, "%.0f | ", m.parts[k]);
			fprintf(f, "%s | %u |\n", m.verified ? "yes" : "NO", m.n);
		}
}

/* LUO blackout over the baseline's (its other path's share taken out). */
static void ratios(FILE *f, const struct kexec_bench *kb)
{
	g_autoptr(GArray) sizes = sizes_of(kb);
	unsigned int i;

	for (i = 0; i < sizes->len; i++) {
		uint64_t z = g_array_index(sizes, uint64_t, i);
		struct kmed l, b;
		char label[16];

		kmed_of(kb, z, KPATH_LUO, &l);
		kmed_of(kb, z, KPATH_BASE, &b);
		size_label(z, label, sizeof(label));
		fprintf(f, "%s: LUO / baseline blackout = %.2f; kernel boot is %.0f%% of "
			"the LUO blackout (kexec + kernel boot: %.0f%%)\n", label,
			l.blackout / b.alone, 100 * l.parts[KP_BOOT] / l.blackout,
			100 * (l.parts[KP_KEXEC] + l.parts[KP_BOOT]) / l.blackout);
	}
}

static void header(FILE *f, const struct kexec_bench *kb)
{
	g_autofree char *mline = machine_line(&kb->m);

	fprintf(f, "Host: %s\nCommand: %s\n%s\n", mline, kb->command, tcg_note);
	fprintf(f, "Clock: the guest's TSC (last guest run: %.2f MHz measured in the first kernel, "
		"%.2f MHz in the new one; its log: detected %.2f, refined %.2f MHz; "
		"clocksource %s)\n", kb->hz[0] / 1e6, kb->hz[1] / 1e6,
		kb->detected_hz / 1e6, kb->refined_hz / 1e6, kb->clocksource);
}

void kexec_report(const struct kexec_bench *kb)
{
	unsigned int i;

	header(stdout, kb);
	md_table(stdout, kb);
	ratios(stdout, kb);
	for (i = 0; i < kb->notes->len; i++)
		printf("note: %s\n", (const char *)g_ptr_array_index(kb->notes, i));
}

static FILE *open_out(const struct kexec_bench *kb, const char *name)
{
	g_autofree char *path = g_build_filename(kb->out, name, NULL);
	FILE *f = fopen(path, "w");

	if (!f)
		g_printerr("cprx-bench: %s: %s\n", path, g_strerror(errno));
	return f;
}

static int write_md(const struct kexec_bench *kb)
{
	FILE *f = open_out(kb, "kexec.md");

	if (!f)
		return -1;
	header(f, kb);
	fputc('\n', f);
	md_table(f, kb);
	fputc('\n', f);
	ratios(f, kb);
	return fclose(f) ? -1 : 0;
}

static int write_csv(const struct kexec_bench *kb)
{
	FILE *f = open_out(kb, "kexec.csv");
	unsigned int i, k;

	if (!f)
		return -1;
	fprintf(f, "size,path,rep,blackout_ms,alone_ms,sum_ms");
	for (k = 0; k < NR_KPARTS; k++)
		fprintf(f, ",%s_ms", kpart_names[k]);
	fprintf(f, ",verify_ms,verified\n");
	for (i = 0; i < kb->rows->len; i++) {
		const struct krow *r = &g_array_index(kb->rows, struct krow, i);

		fprintf(f, "%s,%s,%u,%.3f,%.3f,%.3f", r->size_label, kpath_names[r->path],
			r->rep, r->blackout_ms, r->alone_ms, r->sum_ms);
		for (k = 0; k < NR_KPARTS; k++)
			fprintf(f, ",%.3f", r->parts[k]);
		fprintf(f, ",%.3f,%s\n", r->verify_ms, r->verified ? "yes" : "no");
	}
	return fclose(f) ? -1 : 0;
}

static void jparts(JsonBuilder *j, const double *parts)
{
	json_named(j, "parts_ms", kpart_names, parts, NR_KPARTS);
}

static void jsamples(JsonBuilder *j, const struct kexec_bench *kb)
{
	unsigned int i;

	json_builder_set_member_name(j, "samples");
	json_builder_begin_array(j);
	for (i = 0; i < kb->rows->len; i++) {
		const struct krow *r = &g_array_index(kb->rows, struct krow, i);

		json_builder_begin_object(j);
		json_str(j, "size", r->size_label);
		json_int(j, "ram_bytes", (gint64)r->size);
		json_str(j, "path", kpath_names[r->path]);
		json_int(j, "rep", r->rep);
		json_num(j, "blackout_ms", r->blackout_ms);
		json_num(j, "alone_ms", r->alone_ms);
		json_num(j, "sum_ms", r->sum_ms);
		jparts(j, r->parts);
		json_num(j, "verify_ms", r->verify_ms);
		json_num(j, "vmm_pause_ms", r->vmm_pause_ms);
		json_num(j, "vmm_tsc_hz", r->vmm_hz);
		json_str(j, "verify", r->verify);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
}

static void jsummary(JsonBuilder *j, const struct kexec_bench *kb)
{
	g_autoptr(GArray) sizes = sizes_of(kb);
	unsigned int i, p;

	json_builder_set_member_name(j, "summary");
	json_builder_begin_array(j);
	for (i = 0; i < sizes->len; i++) {
		uint64_t z = g_array_index(sizes, uint64_t, i);
		struct kmed m[NR_KPATHS];
		char label[16];

		size_label(z, label, sizeof(label));
		json_builder_begin_object(j);
		json_str(j, "size", label);
		for (p = 0; p < NR_KPATHS; p++) {
			kmed_of(kb, z, (enum kpath)p, &m[p]);
			json_builder_set_member_name(j, kpath_names[p]);
			json_builder_begin_object(j);
			json_int(j, "n", m[p].n);
			json_num(j, "blackout_ms", m[p].blackout);
			json_num(j, "alone_ms", m[p].alone);
			jparts(j, m[p].parts);
			json_builder_set_member_name(j, "ram_verified");
			json_builder_add_boolean_value(j, m[p].verified);
			json_builder_end_object(j);
		}
		json_num(j, "ratio_luo_baseline", m[KPATH_LUO].blackout / m[KPATH_BASE].alone);
		json_num(j, "kernel_boot_share", m[KPATH_LUO].parts[KP_BOOT] /
		     m[KPATH_LUO].blackout);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
}

static void jheader(JsonBuilder *j, const struct kexec_bench *kb)
{
	unsigned int i;

	json_str(j, "mode", "kexec");
	json_str(j, "command", kb->command);
	json_str(j, "host_kernel", kb->m.kernel);
	json_str(j, "accel", "tcg");
	json_str(j, "emulated", tcg_note);
	json_builder_set_member_name(j, "tsc");
	json_builder_begin_object(j);
	json_num(j, "hz_first_kernel", kb->hz[0]);
	json_num(j, "hz_new_kernel", kb->hz[1]);
	json_num(j, "log_detected_hz", kb->detected_hz);
	json_num(j, "log_refined_hz", kb->refined_hz);
	json_str(j, "clocksource", kb->clocksource);
	json_builder_end_object(j);
	json_builder_set_member_name(j, "parts");
	json_builder_begin_array(j);
	for (i = 0; i < NR_KPARTS; i++)
		json_builder_add_string_value(j, kpart_names[i]);
	json_builder_end_array(j);
	json_builder_set_member_name(j, "notes");
	json_builder_begin_array(j);
	for (i = 0; i < kb->notes->len; i++)
		json_builder_add_string_value(j, g_ptr_array_index(kb->notes, i));
	json_builder_end_array(j);
}

static int write_kexec_json(const struct kexec_bench *kb)
{
	g_autoptr(JsonBuilder) j = json_builder_new();
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *path = g_build_filename(kb->out, "kexec.json", NULL);
	g_autoptr(GError) err = NULL;

	json_builder_begin_object(j);
	jheader(j, kb);
	jsummary(j, kb);
	jsamples(j, kb);
	json_builder_end_object(j);
	root = json_builder_get_root(j);
	json_generator_set_root(g, root);
	json_generator_set_pretty(g, TRUE);
	if (!json_generator_to_file(g, path, &err)) {
		g_printerr("cprx-bench: %s: %s\n", path, err->message);
		return -1;
	}
	return 0;
}

int kexec_files(const struct kexec_bench *kb)
{
	int r = 0;

	r |= write_md(kb);
	r |= write_csv(kb);
	r |= write_kexec_json(kb);
	if (!r)
		g_printerr("cprx-bench: --kexec: kexec.md, kexec.csv, kexec.json in %s\n",
			   kb->out);
	return r ? 1 : 0;
}
