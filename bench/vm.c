/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --vm: the same sweep in the VM tier's guest, with cprx.ko
 * loaded there.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

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
int run_vm(const struct options *o, int argc, char **argv)
{
	g_autofree char *out = g_canonicalize_filename(o->out, NULL);
	g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
	g_autofree char *ko = g_strdup_printf("%s/kmod-%s/cprx.ko", CPRX_BUILD_ROOT,
					      o->vm_kernel);
	g_autofree char *run = g_build_filename(CPRX_SOURCE_ROOT, "tests/vm/run.sh", NULL);
	g_autoptr(GPtrArray) ga = guest_args(argc, argv, out);
	g_autofree char *gargs = g_strjoinv(" ", (char **)ga->pdata);
	g_autofree char *script = NULL, *guard = NULL;
	char *cmd[16];
	int status = 0, n = 0;

	if (access(ko, R_OK)) {
		g_printerr("cprx-bench: --vm: %s is missing; build it: tests/vm/kbuild.sh "
			   "%s . build/kmod-%s\n", ko, o->vm_kernel, o->vm_kernel);
		return 1;
	}
	if (g_mkdir_with_parents(out, 0755) < 0 || strpbrk(out, " \t\n")) {
		g_printerr("cprx-bench: --vm: output directory %s: %s\n", out,
			   strpbrk(out, " \t\n") ? "no spaces, please" : g_strerror(errno));
		return 1;
	}
	/*
	 * --guard-timeline: the guest's kernel runs the BPF LSM; a guard pinned
	 * there (guarding cprx-vmm, allowing only it) traces every update.
	 */
	if (o->guard) {
		g_autofree char *vmm = o->vmm ? g_canonicalize_filename(o->vmm, NULL) :
				       g_build_filename(CPRX_BUILD_ROOT, "tools",
							"cprx-vmm", NULL);

		guard = g_strdup_printf("%s/bpf/cprx-guard load --pin --guard-exe %s "
					"--allow %s || exit 1; ", CPRX_BUILD_ROOT,
					vmm, vmm);
	}
	/* kmod first: the point of the VM tier is the module on a stock kernel */
	/* the guest's ttyS1 is a terminal, but the bar would end up in a log */
	script = g_strdup_printf("insmod %s || exit 1; %sexec %s --no-progress %s%s", ko,
		guard ? guard : "", self, gargs,
		strstr(gargs, "--backends") ? "" : " --backends=kmod,cloexec");
	cmd[n++] = run;
	cmd[n++] = "--kernel";
	cmd[n++] = o->vm_kernel;
	cmd[n++] = "--mem";
	cmd[n++] = o->vm_mem;
	cmd[n++] = "--share";
	cmd[n++] = out;
	cmd[n++] = "--";
	cmd[n++] = "sh";
	cmd[n++] = "-c";
	cmd[n++] = script;
	cmd[n] = NULL;
	g_printerr("cprx-bench: --vm: %s guest, %s: %s\n", o->vm_kernel, o->vm_mem, script);
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
