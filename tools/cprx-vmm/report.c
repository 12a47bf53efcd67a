/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Output: one JSON line per event (update, preflight, rollback, error,
 * exit) or a short human-readable line; JSON by common/jsonl.c.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"
#include "jsonl.h"
#include "vmm.h"

static const char *const baseline_names[] = { "none", "floor", "naive", "copy" };

/* JSON output: one object per line, its event first, keys in a fixed order. */
static void json_event(struct jsonl *w, const char *event)
{
	jsonl_begin(w, stdout);
	jsonl_str(w, "event", event);
}

static const struct phase_span {
	const char *name;
	enum cprx_phase from, to;
} spans[] = {
	{ "preflight",	CPRX_PH_PREFLIGHT_START, CPRX_PH_PREFLIGHT_END },
	{ "stop",	CPRX_PH_STOP,		CPRX_PH_STOPPED },
	{ "save",	CPRX_PH_SAVE_START,	CPRX_PH_SAVE_END },
	{ "exec",	CPRX_PH_EXEC,		CPRX_PH_INCOMING },
	{ "reclaim",	CPRX_PH_INCOMING,	CPRX_PH_RECLAIM_END },
	{ "remap",	CPRX_PH_RECLAIM_END,	CPRX_PH_REMAP_END },
	{ "verify",	CPRX_PH_REMAP_END,	CPRX_PH_VERIFY_END },
	{ "resume",	CPRX_PH_VERIFY_END,	CPRX_PH_RESUMED },
};

static double span_ms(const uint64_t *ts, enum cprx_phase a, enum cprx_phase b)
{
	if (!ts[a] || !ts[b] || ts[b] < ts[a])
		return NAN;
	return (double)(ts[b] - ts[a]) / 1e6;
}

/* Guest downtime without our own RAM check, which a real VMM does not do. */
double pause_ms(const uint64_t *ts)
{
	double all = span_ms(ts, CPRX_PH_STOP, CPRX_PH_RESUMED);
	double verify = span_ms(ts, CPRX_PH_REMAP_END, CPRX_PH_VERIFY_END);

	return isnan(verify) ? all : all - verify;
}

static const char *verdict_name(enum cprx_verdict v)
{
	return v == CPRX_PASS ? "pass" : v == CPRX_WARN ? "warn" : "fail";
}

/* The checks preflight stored: nr_checks counts the ones that did not fit. */
static unsigned int checks_stored(const struct cprx_preflight_report *pf)
{
	return pf->nr_checks < pf->max_checks ? pf->nr_checks : pf->max_checks;
}

static void json_checks(struct jsonl *w, const struct cprx_preflight_report *pf)
{
	unsigned int i, n = checks_stored(pf);

	jsonl_array_begin(w, "checks");
	for (i = 0; i < n; i++) {
		jsonl_object_begin(w, NULL);
		jsonl_str(w, "name", pf->checks[i].name);
		jsonl_str(w, "verdict", verdict_name(pf->checks[i].verdict));
		jsonl_str(w, "reason", pf->checks[i].reason);
		jsonl_object_end(w);
	}
	jsonl_array_end(w);
}

/* Raw stamps from STOP on, so that a breakdown can cover every gap. */
static void json_timeline(struct jsonl *w, const uint64_t *ts)
{
	static const char *const names[CPRX_PH_MAX] = {
		[CPRX_PH_STOP] = "stop", [CPRX_PH_STOPPED] = "stopped",
		[CPRX_PH_SAVE_START] = "save_start", [CPRX_PH_SAVE_END] = "save_end",
		[CPRX_PH_EXEC] = "exec", [CPRX_PH_INCOMING] = "incoming",
		[CPRX_PH_RECLAIM_END] = "reclaim_end", [CPRX_PH_REMAP_END] = "remap_end",
		[CPRX_PH_VERIFY_END] = "verify_end", [CPRX_PH_RESUMED] = "resumed",
	};
	unsigned int i;

	if (!ts[CPRX_PH_STOP])
		return;
	jsonl_object_begin(w, "timeline_ms");
	for (i = CPRX_PH_STOP; i <= CPRX_PH_RESUMED; i++)
		if (ts[i] >= ts[CPRX_PH_STOP])
			jsonl_ms(w, names[i], (double)(ts[i] - ts[CPRX_PH_STOP]) / 1e6);
	jsonl_object_end(w);
}

/* Raw TSC stamps of an update across a kexec, and the rate to read them. */
static void json_tsc(struct jsonl *w, const struct vm *vm, double hz)
{
	jsonl_ms(w, "tsc_hz", hz);
	jsonl_object_begin(w, "tsc");
	jsonl_u64(w, "process_start", vm->tsc0);
	jsonl_u64(w, "stop", vm->kc.stop_tsc);
	jsonl_u64(w, "incoming", vm->xt[XT_INCOMING]);
	jsonl_u64(w, "remap_end", vm->xt[XT_REMAP_END]);
	jsonl_u64(w, "verify_end", vm->xt[XT_VERIFY_END]);
	jsonl_u64(w, "resumed", vm->xt[XT_RESUMED]);
	jsonl_object_end(w);
}

static void json_update(const struct vm *vm, const struct report *rep)
{
	const struct vm_config *c = &vm->cfg;
	struct jsonl w;
	unsigned int i;

	json_event(&w, "update");
	jsonl_bool(&w, "ok", !rep->stage && !rep->rollback);
	jsonl_u64(&w, "generation", vm->generation);
	jsonl_u64(&w, "pid", (uint64_t)getpid());
	jsonl_str(&w, "backend", rep->backend);
	jsonl_bool(&w, "rollback", rep->rollback);
	if (rep->rollback)
		jsonl_str(&w, "rollback_reason", rep->reason);
	jsonl_u64(&w, "ram_bytes", c->ram_bytes);
	jsonl_str(&w, "pages", page_kind_name(c->page_kind));
	jsonl_u64(&w, "vcpus", c->vcpus);
	jsonl_str(&w, "teardown", c->flags & CFG_INLINE ? "inline" : "deferred");
	jsonl_str(&w, "state", c->state_path[0] || cfg_baseline(c) == BASE_COPY ?
	       "file" : "memfd");
	jsonl_ms(&w, "pause_ms", rep->pause_ms);
	jsonl_bool(&w, "across_kexec", vm->across_kexec);
	if (vm->across_kexec)
		json_tsc(&w, vm, rep->tsc_hz);
	jsonl_object_begin(&w, "phases_ms");
	for (i = 0; i < ARRAY_SIZE(spans); i++)
		jsonl_ms(&w, spans[i].name, span_ms(rep->ts, spans[i].from, spans[i].to));
	jsonl_object_end(&w);
	json_timeline(&w, rep->ts);
	if (cfg_baseline(c))
		jsonl_str(&w, "baseline", baseline_names[cfg_baseline(c)]);
	jsonl_str(&w, "verify", rep->verify);
	if (rep->stage) {
		jsonl_str(&w, "stage", rep->stage);
		jsonl_str(&w, "errno", cprx_errname(rep->err));
		jsonl_str(&w, "error", rep->error);
		jsonl_str(&w, "hint", rep->hint);
		jsonl_bool(&w, "resumed", rep->resumed);
	}
	if (rep->pf)
		json_checks(&w, rep->pf);
	jsonl_end(&w);
}

static void human_checks(const struct cprx_preflight_report *pf)
{
	unsigned int i;

	for (i = 0; i < checks_stored(pf); i++)
		if (pf->checks[i].verdict != CPRX_PASS)
			printf("  preflight %s %s: %s\n", verdict_name(pf->checks[i].verdict),
			       pf->checks[i].name, pf->checks[i].reason);
}

static void human_update(const struct vm *vm, const struct report *rep)
{
	const uint64_t *ts = rep->ts;
	char sz[32];

	fmt_bytes(sz, sizeof(sz), vm->cfg.ram_bytes);
	if (rep->stage) {
		printf("update %u refused at %s: %s: %s%s%s%s; guest %s, verify %s\n",
		       vm->generation + 1, rep->stage, cprx_errname(rep->err), rep->error,
		       rep->hint[0] ? " (hint: " : "", rep->hint, rep->hint[0] ? ")" : "",
		       rep->resumed ? "resumed" : "NOT resumed", rep->verify);
	} else {
		printf("update %u%s%s%s: pause %.3f ms (stop %.3f, save %.3f, exec %.3f, "
		       "reclaim %.3f, remap %.3f, resume %.3f), RAM %s %s, %d devices %s\n",
		       rep->rollback ? vm->generation + 1 : vm->generation,
		       rep->rollback ? " rolled back, guest resumed on the previous binary (" : "",
		       rep->rollback ? rep->reason : "", rep->rollback ? ")" : "",
		       rep->pause_ms,
		       span_ms(ts, CPRX_PH_STOP, CPRX_PH_STOPPED),
		       span_ms(ts, CPRX_PH_SAVE_START, CPRX_PH_SAVE_END),
		       span_ms(ts, CPRX_PH_EXEC, CPRX_PH_INCOMING),
		       span_ms(ts, CPRX_PH_INCOMING, CPRX_PH_RECLAIM_END),
		       span_ms(ts, CPRX_PH_RECLAIM_END, CPRX_PH_REMAP_END),
		       span_ms(ts, CPRX_PH_VERIFY_END, CPRX_PH_RESUMED),
		       sz, rep->verified ? "verified" : rep->verify, NR_DEVICES,
		       rep->verified ? "verified" : "not verified");
	}
	if (rep->pf)
		human_checks(rep->pf);
	fflush(stdout);
}

void print_update(const struct vm *vm, const struct report *rep)
{
	if (vm->human)
		human_update(vm, rep);
	else
		json_update(vm, rep);
}

/* A forced update goes on despite preflight: say what preflight thought. */
void print_preflight(const struct vm *vm, const struct cprx_session *s,
			    int err, const struct cprx_preflight_report *pf)
{
	struct jsonl w;

	if (vm->human) {
		printf("preflight failed (%s: %s), forcing the update\n", cprx_errname(err),
		       sess_msg(s, err));
		human_checks(pf);
		fflush(stdout);
		return;
	}
	json_event(&w, "preflight");
	jsonl_bool(&w, "ok", false);
	jsonl_bool(&w, "forced", true);
	jsonl_str(&w, "errno", cprx_errname(err));
	jsonl_str(&w, "error", sess_msg(s, err));
	jsonl_str(&w, "hint", sess_hint(s));
	json_checks(&w, pf);
	jsonl_end(&w);
}

void print_warnings(const struct cprx_preflight_report *pf)
{
	unsigned int i;

	for (i = 0; i < checks_stored(pf); i++)
		if (pf->checks[i].verdict == CPRX_WARN)
			warn_msg("preflight %s: %s", pf->checks[i].name, pf->checks[i].reason);
}

/* A new image gives up: "rollback", or "error" when even that failed;
 * "waiting" when it cannot yet, with nothing lost. */
void print_event(const struct vm *vm, const char *event, const char *stage,
			int err, const char *error, const char *hint)
{
	struct jsonl w;

	if (vm->human && !strcmp(event, "kexec-prepared")) {
		printf("kexec prepared: %s\n", error);
		fflush(stdout);
		return;
	}
	if (vm->human) {
		printf("%s at %s: %s: %s%s%s%s\n", !strcmp(event, "rollback") ?
		       "rolling back" : !strcmp(event, "waiting") ? "NOT RESUMED" :
		       "VM LOST", stage, cprx_errname(err), error,
		       hint && *hint ? " (hint: " : "", hint ? hint : "",
		       hint && *hint ? ")" : "");
		fflush(stdout);
		return;
	}
	json_event(&w, event);
	if (!strcmp(event, "error"))
		jsonl_bool(&w, "fatal", true);
	jsonl_u64(&w, "generation", vm->generation);
	jsonl_u64(&w, "pid", (uint64_t)getpid());
	jsonl_str(&w, "stage", stage);
	jsonl_str(&w, "errno", err ? cprx_errname(err) : NULL);
	jsonl_str(&w, "error", error);
	jsonl_str(&w, "hint", hint);
	jsonl_end(&w);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Our fds beyond stdio, without the directory fd that lists them. */
static unsigned int list_fds(int *fds, unsigned int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned int n = 0;
	int fd;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			fd = atoi(e->d_name);
			if (fd > 2 && fd != dirfd(d) && n < max)
				fds[n++] = fd;
		}
	closedir(d);
	qsort(fds, n, sizeof(*fds), cmp_int);
	return n;
}

static const char *fd_token(const struct vm *vm, int fd)
{
	unsigned int i;

	if (fd == vm->ram_fd)
		return RAM_TOKEN;
	for (i = 0; i < NR_DEV_FDS; i++)
		if (fd == vm->dev_fd[i])
			return dev_token[i];
	for (i = 0; i < vm->cfg.devices; i++)
		if (fd == vm->xdev_fd[i])
			return XDEV_TOKEN;
	return NULL;
}

static void json_fds(struct jsonl *w, const struct vm *vm, const int *fds,
		     unsigned int n)
{
	char path[64], target[PATH_MAX];
	unsigned int i;
	ssize_t len;

	jsonl_array_begin(w, "fds");
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		len = readlink(path, target, sizeof(target) - 1);
		target[len < 0 ? 0 : len] = '\0';
		jsonl_object_begin(w, NULL);
		jsonl_u64(w, "fd", (uint64_t)fds[i]);
		jsonl_str(w, "target", target);
		jsonl_str(w, "token", fd_token(vm, fds[i]));
		jsonl_object_end(w);
	}
	jsonl_array_end(w);
}

/*
 * The kexec-prepared line: the session is cprx-luod's (or, for the copy
 * baseline, RAM is in its file); the TSC stamps let the new image, and
 * cprx-bench --kexec, time the guest's downtime across the kexec.
 */
void print_kexec_prepared(const struct vm *vm, const char *msg,
			  uint64_t prepared_tsc, const uint64_t *ts)
{
	double hz = tsc_hz(vm);
	struct jsonl w;

	if (vm->human) {
		printf("kexec prepared: %s (guest stopped %.3f ms ago)\n", msg,
		       tsc_ms(vm->kc.stop_tsc, prepared_tsc, hz));
		fflush(stdout);
		return;
	}
	json_event(&w, "kexec-prepared");
	jsonl_u64(&w, "generation", vm->generation);
	jsonl_u64(&w, "pid", (uint64_t)getpid());
	jsonl_str(&w, "stage", "kexec-prepare");
	jsonl_str(&w, "error", msg);
	jsonl_u64(&w, "ram_bytes", vm->cfg.ram_bytes);
	if (cfg_baseline(&vm->cfg))
		jsonl_str(&w, "baseline", baseline_names[cfg_baseline(&vm->cfg)]);
	jsonl_ms(&w, "save_ms", tsc_ms(vm->kc.stop_tsc, prepared_tsc, hz));
	jsonl_ms(&w, "tsc_hz", hz);
	jsonl_object_begin(&w, "tsc");
	jsonl_u64(&w, "process_start", vm->tsc0);
	jsonl_u64(&w, "stop", vm->kc.stop_tsc);
	jsonl_u64(&w, "prepared", prepared_tsc);
	jsonl_object_end(&w);
	json_timeline(&w, ts);
	jsonl_end(&w);
}

/* Since the first image started: by the TSC when a kexec came between. */
static uint64_t uptime_ms(const struct vm *vm, double hz)
{
	if (vm->across_kexec)
		return (uint64_t)tsc_ms(vm->kc.start_tsc, tsc_now(), hz);
	return (now_ns() - vm->t_start_ns) / 1000000;
}

void print_exit(const struct vm *vm, const char *verify, int code)
{
	long long rss = proc_kb("/proc/self/status", "VmRSS");
	double hz = vm->across_kexec ? tsc_hz(vm) : NAN;
	uint64_t up = uptime_ms(vm, hz);
	unsigned int n, i, stray = 0;
	int fds[1024];
	struct jsonl w;

	n = list_fds(fds, ARRAY_SIZE(fds));
	if (vm->human) {
		for (i = 0; i < n; i++)
			stray += !fd_token(vm, fds[i]);
		printf("exit: generation %u, %u updates ok, %u refused, verify %s, "
		       "%" PRIu64 " guest writes, RSS %lld KiB, %u fds (%u stray), exit %d\n",
		       vm->generation, vm->updates_ok, vm->refused, verify,
		       guest_writes(vm), rss, n, stray, code);
		fflush(stdout);
		return;
	}
	json_event(&w, "exit");
	jsonl_u64(&w, "generation", vm->generation);
	jsonl_u64(&w, "pid", (uint64_t)getpid());
	jsonl_u64(&w, "updates_ok", vm->updates_ok);
	jsonl_u64(&w, "refused", vm->refused);
	jsonl_str(&w, "verify", verify);
	jsonl_u64(&w, "guest_writes", guest_writes(vm));
	jsonl_u64(&w, "uptime_ms", up);
	if (vm->across_kexec)
		jsonl_u64(&w, "tsc_exit", tsc_now());
	jsonl_int(&w, "vm_rss_kb", rss);
	json_fds(&w, vm, fds, n);
	jsonl_u64(&w, "exit_code", (uint64_t)code);
	jsonl_end(&w);
}

/* An update line with nothing measured yet: pause_ms stays null if so. */
void report_init(struct report *rep, const struct cprx_session *s)
{
	const char *b = s ? cprx_backend_name(s) : NULL;

	memset(rep, 0, sizeof(*rep));
	snprintf(rep->backend, sizeof(rep->backend), "%s", b ? b : "none");
	rep->pause_ms = NAN;
	rep->tsc_hz = NAN;
}
