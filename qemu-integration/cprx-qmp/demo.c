// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp demo: boots a small Linux guest (qemu-integration/guest.sh),
 * updates it three times and checks from its console that its ticks went
 * on without a gap and its RAM pattern is intact.
 */
#include "cprx-qmp.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* Where guest.sh is: the source tree, unless $CPRX_QEMU_SCRIPTS says. */
static char *scripts_dir(void)
{
	const char *e = g_getenv("CPRX_QEMU_SCRIPTS");

	return g_strdup(e ? e : CPRX_QEMU_SCRIPTS);
}

/* Last "tick N" in the console log, -1 if none; checks the ticks so far
 * are consecutive and counts "ram ok" lines after tick `after`. */
static int read_ticks(const char *log, int after, int *ram_ok, int *ram_bad, gboolean *gap)
{
	g_autofree char *s = NULL;
	g_auto(GStrv) lines = NULL;
	int last = -1;

	*ram_ok = *ram_bad = 0;
	*gap = FALSE;
	if (!g_file_get_contents(log, &s, NULL, NULL))
		return -1;
	lines = g_strsplit(s, "\n", -1);
	for (guint i = 0; lines[i]; i++) {
		int n;

		if (sscanf(lines[i], "tick %d", &n) == 1) {
			*gap |= last >= 0 && n != last + 1;
			last = n;
		} else if (sscanf(lines[i], "ram ok %d", &n) == 1 && n > after) {
			(*ram_ok)++;
		} else if (g_str_has_prefix(lines[i], "ram BAD")) {
			(*ram_bad)++;
		}
	}
	return last;
}

static gboolean wait_tick(const char *log, int target, int timeout_s, int after,
			  int *ram_ok, int *ram_bad, gboolean *gap)
{
	for (int i = 0; i < timeout_s * 10; i++) {
		if (read_ticks(log, after, ram_ok, ram_bad, gap) >= target && *ram_ok > 0)
			return TRUE;
		g_usleep(100000);
	}
	return FALSE;
}

static int demo_guest(struct qmp_opts *o, const char *dir)
{
	g_autofree char *sd = scripts_dir();
	g_autofree char *guest = g_build_filename(sd, "guest.sh", NULL);
	g_autofree char *log = g_build_filename(dir, "serial.log", NULL);
	const char *argv[] = { guest, "start", dir, NULL };
	g_autoptr(GError) e = NULL;
	int st, ok, bad, before, ret = 0, updates = 3;
	gboolean gap;

	printf("demo: booting Debian's kernel with a busybox initramfs under QEMU (TCG) in %s\n", dir);
	if (!g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, NULL, NULL, &st, &e) ||
	    !g_spawn_check_wait_status(st, NULL)) {
		say("cannot start the demo guest (%s)", e ? e->message : "guest.sh failed");
		return EXIT_USAGE;
	}
	if (!wait_tick(log, 12, 180, 0, &ok, &bad, &gap)) {
		say("the guest did not print its ticks (see %s)", log);
		return EXIT_USAGE;
	}
	o->socket = g_build_filename(dir, "qmp.sock", NULL);
	for (int u = 1; u <= updates && !ret; u++) {
		printf("demo: update %d of %d\n", u, updates);
		g_clear_pointer(&o->state, g_free);
		g_clear_pointer(&o->new_qmp, g_free);
		ret = do_update(o);
		before = read_ticks(log, 0, &ok, &bad, &gap);
		if (!ret && !wait_tick(log, before + 12, 120, before, &ok, &bad, &gap)) {
			say("the guest did not continue after the update");
			ret = EXIT_FAILED;
		}
		printf("demo: guest ticks %d -> %d after the update, %s, RAM pattern %s\n", before,
		       read_ticks(log, before, &ok, &bad, &gap), gap ? "GAP in the ticks" : "no gap",
		       bad ? "CORRUPTED" : ok ? "intact" : "not re-checked");
		if (gap || bad)
			ret = EXIT_FAILED;
	}
	return ret;
}

/* cprx-qmp demo: the guest in a temporary directory, killed at the end. */
int do_demo(struct qmp_opts *o)
{
	g_autofree char *dir = g_dir_make_tmp("cprx-demo-XXXXXX", NULL);
	g_autofree char *pidf = NULL, *pids = NULL;
	int ret;

	if (!dir)
		return EXIT_USAGE;
	ret = demo_guest(o, dir);
	pidf = g_build_filename(dir, "pid", NULL);
	if (g_file_get_contents(pidf, &pids, NULL, NULL) && atoi(pids) > 0)
		kill(atoi(pids), SIGTERM);
	if (!o->keep) {
		g_usleep(300000);
		rm_dir(dir);
	}
	printf("demo: %s\n", ret ? "FAILED" : "ok");
	return ret;
}
