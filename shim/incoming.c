// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * New image: find the state, take the fds back, commit (rollback.c: or
 * hand the guest back to the previous binary).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "internal.h"

/* What /proc says @fd is: a path, "pipe:[..]", "anon_inode:[..]". */
int cprx_fd_link(int fd, char *buf, size_t len)
{
	char proc[32];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, buf, len - 1);
	if (n < 0) {
		snprintf(buf, len, "not open");
		return -errno;
	}
	buf[n] = '\0';
	return 0;
}

/*
 * @fd holds the file @dev:@ino; never with dev 0 (unknown: older state).
 * @anon (may be NULL): it is an anon inode.  Anon-inode files (eventfd,
 * timerfd, epoll, many KVM and VFIO fds) share one inode: their dev:ino
 * does not tell the preserved one from another.  fstat shows them with no
 * file type, on every kernel (they carry one inside since 6.15, hidden).
 */
bool cprx_same_file(int fd, uint64_t dev, uint64_t ino, bool *anon)
{
	struct stat st;

	if (!dev || fd < 0 || fstat(fd, &st) || (uint64_t)st.st_dev != dev ||
	    (uint64_t)st.st_ino != ino)
		return false;
	if (anon)
		*anon = !(st.st_mode & S_IFMT);
	return true;
}

/*
 * 0: @fd is the open file @held is a dup of; > 0: it is not; < 0: unknown.
 * Status flags belong to the open file: O_APPEND flipped on @held (ours)
 * shows on @fd only if it is the same one.  O_APPEND means nothing to an
 * anon inode, and fcntl is in every seccomp allowlist, unlike kcmp: a
 * filter inherited from the old image must not kill the reclaim.
 */
int cprx_same_open_file(int fd, int held)
{
	int fl = fcntl(held, F_GETFL), on, off;

	if (fl < 0 || fcntl(held, F_SETFL, fl ^ O_APPEND) < 0)
		return -1;
	on = fcntl(fd, F_GETFL);
	fcntl(held, F_SETFL, fl);
	off = fcntl(fd, F_GETFL);
	if (on < 0 || off < 0)
		return -1;
	return on == (fl ^ O_APPEND) && off == fl ? 0 : 1;
}

/* The dups that stood for anon inodes: the update is over or abandoned. */
void cprx_entries_release(struct cprx_session *s)
{
	unsigned int i;

	for (i = 0; s->incoming && i < s->nr_ents; i++) {
		if (s->ents[i].held >= 0)
			close(s->ents[i].held);
		s->ents[i].held = -1;
	}
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

/*
 * Entries mirror the state's records so arm/disarm work for a rollback.
 * An fd number is ours only while it holds the recorded dev:ino: only then
 * is it made close-on-exec (nothing we spawn may inherit guest RAM).  An
 * anon inode's file is held by a dup: reclaim and commit compare with it.
 */
static int take_entries(struct cprx_session *s)
{
	bool cloexec = s->backend == &cprx_backend_cloexec;
	unsigned int i;
	int above = 0;
	bool anon;

	s->ents = calloc(s->in.nr_fds + 1, sizeof(*s->ents));
	if (!s->ents)
		return -ENOMEM;
	/* the dups go above every recorded number: none may sit in one */
	for (i = 0; i < s->in.nr_fds; i++)
		if (s->in.fds[i].fd >= above && s->in.fds[i].fd < INT_MAX)
			above = s->in.fds[i].fd + 1;
	for (i = 0; i < s->in.nr_fds; i++) {
		struct cprx_entry *e = &s->ents[i];
		const struct cprx_rec_fd *r = &s->in.fds[i];

		memcpy(e->token, r->token, sizeof(e->token));
		e->kind = r->kind;
		e->page_kind = r->page_kind;
		e->fd = cloexec ? r->fd : -1;	/* kmod: new fds at reclaim */
		e->size = r->size;
		e->handle = r->handle;
		e->ino = cloexec ? r->handle : 0;
		e->dev = cloexec ? r->dev : 0;
		e->saved_fdflags = FD_CLOEXEC;
		e->held = -1;
		if (!cprx_same_file(e->fd, e->dev, e->ino, &anon))
			continue;
		fcntl(e->fd, F_SETFD, FD_CLOEXEC);
		if (anon)	/* -1: commit leaves it open */
			e->held = fcntl(e->fd, F_DUPFD_CLOEXEC, above);
	}
	s->nr_ents = s->cap_ents = s->in.nr_fds;
	return 0;
}

/*
 * An exec keeps the pid: a state another process saved is not this
 * process's update, whoever set CPRX_INCOMING.  Nor is one whose backend
 * is not the one the handover came through.
 */
static int check_origin(struct cprx_session *s)
{
	int pid = s->in.pid, backend = s->in.backend;
	/* after a kexec: another process, its uid's session (cprx-luod) */
	bool luo = s->backend == &cprx_backend_luo;

	/* a guardian's restart: the dead owner's state, checked by the guardian */
	if (s->guardian_restart && pid == s->guardian_restart)
		pid = getpid();
	if ((luo || pid == getpid()) && backend == (int)s->backend->id) {
		s->verified = true;
		return 0;
	}
	cprx_state_free(&s->in);
	if (!luo && pid != getpid())
		return cprx_fail(s, EPERM, "unset " CPRX_ENV ": only the process "
				 "that called cprx_exec may take its state",
				 "the state was saved by pid %d, this is pid %d: "
				 "not this process's update", pid, (int)getpid());
	return cprx_fail(s, EBADMSG, "unset " CPRX_ENV " unless a live update "
			 "sets it", "the state was saved by backend %d, but "
			 CPRX_ENV " names the %s backend", backend,
			 s->backend->name);
}

static int decode(struct cprx_session *s, const void *buf, size_t len)
{
	char err[CPRX_MSG_MAX];
	int ret, ret2;

	ret = cprx_state_decode(buf, len, &s->in, err, sizeof(err));
	if (!ret)
		return check_origin(s);
	cprx_state_free(&s->in);
	/* The previous binary can still be found: say so. */
	if (cprx_state_decode_origin(buf, len, &s->in, NULL, 0))
		cprx_state_free(&s->in);
	else if ((ret2 = check_origin(s)))
		return ret2;	/* not ours: that it is damaged is moot */
	return cprx_fail(s, -ret, s->in.exe_path ?
			 "call cprx_rollback() to resume in the previous binary" :
			 "the previous binary cannot be found either",
			 "state rejected: %s", err);
}

/* The previous binary's fd, if it is the file the state names. */
static void take_exe_fd(struct cprx_session *s)
{
	char link[PATH_MAX + 16];
	const char *path = s->in.exe_path;
	size_t n = path ? strlen(path) : 0;
	struct stat st;
	int fd = s->in.exe_fd;

	if (s->backend != &cprx_backend_cloexec || !path || fd < 0 ||
	    fd == s->state_fd || cprx_fd_link(fd, link, sizeof(link)))
		return;
	/* replaced by a rename since: "(deleted)" */
	if (strncmp(link, path, n) || (link[n] && strcmp(link + n, " (deleted)")))
		return;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		return;
	s->exe_fd = fd;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* What @opts asks of a kexec: the session name, or NULL. */
static const char *kexec_wanted(const struct cprx_options *opts)
{
	size_t end = offsetof(struct cprx_options, kexec_session) +
		     sizeof(opts->kexec_session);
	enum cprx_backend want = CPRX_BACKEND_AUTO;
	const char *env;

	if (!opts || opts->size < end || !opts->kexec_session)
		return NULL;
	want = opts->backend;
	env = getenv(CPRX_ENV_BACKEND);
	if (want == CPRX_BACKEND_AUTO && env && !strcmp(env, "luo"))
		want = CPRX_BACKEND_LUO;
	return want == CPRX_BACKEND_LUO ? opts->kexec_session : NULL;
}

/* The state, its records and entries, of a session retrieved after a kexec. */
static int kexec_take(struct cprx_session *s, const char *name, uint64_t t0)
{
	void *buf = NULL;
	size_t len = 0;
	int ret;

	ret = read_state(s, s->state_fd, &buf, &len);
	if (!ret)
		ret = decode(s, buf, len);
	free(buf);
	if (ret)
		return ret;
	if (strcmp(s->in.session, name))
		return cprx_fail(s, EBADMSG, "the guest cannot be resumed: start "
				 "it afresh", "the state in LUO session '%s' was "
				 "saved by session '%s'", name, s->in.session);
	snprintf(s->name, sizeof(s->name), "%s", s->in.session);
	/* the old kernel's CLOCK_MONOTONIC means nothing in this one */
	s->ts[CPRX_PH_INCOMING] = t0;
	s->generation = s->in.generation + 1;
	cprx_process_generation = s->generation;
	if (take_entries(s))
		return cprx_fail(s, ENOMEM, NULL, "out of memory");
	s->accepted = true;
	return 1;
}

/*
 * No exec handed anything over: a VMM started after a kexec asks
 * cprx-luod for the session it names, when it names one.
 */
static int kexec_incoming(struct cprx_session **sp,
			  const struct cprx_options *opts, uint64_t t0)
{
	const char *name = kexec_wanted(opts);
	struct cprx_session *s;
	int ret;

	if (!name)
		return 0;
	s = cprx_session_alloc("incoming", opts);
	if (!s)
		return cprx_fail(NULL, ENOMEM, NULL, "out of memory");
	s->incoming = true;
	s->backend = &cprx_backend_luo;
	ret = cprx_luo_retrieve(s, name);
	if (!ret) {
		cprx_session_close(s);
		return 0;
	}
	*sp = s;	/* set on failure too: its message says what was lost */
	return ret < 0 ? ret : kexec_take(s, name, t0);
}

CPRX_EXPORT int cprx_incoming(struct cprx_session **sp,
			      const struct cprx_options *opts)
{
	uint64_t t0 = cprx_now_ns();
	char err[CPRX_MSG_MAX];
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
	/* a privileged image must not believe whoever started it */
	env = secure_getenv(CPRX_ENV);
	if (!env)
		return kexec_incoming(sp, opts, t0);
	s = cprx_session_alloc("incoming", opts);
	if (!s)
		return cprx_fail(NULL, ENOMEM, NULL, "out of memory");
	s->incoming = true;
	s->backend = &cprx_backend_cloexec;	/* until the state names one */
	*sp = s;
	ret = cprx_handover_parse(env, &h, err, sizeof(err));
	unsetenv(CPRX_ENV);	/* nothing this image spawns may see it */
	if (ret)
		return cprx_fail(s, EINVAL, "unset " CPRX_ENV " unless a live "
				 "update sets it", CPRX_ENV " is malformed: %s",
				 err);
	/* the handover, not this machine, says how the fds came through */
	s->backend = h.kmod >= 0 ? &cprx_backend_kmod : &cprx_backend_cloexec;
	ret = cprx_guardian_incoming(s, &h);
	if (!ret)
		ret = s->backend->incoming(s, &h);
	if (ret)
		return ret;

	ret = read_state(s, s->state_fd, &buf, &len);
	if (!ret)
		ret = decode(s, buf, len);
	free(buf);
	if (!s->verified) {
		if (s->backend == &cprx_backend_cloexec)
			s->state_fd = -1;	/* not known to be ours: untouched */
		return ret;	/* nor is its rb= or why= believed */
	}
	s->rollback = h.rollback || h.restart;
	if (s->rollback && h.why[0])
		s->why = strdup(h.why);
	if (s->backend == &cprx_backend_cloexec)
		fcntl(s->state_fd, F_SETFD, FD_CLOEXEC);
	/* ORIGIN is ours: its keepers, binary and mirror are the old image's */
	cprx_keepers_adopt(h.keepers, h.nr_keepers);
	if (h.mirror[0])	/* the state file, removed at commit */
		s->mirror_path = strdup(h.mirror);
	take_exe_fd(s);
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
	s->accepted = true;
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

	ret = cprx_check_token(s, "token", token);
	if (ret)
		return ret;
	if (!s->accepted || s->committed)
		return cprx_fail(s, EINVAL, "call cprx_incoming() first",
				 "session '%s' has nothing to reclaim", s->name);
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
	if (s->ents[idx].held >= 0)	/* the caller's now */
		close(s->ents[idx].held);
	s->ents[idx].held = -1;
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
	} else	/* cloexec: commit closes it, a rollback needs it; kmod: now */
		give_back(s, idx, fd);
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
	ret = cprx_check_token(s, "blob", token);
	if (ret)
		return ret;
	if (!s->incoming)
		return cprx_fail(s, EINVAL, "call cprx_incoming() first",
				 "session '%s' is not an incoming session: it "
				 "has no state to read blobs from", s->name);
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
	if (!s->accepted)
		return cprx_fail(s, EINVAL, "commit in the new image, after "
				 "cprx_incoming() returned 1",
				 "session '%s' has no update to commit", s->name);
	if (s->committed)
		return cprx_fail(s, EALREADY, "commit once",
				 "session '%s' is already committed", s->name);
	cprx_rollback_disarm(s);
	cprx_keepers_hurry();
	s->backend->commit(s);
	/* after the backend dropped its pins: the guardian's copies go last */
	cprx_guardian_commit(s);
	cprx_entries_release(s);
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
