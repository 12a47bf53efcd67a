// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What cprx-qmp holds of the guest while QEMU execs, so that a new QEMU
 * that dies cannot take the guest with it (rescue.c starts the previous
 * one again): taken in the preflight, before the guest stops, and dropped
 * once the update is confirmed or has failed.
 *
 *   - every RAM block's file: the block's address from HMP "info ramblock",
 *     the mapping there in /proc/PID/maps, QEMU's fd of that inode, copied
 *     with pidfd_getfd (a stock QEMU keeps its memfds open);
 *   - the migration file, created empty and opened before QEMU writes it
 *     (QEMU's O_TRUNC keeps the inode);
 *   - the running binary (/proc/PID/exe), QEMU's mount namespace, root and
 *     working directory, its stdin/stdout/stderr (its environment and
 *     limits were read when we connected, creds.c);
 *   - the migration capabilities it has on, for loading the file the way
 *     it was written.
 */
#include "cprx-qmp.h"

#include <dirent.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* Our open fds, by number. */
static GArray *own_fds(void)
{
	GArray *a = g_array_new(FALSE, FALSE, sizeof(int));
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d))
			g_array_append_val(a, fd);
	}
	if (d)
		closedir(d);
	return a;
}

static gboolean has_fd(GArray *a, int fd)
{
	for (guint i = 0; i < a->len; i++)
		if (g_array_index(a, int, i) == fd)
			return TRUE;
	return FALSE;
}

/* The fds opened since the references were taken and still open, but for
 * the connection to QEMU and its pidfd (a rescued QEMU's are new): what
 * the keeping leaked. */
static guint fds_left(struct qmp_ctx *c)
{
	g_autoptr(GArray) now = own_fds();
	guint n = 0;

	for (guint i = 0; i < now->len; i++) {
		int fd = g_array_index(now, int, i);

		n += !has_fd(c->kept->fds_before, fd) && fd != c->pidfd &&
		     (!c->q || fd != qmp_fd(c->q));
	}
	return n;
}

/* The file mapped at @addr in QEMU: its device and inode. */
static gboolean mapping_at(pid_t pid, guint64 addr, dev_t *dev, ino_t *ino)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/maps", pid), *buf = NULL;
	g_auto(GStrv) lines = NULL;

	if (!g_file_get_contents(p, &buf, NULL, NULL))
		return FALSE;
	lines = g_strsplit(buf, "\n", -1);
	for (guint i = 0; lines[i]; i++) {
		unsigned long long s, e, ino_;
		unsigned int ma, mi;

		if (sscanf(lines[i], "%llx-%llx %*s %*s %x:%x %llu", &s, &e, &ma, &mi, &ino_) != 5)
			continue;
		if (addr >= s && addr < e && ino_) {
			*dev = makedev(ma, mi);
			*ino = ino_;
			return TRUE;
		}
	}
	return FALSE;
}

/* QEMU's fd number for that inode, or -1. */
static int qemu_fd_of(pid_t pid, dev_t dev, ino_t ino)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/fd", pid);
	g_autoptr(GDir) d = g_dir_open(p, 0, NULL);
	const char *n;

	while (d && (n = g_dir_read_name(d))) {
		g_autofree char *f = g_build_filename(p, n, NULL);
		struct stat st;

		if (!stat(f, &st) && st.st_ino == ino && st.st_dev == dev)
			return atoi(n);
	}
	return -1;
}

static gboolean is_backend(const char *block, JsonArray *memdev)
{
	for (guint i = 0; memdev && i < json_array_get_length(memdev); i++) {
		const char *id = json_object_get_string_member_with_default(
			json_array_get_object_element(memdev, i), "id", "");
		const char *slash = strrchr(block, '/');

		if (*id && (!strcmp(block, id) || (slash && !strcmp(slash + 1, id))))
			return TRUE;
	}
	return FALSE;
}

/* A line of "info ramblock" (QEMU >= 8.1): name, PSize (two words),
 * Offset, Used, Total, HVA, RO.  FALSE for the header. */
gboolean parse_ramblock(const char *line, char **name, guint64 *used, guint64 *hva)
{
	g_auto(GStrv) w = g_strsplit_set(line, " \t", -1);
	guint64 hex[4];
	guint nhex = 0;

	for (guint i = 1; w[0] && w[i] && nhex < 4; i++)
		if (g_str_has_prefix(w[i], "0x"))
			hex[nhex++] = g_ascii_strtoull(w[i] + 2, NULL, 16);
	if (nhex < 4)
		return FALSE;
	*name = g_strdup(w[0]);
	*used = hex[1];
	*hva = hex[3];
	return TRUE;
}

/* Keeps a copy of the fd of one RAM block; a block other than a backend
 * that has none (not shared) is counted in *skipped. */
static gboolean keep_block(struct qmp_ctx *c, const char *line, JsonArray *memdev, GString *d,
			   guint *skipped)
{
	struct kept_block b = { .fd = -1 };
	guint64 hva;
	dev_t dev;
	ino_t ino;
	int qfd;

	if (!parse_ramblock(line, &b.name, &b.used, &hva))
		return TRUE;
	b.backend = is_backend(b.name, memdev);
	if (!mapping_at(c->pid, hva, &dev, &ino) || (qfd = qemu_fd_of(c->pid, dev, ino)) < 0) {
		g_string_printf(d, "RAM block %s: no fd of QEMU maps it", b.name);
		g_free(b.name);
		*skipped += !b.backend;
		return !b.backend;
	}
	b.fd = syscall(SYS_pidfd_getfd, c->pidfd, qfd, 0);
	if (b.fd < 0) {
		g_string_printf(d, "pidfd_getfd of QEMU's fd %d (RAM block %s): %s", qfd, b.name,
				g_strerror(errno));
		g_free(b.name);
		return FALSE;
	}
	g_array_append_val(c->kept->blocks, b);
	return TRUE;
}

static gboolean keep_blocks(struct qmp_ctx *c, GString *d)
{
	g_autoptr(JsonNode) mem = qmp_cmd(c->q, "query-memdev", NULL, 5000, NULL);
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "human-monitor-command",
		qmp_args("command-line", str_node("info ramblock"), NULL), 5000, &e);
	g_auto(GStrv) lines = NULL;
	guint backends = 0;

	if (!r || !mem) {
		g_string_printf(d, "info ramblock: %s", e ? e->message : "query-memdev failed");
		return FALSE;
	}
	lines = g_strsplit(json_node_get_string(r), "\n", -1);
	if (!lines[0] || !strstr(lines[0], "HVA")) {
		g_string_printf(d, "HMP info ramblock gives no host addresses (HVA) in QEMU %s",
				qmp_version(c->q));
		return FALSE;
	}
	for (guint i = 1; lines[i]; i++)
		if (!keep_block(c, g_strstrip(lines[i]), json_node_get_array(mem), d,
				&c->kept->unkept))
			return FALSE;
	for (guint i = 0; i < c->kept->blocks->len; i++)
		backends += g_array_index(c->kept->blocks, struct kept_block, i).backend;
	if (backends != json_array_get_length(json_node_get_array(mem))) {
		g_string_printf(d, "%u of %u memory backends found among QEMU's RAM blocks",
				backends, json_array_get_length(json_node_get_array(mem)));
		return FALSE;
	}
	return TRUE;
}

/* The migration capabilities QEMU has on. */
static void keep_caps(struct qmp_ctx *c)
{
	g_autoptr(JsonNode) r = qmp_cmd(c->q, "query-migrate-capabilities", NULL, 5000, NULL);
	JsonArray *a = r ? json_node_get_array(r) : NULL;

	for (guint i = 0; a && i < json_array_get_length(a); i++) {
		JsonObject *o = json_array_get_object_element(a, i);

		if (json_object_get_boolean_member_with_default(o, "state", FALSE))
			g_ptr_array_add(c->kept->caps, g_strdup(json_object_get_string_member(o,
									"capability")));
	}
}

static int open_proc(pid_t pid, const char *what, int flags)
{
	g_autofree char *p = g_strdup_printf("/proc/%d/%s", pid, what);

	return open(p, flags | O_CLOEXEC);
}

static gboolean keep_process(struct qmp_ctx *c, GString *d)
{
	struct kept *k = c->kept;
	g_autofree char *base = NULL;
	const char *why = NULL;
	struct stat st;
	int dfd;

	k->exe = open_proc(c->pid, "exe", O_RDONLY);
	k->ns = open_proc(c->pid, "ns/mnt", O_RDONLY);
	k->root = open_proc(c->pid, "root", O_RDONLY | O_DIRECTORY);
	k->cwd = open_proc(c->pid, "cwd", O_RDONLY | O_DIRECTORY);
	if (k->exe < 0 || k->ns < 0 || k->root < 0 || k->cwd < 0) {
		g_string_printf(d, "cannot open QEMU's binary, namespace, root or cwd in /proc/%d: %s",
				c->pid, g_strerror(errno));
		return FALSE;
	}
	if (!c->creds.known) {
		g_string_printf(d, "QEMU's user and group are unknown (/proc/%d/status)", c->pid);
		return FALSE;
	}
	/* One QEMU closed is /dev/null's: the rescue's child must not pass
	 * on ours in its place (root's terminal, a file of root's). */
	for (int i = 0; i < 3; i++) {
		k->stdio[i] = syscall(SYS_pidfd_getfd, c->pidfd, i, 0);
		if (k->stdio[i] < 0)
			k->stdio[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (k->stdio[i] < 0) {
			g_string_printf(d, "cannot open /dev/null: %s", g_strerror(errno));
			return FALSE;
		}
	}
	dfd = qemu_parent_open(c, c->o->state, &base);
	if (dfd < 0) {
		g_string_printf(d, "the migration file's directory (%s): %s", c->o->state,
				g_strerror(errno));
		return FALSE;
	}
	k->state = openat(dfd, base, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	c->state_created = k->state >= 0;
	/* QEMU writes it: one we (root) created is QEMU's user's */
	if (c->state_created && !geteuid() && fchown(k->state, c->creds.uid[1], c->creds.gid[1])) {
		g_string_printf(d, "cannot give the migration file %s to QEMU's user: %s",
				c->o->state, g_strerror(errno));
		close(dfd);
		return FALSE;
	}
	if (k->state < 0 && errno == EEXIST)
		k->state = openat(dfd, base, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	close(dfd);
	if (k->state < 0) {
		g_string_printf(d, "cannot create the migration file %s: %s", c->o->state,
				g_strerror(errno));
		return FALSE;
	}
	/* one found there may have changed since the "state" check */
	if (!c->state_created && (fstat(k->state, &st) || (why = state_foreign(c, &st)))) {
		g_string_printf(d, "the migration file %s: %s", c->o->state,
				why ? why : g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

/* The rescued QEMU opens the kept files as /proc/self/fd/N, in its own
 * root: that root must have a /proc. */
static gboolean proc_reachable(struct qmp_ctx *c, GString *d)
{
	g_autofree char *hp = host_path(c, "/proc/self/fd");
	struct stat st;

	if (stat(hp, &st) || !S_ISDIR(st.st_mode)) {
		g_string_printf(d, "QEMU's root has no /proc (%s)", hp);
		return FALSE;
	}
	return TRUE;
}

static void describe(struct qmp_ctx *c, GString *d)
{
	g_autofree char *rs = NULL, *os = NULL;
	guint64 ram = 0, other = 0;
	guint n = 0;

	for (guint i = 0; i < c->kept->blocks->len; i++) {
		struct kept_block *b = &g_array_index(c->kept->blocks, struct kept_block, i);

		if (b->backend)
			ram += b->used;
		else
			other += b->used, n++;
	}
	rs = g_format_size_full(ram, G_FORMAT_SIZE_IEC_UNITS);
	os = g_format_size_full(other, G_FORMAT_SIZE_IEC_UNITS);

	g_string_printf(d, "kept: guest RAM %s and %u other RAM blocks (%s%s) by pidfd_getfd, "
			"the migration file, %s's binary; the previous QEMU is started again if "
			"the new one dies", rs, n, os, c->kept->unkept ? ", some unshared left out" : "",
			(char *)c->old_argv->pdata[0]);
}

/* The preflight's "rescue" check: takes the references. */
gboolean check_rescue(struct qmp_ctx *c, GString *d, const char **hint)
{
	struct kept *k = g_new0(struct kept, 1);

	k->exe = k->state = k->ns = k->root = k->cwd = -1;
	k->stdio[0] = k->stdio[1] = k->stdio[2] = -1;
	k->blocks = g_array_new(FALSE, TRUE, sizeof(struct kept_block));
	k->caps = g_ptr_array_new_with_free_func(g_free);
	k->fds_before = own_fds();
	c->kept = k;
	if (c->pidfd < 0) {
		g_string_printf(d, "pidfd_open(%d): %s", c->pid, g_strerror(c->pidfd_errno));
		*hint = "rescue needs pidfds (Linux 5.6); --no-rescue updates without it";
		return FALSE;
	}
	if (!keep_process(c, d) || !keep_blocks(c, d) || !proc_reachable(c, d)) {
		*hint = "without these references a new QEMU that dies loses the VM; "
			"--no-rescue updates anyway";
		return FALSE;
	}
	if (!rescue_argv_ok(c, d)) {
		*hint = "give each memory backend as -object TYPE,id=ID,... (or its JSON form); "
			"--no-rescue updates anyway";
		return FALSE;
	}
	keep_caps(c);
	describe(c, d);
	return TRUE;
}

static void close_kept(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Drops every reference (the update is confirmed, or it is over). */
void keep_drop(struct qmp_ctx *c)
{
	struct kept *k = c->kept;

	if (!k)
		return;
	close_kept(&k->exe);
	close_kept(&k->state);
	close_kept(&k->ns);
	close_kept(&k->root);
	close_kept(&k->cwd);
	for (int i = 0; i < 3; i++)
		close_kept(&k->stdio[i]);
	for (guint i = 0; i < k->blocks->len; i++) {
		struct kept_block *b = &g_array_index(k->blocks, struct kept_block, i);

		if (b->fd >= 0)
			close(b->fd);
		g_free(b->name);
	}
	g_array_unref(k->blocks);
	g_ptr_array_unref(k->caps);
	json_object_set_int_member(c->report, "kept_fds_left", fds_left(c));
	g_array_unref(k->fds_before);
	g_free(k);
	c->kept = NULL;
}
