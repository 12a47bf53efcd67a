// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What cprx-guard (bpf/) will say about an exec, learnt from the status
 * file it keeps world-readable (format in guard_reader.h).  The BPF side
 * decides; this only predicts and explains, so preflight can refuse before
 * the guest stops and an EPERM from execve can name the rule behind it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include "guard_reader.h"
#include "sha256.h"

const char *cprx_guard_status_path(void)
{
	const char *env = getenv(CPRX_GUARD_STATUS_ENV);

	return env && *env ? env : CPRX_GUARD_STATUS_PATH;
}

void cprx_guard_status_free(struct cprx_guard_status *st)
{
	unsigned int i;

	for (i = 0; i < st->nr_cgroups; i++) {
		free(st->cgroups[i].rel);
		free(st->cgroups[i].mnt);
	}
	for (i = 0; i < st->nr_exes; i++)
		free(st->exes[i].path);
	for (i = 0; i < st->nr_allow; i++)
		free(st->allow[i].path);
	memset(st, 0, sizeof(*st));
}

uint64_t cprx_guard_fingerprint(const struct stat *sb)
{
	unsigned char in[40], out[32];
	uint64_t v[4] = { major(sb->st_dev), minor(sb->st_dev), sb->st_ino,
			  sb->st_ctim.tv_sec }, fp = 0;
	uint32_t nsec = sb->st_ctim.tv_nsec;
	int i, j;

	/* little-endian fields: the same fingerprint on every host */
	for (i = 0; i < 4; i++)
		for (j = 0; j < 8; j++)
			in[8 * i + j] = (unsigned char)(v[i] >> (8 * j));
	for (j = 0; j < 4; j++)
		in[32 + j] = (unsigned char)(nsec >> (8 * j));
	memcpy(in + 36, "cg1", 4);
	cprx_sha256(in, sizeof(in), out);
	for (i = 0; i < 8; i++)
		fp = fp << 8 | out[i];
	return fp ? fp : 1;	/* 0 means "none" */
}

/* "fp:<hex> <path>", or the old "<major>:<minor>:<ino> <path>" */
static int parse_file(char *s, struct cprx_guard_file *f)
{
	unsigned long long ino, fp;
	unsigned int maj, min;
	int n = 0;

	memset(f, 0, sizeof(*f));
	if (sscanf(s, "fp:%16llx %n", &fp, &n) == 1 && n && s[n] == '/' && fp) {
		f->fp = fp;
	} else if (n = 0, sscanf(s, "%u:%u:%llu %n", &maj, &min, &ino, &n) == 3 &&
		   n && s[n] == '/') {
		f->major = maj;
		f->minor = min;
		f->ino = ino;
	} else {
		return -1;
	}
	f->path = strdup(s + n);
	return f->path ? 0 : -1;
}

static int parse_cgroup(char *s, struct cprx_guard_cgroup *c)
{
	char *sp = strchr(s, ' ');

	if (*s != '/' || !sp || sp[1] != '/')
		return -1;
	*sp = '\0';
	c->rel = strdup(s);
	c->mnt = strdup(sp + 1);
	return c->rel && c->mnt ? 0 : -1;
}

/* "<id> <path in cgroup2>": the cgroup an older guard holds at that path. */
static void set_cgroup_id(struct cprx_guard_status *st, const char *val)
{
	unsigned long long id;
	unsigned int i;
	int n = 0;

	if (sscanf(val, "%llu %n", &id, &n) != 1 || !n)
		return;
	for (i = 0; i < st->nr_cgroups; i++)
		if (!strcmp(st->cgroups[i].rel, val + n))
			st->cgroups[i].id = id;
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

/*
 * "<id> <type> <name>": a prog or map line, into @objs[*nr] (< @max).  Only
 * cprx-guard uses them, and a loader always writes what its parser takes
 * (guard_reader.h): a line past the limit or not in this form, a newer
 * guard's, is skipped, never a reason to ignore the status.
 */
static void parse_obj(const char *s, struct cprx_guard_obj *objs,
		      unsigned int *nr, unsigned int max)
{
	struct cprx_guard_obj *o = &objs[*nr];
	unsigned int id, type;
	int n = 0;

	if (*nr >= max || sscanf(s, "%u %u %n", &id, &type, &n) != 2 || !n ||
	    !id || !s[n] || strlen(s + n) >= sizeof(o->name))
		return;
	o->id = id;
	o->type = type;
	copy(o->name, sizeof(o->name), s + n);
	(*nr)++;
}

/* One "key value" line; unknown keys are a newer guard's: skipped. */
static int parse_line(struct cprx_guard_status *st, char *key, char *val)
{
	unsigned int rule;
	int n = 0;

	if (!strcmp(key, "cprx-guard"))
		return strcmp(val, "1") ? -1 : 0;
	if (!strcmp(key, "state")) {
		if (strcmp(val, "enforcing") && strcmp(val, "trace-only"))
			return -1;
		st->enforcing = !strcmp(val, "enforcing");
	} else if (!strcmp(key, "why")) {
		copy(st->why, sizeof(st->why), val);
	} else if (!strcmp(key, "mode")) {
		st->mode_trace = !strcmp(val, "trace");
	} else if (!strcmp(key, "armed-only")) {
		st->armed_only = !strcmp(val, "1");
	} else if (!strcmp(key, "pid")) {
		st->pid = strtol(val, NULL, 10);
	} else if (!strcmp(key, "pid-start")) {
		st->pid_start = strtoull(val, NULL, 10);
	} else if (!strcmp(key, "boot-id")) {
		copy(st->boot_id, sizeof(st->boot_id), val);
	} else if (!strcmp(key, "pinned")) {
		copy(st->pinned, sizeof(st->pinned), val);
	} else if (!strcmp(key, "policy")) {
		copy(st->policy, sizeof(st->policy), val);
	} else if (!strcmp(key, "guard-uid")) {
		if (st->nr_uids >= CPRX_GUARD_MAX_SEL)
			return -1;
		st->uids[st->nr_uids++] = strtoul(val, NULL, 10);
	} else if (!strcmp(key, "guard-cgroup")) {
		if (st->nr_cgroups >= CPRX_GUARD_MAX_SEL ||
		    parse_cgroup(val, &st->cgroups[st->nr_cgroups]))
			return -1;
		st->nr_cgroups++;
	} else if (!strcmp(key, "guard-cgroup-id")) {
		set_cgroup_id(st, val);
	} else if (!strcmp(key, "guard-exe")) {
		if (st->nr_exes >= CPRX_GUARD_MAX_RULES ||
		    parse_file(val, &st->exes[st->nr_exes]))
			return -1;
		st->nr_exes++;
	} else if (!strcmp(key, "prog")) {
		parse_obj(val, st->ids.progs, &st->ids.nr_progs,
			  CPRX_GUARD_MAX_PROGS);
	} else if (!strcmp(key, "map")) {
		parse_obj(val, st->ids.maps, &st->ids.nr_maps,
			  CPRX_GUARD_MAX_MAPS);
	} else if (!strcmp(key, "allow")) {
		if (st->nr_allow >= CPRX_GUARD_MAX_RULES ||
		    sscanf(val, "%u %n", &rule, &n) != 1 || !n ||
		    parse_file(val + n, &st->allow[st->nr_allow]))
			return -1;
		st->allow[st->nr_allow++].rule = rule;
	}
	return 0;
}

int cprx_guard_status_read(const char *file, struct cprx_guard_status *st,
			   char *err, size_t errlen)
{
	char line[CPRX_GUARD_PATH_MAX + 64], *val;
	unsigned int lineno = 0;
	bool magic = false;
	FILE *f;

	memset(st, 0, sizeof(*st));
	f = fopen(file ? file : cprx_guard_status_path(), "re");
	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (!*line || *line == '#')
			continue;
		val = strchr(line, ' ');
		if (val)
			*val++ = '\0';
		if (!val || parse_line(st, line, val)) {
			if (err)
				snprintf(err, errlen, "line %u ('%s') is malformed",
					 lineno, line);
			goto bad;
		}
		magic |= !strcmp(line, "cprx-guard");
	}
	fclose(f);
	if (!magic) {
		if (err)
			snprintf(err, errlen, "no 'cprx-guard 1' line");
		cprx_guard_status_free(st);
		return -EBADMSG;
	}
	/* from another boot, or its loader gone: its programs are gone */
	if (cprx_guard_status_stale(st, err, errlen)) {
		cprx_guard_status_free(st);
		return -ESTALE;
	}
	return 0;
bad:
	fclose(f);
	cprx_guard_status_free(st);
	return -EBADMSG;
}

/* A cgroup v2 path, from the "0::" line of @file (/proc/self/cgroup). */
static bool proc_cgroup(const char *file, char *buf, size_t len)
{
	char line[CPRX_GUARD_PATH_MAX];
	bool found = false;
	FILE *f = fopen(file, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		copy(buf, len, line + 3);
		found = true;
	}
	fclose(f);
	return found;
}

/* The cgroup2 mount that shows the whole hierarchy (root "/"), or false. */
static bool cgroup2_mount(char *mnt, size_t len)
{
	char line[CPRX_GUARD_PATH_MAX], root[CPRX_GUARD_PATH_MAX];
	char mp[CPRX_GUARD_PATH_MAX];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && !found && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep, " - cgroup2 ", 11))
			continue;
		if (sscanf(line, "%*d %*d %*s %4095s %4095s", root, mp) == 2 &&
		    !strcmp(root, "/") && strlen(mp) < len) {
			copy(mnt, len, mp);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/*
 * Is cgroup @path (in cgroup2) the cgroup @id or below it?  By the ids of
 * its ancestors' directories, as an older guard (guard-cgroup-id) matched
 * the directory it held at load: for it, one created at the same path again
 * is another cgroup.  -1: cannot tell.
 */
static int under_id(const char *path, uint64_t id)
{
	char dir[2 * CPRX_GUARD_PATH_MAX], *slash;
	size_t root;
	struct stat sb;

	if (!cgroup2_mount(dir, sizeof(dir)))
		return -1;
	root = strlen(dir);
	if (strcmp(path, "/"))
		snprintf(dir + root, sizeof(dir) - root, "%s", path);
	for (;;) {
		if (stat(dir, &sb) < 0)
			return -1;
		if ((uint64_t)sb.st_ino == id)
			return 1;
		slash = strrchr(dir, '/');
		if (strlen(dir) <= root || !slash || (size_t)(slash - dir) < root)
			return 0;
		*slash = '\0';
	}
}

static bool under(const char *path, const char *top)
{
	size_t n = strlen(top);

	if (!strcmp(top, "/"))
		return true;
	return !strncmp(path, top, n) && (path[n] == '\0' || path[n] == '/');
}

static bool same_file(const struct cprx_guard_file *f, const struct stat *st)
{
	if (f->fp)
		return f->fp == cprx_guard_fingerprint(st);
	return f->major == major(st->st_dev) && f->minor == minor(st->st_dev) &&
	       f->ino == (uint64_t)st->st_ino;
}

/*
 * Same selectors as the BPF side: real uid, cgroup v2 by path (the kernel
 * follows the path: a directory created there again is guarded; an older
 * guard's held directory by id), running binary.
 */
bool cprx_guard_covers(const struct cprx_guard_status *st, uid_t uid,
		       const char *cgroup_file, const char *exe_file,
		       char *how, size_t len)
{
	char cg[CPRX_GUARD_PATH_MAX], path[CPRX_GUARD_PATH_MAX];
	struct stat exe;
	unsigned int i;
	ssize_t n;

	for (i = 0; i < st->nr_uids; i++) {
		if (st->uids[i] == uid) {
			snprintf(how, len, "uid %u", uid);
			return true;
		}
	}
	if (st->nr_cgroups && proc_cgroup(cgroup_file, cg, sizeof(cg))) {
		for (i = 0; i < st->nr_cgroups; i++) {
			int by_id = st->cgroups[i].id ?
				    under_id(cg, st->cgroups[i].id) : -1;

			if (by_id == 1 || (by_id < 0 && under(cg, st->cgroups[i].rel))) {
				snprintf(how, len, "cgroup %s", st->cgroups[i].mnt);
				return true;
			}
		}
	}
	if (st->nr_exes && !stat(exe_file, &exe)) {
		/* the kernel also takes the file at its path (an upgrade's) */
		n = readlink(exe_file, path, sizeof(path) - 1);
		path[n > 0 ? n : 0] = '\0';
		for (i = 0; i < st->nr_exes; i++) {
			if (same_file(&st->exes[i], &exe) ||
			    (*path && !strcmp(st->exes[i].path, path))) {
				snprintf(how, len, "its binary %s", st->exes[i].path);
				return true;
			}
		}
	}
	return false;
}

/*
 * @uid as the guard sees it (the BPF side reads the kernel's uid, that of
 * the initial user namespace): through /proc/self/uid_map, which maps this
 * namespace's uids to its parent's.  One level: a namespace nested in
 * another one maps to that one, not to the initial namespace.
 */
static uid_t kernel_uid(uid_t uid)
{
	unsigned long in, out, count;
	uid_t res = uid;
	FILE *f = fopen("/proc/self/uid_map", "re");

	if (!f)
		return uid;
	while (fscanf(f, "%lu %lu %lu", &in, &out, &count) == 3) {
		if (uid >= in && uid - in < count) {
			res = out + (uid - in);
			break;
		}
	}
	fclose(f);
	return res;
}

bool cprx_guard_covers_self(const struct cprx_guard_status *st, char *how,
			    size_t len)
{
	return cprx_guard_covers(st, kernel_uid(getuid()), "/proc/self/cgroup",
				 "/proc/self/exe", how, len);
}

const struct cprx_guard_file *
cprx_guard_find_rule(const struct cprx_guard_status *st, const struct stat *sb)
{
	unsigned int i;

	for (i = 0; i < st->nr_allow; i++)
		if (same_file(&st->allow[i], sb))
			return &st->allow[i];
	return NULL;
}

/* A rule for the same path but another inode: replaced since the load. */
const struct cprx_guard_file *
cprx_guard_find_replaced(const struct cprx_guard_status *st, const char *path)
{
	char real[CPRX_GUARD_PATH_MAX], *r = realpath(path, real);
	unsigned int i;

	for (i = 0; i < st->nr_allow; i++)
		if (!strcmp(st->allow[i].path, path) ||
		    (r && !strcmp(st->allow[i].path, real)))
			return &st->allow[i];
	return NULL;
}

/* Armed-only binds VMMs: processes running an allow-listed binary. */
static bool self_runs_vmm(const struct cprx_guard_status *st)
{
	struct stat exe;

	return !stat("/proc/self/exe", &exe) && cprx_guard_find_rule(st, &exe);
}

struct answer {
	const struct cprx_guard_status *st;
	const char *path;
	const struct stat *sb;
	const char *how;
	char *why, *hint;
	size_t len, hlen;
	bool explain;		/* the why is for an EPERM that happened */
};

const char *cprx_guard_name(const struct cprx_guard_status *st)
{
	if (st->enforcing)
		return "cprx-guard (BPF LSM, enforcing)";
	return st->mode_trace ? "cprx-guard (trace-only by policy)" :
				"cprx-guard (trace-only fallback, NOT enforced)";
}

static void say(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/*
 * "<guard> refuses exec of 'PATH': <detail>", or for an EPERM that
 * happened "exec of 'PATH' refused (EPERM) by <guard>: <detail>"; the
 * detail names the selector, the binary's inode, the rule and the policy.
 */
static enum cprx_guard_result refuse(struct answer *a, const char *what)
{
	char detail[CPRX_GUARD_PATH_MAX + 1024], tail[600] = "";

	if (!a->st->enforcing)
		snprintf(tail, sizeof(tail), "; NOT enforced: %s",
			 *a->st->why ? a->st->why : "trace-only");
	snprintf(detail, sizeof(detail), "this process is guarded (by %s) and "
		 "%s (binary %u:%u:%llu; policy %s)%s", a->how, what,
		 major(a->sb->st_dev), minor(a->sb->st_dev),
		 (unsigned long long)a->sb->st_ino,
		 *a->st->policy ? a->st->policy : "?", tail);
	if (a->explain)
		say(a->why, a->len, "exec of '%s' refused (EPERM) by %s: %s",
		    a->path, cprx_guard_name(a->st), detail);
	else
		say(a->why, a->len, "%s %s exec of '%s': %s",
		    cprx_guard_name(a->st),
		    a->st->enforcing ? "refuses" : "would refuse", a->path,
		    detail);
	return a->st->enforcing ? CPRX_GUARD_DENY : CPRX_GUARD_WOULD_DENY;
}

static enum cprx_guard_result decide(struct answer *a, bool armed)
{
	const struct cprx_guard_file *r = cprx_guard_find_rule(a->st, a->sb);
	char what[CPRX_GUARD_PATH_MAX + 200];

	if (!r && (r = cprx_guard_find_replaced(a->st, a->path))) {
		snprintf(what, sizeof(what), "rule %u (allow %s) names the "
			 "file that was there when the policy was loaded, but "
			 "it has been replaced on disk (or its ctime changed) "
			 "since", r->rule, r->path);
		say(a->hint, a->hlen, "reload the guard policy (cprx-guard load "
		    "--pin --replace): rules are resolved to inodes at load");
		return refuse(a, what);
	}
	if (!r) {
		snprintf(what, sizeof(what), "the binary is not on the "
			 "allow-list (%u rule%s)", a->st->nr_allow,
			 a->st->nr_allow == 1 ? "" : "s");
		say(a->hint, a->hlen, "add 'allow %s' to the guard policy and "
		    "reload it, or exec an allow-listed binary", a->path);
		return refuse(a, what);
	}
	if (a->st->armed_only && !armed && self_runs_vmm(a->st)) {
		snprintf(what, sizeof(what), "rule %u (allow %s) matches, but "
			 "the policy is armed-only and no cprx.ko session would "
			 "be armed at the exec", r->rule, r->path);
		say(a->hint, a->hlen, "use the kmod backend (load cprx.ko, "
		    "CPRX_BACKEND=kmod) so a session is armed at the exec, or "
		    "drop armed-only from the guard policy");
		return refuse(a, what);
	}
	say(a->why, a->len, "%s allows '%s': rule %u (allow %s)%s",
	    cprx_guard_name(a->st), a->path, r->rule, r->path,
	    a->st->armed_only ? ", with the armed session" : "");
	return CPRX_GUARD_ALLOW;
}

static enum cprx_guard_result verdict(const char *path, bool armed,
				      bool explain, char *why, size_t len,
				      char *hint, size_t hlen)
{
	struct cprx_guard_status st;
	struct answer a = { .st = &st, .path = path, .why = why, .len = len,
			    .hint = hint, .hlen = hlen, .explain = explain };
	enum cprx_guard_result res;
	char err[256], how[CPRX_GUARD_PATH_MAX + 32];
	struct stat sb;
	int ret;

	say(hint, hlen, "%s", "");
	ret = cprx_guard_status_read(NULL, &st, err, sizeof(err));
	if (ret) {
		if (ret == -ENOENT)
			say(why, len, "no cprx-guard policy is active");
		else
			say(why, len, "cprx-guard status %s ignored: %s",
			    cprx_guard_status_path(), err);
		return CPRX_GUARD_NONE;
	}
	if (!cprx_guard_covers_self(&st, how, sizeof(how))) {
		say(why, len, "%s is active but does not guard this process",
		    cprx_guard_name(&st));
		cprx_guard_status_free(&st);
		return CPRX_GUARD_UNGUARDED;
	}
	a.how = how;
	a.sb = &sb;
	if (stat(path, &sb) < 0) {
		say(why, len, "%s guards this process (by %s); '%s' cannot be "
		    "checked: %s", cprx_guard_name(&st), how, path,
		    strerror(errno));
		res = st.enforcing ? CPRX_GUARD_DENY : CPRX_GUARD_WOULD_DENY;
		cprx_guard_status_free(&st);
		return res;
	}
	res = decide(&a, armed);
	cprx_guard_status_free(&st);
	return res;
}

enum cprx_guard_result cprx_guard_verdict(const char *path, bool armed,
					  char *why, size_t len,
					  char *hint, size_t hlen)
{
	return verdict(path, armed, false, why, len, hint, hlen);
}

bool cprx_guard_explain(const char *path, bool armed, char *msg, size_t len,
			char *hint, size_t hlen)
{
	char why[CPRX_GUARD_PATH_MAX + 2048], h[512];

	if (verdict(path, armed, true, why, sizeof(why), h,
		    sizeof(h)) != CPRX_GUARD_DENY)
		return false;
	say(msg, len, "%s", why);
	say(hint, hlen, "%s", h);
	return true;
}
