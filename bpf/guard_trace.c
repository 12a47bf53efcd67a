// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guard trace: the ring buffer's events, grouped per process into one
 * timeline per update (arm -> check -> commit -> retrieve -> finish),
 * printed when the update ends (finished, refused, failed) or has been
 * quiet for a while.  The BPF side wakes us only at those ends, so we also
 * poll on a short timer.  Used by `load --trace` and by the `trace` verb,
 * which finds a loaded guard's ring.  JSON lines by common/jsonl.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "guard_tool.h"
#include "jsonl.h"

#define TL_MAX_EVENTS	24

struct timeline {
	guint32 pid;
	char comm[CG_COMM_LEN];
	struct cg_event ev[TL_MAX_EVENTS];
	int n;
	gint64 seen;		/* g_get_monotonic_time of the last event */
};

struct tracer {
	const struct cg_trace_opts *o;
	guint64 start_ns;	/* CLOCK_MONOTONIC, as bpf_ktime_get_ns */
	GHashTable *live;	/* pid -> struct timeline */
	int printed;
};

static const char *phase_name(guint32 type)
{
	static const char *const names[CG_EV_MAX] = {
		[CG_EV_SESSION] = "session", [CG_EV_ARM] = "armed",
		[CG_EV_DISARM] = "disarmed", [CG_EV_CHECK] = "checked",
		[CG_EV_EXEC_FAIL] = "exec-failed", [CG_EV_COMMIT] = "committed",
		[CG_EV_RETRIEVE] = "retrieved", [CG_EV_FINISH] = "finished",
	};

	return type < CG_EV_MAX && names[type] ? names[type] : "?";
}

static const char *verdict_name(guint32 v)
{
	switch (v) {
	case CG_V_ALLOW: return "allow";
	case CG_V_DENY: return "deny";
	case CG_V_WOULD_DENY: return "would-deny";
	case CG_V_UNGUARDED: return "unguarded";
	case CG_V_UNCHECKED: return "not-enforced";
	}
	return "none";
}

static const char *reason_name(guint32 r)
{
	switch (r) {
	case CG_R_LISTED: return "allow-listed";
	case CG_R_NOT_LISTED: return "not on the allow-list";
	case CG_R_NOT_ARMED: return "armed-only and no armed session";
	case CG_R_PROBE: return "preflight probe of a session holder";
	case CG_R_LAUNCH: return "a launcher starting a VMM";
	case CG_R_USERNS: return "a guarded process may not create a user namespace";
	case CG_R_PTRACE: return "a guarded process may not ptrace an unguarded one";
	case CG_R_SET_MM: return "a guarded process may not use PR_SET_MM";
	}
	return "";
}

static const char *rule_path(const struct tracer *tr, guint32 rule)
{
	const struct cprx_guard_status *st = tr->o->st;
	unsigned int i;

	for (i = 0; st && i < st->nr_allow; i++)
		if (st->allow[i].rule == rule)
			return st->allow[i].path;
	return NULL;
}

static gboolean has(const struct timeline *tl, guint32 type)
{
	int i;

	for (i = 0; i < tl->n; i++)
		if (tl->ev[i].type == type)
			return TRUE;
	return FALSE;
}

/* The check that decided: the LSM's, or in trace-only the commit's. */
static const struct cg_event *verdict_event(const struct timeline *tl)
{
	const struct cg_event *found = NULL;
	int i;

	for (i = 0; i < tl->n; i++) {
		const struct cg_event *e = &tl->ev[i];

		if ((e->type == CG_EV_CHECK || e->type == CG_EV_COMMIT) &&
		    e->verdict != CG_V_NONE && e->verdict != CG_V_UNCHECKED)
			found = e;
	}
	return found;
}

static const char *outcome(const struct timeline *tl)
{
	const struct cg_event *v = verdict_event(tl);

	if (v && v->verdict == CG_V_DENY)
		return "refused";
	if (has(tl, CG_EV_EXEC_FAIL) || has(tl, CG_EV_DISARM))
		return "exec-failed";
	if (tl->n == 1 && (tl->ev[0].flags & CG_F_LONE))
		return "exec";
	if (!has(tl, CG_EV_COMMIT))
		return "incomplete";
	if (!has(tl, CG_EV_ARM))
		return "exec";
	if (has(tl, CG_EV_FINISH) || has(tl, CG_EV_RETRIEVE))
		return "updated";
	return "incomplete";
}

static int by_ts(const void *a, const void *b)
{
	const struct cg_event *x = a, *y = b;

	return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static gboolean is_kmod(const struct timeline *tl)
{
	int i;

	for (i = 0; i < tl->n; i++)
		if (tl->ev[i].flags & CG_F_KMOD)
			return TRUE;
	return FALSE;
}

/* What a phase adds, in words. */
static void detail(const struct tracer *tr, const struct cg_event *e,
		   GString *s)
{
	const char *rp;

	switch (e->type) {
	case CG_EV_ARM:
		if (e->flags & CG_F_KMOD)
			g_string_append_printf(s, "cprx.ko session armed, %u fds "
					       "pinned", e->count);
		else
			g_string_append_printf(s, "%u fds made inheritable "
					       "(cloexec backend)", e->count);
		break;
	case CG_EV_DISARM:
		g_string_append(s, "the exec failed: arm undone, fds restored");
		break;
	case CG_EV_CHECK:
	case CG_EV_COMMIT:
		g_string_append_printf(s, "%s", e->path);
		if (e->ino)
			g_string_append_printf(s, " (%u:%u:%llu)", e->dev >> 20,
					       e->dev & 0xfffff,
					       (unsigned long long)e->ino);
		if (e->verdict == CG_V_NONE)
			break;
		g_string_append_printf(s, ": %s", verdict_name(e->verdict));
		if (e->rule) {
			rp = rule_path(tr, e->rule);
			g_string_append_printf(s, ", rule %u%s%s%s", e->rule,
					       rp ? " (allow " : "", rp ? rp : "",
					       rp ? ")" : "");
		}
		if (e->reason && e->reason != CG_R_LISTED)
			g_string_append_printf(s, ", %s", reason_name(e->reason));
		if (e->verdict == CG_V_UNCHECKED)
			g_string_append(s, " (trace-only: decided at commit)");
		break;
	case CG_EV_EXEC_FAIL:
		g_string_append_printf(s, "execve returned %s",
				       g_strerror(-e->err));
		break;
	case CG_EV_RETRIEVE:
		g_string_append(s, e->flags & CG_F_KMOD ?
				"the new image took the session back" :
				"the new image reclaimed its first fd");
		break;
	case CG_EV_FINISH:
		g_string_append_printf(s, "%u fds retrieved, pins released",
				       e->count);
		break;
	}
}

static void print_json(const struct tracer *tr, const struct timeline *tl)
{
	const struct cg_event *v = verdict_event(tl);
	guint64 t0 = tl->ev[0].ts, prev = t0;
	struct jsonl w;
	int i;

	jsonl_begin(&w, stdout);
	jsonl_u64(&w, "pid", tl->pid);
	jsonl_str(&w, "comm", tl->comm);
	jsonl_str(&w, "outcome", outcome(tl));
	jsonl_str(&w, "backend", is_kmod(tl) ? "kmod" :
		  has(tl, CG_EV_ARM) ? "cloexec" : "none");
	jsonl_bool(&w, "enforced", tr->o->st && tr->o->st->enforcing);
	if (v) {
		jsonl_str(&w, "verdict", verdict_name(v->verdict));
		jsonl_str(&w, "binary", v->path);
		jsonl_u64(&w, "rule", v->rule);
		jsonl_str(&w, "reason", reason_name(v->reason));
	}
	jsonl_ms(&w, "total_ms", (tl->ev[tl->n - 1].ts - t0) / 1e6);
	jsonl_array_begin(&w, "phases");
	for (i = 0; i < tl->n; i++) {
		const struct cg_event *e = &tl->ev[i];
		g_autoptr(GString) d = g_string_new(NULL);

		detail(tr, e, d);
		jsonl_object_begin(&w, NULL);
		jsonl_str(&w, "phase", phase_name(e->type));
		jsonl_ms(&w, "t_ms", (e->ts - t0) / 1e6);
		jsonl_ms(&w, "dt_ms", (e->ts - prev) / 1e6);
		jsonl_u64(&w, "tid", e->tid);
		if (e->type == CG_EV_ARM || e->type == CG_EV_FINISH)
			jsonl_u64(&w, "fds", e->count);
		if (e->type == CG_EV_CHECK || e->type == CG_EV_COMMIT) {
			jsonl_str(&w, "path", e->path);
			jsonl_str(&w, "verdict", verdict_name(e->verdict));
			jsonl_u64(&w, "rule", e->rule);
		}
		if (e->type == CG_EV_EXEC_FAIL)
			jsonl_int(&w, "errno", -e->err);
		jsonl_str(&w, "detail", d->str);
		jsonl_object_end(&w);
		prev = e->ts;
	}
	jsonl_array_end(&w);
	jsonl_end(&w);
}

static void print_text(const struct tracer *tr, const struct timeline *tl)
{
	const struct cprx_guard_status *st = tr->o->st;
	guint64 t0 = tl->ev[0].ts, prev = t0;
	int i;

	printf("%s[%u]: %s", tl->comm, tl->pid, outcome(tl));
	if (has(tl, CG_EV_ARM) || is_kmod(tl))
		printf(", %s backend", is_kmod(tl) ? "kmod" : "cloexec");
	if (tl->n > 1)
		printf(", %.3f ms from %s to %s", (tl->ev[tl->n - 1].ts - t0) / 1e6,
		       phase_name(tl->ev[0].type), phase_name(tl->ev[tl->n - 1].type));
	printf("%s\n", st && !st->enforcing ? " (NOT ENFORCED: trace-only)" : "");
	printf("    %10s %10s  %-12s\n", "t ms", "+ms", "phase");
	for (i = 0; i < tl->n; i++) {
		const struct cg_event *e = &tl->ev[i];
		g_autoptr(GString) d = g_string_new(NULL);

		detail(tr, e, d);
		printf("    %10.3f %10.3f  %-12s %s\n", (e->ts - t0) / 1e6,
		       (e->ts - prev) / 1e6, phase_name(e->type), d->str);
		prev = e->ts;
	}
}

static void emit(struct tracer *tr, struct timeline *tl)
{
	qsort(tl->ev, tl->n, sizeof(tl->ev[0]), by_ts);
	if (tr->o->json)
		print_json(tr, tl);
	else
		print_text(tr, tl);
	fflush(stdout);
	tr->printed++;
}

/* The event that ends an update. */
static gboolean ends(const struct timeline *tl, const struct cg_event *e)
{
	switch (e->type) {
	case CG_EV_FINISH:
	case CG_EV_DISARM:
	case CG_EV_EXEC_FAIL:
		return TRUE;
	case CG_EV_RETRIEVE:
		return !(e->flags & CG_F_KMOD);
	case CG_EV_CHECK:
		/* a plain exec; or refused, and nothing armed to undo */
		return (e->flags & CG_F_LONE) ||
		       (e->verdict == CG_V_DENY && !has(tl, CG_EV_ARM));
	case CG_EV_COMMIT:
		return !has(tl, CG_EV_ARM) && !is_kmod(tl);
	}
	return FALSE;
}

static int on_event(void *ctx, void *data, size_t len)
{
	const struct cg_event *e = data;
	struct tracer *tr = ctx;
	struct timeline *tl;

	if (len < sizeof(*e))
		return 0;
	/* a ring nobody read holds old updates: not ours to report */
	if (!tr->o->backlog && e->ts < tr->start_ns)
		return 0;
	tl = g_hash_table_lookup(tr->live, GUINT_TO_POINTER(e->pid));
	if (!tl) {
		tl = g_new0(struct timeline, 1);
		tl->pid = e->pid;
		g_hash_table_insert(tr->live, GUINT_TO_POINTER(e->pid), tl);
	}
	if (tl->n < TL_MAX_EVENTS)
		tl->ev[tl->n++] = *e;
	memcpy(tl->comm, e->comm, sizeof(tl->comm));
	tl->comm[CG_COMM_LEN - 1] = '\0';
	tl->seen = g_get_monotonic_time();
	if (ends(tl, e)) {
		emit(tr, tl);
		g_hash_table_remove(tr->live, GUINT_TO_POINTER(e->pid));
	}
	return 0;
}

/* Print what has been quiet for o->idle s (all of it with @all). */
static void flush(struct tracer *tr, gboolean all)
{
	gint64 now = g_get_monotonic_time();
	GHashTableIter it;
	gpointer key, val;

	g_hash_table_iter_init(&it, tr->live);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct timeline *tl = val;

		if (!all && now - tl->seen < tr->o->idle * G_USEC_PER_SEC)
			continue;
		emit(tr, tl);
		g_hash_table_iter_remove(&it);
	}
}

static __u32 map_id(int fd)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);

	return fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len) ? info.id : 0;
}

/*
 * A reload (load --pin --replace) or a detach leaves this reader on a ring
 * nobody writes to: say so and stop, and systemd's Restart= follows the
 * new guard.
 */
static gboolean replaced(const struct cg_trace_opts *o)
{
	int fd = bpf_obj_get(o->watch_pin);
	gboolean gone = map_id(fd) != map_id(o->watch_fd);

	if (fd >= 0)
		close(fd);
	if (gone)
		fprintf(stderr, "cprx-guard: the guard pinned at %s was replaced "
			"or detached: this trace ends (run it again to follow "
			"the new one)\n", o->watch_pin);
	return gone;
}

int cg_trace_run(int map_fd, const struct cg_trace_opts *o,
		 volatile sig_atomic_t *stop)
{
	struct tracer tr = { .o = o };
	gint64 end = o->timeout > 0 ? g_get_monotonic_time() +
		     (gint64)(o->timeout * G_USEC_PER_SEC) : 0;
	struct ring_buffer *rb;
	struct timespec now;
	int ret = 0, polls = 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	tr.start_ns = now.tv_sec * 1000000000ull + now.tv_nsec;
	tr.live = g_hash_table_new_full(NULL, NULL, NULL, g_free);
	rb = ring_buffer__new(map_fd, on_event, &tr, NULL);
	if (!rb) {
		fprintf(stderr, "cprx-guard: cannot read the event ring buffer: "
			"%s\n", strerror(errno));
		g_hash_table_destroy(tr.live);
		return -errno;
	}
	fprintf(stderr, "cprx-guard: tracing%s\n", o->st && !o->st->enforcing ?
		" (NOT ENFORCED: trace-only)" : "");
	while (!*stop) {
		/* events come without wakeups: read on the timeout too */
		ret = ring_buffer__poll(rb, 100);
		if (ret >= 0 || ret == -EINTR)
			ret = ring_buffer__consume(rb);
		if (ret < 0 && ret != -EINTR)
			break;
		ret = 0;
		flush(&tr, FALSE);
		if (o->count && tr.printed >= o->count)
			break;
		if (end && g_get_monotonic_time() >= end)
			break;
		if (o->watch_fd > 0 && ++polls % 10 == 0 && replaced(o))
			break;
	}
	ring_buffer__consume(rb);
	if (!ret && o->watch_fd > 0 && replaced(o))
		ret = -ESTALE;
	if (!o->count || tr.printed < o->count)
		flush(&tr, TRUE);
	ring_buffer__free(rb);
	g_hash_table_destroy(tr.live);
	return ret;
}

/* --- the `trace` verb -------------------------------------------------- */

/*
 * One reader at a time: a lock on a file of its own beside the status,
 * root's and mode 0600.  Not on the status directory, which every user may
 * open (0755) and so hold locked, refusing every reader, and a foreground
 * `load --trace` with them.
 */
int cg_trace_lock(void)
{
	g_autofree char *file = NULL;
	int fd = cg_open_lock("trace.lock", &file);

	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "cprx-guard: another trace reader holds %s (%s): "
			"only one reader gets the events; stop it first "
			"(cprx-guard-trace.service, or a load --trace)\n", file,
			errno == EWOULDBLOCK ? "locked" : strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The events ring of the loaded guard, by identity: its pin (watched, for
 * a reload), else the id its status records.
 */
static int events_fd(const struct cprx_guard_status *st, char **pin)
{
	if (!st)
		return -1;
	if (*st->pinned)
		*pin = g_build_filename(st->pinned, "events", NULL);
	return cg_find_map(st, "events");
}

int cg_cmd_trace(char **args)
{
	struct cg_trace_opts o = { .json = cg_opt.json, .count = cg_opt.count,
				   .timeout = cg_opt.timeout, .idle = cg_opt.idle,
				   .backlog = cg_opt.backlog };
	struct cprx_guard_status st;
	gboolean have = !cprx_guard_status_read(cg_status_file(), &st, NULL, 0);
	g_autofree char *pin = NULL;
	int fd, ret, lock;

	(void)args;
	fd = events_fd(have ? &st : NULL, &pin);
	if (fd < 0) {
		fprintf(stderr, "cprx-guard: no guard is loaded (cprx-guard load)\n");
		if (have)
			cprx_guard_status_free(&st);
		return 3;
	}
	lock = cg_trace_lock();
	if (lock < 0) {
		close(fd);
		if (have)
			cprx_guard_status_free(&st);
		return 4;
	}
	if (have && !st.enforcing)
		fprintf(stderr, "cprx-guard: NOT ENFORCED: %s\n", st.why);
	o.st = have ? &st : NULL;
	o.watch_fd = pin ? fd : -1;
	o.watch_pin = pin;
	cg_catch_signals();
	ret = cg_trace_run(fd, &o, &cg_stop);
	close(fd);
	close(lock);
	if (have)
		cprx_guard_status_free(&st);
	return ret ? 1 : 0;
}
