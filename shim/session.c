// SPDX-License-Identifier: LGPL-2.1-or-later
/* Sessions: what a VMM preserves, under which token. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include "internal.h"

/* Updates this process went through; set when a new image takes its state. */
unsigned int cprx_process_generation;

static const char *const phase_names[CPRX_PH_MAX] = {
	[CPRX_PH_PREFLIGHT_START] = "preflight_start",
	[CPRX_PH_PREFLIGHT_END] = "preflight_end",
	[CPRX_PH_STOP] = "stop",
	[CPRX_PH_STOPPED] = "stopped",
	[CPRX_PH_SAVE_START] = "save_start",
	[CPRX_PH_SAVE_END] = "save_end",
	[CPRX_PH_EXEC] = "exec",
	[CPRX_PH_INCOMING] = "incoming",
	[CPRX_PH_RECLAIM_END] = "reclaim_end",
	[CPRX_PH_REMAP_END] = "remap_end",
	[CPRX_PH_VERIFY_END] = "verify_end",
	[CPRX_PH_RESUMED] = "resumed",
	[CPRX_PH_COMMIT] = "commit",
};

uint64_t cprx_now_ns(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC is per kernel, so it is comparable across exec. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int cprx_check_token(struct cprx_session *s, const char *what,
		     const char *token)
{
	size_t len = token ? strlen(token) : 0;

	/* a NULL pointer: in cprx_errmsg(NULL) too, as cprx.h promises */
	if (!token) {
		if (s)
			cprx_fail(s, EINVAL, "pass a valid pointer",
				  "%s is NULL", what);
		return cprx_fail(NULL, EINVAL, "pass a valid pointer",
				 "%s is NULL", what);
	}
	if (!len || len > CPRX_NAME_MAX)
		return cprx_fail(s, EINVAL, "use 1 to 63 bytes",
				 "%s '%s' is %s", what, token ? token : "(null)",
				 len ? "longer than 63 bytes" : "empty");
	return 0;
}

struct cprx_session *cprx_session_alloc(const char *name,
					const struct cprx_options *opts)
{
	struct cprx_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	if (opts) {
		size_t n = opts->size < sizeof(s->opts) ? opts->size
							: sizeof(s->opts);
		memcpy(&s->opts, opts, n);
	}
	s->opts.size = sizeof(s->opts);
	s->state_fd = -1;
	s->exe_fd = -1;
	s->kmod_sfd = -1;
	s->luo_sock = -1;
	s->guardian_fd = -1;
	s->generation = cprx_process_generation;
	return s;
}

/* The end of the last field this library knows: a newer one may follow. */
#define OPTIONS_KNOWN	(offsetof(struct cprx_options, kexec_session) + \
			 sizeof(const char *))

/* The padding 0.4 left after no_deferred_teardown, where 0.3 ended. */
#define OPTIONS_PAD	(offsetof(struct cprx_options, no_deferred_teardown) + \
			 sizeof(bool))
#define OPTIONS_PAD_END	offsetof(struct cprx_options, kexec_session)

/* A non-zero byte in [@from, @to) of the caller's @size bytes: -EINVAL. */
static int zero_tail(const struct cprx_options *opts, size_t from, size_t to)
{
	const unsigned char *p = (const unsigned char *)opts;
	size_t off;

	for (off = from; off < to && off < opts->size; off++)
		if (p[off])
			return cprx_fail(NULL, EINVAL,
					 "zero the options this library does not "
					 "know, or use a newer libcprx",
					 "cprx_options has a non-zero byte at "
					 "offset %zu, past the %zu bytes this "
					 "library knows", off, from);
	return 0;
}

/*
 * Options from a newer header (size larger than ours) are accepted while
 * every byte past the fields this library knows is zero: a non-zero one
 * asks for something it cannot do.  Fields past a smaller size are zero.
 * The padding inside the struct must be zero too: a newer header may put
 * a field there.
 */
int cprx_check_options(const struct cprx_options *opts)
{
	struct cprx_options o = { 0 };
	int ret;

	if (!opts)
		return 0;
	if (opts->size < sizeof(opts->size) || opts->size > 4096)
		return cprx_fail(NULL, EINVAL,
				 "set opts.size = sizeof(struct cprx_options)",
				 "cprx_options.size is %u", opts->size);
	ret = zero_tail(opts, OPTIONS_PAD, OPTIONS_PAD_END);
	if (!ret && opts->size > sizeof(o))
		ret = zero_tail(opts, OPTIONS_KNOWN, opts->size);
	if (ret)
		return ret;
	memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
	if (o.target > CPRX_STATE_FILE)
		return cprx_fail(NULL, EINVAL, "use enum cprx_state_target",
				 "state target %d is unknown", o.target);
	if (o.backend > CPRX_BACKEND_LUO)
		return cprx_fail(NULL, EINVAL, "use enum cprx_backend",
				 "backend %d is unknown", o.backend);
	if (o.target == CPRX_STATE_FILE && !o.state_path)
		return cprx_fail(NULL, EINVAL, "set opts.state_path",
				 "state target is a file but no path is given");
	return 0;
}

CPRX_EXPORT int cprx_session_open(struct cprx_session **sp, const char *name,
				  const struct cprx_options *opts)
{
	struct cprx_session *s;
	int ret;

	if (!sp)
		return cprx_null_arg(NULL, __func__, "sp");
	*sp = NULL;
	ret = cprx_check_token(NULL, "session name", name);
	if (ret)
		return ret;
	ret = cprx_check_options(opts);
	if (ret)
		return ret;
	s = cprx_session_alloc(name, opts);
	if (!s)
		return cprx_fail(NULL, ENOMEM, NULL, "out of memory");
	if (s->opts.state_path) {
		s->state_path = strdup(s->opts.state_path);
		if (!s->state_path) {
			free(s);
			return cprx_fail(NULL, ENOMEM, NULL, "out of memory");
		}
		s->opts.state_path = s->state_path;
	}
	ret = cprx_backend_select(s, s->opts.backend);
	if (!ret)
		ret = s->backend->open(s);
	if (!ret)
		ret = cprx_prepare(s);
	if (ret) {
		/* keep the message: it lives in the session */
		cprx_fail(NULL, -ret, s->hint, "%s", s->msg);
		cprx_session_close(s);
		return ret;
	}
	*sp = s;
	return 0;
}

CPRX_EXPORT void cprx_session_close(struct cprx_session *s)
{
	unsigned int i;

	if (!s)
		return;
	cprx_rollback_disarm(s);	/* its fds and state go now */
	cprx_keeper_drop(&s->keeper);
	if (s->backend)
		s->backend->close(s);
	if (s->state_fd >= 0)
		close(s->state_fd);
	if (s->exe_fd >= 0)
		close(s->exe_fd);
	if (!s->incoming)	/* an update that never happened */
		cprx_mirror_remove(s);
	cprx_entries_release(s);
	free(s->mirror_path);
	for (i = 0; i < s->nr_blobs; i++)
		free(s->blobs[i].data);
	free(s->blobs);
	free(s->ents);
	free(s->state_path);
	free(s->why);
	cprx_io_ring_free(s->ring);
	cprx_state_free(&s->origin);
	cprx_state_free(&s->in);
	free(s);
}

struct cprx_entry *cprx_find_entry(struct cprx_session *s, const char *token)
{
	unsigned int i;

	for (i = 0; i < s->nr_ents; i++)
		if (!strcmp(s->ents[i].token, token))
			return &s->ents[i];
	return NULL;
}

/* What @fd is when it is one of the session's own, else NULL. */
static const char *own_fd(const struct cprx_session *s, int fd)
{
	if (fd == s->state_fd)
		return "the state";
	if (fd == s->exe_fd)
		return "this binary, held for a rollback";
	if (fd == s->kmod_sfd)
		return "the cprx.ko session";
	if (fd == s->luo_sock)
		return "the connection to cprx-luod";
	if (fd == s->guardian_fd)
		return "the guardian's socket";
	if (fd == cprx_io_ring_fd(s->ring))
		return "the save's io_uring";
	if (s->keeper.pid && (fd == s->keeper.pidfd || fd == s->keeper.wfd))
		return "the keeper's, started by preflight";
	return NULL;
}

static int add_entry(struct cprx_session *s, const char *token, int fd,
		     enum cprx_fd_kind kind, struct cprx_entry **ep)
{
	const char *own;

	struct cprx_entry *e;
	struct stat st;
	int flags, ret;

	if (s->incoming)
		return cprx_fail(s, EINVAL, "open a new session for the next update",
				 "session '%s' is an incoming session", s->name);
	ret = cprx_check_token(s, "token", token);
	if (ret)
		return ret;
	if (cprx_find_entry(s, token))
		return cprx_fail(s, EEXIST, "use a distinct token per fd",
				 "token '%s' is already preserved", token);
	if (s->nr_ents >= CPRX_STATE_MAX_FDS)
		return cprx_fail(s, ENOSPC, "preserve fewer fds per session",
				 "session '%s' already holds %u fds", s->name,
				 s->nr_ents);
	flags = fcntl(fd, F_GETFD);
	if (flags < 0 || fstat(fd, &st) < 0)
		return cprx_fail(s, EBADF, "pass an open file descriptor",
				 "fd %d for token '%s' is not open", fd, token);
	own = fd >= 0 ? own_fd(s, fd) : NULL;
	if (own)	/* the new image would hand it out, then commit close it */
		return cprx_fail(s, EINVAL, "preserve only the VMM's own fds "
				 "(skip the fds libcprx opened)", "fd %d for token "
				 "'%s' is libcprx's own: %s", fd, token, own);
	if (s->nr_ents == s->cap_ents) {
		unsigned int cap = s->cap_ents ? 2 * s->cap_ents : 16;

		e = realloc(s->ents, cap * sizeof(*e));
		if (!e)
			return cprx_fail(s, ENOMEM, NULL, "out of memory");
		s->ents = e;
		s->cap_ents = cap;
	}
	e = &s->ents[s->nr_ents];
	memset(e, 0, sizeof(*e));
	snprintf(e->token, sizeof(e->token), "%s", token);
	e->kind = kind;
	e->fd = fd;
	e->held = -1;	/* new image only */
	e->saved_fdflags = flags;
	e->ino = st.st_ino;
	e->dev = st.st_dev;
	ret = s->backend->preserve(s, e);
	if (ret)
		return ret;
	s->nr_ents++;
	s->saved = false;	/* the saved state lacks it: cprx_exec saves anew */
	*ep = e;
	return 0;
}

CPRX_EXPORT int cprx_preserve_ram(struct cprx_session *s, const char *token,
				  int fd, void *addr, uint64_t size,
				  enum cprx_page_kind kind)
{
	struct cprx_entry *e;
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (kind > CPRX_PAGE_HUGETLB)
		return cprx_fail(s, EINVAL, "use a enum cprx_page_kind value",
				 "page kind %d of '%s' is unknown", kind,
				 token ? token : "");
	if (!size)
		return cprx_fail(s, EINVAL, "pass the region's size",
				 "RAM region '%s' has size 0", token ? token : "");
	ret = add_entry(s, token, fd, CPRX_FD_RAM, &e);
	if (ret)
		return ret;
	e->size = size;
	e->page_kind = kind;
	e->addr = addr;
	return 0;
}

CPRX_EXPORT int cprx_preserve_fd(struct cprx_session *s, const char *token,
				 int fd)
{
	struct cprx_entry *e;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	return add_entry(s, token, fd, CPRX_FD_DEVICE, &e);
}

CPRX_EXPORT int cprx_unpreserve(struct cprx_session *s, const char *token)
{
	struct cprx_entry *e;
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (s->incoming)
		return cprx_fail(s, EINVAL, "reclaim the fd, or close it; an "
				 "incoming session preserves nothing",
				 "session '%s' is an incoming session", s->name);
	ret = cprx_check_token(s, "token", token);
	if (ret)
		return ret;
	e = cprx_find_entry(s, token);
	if (!e)
		return cprx_fail(s, ENOENT, "check the token",
				 "token '%s' is not preserved in session '%s'",
				 token, s->name);
	s->backend->unpreserve(s, e);
	*e = s->ents[--s->nr_ents];
	s->saved = false;	/* the saved state names it: cprx_exec saves anew */
	return 0;
}

CPRX_EXPORT int cprx_add_blob(struct cprx_session *s, const char *token,
			      const void *data, size_t len)
{
	struct cprx_blob *b;
	unsigned int i;
	int ret;

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (!data && len)
		return cprx_null_arg(s, __func__, "data");
	ret = cprx_check_token(s, "blob", token);
	if (ret)
		return ret;
	for (i = 0; i < s->nr_blobs; i++)
		if (!strcmp(s->blobs[i].token, token))
			return cprx_fail(s, EEXIST, "use a distinct token per blob",
					 "blob '%s' already added", token);
	if (len > CPRX_STATE_MAX / 2 || s->nr_blobs >= CPRX_STATE_MAX_BLOBS)
		return cprx_fail(s, E2BIG, "keep RAM in preserved fds, not blobs",
				 "blob '%s' (%zu bytes) does not fit the state",
				 token, len);
	if (s->nr_blobs == s->cap_blobs) {
		unsigned int cap = s->cap_blobs ? 2 * s->cap_blobs : 8;

		b = realloc(s->blobs, cap * sizeof(*b));
		if (!b)
			return cprx_fail(s, ENOMEM, NULL, "out of memory");
		s->blobs = b;
		s->cap_blobs = cap;
	}
	b = &s->blobs[s->nr_blobs];
	b->data = malloc(len ? len : 1);
	if (!b->data)
		return cprx_fail(s, ENOMEM, NULL, "out of memory");
	if (len)
		memcpy(b->data, data, len);
	b->len = len;
	snprintf(b->token, sizeof(b->token), "%s", token);
	s->nr_blobs++;
	s->saved = false;
	return 0;
}

CPRX_EXPORT void cprx_mark(struct cprx_session *s, enum cprx_phase phase)
{
	if (s && phase < CPRX_PH_MAX)
		s->ts[phase] = cprx_now_ns();
}

CPRX_EXPORT int cprx_timeline(const struct cprx_session *s, uint64_t *ts,
			      unsigned int n)
{
	if (!s)
		return cprx_null_arg(NULL, __func__, "s");
	if (!ts && n)
		return cprx_null_arg(NULL, __func__, "ts");
	if (n > CPRX_PH_MAX)
		n = CPRX_PH_MAX;
	if (n)
		memcpy(ts, s->ts, n * sizeof(*ts));
	return n;
}

CPRX_EXPORT const char *cprx_phase_name(enum cprx_phase phase)
{
	return phase < CPRX_PH_MAX ? phase_names[phase] : "unknown";
}

CPRX_EXPORT const char *cprx_backend_name(const struct cprx_session *s)
{
	return s && s->backend ? s->backend->name : "none";
}

CPRX_EXPORT bool cprx_is_rollback(const struct cprx_session *s)
{
	return s && s->rollback;
}

CPRX_EXPORT unsigned int cprx_generation(const struct cprx_session *s)
{
	return s ? s->generation : 0;
}

CPRX_EXPORT unsigned int cprx_version_major(void)
{
	return CPRX_VERSION_MAJOR;
}

CPRX_EXPORT unsigned int cprx_version_minor(void)
{
	return CPRX_VERSION_MINOR;
}

CPRX_EXPORT const char *cprx_version_string(void)
{
	return CPRX_VERSION_STRING;
}
