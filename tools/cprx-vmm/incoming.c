/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The new image's side of an update: take the configuration from the blob,
 * reclaim devices and RAM, verify, resume; or hand the guest back to the
 * previous binary (rollback) when any of that fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "vmm.h"

/*
 * Hands the guest back to the previous binary; returns only if that failed.
 * @hint only when the failure is libcprx's.
 */
static void __attribute__((noreturn))
reject(struct vm *vm, struct cprx_session *s, const char *stage, int err,
       const char *why, const char *hint)
{
	char msg[CPRX_MSG_MAX];
	int r;

	snprintf(msg, sizeof(msg), "%s", why);
	if (vm->cfg.flags & CFG_KEXEC) {	/* the old kernel is gone */
		print_event(vm, "error", stage, err, msg, hint);
		exit(EXIT_LOST);
	}
	print_event(vm, "rollback", stage, err, msg, hint);
	fflush(NULL);
	r = s ? cprx_rollback(s, msg) : -EINVAL;
	print_event(vm, "error", "rollback", r, sess_msg(s, r), sess_hint(s));
	exit(EXIT_LOST);
}

static int blob_check(const struct vm_blob *b, size_t len, char *why, size_t wlen)
{
	if (len != sizeof(*b) || b->magic != BLOB_MAGIC || b->version != BLOB_VERSION ||
	    b->size != sizeof(*b)) {
		snprintf(why, wlen, "blob '" BLOB_TOKEN "': %zu bytes, not a version %d "
			 "cprx-vmm blob of %zu", len, BLOB_VERSION, sizeof(*b));
		return -1;
	}
	if (!b->cfg.vcpus || b->cfg.vcpus > MAX_VCPUS || b->cfg.page_kind > 2 ||
	    !b->cfg.ram_bytes || b->cfg.ram_bytes % GPAGE ||
	    b->cfg.devices > MAX_XDEVS ||
	    b->cfg.ram_bytes / GPAGE < b->cfg.vcpus ||
	    !memchr(b->cfg.exec_path, 0, PATH_MAX) ||
	    !memchr(b->cfg.state_path, 0, PATH_MAX) ||
	    !memchr(b->dev.pipe_msg, 0, sizeof(b->dev.pipe_msg)) ||
	    !memchr(b->dev.sock_msg, 0, sizeof(b->dev.sock_msg))) {
		snprintf(why, wlen, "blob '" BLOB_TOKEN "': inconsistent configuration");
		return -1;
	}
	return 0;
}

/* A rollback image takes the state back as it was: no update happened. */
static void blob_load(struct vm *vm, struct cprx_session *s, bool rollback)
{
	static struct vm_blob blob;
	const struct vm_blob *b = &blob;
	const void *data;
	char why[256];
	size_t len;
	int r;

	r = cprx_get_blob(s, BLOB_TOKEN, &data, &len);
	if (r < 0)
		reject(vm, s, "blob", r, sess_msg(s, r), sess_hint(s));
	/* a copy: nothing promises the session's bytes are 8-byte aligned */
	memcpy(&blob, data, len < sizeof(blob) ? len : sizeof(blob));
	if (blob_check(b, len, why, sizeof(why)) < 0)
		reject(vm, s, "blob", -EBADMSG, why, NULL);
	vm->cfg = b->cfg;
	vm->generation = b->generation + !rollback;
	vm->updates_ok = b->updates_ok + !rollback;
	vm->refused = b->refused + rollback;
	vm->verify_failed = b->verify_failed;
	vm->t_start_ns = b->t_start_ns;
	memcpy(vm->stripe_sum, b->stripe_sum, sizeof(vm->stripe_sum));
	vm->dev = b->dev;
	if (rollback)
		vm->cfg.updates = 0;
	if (!rollback && cprx_generation(s) != vm->generation)
		warn_msg("libcprx says generation %u, the blob says %u",
		      cprx_generation(s), vm->generation);
}

static void reclaim_fd(struct vm *vm, struct cprx_session *s, const char *token,
		       int *fd)
{
	char why[CPRX_MSG_MAX];
	int r, fl;

	r = cprx_reclaim_fd(s, token, fd);
	if (r < 0) {
		snprintf(why, sizeof(why), "reclaiming %s: %s", token, sess_msg(s, r));
		reject(vm, s, "reclaim", r, why, sess_hint(s));
	}
	fl = fcntl(*fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		warn_msg("reclaimed %s (fd %d) without FD_CLOEXEC", token, *fd);
}

static void reclaim_devs(struct vm *vm, struct cprx_session *s, bool rollback)
{
	unsigned int i;
	int extra;

	for (i = 0; i < NR_DEV_FDS; i++)
		reclaim_fd(vm, s, dev_token[i], &vm->dev_fd[i]);
	for (i = 0; i < vm->cfg.devices; i++) {
		char tok[32];

		xdev_token(tok, sizeof(tok), i);
		reclaim_fd(vm, s, tok, &vm->xdev_fd[i]);
	}
	if (!(vm->cfg.faults & F_REQUIRE_TOKEN) || rollback)
		return;
	/* a device the old image never had: this must send us back */
	reclaim_fd(vm, s, EXTRA_TOKEN, &extra);
	close(extra);
	reject(vm, s, "reclaim", -EEXIST, "require-token: " EXTRA_TOKEN
	       " was reclaimed although the old image never preserved it", NULL);
}

static void reclaim_ram(struct vm *vm, struct cprx_session *s)
{
	char why[CPRX_MSG_MAX];
	uint64_t size = 0;
	void *addr = NULL;
	int r;

	r = cprx_reclaim_ram(s, RAM_TOKEN, &addr, &size, &vm->ram_fd);
	if (r < 0) {
		snprintf(why, sizeof(why), "reclaiming " RAM_TOKEN ": %s", sess_msg(s, r));
		reject(vm, s, "remap", r, why, sess_hint(s));
	}
	if (size != vm->cfg.ram_bytes) {
		snprintf(why, sizeof(why), RAM_TOKEN " is %" PRIu64 " bytes, the blob says %"
			 PRIu64, size, vm->cfg.ram_bytes);
		reject(vm, s, "remap", -EBADMSG, why, NULL);
	}
	vm->ram = addr;
	vm->npages = size / GPAGE;
	ram_advise(vm);
}

/*
 * Injected deaths before commit: no rollback asked for, libcprx's exit or
 * SIGSEGV handler does it.
 */
static void maybe_die(struct vm *vm, bool rollback)
{
	volatile char *page;

	if (rollback ||
	    !(vm->cfg.faults & (F_EXIT_EARLY | F_CRASH_EARLY | F_KILL_EARLY)))
		return;
	fflush(NULL);
	if (vm->cfg.faults & F_EXIT_EARLY)
		exit(EXIT_SETUP);
	if (vm->cfg.faults & F_KILL_EARLY)
		raise(SIGKILL);
	/* a real fault, not a NULL pointer a sanitizer would catch first */
	page = mmap(NULL, GPAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page != MAP_FAILED)
		*page = 1;
}

/* Injected refusals; before verify, which drains the devices. */
static void maybe_reject(struct vm *vm, struct cprx_session *s, bool rollback)
{
	if (vm->cfg.faults & F_REJECT_ALWAYS)
		reject(vm, s, "start", -ECANCELED,
		       "injected fault reject-always: this image refuses to run the guest",
		       NULL);
	if ((vm->cfg.faults & F_REJECT) && !rollback)
		reject(vm, s, "start", -ECANCELED,
		       "injected fault reject-state: the new image refuses the state",
		       NULL);
}

/* After a kexec: new devices, given the state the blob carried. */
static void restore_devs(struct vm *vm, struct cprx_session *s)
{
	char why[CPRX_MSG_MAX];

	if (vm->dev.gen != vm->generation) {
		snprintf(why, sizeof(why), "blob '" BLOB_TOKEN "': device state "
			 "of generation %u, this is generation %u", vm->dev.gen,
			 vm->generation);
		reject(vm, s, "devices", -EBADMSG, why, NULL);
	}
	if (devs_restore(vm) < 0)
		reject(vm, s, "devices", -EBADMSG, "blob '" BLOB_TOKEN "': the "
		       "device state is not the one its generation holds", NULL);
}

/* The old image's TSC stamps; without them the pause stays null. */
static void clock_load(struct vm *vm, struct cprx_session *s)
{
	const void *data;
	size_t len;

	vm->across_kexec = true;
	if (cprx_get_blob(s, CLOCK_TOKEN, &data, &len) < 0 ||
	    len != sizeof(vm->kc)) {
		warn_msg("no blob '" CLOCK_TOKEN "': the pause across the kexec is unknown");
		return;
	}
	memcpy(&vm->kc, data, sizeof(vm->kc));
}

static void commit(struct cprx_session *s)
{
	int r;

	crash_stop();	/* --crash-window: no kill lands after the commit */
	r = cprx_commit(s);
	if (r < 0)
		warn_msg("cprx_commit: %s", sess_msg(s, r));
}

void new_image(struct vm *vm, struct cprx_session *s)
{
	bool rollback = cprx_is_rollback(s);
	bool kexec = !strcmp(cprx_backend_name(s), "luo");
	/* a guardian may restart the previous binary until the commit */
	bool guarded = cprx_guardian_pid(s) > 0;
	struct report rep;
	int r;

	/* until the guest runs here, any exit or crash hands it back */
	r = kexec ? 0 : cprx_rollback_on_failure(s, true);
	if (r < 0 && !rollback)	/* a rollback image: -ELOOP, never a loop */
		warn_msg("cprx_rollback_on_failure: %s", sess_msg(s, r));
	vm->generation = cprx_generation(s);	/* until the blob says */
	blob_load(vm, s, rollback);
	if (kexec) {
		clock_load(vm, s);
		restore_devs(vm, s);
	} else {
		reclaim_devs(vm, s, rollback);
	}
	cprx_mark(s, CPRX_PH_RECLAIM_END);
	reclaim_ram(vm, s);
	cprx_mark(s, CPRX_PH_REMAP_END);
	vm->xt[XT_REMAP_END] = tsc_now();
	maybe_die(vm, rollback);
	maybe_reject(vm, s, rollback);

	report_init(&rep, s);
	rep.rollback = rollback;
	if (rollback)
		snprintf(rep.reason, sizeof(rep.reason), "%s",
			 cprx_rollback_reason(s) ? cprx_rollback_reason(s) : "");
	/*
	 * Guarded: commit before verify drains the devices and the vCPUs
	 * write RAM, which the restarted previous binary must find unchanged.
	 */
	if (guarded)
		commit(s);
	rep.verified = vm_verify(vm, rep.verify, sizeof(rep.verify));
	vm->verify_failed |= !rep.verified;
	cprx_mark(s, CPRX_PH_VERIFY_END);
	vm->xt[XT_VERIFY_END] = tsc_now();
	/* from here a rollback would resume devices older than guest RAM */
	cprx_rollback_on_failure(s, false);
	vcpus_start(vm);
	cprx_mark(s, CPRX_PH_RESUMED);
	vm->xt[XT_RESUMED] = tsc_now();
	if (!guarded)
		commit(s);
	cprx_timeline(s, rep.ts, CPRX_PH_MAX);
	/* CLOCK_MONOTONIC began again at the kexec: the TSC spans it */
	if (kexec) {
		rep.tsc_hz = tsc_hz(vm);
		rep.pause_ms = kexec_pause_ms(vm, rep.tsc_hz);
	} else {
		rep.pause_ms = pause_ms(rep.ts);
	}
	print_update(vm, &rep);
	cprx_session_close(s);
}

/* The incoming state is unusable: the previous binary may still read it. */
void __attribute__((noreturn))
incoming_failed(struct vm *vm, struct cprx_session *s, int err)
{
	char why[CPRX_MSG_MAX];

	snprintf(why, sizeof(why), "incoming state unusable: %s", sess_msg(s, err));
	if (!s) {
		print_event(vm, "error", "incoming", err, why, NULL);
		exit(EXIT_LOST);
	}
	vm->generation = cprx_generation(s);
	if (!strcmp(cprx_backend_name(s), "luo"))
		vm->cfg.flags |= CFG_KEXEC;	/* no rollback across a kexec */
	/*
	 * No daemon to ask: nothing was taken, and a session the kexec
	 * carried waits in the kernel for cprx-luod.  "Lost" would have the
	 * operator discard a guest that the next run may resume; that run
	 * says which it is.
	 */
	if ((vm->cfg.flags & CFG_KEXEC) && err == -ECONNREFUSED) {
		snprintf(why, sizeof(why), "not resumed, and not lost: %s; "
			 "nothing was taken: once cprx-luod answers, run again "
			 "to resume the guest or learn why it cannot be",
			 sess_msg(s, err));
		print_event(vm, "waiting", "incoming", err, why, sess_hint(s));
		exit(EXIT_SETUP);
	}
	reject(vm, s, "incoming", err, why, sess_hint(s));
}
