// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-guard's policy: parsed from a file or options, binaries resolved to
 * device and inode once, at load.  That is the point: the allow-list names
 * the file that was reviewed, not whatever sits at the path later.  A binary
 * replaced on disk (new inode, as package managers and `install` do) is not
 * allowed until the policy is loaded again; one rewritten in place keeps its
 * inode and stays allowed (the kernel refuses writes to a running binary,
 * ETXTBSY, but not to one that is not running).
 *
 * The kernel matches more than the inode (struct cg_file_key): its
 * generation and change time too, so a recycled inode number or a file
 * rewritten in place is not allowed.  A rule's file must be owned by root
 * and not writable by group or others: whoever can write it decides what
 * the guard allows.  Nor may it be on FUSE, whose server makes all of that
 * up, nor open for writing anywhere (a writer from before the chown).
 *
 * A rule may name the content too (sha256=): the file is hashed at load
 * through the same open fd the kernel's key is read from, and the change
 * time must not move between the check and the key (cg_rule_unchanged), so
 * the key, which holds the change time, names the content that was hashed.
 *
 * Policy file, one item a line, '#' comments:
 *   mode enforce|trace
 *   armed-only yes|no
 *   userns deny|allow        may guarded processes create user namespaces
 *                            (default deny)
 *   guard-uid UID            processes with this real uid
 *   guard-cgroup DIR         processes in this cgroup v2 directory or below:
 *                            the one at that path, also once created again
 *                            (it need not exist at load)
 *   guard-exe PATH           processes running this binary
 *   allow PATH               what guarded processes may exec (rule 1, 2, ...)
 *
 * After a guard-exe or allow PATH, "sha256=HEX" (64 hex digits, either
 * case) is the content the file must have; it is the last word, so a path
 * may still hold spaces.
 *
 * Kept in one file: the items and every check a rule's file must pass
 * (owner, file system, writers, digest, image) are the policy's one
 * contract with the kernel's keys, and test_guard_policy builds it alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "guard_tool.h"
#include "sha256.h"

#define CG_HASH_CHUNK	(256 * 1024)	/* bytes per read when hashing */

G_DEFINE_QUARK(cprx-guard-error-quark, cg_error)

struct cg_policy *cg_policy_new(void)
{
	struct cg_policy *p = g_new0(struct cg_policy, 1);

	p->uids = g_array_new(FALSE, FALSE, sizeof(guint32));
	p->cgroups = g_ptr_array_new_with_free_func(g_free);
	p->cgroup_rels = g_ptr_array_new_with_free_func(g_free);
	p->exes = g_array_new(FALSE, TRUE, sizeof(struct cg_rule));
	p->allow = g_array_new(FALSE, TRUE, sizeof(struct cg_rule));
	p->deny_userns = TRUE;
	return p;
}

static void close_rules(GArray *a)
{
	guint i;

	for (i = 0; i < a->len; i++) {
		struct cg_rule *r = &g_array_index(a, struct cg_rule, i);

		if (r->fd >= 0)
			close(r->fd);
		r->fd = -1;
	}
}

void cg_policy_close_files(struct cg_policy *p)
{
	close_rules(p->exes);
	close_rules(p->allow);
}

static void free_rules(GArray *a)
{
	guint i;

	close_rules(a);
	for (i = 0; i < a->len; i++)
		g_free(g_array_index(a, struct cg_rule, i).path);
	g_array_free(a, TRUE);
}

void cg_policy_free(struct cg_policy *p)
{
	if (!p)
		return;
	g_free(p->source);
	g_array_free(p->uids, TRUE);
	g_ptr_array_free(p->cgroups, TRUE);
	g_ptr_array_free(p->cgroup_rels, TRUE);
	free_rules(p->exes);
	free_rules(p->allow);
	g_free(p);
}

guint32 cg_rule_kdev(const struct cg_rule *r)
{
	return r->major << 20 | r->minor;
}

/*
 * Whoever may write a rule's file decides what the guard allows: only
 * root-owned files that group and others cannot write are accepted.
 */
static gboolean safe_owner(const char *path, const struct stat *st,
			   GError **err)
{
	if (st->st_uid != 0) {
		g_set_error(err, CG_ERROR, EPERM, "'%s' is owned by uid %u, not "
			    "root: its owner could change what the guard allows "
			    "(fix: chown root '%s', or install it as root)",
			    path, (unsigned int)st->st_uid, path);
		return FALSE;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		g_set_error(err, CG_ERROR, EPERM, "'%s' is writable by %s (mode "
			    "%04o): they could change what the guard allows "
			    "(fix: chmod go-w '%s')", path,
			    st->st_mode & S_IWOTH ? "others" : "its group",
			    (unsigned int)(st->st_mode & 07777), path);
		return FALSE;
	}
	return TRUE;
}

/*
 * A FUSE server, which any user may run, reports whatever owner, mode,
 * inode number, generation and change time it likes, and may serve other
 * bytes at exec than it served the digest: a rule's file there binds
 * nothing.  (Keys hold the file system's magic, so a rule elsewhere never
 * matches a FUSE file.)
 */
static gboolean trusted_fs(const char *path, int fd, GError **err)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0) {
		g_set_error(err, CG_ERROR, errno, "'%s': statfs: %s", path,
			    g_strerror(errno));
		return FALSE;
	}
	if (sfs.f_type == FUSE_SUPER_MAGIC) {
		g_set_error(err, CG_ERROR, EPERM, "'%s' is on a FUSE file "
			    "system: its server, not the kernel, says who owns "
			    "it and what it holds (fix: install the binary on "
			    "a local file system and name it there)", path);
		return FALSE;
	}
	return TRUE;
}

/*
 * A process that holds the file open for writing (an fd, or a shared
 * mapping, kept from before it was chown'ed to root) writes it past the
 * owner and mode checks, and through a mapping without moving its change
 * time (tmpfs never does; other file systems not until writeback): its
 * content would change under the key.  A read lease is refused (EAGAIN)
 * exactly while some file of the inode is open for writing.  Where leases
 * are off or unsupported (EINVAL, ENOLCK) it cannot tell: the loader reads
 * the kernel's count of writers again with the file's key (cprx_guard.c).
 */
static gboolean no_writer(const char *path, int fd, GError **err)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return TRUE;
	}
	if (errno != EAGAIN)
		return TRUE;
	g_set_error(err, CG_ERROR, EBUSY, "'%s' is open for writing (an fd or "
		    "a shared mapping): its writer could change it without a "
		    "new change time, past the owner and mode checks (fix: "
		    "stop the writer, `fuser -v '%s'`, or install the binary "
		    "anew as root)", path, path);
	return FALSE;
}

static gboolean resolve(const char *path, struct cg_rule *r, GError **err)
{
	char real[PATH_MAX];
	struct stat st;
	int fd = -1;

	if (!realpath(path, real) ||
	    (fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
	    fstat(fd, &st) < 0) {
		g_set_error(err, CG_ERROR, errno, "'%s': %s (a rule names an "
			    "existing file: it is resolved to its inode now)",
			    path, g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return FALSE;
	}
	if (!S_ISREG(st.st_mode)) {
		g_set_error(err, CG_ERROR, EINVAL, "'%s' is not a regular file",
			    path);
		close(fd);
		return FALSE;
	}
	if (!trusted_fs(real, fd, err) || !safe_owner(real, &st, err) ||
	    !no_writer(real, fd, err)) {
		close(fd);
		return FALSE;
	}
	r->fd = fd;
	r->ctime = st.st_ctim;	/* before any hashing: see cg_rule_unchanged */
	r->path = g_strdup(real);
	r->major = major(st.st_dev);
	r->minor = minor(st.st_dev);
	r->ino = st.st_ino;
	r->fp = cprx_guard_fingerprint(&st);
	return TRUE;
}

/* "sha256=HEX": 64 hex digits; either case, which carries no meaning. */
static gboolean parse_sha256(const char *word, guint8 out[32], GError **err)
{
	const char *hex = word + strlen("sha256=");
	size_t n = strlen(hex), i;

	if (n != 64) {
		g_set_error(err, CG_ERROR, EINVAL, "'%s': a SHA-256 is 64 hex "
			    "digits (as sha256sum prints it), not %zu", word, n);
		return FALSE;
	}
	for (i = 0; i < 64; i++) {
		int v = g_ascii_xdigit_value(hex[i]);

		if (v < 0) {
			g_set_error(err, CG_ERROR, EINVAL, "'%s': '%c' is not "
				    "a hex digit", word, hex[i]);
			return FALSE;
		}
		out[i / 2] = i % 2 ? out[i / 2] | v : v << 4;
	}
	return TRUE;
}

/*
 * A rule's value, "PATH" or "PATH sha256=HEX": *@path gets the path, @r
 * the digest.  A digest without a path is refused: finding the file would
 * take the kernel hashing every exec (bpf/README.md: "No rule by digest
 * alone").
 */
static gboolean parse_rule(const char *val, char **path, struct cg_rule *r,
			   GError **err)
{
	const char *last = val + strlen(val);

	while (last > val && !g_ascii_isspace(last[-1]))
		last--;
	if (!g_str_has_prefix(last, "sha256=")) {
		*path = g_strdup(val);
		return TRUE;
	}
	if (last == val) {
		g_set_error(err, CG_ERROR, EINVAL, "'%s' names no file: a rule "
			    "by digest alone is not supported (give PATH "
			    "sha256=HEX; see cprx-guard hash)", val);
		return FALSE;
	}
	if (!parse_sha256(last, r->sha256, err))
		return FALSE;
	r->has_sha256 = TRUE;
	*path = g_strchomp(g_strndup(val, last - val));
	return TRUE;
}

/* The SHA-256 of the file open at @fd, from its start (pread: no seek). */
static gboolean hash_fd(int fd, const char *path, guint8 out[32],
			GError **err)
{
	g_autofree guint8 *buf = g_malloc(CG_HASH_CHUNK);
	struct cprx_sha256 c;
	off_t off = 0;
	ssize_t n;

	cprx_sha256_init(&c);
	while ((n = pread(fd, buf, CG_HASH_CHUNK, off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			g_set_error(err, CG_ERROR, errno, "'%s': cannot read it "
				    "to check its SHA-256: %s", path,
				    g_strerror(errno));
			return FALSE;
		}
		cprx_sha256_update(&c, buf, n);
		off += n;
	}
	cprx_sha256_final(&c, out);
	return TRUE;
}

/*
 * @r's content against its rule's digest, read through @r->fd: the open
 * file whose key the loader reads, not the path again.
 */
static gboolean check_sha256(const struct cg_rule *r, GError **err)
{
	char want[65], got[65];
	guint8 d[32];

	if (!hash_fd(r->fd, r->path, d, err))
		return FALSE;
	if (!memcmp(d, r->sha256, sizeof(d)))
		return TRUE;
	cprx_sha256_hex(r->sha256, want);
	cprx_sha256_hex(d, got);
	g_set_error(err, CG_ERROR, EPERM, "'%s' does not have the content its "
		    "rule names: the rule expects SHA-256 %s, the file's is %s "
		    "(fix: if this file is the one to allow, put sha256=%s in "
		    "the rule, as `cprx-guard hash '%s'` prints it; if not, "
		    "put back the binary the rule was written for)", r->path,
		    want, got, got, r->path);
	return FALSE;
}

gboolean cg_rule_unchanged(const struct cg_rule *r, GError **err)
{
	struct stat st;

	if (fstat(r->fd, &st) < 0) {
		g_set_error(err, CG_ERROR, errno, "'%s': %s", r->path,
			    g_strerror(errno));
		return FALSE;
	}
	if (st.st_ctim.tv_sec == r->ctime.tv_sec &&
	    st.st_ctim.tv_nsec == r->ctime.tv_nsec)
		return TRUE;
	g_set_error(err, CG_ERROR, EAGAIN, "'%s' changed while the policy was "
		    "loading (its change time moved after it was checked%s): "
		    "load the policy again", r->path,
		    r->has_sha256 ? " and hashed" : "");
	return FALSE;
}

/*
 * A guard-exe selects the processes whose own image is that file
 * (/proc/PID/exe): a script's process runs its interpreter, and a format
 * binfmt_misc hands to a handler runs the handler, so such a rule would
 * guard nobody.  Only ELF images are a process's own.
 */
static gboolean own_image(const struct cg_rule *r, GError **err)
{
	char magic[4] = "";

	if (pread(r->fd, magic, sizeof(magic), 0) == sizeof(magic) &&
	    !memcmp(magic, "\177ELF", 4))
		return TRUE;
	if (!memcmp(magic, "#!", 2))
		g_set_error(err, CG_ERROR, EINVAL, "guard-exe '%s' is a #! "
			    "script: its processes run its interpreter, not "
			    "it, so this rule would guard nobody (fix: run the "
			    "VMM in a guard-cgroup or under a guard-uid)",
			    r->path);
	else
		g_set_error(err, CG_ERROR, EINVAL, "guard-exe '%s' is not an "
			    "ELF executable: a process never runs it as its own "
			    "image (a binfmt_misc format runs its handler), so "
			    "this rule would guard nobody (fix: name the "
			    "VMM's binary, or use a guard-cgroup or guard-uid)",
			    r->path);
	return FALSE;
}

static gboolean add_rule(GArray *a, const char *val, gboolean exe,
			 GError **err)
{
	g_autofree char *path = NULL;
	struct cg_rule r = { 0 };
	guint i;

	if (!parse_rule(val, &path, &r, err) || !resolve(path, &r, err))
		return FALSE;
	if ((r.has_sha256 && !check_sha256(&r, err)) ||
	    (exe && !own_image(&r, err))) {
		g_free(r.path);
		close(r.fd);
		return FALSE;
	}
	for (i = 0; i < a->len; i++) {
		struct cg_rule *o = &g_array_index(a, struct cg_rule, i);

		if (o->ino == r.ino && cg_rule_kdev(o) == cg_rule_kdev(&r)) {
			g_free(r.path);	/* the same file twice: one rule */
			close(r.fd);
			return TRUE;
		}
	}
	g_array_append_val(a, r);
	return TRUE;
}

static gboolean parse_bool(const char *val, gboolean *out, GError **err)
{
	if (!g_ascii_strcasecmp(val, "yes") || !strcmp(val, "1") ||
	    !g_ascii_strcasecmp(val, "true")) {
		*out = TRUE;
	} else if (!g_ascii_strcasecmp(val, "no") || !strcmp(val, "0") ||
		   !g_ascii_strcasecmp(val, "false")) {
		*out = FALSE;
	} else {
		g_set_error(err, CG_ERROR, EINVAL, "'%s' is not yes or no", val);
		return FALSE;
	}
	return TRUE;
}

static gboolean add_uid(struct cg_policy *p, const char *val, GError **err)
{
	guint64 uid;

	if (!g_ascii_string_to_unsigned(val, 10, 0, G_MAXUINT32 - 1, &uid, err))
		return FALSE;
	g_array_append_vals(p->uids, &(guint32){ uid }, 1);
	return TRUE;
}

static gboolean add_cgroup(struct cg_policy *p, const char *val, GError **err)
{
	char *real = NULL, *rel = cg_cgroup_rel(val, &real, err);
	struct stat st;

	if (!rel)
		return FALSE;
	if (strchr(real, ' ') || strlen(rel) > CG_CGROUP_PATH_LEN - 2) {
		g_set_error(err, CG_ERROR, EINVAL, "cgroup '%s': a path with "
			    "spaces, or longer than %d characters in the cgroup2 "
			    "hierarchy, is not supported", val,
			    CG_CGROUP_PATH_LEN - 2);
		g_free(real);
		g_free(rel);
		return FALSE;
	}
	if (stat(real, &st) < 0)
		g_printerr("cprx-guard: cgroup %s does not exist (yet): processes "
			   "in it are guarded once it is created\n", real);
	g_ptr_array_add(p->cgroups, real);
	g_ptr_array_add(p->cgroup_rels, rel);
	return TRUE;
}

gboolean cg_policy_add(struct cg_policy *p, const char *key, const char *val,
		       GError **err)
{
	if (!strcmp(key, "mode")) {
		if (strcmp(val, "enforce") && strcmp(val, "trace")) {
			g_set_error(err, CG_ERROR, EINVAL, "mode is enforce or "
				    "trace, not '%s'", val);
			return FALSE;
		}
		p->trace = !strcmp(val, "trace");
		return TRUE;
	}
	if (!strcmp(key, "armed-only"))
		return parse_bool(val, &p->armed_only, err);
	if (!strcmp(key, "userns")) {
		if (strcmp(val, "deny") && strcmp(val, "allow")) {
			g_set_error(err, CG_ERROR, EINVAL, "userns is deny or "
				    "allow, not '%s'", val);
			return FALSE;
		}
		p->deny_userns = !strcmp(val, "deny");
		return TRUE;
	}
	if (!strcmp(key, "guard-uid"))
		return add_uid(p, val, err);
	if (!strcmp(key, "guard-cgroup"))
		return add_cgroup(p, val, err);
	if (!strcmp(key, "guard-exe"))
		return add_rule(p->exes, val, TRUE, err);
	if (!strcmp(key, "allow"))
		return add_rule(p->allow, val, FALSE, err);
	g_set_error(err, CG_ERROR, EINVAL, "unknown item '%s' (mode, armed-only, "
		    "userns, guard-uid, guard-cgroup, guard-exe, allow)", key);
	return FALSE;
}

gboolean cg_policy_load_file(struct cg_policy *p, const char *file,
			     GError **err)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	GError *e = NULL;
	guint i;

	if (!g_file_get_contents(file, &text, NULL, err))
		return FALSE;
	lines = g_strsplit(text, "\n", -1);
	for (i = 0; lines[i]; i++) {
		char *line = g_strstrip(lines[i]), *val;

		*strchrnul(line, '#') = '\0';
		g_strchomp(line);
		if (!*line)
			continue;
		val = strpbrk(line, " \t");
		if (val) {
			*val++ = '\0';
			g_strchug(val);
		}
		if (!val || !*val) {
			g_set_error(err, CG_ERROR, EINVAL, "%s:%u: '%s' needs a "
				    "value", file, i + 1, line);
			return FALSE;
		}
		if (!cg_policy_add(p, line, val, &e)) {
			g_set_error(err, CG_ERROR, e->code, "%s:%u: %s", file,
				    i + 1, e->message);
			g_error_free(e);
			return FALSE;
		}
	}
	g_free(p->source);
	p->source = g_canonicalize_filename(file, NULL);
	return TRUE;
}

gboolean cg_policy_check(const struct cg_policy *p, GError **err)
{
	if (!p->uids->len && !p->cgroups->len && !p->exes->len) {
		g_set_error(err, CG_ERROR, EINVAL, "the policy guards nobody: "
			    "give guard-cgroup, guard-uid or guard-exe");
		return FALSE;
	}
	/* the canary has a cgroup slot of its own, after these */
	if (p->uids->len > CG_MAX_UIDS || p->cgroups->len > CG_MAX_CGROUPS ||
	    p->exes->len + p->allow->len > CG_MAX_RULES) {
		g_set_error(err, CG_ERROR, E2BIG, "too many rules: at most %d "
			    "uids, %d cgroups, %d binaries", CG_MAX_UIDS,
			    CG_MAX_CGROUPS, CG_MAX_RULES);
		return FALSE;
	}
	if (!p->allow->len)
		g_printerr("cprx-guard: warning: nothing is allow-listed: "
			   "guarded processes can exec nothing\n");
	return TRUE;
}

/* The cgroup2 mount point from mountinfo; the hierarchy's root there. */
gboolean cg_cgroup2_mount(char *mnt, size_t len, GError **err)
{
	char line[4096], root[PATH_MAX], mp[PATH_MAX];
	gboolean found = FALSE;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f) {
		g_set_error(err, CG_ERROR, errno, "/proc/self/mountinfo: %s",
			    g_strerror(errno));
		return FALSE;
	}
	while (!found && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep, " - cgroup2 ", 11))
			continue;
		if (sscanf(line, "%*d %*d %*s %4095s %4095s", root, mp) == 2 &&
		    !strcmp(root, "/")) {
			g_strlcpy(mnt, mp, len);
			found = TRUE;
		}
	}
	fclose(f);
	if (!found)
		g_set_error(err, CG_ERROR, ENOENT, "no cgroup2 file system is "
			    "mounted: guard-cgroup needs cgroup v2");
	return found;
}

/*
 * The canonical path of @abs (absolute, without "." or ".."), which may
 * not exist: that of its longest existing ancestor, which must be a
 * directory and whose file system *@fs gets, and the missing rest as it is.
 */
static char *real_or_missing(const char *abs, long *fs, GError **err)
{
	struct statfs sfs;
	g_autofree char *base = g_strdup(abs);
	const char *rest = "";
	char real[PATH_MAX], *slash;
	struct stat st;

	while (!realpath(base, real)) {
		slash = strrchr(base, '/');
		if (errno != ENOENT || !slash || slash == base) {
			g_set_error(err, CG_ERROR, errno, "cgroup '%s': %s", abs,
				    g_strerror(errno));
			return NULL;
		}
		*slash = '\0';
		rest = abs + (slash - base);
	}
	if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode) || statfs(real, &sfs) < 0) {
		g_set_error(err, CG_ERROR, ENOTDIR, "cgroup '%s': %s is not a "
			    "directory", abs, real);
		return NULL;
	}
	*fs = sfs.f_type;
	return g_strconcat(real, rest, NULL);
}

char *cg_cgroup_rel(const char *dir, char **real, GError **err)
{
	g_autofree char *abs = g_canonicalize_filename(dir, NULL);
	char mnt[PATH_MAX], *full, *rel = NULL;
	long fs = 0;
	size_t n;

	/* the existing part decides: a missing rest would be made there */
	full = real_or_missing(abs, &fs, err);
	if (!full)
		return NULL;
	if (!cg_cgroup2_mount(mnt, sizeof(mnt), err))
		goto out;
	n = strlen(mnt);
	if (strncmp(full, mnt, n) || (full[n] && full[n] != '/') ||
	    fs != CGROUP2_SUPER_MAGIC) {
		g_set_error(err, CG_ERROR, EINVAL, "'%s' is not a cgroup v2 "
			    "directory (under the cgroup2 mount %s)", full, mnt);
		goto out;
	}
	rel = g_strdup(full[n] ? full + n : "/");
out:
	if (rel && real)
		*real = full;
	else
		g_free(full);
	return rel;
}

/* `hash PATH...`: the allow rule naming each file and its content. */
int cg_cmd_hash(char **args)
{
	GError *err = NULL;
	int ret = 0;

	if (!args || !*args) {
		fprintf(stderr, "cprx-guard: hash: which files? (cprx-guard hash "
			"PATH...)\n");
		return 2;
	}
	for (; *args; args++) {
		struct cg_rule r = { .fd = -1 };
		char hex[65];
		guint8 d[32];

		if (resolve(*args, &r, &err) && hash_fd(r.fd, r.path, d, &err)) {
			cprx_sha256_hex(d, hex);
			printf("allow %s sha256=%s\n", r.path, hex);
		} else {
			fprintf(stderr, "cprx-guard: %s\n", err->message);
			g_clear_error(&err);
			ret = 1;
		}
		if (r.fd >= 0)
			close(r.fd);
		g_free(r.path);
	}
	return ret;
}
