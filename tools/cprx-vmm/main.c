/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-vmm - synthetic VMM workload for libcprx tests, benchmark and docs.
 *
 * Guest RAM is a memfd cut into 4 KiB guest pages.  Each page carries an
 * invariant (header + pattern words derived from its index and a sequence
 * number) that vCPU threads keep rewriting, so a page that was lost, zeroed,
 * swapped or went stale across an update is caught.  A few device fds
 * (eventfd, pipe, socketpair, file) carry known state across the update.
 *
 * The same binary is the old image (saves and execs) and the new one
 * (reclaims, verifies, resumes); the new image takes its configuration from
 * the "vmm" blob, not from argv.
 *
 * Exit: 0 all verified, 1 usage or setup error, 2 verification failed,
 * 3 an update was refused but the guest kept running intact, 4 VM lost.
 *
 * This file: which image we are (first start, new image, baseline), the
 * run-update loop and the final verify.  vmm.h lists what the others hold.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm.h"

static struct vm the_vm;

static void fresh_start(struct vm *vm)
{
	vm->t_start_ns = now_ns();
	vm->kc.start_tsc = vm->tsc0;
	exec_path_default(vm);
	ram_create(vm, true);
	devs_create(vm);
	vcpus_start(vm);
}

static void set_output(struct vm *vm)
{
	vm->human = (vm->cfg.flags & CFG_HUMAN) ||
		    (!(vm->cfg.flags & CFG_JSON) && isatty(STDOUT_FILENO));
}

static int finish(struct vm *vm)
{
	char msg[320];
	bool ok;
	int code;

	vcpus_stop(vm);
	/* nothing was carried over to check, but across a kexec all of it was */
	if (cfg_baseline(&vm->cfg) && !vm->across_kexec) {
		keeper_reap(vm);
		print_exit(vm, "not verified (baseline)", EXIT_OK);
		return EXIT_OK;
	}
	ok = vm_verify(vm, msg, sizeof(msg));
	if (ok && vm->verify_failed)
		snprintf(msg, sizeof(msg), "FAIL: an earlier verify failed");
	code = !ok || vm->verify_failed ? EXIT_VERIFY :
	       vm->refused ? EXIT_REFUSED : EXIT_OK;
	print_exit(vm, msg, code);
	return code;
}

int main(int argc, char **argv)
{
	struct vm *vm = &the_vm;
	struct cprx_session *s = NULL;
	struct cprx_options o;
	bool incoming = getenv(CPRX_ENV) != NULL;
	int r, perr;

	xclock_start(vm);
	vm->xt[XT_INCOMING] = vm->tsc0;
	/* a new image takes its config from the blob: argv is only a fallback */
	perr = parse_options(argc, argv, &vm->cfg);
	if (perr < 0 && !incoming)
		return EXIT_SETUP;
	vm->argc = argc;
	vm->argv = argv;
	vm->ram_fd = -1;
	memset(vm->dev_fd, -1, sizeof(vm->dev_fd));
	memset(vm->xdev_fd, -1, sizeof(vm->xdev_fd));

	if (getenv(BASELINE_ENV) && perr == 0) {
		set_output(vm);
		baseline_incoming(vm, getenv(BASELINE_ENV));
		goto run;
	}
	if (perr == 0 && baseline_kexec_pending(&vm->cfg)) {
		set_output(vm);
		baseline_kexec_incoming(vm);
		goto run;
	}
	session_options(&vm->cfg, &o);
	vm->xt[XT_INCOMING] = tsc_now();
	r = cprx_incoming(&s, &o);
	if (r < 0)
		incoming_failed(vm, s, r);
	if (r == 0 && perr < 0)
		return EXIT_SETUP;
	set_output(vm);
	if (r == 1)
		new_image(vm, s);
	else
		fresh_start(vm);
	set_output(vm);	/* the blob may have brought other output flags */
run:

	while (vm->cfg.updates > 0) {
		settle(vm);
		sleep_ms(vm->cfg.run_ms);
		vm->cfg.updates--;
		update(vm);	/* returns only when refused */
	}
	sleep_ms(vm->cfg.run_ms);
	return finish(vm);
}
