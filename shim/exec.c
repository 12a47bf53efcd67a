// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Old image: save the state, arm the backend, exec.  When execve fails the
 * guest must resume as if nothing happened, so every step is undone and the
 * error names the cause and the fix.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "internal.h"
#include "handover.h"
#include "errname.h"
#include "guard_reader.h"
#include "state_wire.h"

extern char **environ;

/* argv of this process, whole, from /proc/self/cmdline: what rollback re-runs. */
static int read_cmdline(struct cprx_state *st)
{
	size_t cap = 65536, n = 0, off;
	char *buf = NULL, *p;
	ssize_t got = 0;
	int fd, err = 0;
	uint32_t i;

	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (!buf || n + 1 >= cap) {
			p = realloc(buf, buf ? cap *= 2 : cap);
			if (!p) {
				err = -ENOMEM;
				break;
			}
			buf = p;
		}
		got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			err = -errno;
		if (got <= 0)
			break;
		n += got;
	}
	close(fd);
	if (!err && !n)
		err = -EIO;
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = '\0';
	for (off = 0, st->argc = 0; off < n; off += strlen(buf + off) + 1)
		st->argc++;
	st->argv = calloc(st->argc + 1, sizeof(char *));
	for (off = 0, i = 0; st->argv && off < n; off += strlen(buf + off) + 1) {
		st->argv[i] = strdup(buf + off);
		if (!st->argv[i++])
			break;
	}
	free(buf);
	return st->argv && (!st->argc || st->argv[st->argc - 1]) ? 0 : -ENOMEM;
}

/*
 * Can the state carry this argv for a rollback?  0, or -errno with @why
 * filled in.  Preflight and the save both ask, so the update is refused
 * before the guest stops rather than rolled back to a truncated argv.
 */
int cprx_argv_check(struct cprx_session *s, char *why, size_t len)
{
	const struct cprx_state *o = &s->origin;
	uint32_t i;
	size_t n;

	if (s->argv_err) {
		snprintf(why, len, "/proc/self/cmdline cannot be read: %s",
			 strerror(-s->argv_err));
		return s->argv_err;
	}
	if (s->exe_fd < 0) {
		snprintf(why, len, "this binary cannot be held open (%s)%s",
			 strerror(-s->exe_err), s->exe_err == -EACCES &&
			 s->backend == &cprx_backend_kmod ? ": cprx.ko pins "
			 "only readable files; make it readable by the VMM's "
			 "user, or use CPRX_BACKEND=cloexec" : "");
		return s->exe_err ? s->exe_err : -EBADF;
	}
	if (o->argc > CPRX_STATE_MAX_ARGS) {
		snprintf(why, len, "argv has %u arguments, the state carries "
			 "at most %u", o->argc, CPRX_STATE_MAX_ARGS);
		return -E2BIG;
	}
	for (i = 0; i < o->argc; i++) {
		n = strnlen(o->argv[i], ARG_LEN_MAX + 1);
		if (n > ARG_LEN_MAX) {
			snprintf(why, len, "argv[%u] is longer than %u bytes, "
				 "the most the state carries", i, ARG_LEN_MAX);
			return -E2BIG;
		}
	}
	return 0;
}

/*
 * The previous binary, for the new image's rollback.  O_PATH is enough to
 * exec it and works on execute-only binaries; cprx.ko pins with fget(),
 * which refuses O_PATH files, so kmod needs O_RDONLY.  Without this fd a
 * rollback would exec whatever is at the path by then (an upgrade may have
 * replaced it), so an update without it is refused (cprx_argv_check).
 */
static int open_exe(struct cprx_session *s)
{
	int fd;

	if (s->backend == &cprx_backend_kmod)
		fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	else
		fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	s->exe_err = fd < 0 ? -errno : 0;
	return fd;
}

/* This binary and its argv: what a rollback re-runs. */
static int read_origin(struct cprx_session *s)
{
	struct cprx_state *o = &s->origin;
	char path[PATH_MAX];
	ssize_t n;

	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n < 0)
		return -errno;
	path[n] = '\0';
	o->exe_path = strdup(path);
	if (!o->exe_path)
		return -ENOMEM;
	if (s->exe_fd < 0)
		s->exe_fd = open_exe(s);
	/* an argv that cannot be carried refuses the update, not the session */
	s->argv_err = read_cmdline(o);
	return s->argv_err == -ENOMEM ? -ENOMEM : 0;
}

static int create_memfd(struct cprx_session *s)
{
	int fd = memfd_create("cprx-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return cprx_fail(s, errno, "allow memfd_create in the VMM's "
				 "seccomp filter; the state always travels in a memfd",
				 "memfd_create for the state failed: %s",
				 strerror(errno));
	s->state_fd = fd;
	s->state_fresh = true;
	s->state_pid = getpid();
	return 0;
}

/*
 * Everything the save can get ready while the guest still runs: the origin,
 * the io_uring ring and the state memfd.  Cold, these cost more than the
 * save itself.
 */
int cprx_prepare(struct cprx_session *s)
{
	int ret;

	ret = read_origin(s);
	if (ret)
		return cprx_fail(s, -ret, NULL, "cannot read this process's "
				 "binary and argv: %s", strerror(-ret));
	s->ring = cprx_io_ring();	/* NULL: pwrite, preflight says so */
	return create_memfd(s);
}

static void fill_origin(struct cprx_session *s, struct cprx_state *st)
{
	/* borrowed from the session: see unfill */
	st->exe_path = s->origin.exe_path;
	st->argc = s->origin.argc;
	st->argv = s->origin.argv;
	snprintf(st->session, sizeof(st->session), "%s", s->name);
	st->exe_fd = s->exe_fd;
	st->pid = getpid();
	st->backend = s->backend->id;
	st->generation = s->generation;
}

static int fill_records(struct cprx_session *s, struct cprx_state *st)
{
	unsigned int i;

	st->fds = calloc(s->nr_ents + 1, sizeof(*st->fds));
	st->blobs = calloc(s->nr_blobs + 1, sizeof(*st->blobs));
	if (!st->fds || !st->blobs)
		return -ENOMEM;
	for (i = 0; i < s->nr_ents; i++) {
		struct cprx_rec_fd *r = &st->fds[i];
		struct cprx_entry *e = &s->ents[i];

		memcpy(r->token, e->token, sizeof(r->token));
		r->kind = e->kind;
		r->page_kind = e->page_kind;
		r->fd = e->fd;
		r->size = e->size;
		r->handle = e->handle;
		r->dev = e->dev;
	}
	st->nr_fds = s->nr_ents;
	for (i = 0; i < s->nr_blobs; i++) {
		memcpy(st->blobs[i].token, s->blobs[i].token,
		       sizeof(st->blobs[i].token));
		st->blobs[i].len = s->blobs[i].len;
		st->blobs[i].data = s->blobs[i].data;	/* borrowed */
	}
	st->nr_blobs = s->nr_blobs;
	memcpy(st->ts, s->ts, sizeof(st->ts));
	return 0;
}

/* Frees what fill_records allocated; the rest is the session's. */
static void unfill(struct cprx_state *st)
{
	free(st->blobs);
	free(st->fds);
}

/*
 * The sealed memfd is the state the exec carries, whatever the target: a
 * file can be changed after the save, a sealed memfd cannot.  The file
 * target is a durable copy of it (mirror.c).
 */
static int open_target(struct cprx_session *s)
{
	/* a fork's copy is its parent's memfd too: the parent's to fill */
	if (s->state_fd >= 0 && s->state_fresh && s->state_pid == getpid())
		return 0;	/* the memfd made ready at open */
	if (s->state_fd >= 0) {
		close(s->state_fd);	/* sealed by an earlier save, or shared */
		s->state_fd = -1;
	}
	return create_memfd(s);
}

static int write_state(struct cprx_session *s, const void *buf, size_t len)
{
	int ret;

	ret = open_target(s);
	if (ret)
		return ret;
	ret = cprx_io_write(s->ring, s->state_fd, buf, len, false);
	s->state_fresh = false;
	if (ret)
		return cprx_fail(s, -ret, "free memory on the host and retry",
				 "writing %zu bytes of state failed: %s", len,
				 strerror(-ret));
	if (fcntl(s->state_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
		  F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return cprx_fail(s, errno, "allow fcntl(F_ADD_SEALS) in the "
				 "VMM's seccomp filter", "sealing the state "
				 "memfd failed: %s", strerror(errno));
	if (s->opts.target == CPRX_STATE_FILE)
		return cprx_mirror_write(s, buf, len);
	return 0;
}

/* What only an old image's session may do: 0, or the refusal. */
static int outgoing(struct cprx_session *s, const char *call)
{
	if (!s)
		return cprx_null_arg(s, call, "s");
	if (s->incoming)
		return cprx_fail(s, EINVAL, "open a new session for the next update",
				 "session '%s' is an incoming session", s->name);
	return 0;
}

CPRX_EXPORT int cprx_save(struct cprx_session *s)
{
	struct cprx_state st = { 0 };
	char why[CPRX_MSG_MAX];
	size_t len = 0;
	void *buf = NULL;
	int ret = outgoing(s, __func__);

	if (ret)
		return ret;
	s->saved = false;
	ret = cprx_argv_check(s, why, sizeof(why));
	if (ret)
		return cprx_fail(s, -ret, s->exe_fd < 0 ? "make this binary "
				 "readable by the VMM's user, or use the cloexec "
				 "backend" : "start the VMM with fewer or shorter "
				 "arguments (e.g. a config file), so a rollback "
				 "can re-run it", "a rollback could not re-run "
				 "this VMM: %s", why);
	cprx_mark(s, CPRX_PH_SAVE_START);
	fill_origin(s, &st);
	ret = fill_records(s, &st);
	if (!ret)
		ret = cprx_state_encode(&st, &buf, &len);
	unfill(&st);
	if (ret)
		return cprx_fail(s, -ret, NULL, "cannot build the state: %s",
				 strerror(-ret));
	ret = write_state(s, buf, len);
	free(buf);
	if (ret)
		return ret;
	s->saved = true;
	cprx_mark(s, CPRX_PH_SAVE_END);
	return 0;
}

/*
 * execvp's lookup, done before anything is changed: a path cut short or a
 * name found in no PATH entry is an error, never another file.  @out holds
 * @path then, for messages.
 */
int cprx_resolve_path(const char *path, char *out, size_t len)
{
	const char *p, *env = getenv("PATH");
	size_t n;

	if (strchr(path, '/'))
		return snprintf(out, len, "%s", path) < (int)len ? 0 : -ENAMETOOLONG;
	for (p = env ? env : "/usr/local/bin:/usr/bin:/bin"; *p; p += n + !!p[n]) {
		n = strcspn(p, ":");
		/* an empty entry is the cwd, as for execvp */
		if (snprintf(out, len, "%.*s%s%s", (int)n, p, n ? "/" : "",
			     path) >= (int)len)
			continue;
		if (!access(out, X_OK))
			return 0;
	}
	snprintf(out, len, "%s", path);
	return strlen(path) < len ? -ENOENT : -ENAMETOOLONG;
}

static size_t vec_bytes(char *const v[])
{
	size_t n = 0;

	for (; v && *v; v++)
		n += strlen(*v) + 1 + sizeof(char *);
	return n;
}

/* Names why execve refused, and what to do about it. */
static int exec_failure(struct cprx_session *s, const char *path, int err,
			char *const argv[], char *const envp[])
{
	char lsm[256], msg[CPRX_MSG_MAX], hint[CPRX_MSG_MAX];
	unsigned int nr_filters;
	int mode;

	switch (err) {
	case ENOENT:
		return cprx_fail(s, err, "check the path of the new binary; "
				 "cprx_preflight checks it before the guest stops",
				 "exec of '%s' failed (ENOENT): the binary or its "
				 "ELF interpreter does not exist", path);
	case EACCES:
		return cprx_fail(s, err, "chmod +x the binary, or move it off a "
				 "noexec mount",
				 "exec of '%s' failed (EACCES): not executable, "
				 "not a regular file, or on a noexec mount", path);
	case ENOEXEC:
		return cprx_fail(s, err, "install a binary built for this "
				 "machine, or add a #! line to a script",
				 "exec of '%s' failed (ENOEXEC): not an executable "
				 "format this kernel runs", path);
	case E2BIG:
		return cprx_fail(s, err, "shorten the new command line or the "
				 "environment",
				 "exec of '%s' failed (E2BIG): argv and environment "
				 "take %zu bytes, more than the kernel accepts",
				 path, vec_bytes(argv) + vec_bytes(envp));
	case ENOMEM:
		return cprx_fail(s, err, "free memory on the host and retry",
				 "exec of '%s' failed (ENOMEM): the kernel could not "
				 "allocate the new image", path);
	case ETXTBSY:
		return cprx_fail(s, err, "wait until the binary is fully written",
				 "exec of '%s' failed (ETXTBSY): the binary is open "
				 "for writing", path);
	case EPERM:
		mode = cprx_seccomp_mode(&nr_filters);
		cprx_describe_lsm(lsm, sizeof(lsm));
		if (mode == 2)
			return cprx_fail(s, err, "allow execve in the VMM's sandbox "
					 "(e.g. QEMU -sandbox on,spawn=allow) for live update",
					 "exec of '%s' refused (EPERM): a seccomp filter is "
					 "active (%u filter%s) and blocks execve; LSMs: %s",
					 path, nr_filters, nr_filters == 1 ? "" : "s", lsm);
		/* cprx-guard's status names the rule; kmod arms before exec */
		if (cprx_guard_explain(path, s->backend == &cprx_backend_kmod,
				       msg, sizeof(msg), hint, sizeof(hint)))
			return cprx_fail(s, err, hint, "%s", msg);
		return cprx_fail(s, err, "check the LSM policy (audit log, "
				 "dmesg) for a rule that denies this exec",
				 "exec of '%s' refused (EPERM): no seccomp filter is "
				 "active, so an LSM refused it; LSMs: %s", path, lsm);
	}
	return cprx_fail(s, err, "run cprx_preflight to see which check fails",
			 "exec of '%s' failed (%s): %s", path,
			 cprx_errname(err), strerror(err));
}

/*
 * environ without a stale CPRX_INCOMING, plus ours (@value, which may be
 * written until the exec).  The strings are environ's, not copies.
 */
char **cprx_build_envp(const char *value)
{
	size_t n = 0, i, j = 0;
	char **envp;

	while (environ && environ[n])
		n++;
	envp = calloc(n + 2, sizeof(char *));
	if (!envp)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], CPRX_ENV "=", sizeof(CPRX_ENV)))
			envp[j++] = environ[i];
	envp[j] = (char *)value;
	return envp;
}

/* ",mirror=<path>", escaped as the handover's values are. */
char *cprx_mirror_field(const char *path)
{
	size_t len = sizeof(",mirror=") + 3 * strlen(path);
	char *out = malloc(len);

	if (!out)
		return NULL;
	strcpy(out, ",mirror=");
	cprx_handover_escape(out + strlen(out), len - strlen(out), path);
	return out;
}

/*
 * The handover in @buf, "CPRX_INCOMING=v=1,<field>,<extra>..." up to its
 * save= time: the exec= time is the caller's to append, at the exec.
 * Returns its length (cut short at @len, as snprintf does).
 */
size_t cprx_handover_head(struct cprx_session *s, char *buf, size_t len,
			  const char *field, const char *extra,
			  const char *mirror, pid_t keeper, const char *reap)
{
	char guardian[32] = "";
	int n;

	if (s->guardian_fd >= 0)
		snprintf(guardian, sizeof(guardian), ",guardian=%d",
			 s->guardian_fd);
	n = snprintf(buf, len, "%s=v=1,%s,%s%s%s,keeper=%d,reap=%s,save=%llu",
		     CPRX_ENV, field, extra, mirror ? mirror : "", guardian,
		     (int)keeper, reap,
		     (unsigned long long)s->ts[CPRX_PH_SAVE_END]);

	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

int cprx_do_exec(struct cprx_session *s, const char *path,
		 char *const argv[], const char *extra, int exe_fd)
{
	struct cprx_keeper keeper = { 0 };
	char reap[128], field[64], *env = NULL, *mirror = NULL;
	char **envp = NULL;
	size_t envlen, n;
	bool warm;
	int ret, err;

	/*
	 * Everything that allocates happens before arm: from arm to execve
	 * the preserved fds are inheritable (cloexec backend), so that window
	 * is kept as short as it can be.
	 */
	if (s->mirror_path)
		mirror = cprx_mirror_field(s->mirror_path);
	envlen = sizeof(CPRX_ENV) + strlen(extra) + (mirror ? strlen(mirror) : 0) +
		 sizeof(field) + sizeof(reap) + 128;
	if (!s->mirror_path || mirror)
		env = malloc(envlen);
	if (env)
		envp = cprx_build_envp(env);
	if (!envp) {
		ret = cprx_fail(s, ENOMEM, "free memory on the host and retry",
				"out of memory for the new image's environment");
		goto out;
	}
	/*
	 * Still-busy keepers go on to the new image; never more than it
	 * takes.  The keeper starts before arm: its clone is not in the
	 * window; preflight's, already up, is not even in the pause.
	 */
	warm = cprx_keeper_take(&s->keeper, &keeper);
	if (cprx_keepers_handover(reap, sizeof(reap)) >= CPRX_MAX_KEEPERS ||
	    s->opts.no_deferred_teardown) {
		if (warm) {
			cprx_keeper_stop(&keeper);
			cprx_keepers_handover(reap, sizeof(reap));
		}
	} else if (!warm && cprx_keeper_start(&keeper)) {
		/* without it exec is only slower; one that could not be
		 * stopped goes on too, to be reaped */
		cprx_keepers_handover(reap, sizeof(reap));
	}
	ret = s->backend->arm(s, field, sizeof(field));
	if (ret) {
		cprx_keeper_stop(&keeper);
		goto out;
	}
	/* armed first: cprx.ko keeps only an armed session for the guardian */
	cprx_guardian_arm(s);
	cprx_mark(s, CPRX_PH_EXEC);
	n = cprx_handover_head(s, env, envlen, field, extra, mirror,
			       keeper.pid, reap);
	snprintf(env + n, envlen - n, ",exec=%llu",
		 (unsigned long long)s->ts[CPRX_PH_EXEC]);
	if (exe_fd >= 0)
		syscall(SYS_execveat, exe_fd, "", argv, envp, AT_EMPTY_PATH);
	else
		execve(path, argv, envp);
	err = errno;
	/* Still here: the exec failed.  Undo everything, the guest resumes. */
	cprx_keeper_stop(&keeper);
	cprx_guardian_disarm(s);
	s->backend->disarm(s);
	ret = exec_failure(s, path, err, argv, envp);
	s->ts[CPRX_PH_EXEC] = 0;
out:
	free(envp);
	free(env);
	free(mirror);
	return ret;
}

CPRX_EXPORT int cprx_exec(struct cprx_session *s, const char *path,
			  char *const argv[])
{
	char resolved[PATH_MAX];
	int ret;

	if (!s || !path || !argv)
		return cprx_null_arg(s, __func__, !s ? "s" : !path ? "path" :
				     "argv");
	if (!argv[0])
		return cprx_fail(s, EINVAL, "pass the new binary and its argv",
				 "cprx_exec needs a path and argv[0]");
	if (s->backend == &cprx_backend_luo)
		return cprx_fail(s, EOPNOTSUPP, "call cprx_kexec_prepare, then "
				 "kexec; or open the session with another backend",
				 "session '%s' is a luo session: it survives a "
				 "kexec, not an exec", s->name);
	if (!s->saved) {
		ret = cprx_save(s);
		if (ret)
			return ret;
	}
	ret = cprx_resolve_path(path, resolved, sizeof(resolved));
	if (ret == -ENAMETOOLONG)
		return cprx_fail(s, ENAMETOOLONG, "shorten the path of the new "
				 "binary", "the new binary's path is longer than "
				 "PATH_MAX (%d bytes)", PATH_MAX);
	if (ret)
		return cprx_fail(s, ENOENT, "pass the new binary's path, or add "
				 "its directory to PATH", "'%s' is in no directory "
				 "of PATH", path);
	return cprx_do_exec(s, resolved, argv, "rb=0", -1);
}

CPRX_EXPORT int cprx_kexec_prepare(struct cprx_session *s)
{
	int ret = outgoing(s, __func__);

	if (ret)
		return ret;
	if (s->backend != &cprx_backend_luo)
		return cprx_fail(s, EINVAL, "open the session with backend luo "
				 "(CPRX_BACKEND=luo) to survive a kexec",
				 "session '%s' uses the %s backend, which survives "
				 "an exec, not a kexec", s->name, s->backend->name);
	if (!s->saved) {
		ret = cprx_save(s);
		if (ret)
			return ret;
	}
	cprx_mark(s, CPRX_PH_EXEC);	/* the last step before the kexec */
	ret = cprx_luo_hold(s);
	if (ret)
		s->ts[CPRX_PH_EXEC] = 0;
	return ret;
}
