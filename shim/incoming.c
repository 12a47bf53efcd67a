// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * New image: find the state, take the fds back, commit - or roll back to the
 * previous binary when this image cannot carry on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "internal.h"

/* The rollback reason travels in the variable: no ',' and no '%' raw. */
static void escape(char *out, size_t len, const char *in)
{
	size_t o = 0;

	for (; *in && o + 4 < len; in++) {
		if (*in == ',' || *in == '%' || (unsigned char)*in < ' ')
			o += snprintf(out + o, len - o, "%%%02X", (unsigned char)*in);
		else
			out[o++] = *in;
	}
	out[o] = '\0';
}

static void unescape(char *out, size_t len, const char *in)
{
	size_t o = 0;
	unsigned int c;

	for (; *in && o + 1 < len; in++) {
		if (*in == '%' && sscanf(in + 1, "%2X", &c) == 1) {
			out[o++] = c ? c : '?';
			in += 2;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

static void add_keepers(struct cprx_handover *h, const char *list)
{
	char *end;
	long pid;

	while (*list && h->nr_keepers < CPRX_MAX_KEEPERS) {
		pid = strtol(list, &end, 10);
		if (end == list)
			break;
		if (pid > 0)
			h->keepers[h->nr_keepers++] = pid;
		list = *end == ':' ? end + 1 : end;
	}
}

static int parse_handover(const char *value, struct cprx_handover *h)
{
	char buf[1024 + 3 * PATH_MAX], *tok, *save = NULL;

	memset(h, 0, sizeof(*h));
	h->fd = -1;
	h->kmod = -1;
	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (sscanf(tok, "v=%d", &h->version) == 1 ||
		    sscanf(tok, "fd=%d", &h->fd) == 1 ||
		    sscanf(tok, "kmod=%d", &h->kmod) == 1 ||
		    sscanf(tok, "rb=%d", &h->rollback) == 1 ||
		    sscanf(tok, "save=%llu", &h->save_ns) == 1 ||
		    sscanf(tok, "exec=%llu", &h->exec_ns) == 1)
			continue;
		if (!strncmp(tok, "why=", 4))
			unescape(h->why, sizeof(h->why), tok + 4);
		if (!strncmp(tok, "mirror=", 7))
			unescape(h->mirror, sizeof(h->mirror), tok + 7);
		if (!strncmp(tok, "keeper=", 7) || !strncmp(tok, "reap=", 5))
			add_keepers(h, strchr(tok, '=') + 1);
		/* unknown keys from a newer library are ignored */
	}
	return h->version == 1 && (h->fd >= 0 || h->kmod >= 0) ? 0 : -EINVAL;
}

static int read_state(struct cprx_session *s, int fd, void **bufp, size_t *lenp)
{
	struct stat st;
	void *buf;
	int ret;

	if (fstat(fd, &st) < 0)
		return cprx_fail(s, EBADF, "the previous image must keep its state fd",
				 "state fd %d did not survive the exec", fd);
	if (st.st_size <= 0 || (uint64_t)st.st_size > CPRX_STATE_MAX)
		return cprx_fail(s, EBADMSG, "the state is damaged; roll back",
				 "state is %lld bytes (limit %u)",
				 (long long)st.st_size, CPRX_STATE_MAX);
	buf = malloc(st.st_size);
	if (!buf)
		return cprx_fail(s, ENOMEM, NULL, "out of memory for the state");
	ret = cprx_io_read(fd, buf, st.st_size);
	if (ret) {
		free(buf);
		return cprx_fail(s, -ret, "the state is damaged; roll back",
				 "reading the state failed: %s", strerror(-ret));
	}
	*bufp = buf;
	*lenp = st.st_size;
	return 0;
}

/* Entries mirror the state's records so arm/disarm work for a rollback. */
static int take_entries(struct cprx_session *s)
{
	unsigned int i;

	s->ents = calloc(s->in.nr_fds + 1, sizeof(*s->ents));
	if (!s->ents)
		return -ENOMEM;
	for (i = 0; i < s->in.nr_fds; i++) {
		struct cprx_entry *e = &s->ents[i];
		const struct cprx_rec_fd *r = &s->in.fds[i];

		memcpy(e->token, r->token, sizeof(e->token));
		e->kind = r->kind;
		e->page_kind = r->page_kind;
		e->fd = r->fd;
		e->size = r->size;
		e->handle = r->handle;
		e->saved_fdflags = FD_CLOEXEC;
		if (s->backend != &cprx_backend_cloexec)
			e->fd = -1;	/* the kernel hands out new fds */
		else	/* nothing we spawn may inherit guest RAM */
			fcntl(e->fd, F_SETFD, FD_CLOEXEC);
	}
	s->nr_ents = s->cap_ents = s->in.nr_fds;
	return 0;
}

static int decode(struct cprx_session *s, const void *buf, size_t len)
{
	char err[CPRX_MSG_MAX];
	int ret;

	ret = cprx_state_decode(buf, len, &s->in, err, sizeof(err));
	if (!ret)
		return 0;
	cprx_state_free(&s->in);
	/* The previous binary can still be found: say so. */
	if (cprx_state_decode_origin(buf, len, &s->in, NULL, 0))
		cprx_state_free(&s->in);
	return cprx_fail(s, -ret, s->in.exe_path ?
			 "call cprx_rollback() to resume in the previous binary" :
			 "the previous binary cannot be found either",
			 "state rejected: %s", err);
}

CPRX_EXPORT int cprx_incoming(struct cprx_session **sp,
			      const struct cprx_options *opts)
{
	uint64_t t0 = cprx_now_ns();
	struct cprx_session *s;
	struct cprx_handover h;
	const char *env;
	void *buf = NULL;
	size_t len = 0;
	int ret;

	if (!sp)
		return cprx_null_arg(NULL, __func__, "sp");
	*sp = NULL;
	ret = cprx_check_options(opts);
	if (ret)
		return ret;
	env = getenv(CPRX_ENV);
	if (!env)
		return 0;
	s = cprx_session_alloc("incoming", opts);
	if (!s)
		return cprx_fail(NULL, ENOMEM, NULL, "out of memory");
	s->incoming = true;
	s->backend = &cprx_backend_cloexec;	/* until the state names one */
	*sp = s;
	ret = parse_handover(env, &h);
	if (ret) {
		cprx_fail(s, EINVAL, "unset " CPRX_ENV " unless a live update sets it",
			  CPRX_ENV "='%s' is malformed", env);
		unsetenv(CPRX_ENV);
		return -EINVAL;
	}
	unsetenv(CPRX_ENV);	/* nothing this image spawns may see it */
	s->rollback = h.rollback;
	if (h.mirror[0])	/* the state file, removed at commit */
		s->mirror_path = strdup(h.mirror);
	if (h.rollback && h.why[0])
		s->why = strdup(h.why);
	cprx_keepers_adopt(h.keepers, h.nr_keepers);
	/* the handover, not this machine, says how the fds came through */
	s->backend = h.kmod >= 0 ? &cprx_backend_kmod : &cprx_backend_cloexec;
	ret = s->backend->incoming(s, &h);
	if (ret)
		return ret;

	ret = read_state(s, s->state_fd, &buf, &len);
	if (!ret)
		ret = decode(s, buf, len);
	free(buf);
	if (s->backend == &cprx_backend_cloexec && s->in.exe_path &&
	    s->in.exe_fd >= 0) {
		s->exe_fd = s->in.exe_fd;
		fcntl(s->exe_fd, F_SETFD, FD_CLOEXEC);
	}
	if (ret)
		return ret;

	snprintf(s->name, sizeof(s->name), "%s", s->in.session);
	memcpy(s->ts, s->in.ts, sizeof(s->ts));
	s->ts[CPRX_PH_SAVE_END] = h.save_ns;
	s->ts[CPRX_PH_EXEC] = h.exec_ns;
	s->ts[CPRX_PH_INCOMING] = t0;
	s->generation = s->in.generation + !s->rollback;
	cprx_process_generation = s->generation;
	if (take_entries(s))
		return cprx_fail(s, ENOMEM, NULL, "out of memory");
	return 1;
}

static const struct cprx_rec_fd *find_rec(struct cprx_session *s,
					  const char *token, unsigned int *idx)
{
	unsigned int i;

	for (i = 0; i < s->in.nr_fds; i++) {
		if (!strcmp(s->in.fds[i].token, token)) {
			*idx = i;
			return &s->in.fds[i];
		}
	}
	return NULL;
}

static int missing_token(struct cprx_session *s, const char *token)
{
	char list[256] = "";
	size_t off = 0;
	unsigned int i;

	for (i = 0; i < s->in.nr_fds && off < sizeof(list); i++)
		off += snprintf(list + off, sizeof(list) - off, "%s%s",
				i ? ", " : "", s->in.fds[i].token);
	return cprx_fail(s, ENOENT,
			 "the previous version did not preserve it: roll back "
			 "(cprx_rollback) or create the device afresh",
			 "token '%s' is not in the state (it holds: %s)", token,
			 i ? list : "nothing");
}

/* The record's fd, not yet taken: reclaim_ram checks it first. */
static int retrieve(struct cprx_session *s, const char *token,
		    const struct cprx_rec_fd **rp, unsigned int *idxp, int *fd)
{
	const struct cprx_rec_fd *r;
	unsigned int idx;
	int ret;

	if (!s->incoming || s->committed)
		return cprx_fail(s, EINVAL, "call cprx_incoming() first",
				 "session '%s' has nothing to reclaim", s->name);
	ret = cprx_check_token(s, "token", token);
	if (ret)
		return ret;
	r = find_rec(s, token, &idx);
	if (!r)
		return missing_token(s, token);
	ret = s->backend->retrieve(s, r, fd);
	if (ret)
		return ret;
	*rp = r;
	*idxp = idx;
	return 0;
}

static void take(struct cprx_session *s, unsigned int idx, int fd)
{
	s->ents[idx].reclaimed = true;
	s->ents[idx].fd = fd;
}

/*
 * A retrieved fd that fails a check goes back: kmod hands out a new fd on
 * every retrieve (close it), cloexec the inherited one (the session keeps
 * it for commit or rollback).
 */
static void give_back(struct cprx_session *s, unsigned int idx, int fd)
{
	if (fd != s->ents[idx].fd)
		close(fd);
}

CPRX_EXPORT int cprx_reclaim_fd(struct cprx_session *s, const char *token,
				int *fd)
{
	const struct cprx_rec_fd *r;
	unsigned int idx;
	int ret;

	if (!s || !fd)
		return cprx_null_arg(s, __func__, s ? "fd" : "s");
	ret = retrieve(s, token, &r, &idx, fd);
	if (!ret)
		take(s, idx, *fd);
	return ret;
}

static int check_ram(struct cprx_session *s, const char *token,
		     const struct cprx_rec_fd *r, int fd, void **pp)
{
	struct stat st;
	void *p;

	if (r->kind != CPRX_FD_RAM)
		return cprx_fail(s, EINVAL, "use cprx_reclaim_fd for devices",
				 "token '%s' is a device, not RAM", token);
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < r->size)
		return cprx_fail(s, EBADMSG, "roll back: guest RAM was truncated",
				 "RAM '%s' is %lld bytes, the state says %llu",
				 token, (long long)st.st_size,
				 (unsigned long long)r->size);
	/* Lazily faulted: the pause does not grow with RAM size. */
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return cprx_fail(s, errno, "check RLIMIT_AS and vm.max_map_count",
				 "mmap of RAM '%s' (%llu bytes) failed: %s", token,
				 (unsigned long long)r->size, strerror(errno));
	*pp = p;
	return 0;
}

CPRX_EXPORT int cprx_reclaim_ram(struct cprx_session *s, const char *token,
				 void **addr, uint64_t *size, int *fdp)
{
	const struct cprx_rec_fd *r;
	unsigned int idx;
	void *p = NULL;
	int fd, ret;

	if (!s || !addr || !size)
		return cprx_null_arg(s, __func__, !s ? "s" : !addr ? "addr" :
				     "size");
	ret = retrieve(s, token, &r, &idx, &fd);
	if (ret)
		return ret;
	/* taken only once every check passed: else commit or rollback has it */
	ret = check_ram(s, token, r, fd, &p);
	if (ret) {
		give_back(s, idx, fd);
		return ret;
	}
	if (r->page_kind == CPRX_PAGE_THP)
		madvise(p, r->size, MADV_HUGEPAGE);
	*addr = p;
	*size = r->size;
	if (fdp) {
		take(s, idx, fd);
		*fdp = fd;
	} else	/* the session keeps it: commit closes it, a rollback needs it */
		s->ents[idx].fd = fd;
	return 0;
}

CPRX_EXPORT int cprx_get_blob(struct cprx_session *s, const char *token,
			      const void **data, size_t *len)
{
	unsigned int i;
	int ret;

	if (!s || !data || !len)
		return cprx_null_arg(s, __func__, !s ? "s" : !data ? "data" :
				     "len");
	if (!s->incoming)
		return cprx_fail(s, EINVAL, "call cprx_incoming() first",
				 "session '%s' is not an incoming session: it "
				 "has no state to read blobs from", s->name);
	ret = cprx_check_token(s, "blob", token);
	if (ret)
		return ret;
	for (i = 0; i < s->in.nr_blobs; i++) {
		if (!strcmp(s->in.blobs[i].token, token)) {
			*data = s->in.blobs[i].data;
			*len = s->in.blobs[i].len;
			return 0;
		}
	}
	return cprx_fail(s, ENOENT, "the previous version did not add it: "
			 "roll back or start without it",
			 "blob '%s' is not in the state", token);
}

CPRX_EXPORT int cprx_commit(struct cprx_session *s)
{
	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (!s->incoming)
		return cprx_fail(s, EINVAL, "commit in the new image, after "
				 "cprx_incoming()",
				 "session '%s' has no update to commit", s->name);
	if (s->committed)
		return cprx_fail(s, EALREADY, "commit once",
				 "session '%s' is already committed", s->name);
	cprx_keepers_hurry();
	s->backend->commit(s);
	cprx_mirror_remove(s);	/* no device state stays on disk */
	if (s->state_fd >= 0)
		close(s->state_fd);
	if (s->exe_fd >= 0)
		close(s->exe_fd);
	s->state_fd = -1;
	s->exe_fd = -1;
	s->committed = true;
	cprx_mark(s, CPRX_PH_COMMIT);
	return 0;
}

CPRX_EXPORT const char *cprx_rollback_reason(const struct cprx_session *s)
{
	return s ? s->why : NULL;
}

CPRX_EXPORT int cprx_rollback(struct cprx_session *s, const char *why)
{
	char extra[512], esc[400];

	if (!s)
		return cprx_null_arg(s, __func__, "s");
	if (!s->incoming || s->committed)
		return cprx_fail(s, EINVAL, "roll back before cprx_commit, in the "
				 "new image", "nothing to roll back");
	if (s->rollback)
		return cprx_fail(s, ELOOP, "the previous binary cannot resume this "
				 "state either; inspect the state and the logs",
				 "refusing a second rollback: this image is already "
				 "the rollback of a failed update (%s)",
				 why ? why : "no reason given");
	if (!s->in.exe_path || !s->in.argv || !s->in.argc)
		return cprx_fail(s, EBADMSG, "the state is unreadable; the guest "
				 "cannot be resumed", "cannot roll back (%s): the "
				 "state does not name the previous binary",
				 why ? why : "no reason given");
	escape(esc, sizeof(esc), why ? why : "");
	snprintf(extra, sizeof(extra), "rb=1,why=%s", esc);
	/* Same fds, same state, previous binary; ts tell the story. */
	return cprx_do_exec(s, s->in.exe_path, s->in.argv, extra, s->exe_fd);
}
