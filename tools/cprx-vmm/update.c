/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The old image's side of an update: arm the devices, preserve RAM and
 * devices, preflight, stop the guest, save and exec; or, when any of that
 * fails, verify and resume the guest and say why.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm.h"

/*
 * The update did not happen and we are still the old image: verify the guest
 * while it is stopped (a check that the failed attempt disturbed nothing),
 * resume it, say why.  Later updates are not tried: the same cause would
 * refuse them too.
 */
static void update_refused(struct vm *vm, struct cprx_session *s,
			   const char *stage, int err,
			   const struct cprx_preflight_report *pf)
{
	struct report rep;
	uint64_t t0, t1;

	report_init(&rep, s);
	rep.stage = stage;
	rep.err = err;
	rep.pf = pf;
	snprintf(rep.error, sizeof(rep.error), "%s", sess_msg(s, err));
	snprintf(rep.hint, sizeof(rep.hint), "%s", sess_hint(s));
	if (s)
		cprx_timeline(s, rep.ts, CPRX_PH_MAX);
	vcpus_stop(vm);
	t0 = now_ns();
	rep.verified = vm_verify(vm, rep.verify, sizeof(rep.verify)) &&
		       fds_cloexec(vm, rep.verify, sizeof(rep.verify));
	t1 = now_ns();
	vcpus_resume(vm);
	rep.resumed = true;
	/* only when the update itself had stopped the guest */
	if (rep.ts[CPRX_PH_STOP])
		rep.pause_ms = (double)(now_ns() - rep.ts[CPRX_PH_STOP] - (t1 - t0)) / 1e6;
	print_update(vm, &rep);
	cprx_session_close(s);
	vm->verify_failed |= !rep.verified;
	vm->refused++;
	vm->cfg.updates = 0;
}

static int preserve_all(struct vm *vm, struct cprx_session *s)
{
	unsigned int i;
	int r;

	r = cprx_preserve_ram(s, RAM_TOKEN, vm->ram_fd, vm->ram, vm->cfg.ram_bytes,
			      (enum cprx_page_kind)vm->cfg.page_kind);
	/* no device fd survives a kexec: the blob carries their state */
	if ((vm->cfg.flags & CFG_KEXEC) && !(vm->cfg.faults & F_KEXEC_DEVICE))
		return r;
	for (i = 0; !r && i < NR_DEV_FDS; i++)
		r = cprx_preserve_fd(s, dev_token[i], vm->dev_fd[i]);
	for (i = 0; !r && i < vm->cfg.devices; i++) {
		char tok[32];

		xdev_token(tok, sizeof(tok), i);
		r = cprx_preserve_fd(s, tok, vm->xdev_fd[i]);
	}
	return r;
}

void blob_fill(const struct vm *vm, struct vm_blob *b)
{
	memset(b, 0, sizeof(*b));
	b->magic = BLOB_MAGIC;
	b->version = BLOB_VERSION;
	b->size = sizeof(*b);
	b->cfg = vm->cfg;
	b->generation = vm->generation;
	b->updates_ok = vm->updates_ok;
	b->refused = vm->refused;
	b->verify_failed = vm->verify_failed;
	b->t_start_ns = vm->t_start_ns;
	memcpy(b->stripe_sum, vm->stripe_sum, sizeof(b->stripe_sum));
	b->dev = vm->dev;
}

/*
 * The blob is added with the guest stopped: it carries the stripe sums,
 * which are only final then.
 */
static int stop_and_save(struct vm *vm, struct cprx_session *s, const char **stage)
{
	static struct vm_blob blob;
	int r;

	cprx_mark(s, CPRX_PH_STOP);
	vm->kc.stop_tsc = tsc_now();
	vcpus_stop(vm);
	cprx_mark(s, CPRX_PH_STOPPED);
	blob_fill(vm, &blob);
	*stage = "blob";
	r = cprx_add_blob(s, BLOB_TOKEN, &blob, sizeof(blob));
	/* the one clock the new kernel shares with this one */
	if (!r && (vm->cfg.flags & CFG_KEXEC))
		r = cprx_add_blob(s, CLOCK_TOKEN, &vm->kc, sizeof(vm->kc));
	if (r < 0)
		return r;
	*stage = "save";
	r = cprx_save(s);
	if (r < 0 || !(vm->cfg.faults & F_CORRUPT))
		return r;
	*stage = "corrupt-state";
	return corrupt_state(vm->cfg.state_path);
}

static int update_prepare(struct vm *vm, struct cprx_session *s,
			  const char **stage)
{
	int r;

	if ((vm->cfg.faults & F_SECCOMP) && !vm->seccomp_on) {
		*stage = "seccomp-deny-exec";
		r = seccomp_deny_exec();
		if (r < 0)
			return r;
		vm->seccomp_on = true;
	}
	*stage = "devices";
	r = devs_arm(vm, vm->generation + 1);
	if (r < 0)
		return -EIO;
	*stage = "preserve";
	return preserve_all(vm, s);
}

void exec_path_default(struct vm *vm)
{
	ssize_t n;

	if (vm->cfg.exec_path[0])
		return;
	n = readlink("/proc/self/exe", vm->cfg.exec_path, PATH_MAX - 1);
	if (n < 0)
		die(EXIT_SETUP, "readlink /proc/self/exe: %m; pass --exec PATH");
	vm->cfg.exec_path[n] = '\0';
}

/*
 * The session is cprx-luod's now, guest RAM in it: this VMM's part is over
 * until a VMM started after the kexec takes it back.
 */
void kexec_prepared(struct vm *vm, struct cprx_session *s)
{
	uint64_t prepared_tsc = tsc_now(), ts[CPRX_PH_MAX] = { 0 };
	char msg[CPRX_MSG_MAX];

	snprintf(msg, sizeof(msg), "session '%s' held by cprx-luod until the "
		 "kexec; start " VMM_NAME " again with the same options after "
		 "it", vm->cfg.name);
	cprx_timeline(s, ts, CPRX_PH_MAX);
	print_kexec_prepared(vm, msg, prepared_tsc, ts);
	cprx_session_close(s);
	fflush(NULL);
	exit(EXIT_OK);
}

/* Started by cprx-guardian (or a supervisor alike): name it the guardian. */
static int guard(struct cprx_session *s)
{
	const char *env = getenv(CPRX_ENV_GUARDIAN);
	char *end;
	long fd;

	if (!env)
		return 0;
	fd = strtol(env, &end, 10);
	if (*end || end == env || fd < 0 || fd > INT_MAX)
		return -EINVAL;
	return cprx_set_guardian(s, (int)fd);
}

/* Returns only when the update was refused; the guest then runs on. */
void update(struct vm *vm)
{
	static struct cprx_check checks[64];	/* 13 checks for one RAM region */
	static struct cprx_preflight_report pf;
	char *probe[] = { vm->cfg.exec_path, "--version", NULL };
	struct cprx_session *s = NULL;
	char **argv = vm->argv;
	struct cprx_options o;
	const char *stage = "open";
	int r;

	if (cfg_baseline(&vm->cfg))
		baseline_update(vm);	/* execs or dies */
	session_options(&vm->cfg, &o);
	r = cprx_session_open(&s, vm->cfg.name, &o);
	if (r < 0)
		goto refused;
	stage = "guardian";
	r = guard(s);
	if (r < 0)
		goto refused;
	r = update_prepare(vm, s, &stage);
	if (r < 0)
		goto refused;
	memset(&pf, 0, sizeof(pf));
	pf.size = sizeof(pf);
	pf.max_checks = sizeof(checks) / sizeof(checks[0]);
	pf.checks = checks;
	stage = "preflight";
	r = cprx_preflight(s, vm->cfg.exec_path,
			   vm->cfg.flags & CFG_NO_PROBE ? NULL : probe, &pf);
	if (r < 0 && !(vm->cfg.flags & CFG_FORCE)) {
		update_refused(vm, s, stage, r, &pf);
		return;
	}
	if (r < 0)
		print_preflight(vm, s, r, &pf);
	else
		print_warnings(&pf);
	r = stop_and_save(vm, s, &stage);
	if (r < 0)
		goto refused;
	if (vm->cfg.flags & CFG_KEXEC) {
		stage = "kexec-prepare";
		r = cprx_kexec_prepare(s);
		if (!r)
			kexec_prepared(vm, s);
		goto refused;
	}
	fflush(NULL);	/* exec drops stdio buffers */
	stage = "exec";
	if (vm->cfg.faults & F_E2BIG)
		argv = e2big_argv(vm);
	if ((vm->cfg.faults & F_FORGE_EXE) && forge_exe_fd() < 0)
		die(EXIT_SETUP, "--inject forge-guardian-exe: no fd on this "
		    "binary to forge, or $CPRX_VMM_FORGED_EXE unreadable");
	crash_arm(vm);
	r = cprx_exec(s, vm->cfg.exec_path, argv);
	crash_stop();
	if (argv != vm->argv)
		e2big_argv_free(vm, argv);
refused:
	update_refused(vm, s, stage, r, NULL);
}
