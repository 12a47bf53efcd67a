/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --qemu: real QEMU instead of cprx-vmm, through the QEMU tier's
 * benchmark (qemu-integration/bench.sh).
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

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
int run_qemu(const struct options *o)
{
	const char *cache = g_getenv("CPRX_CACHE") ? g_getenv("CPRX_CACHE") : "/var/cache/cprx";
	g_autofree char *croot = g_build_filename(cache, "qemu-chroot", NULL);
	g_autofree char *script = g_build_filename(CPRX_SOURCE_ROOT,
						   "qemu-integration/bench.sh", NULL);
	g_autofree char *out = g_build_filename(o->out, "qemu", NULL);
	g_autofree char *runs = g_strdup_printf("%d", o->reps);
	g_autoptr(GPtrArray) cmd = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GString) mib = g_string_new(NULL);
	g_auto(GStrv) v = split(o->sizes ? o->sizes : QEMU_SIZES_DEFAULT);
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
	if (!strstr(o->baselines, "copy"))
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
