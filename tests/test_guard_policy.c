// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bpf/guard_policy.c: rules bound to content, "allow PATH sha256=HEX".
 * The digest's syntax (checked before the file is opened: length, hex,
 * either case, no path), the content hashed through the rule's open fd
 * (a million 'a', several reads), a mismatch naming the file, both
 * digests and the fix, a path with spaces, a policy file's line number,
 * a file changed after it was checked and hashed, a file that a FUSE
 * mount (bindfs) shows as root's and read-only, and a guard-exe that no
 * process runs as its own image (a #! script, a non-ELF file).
 *
 * A rule's file must be owned by root: the tests that resolve one SKIP
 * when not run as root.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include "harness.h"
#include "guard_tool.h"
#include "sha256.h"

/* FIPS 180-4's SHA-256 of a million 'a' */
#define MILLION_A "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
/* and of "abc" */
#define ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void write_file(const char *path, const char *data, size_t len,
		       unsigned int times)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);

	while (fd >= 0 && times--)
		if (write(fd, data, len) != (ssize_t)len)
			TH_LOG("short write to %s", path);
	if (fd >= 0)
		close(fd);
}

FIXTURE(pol) {
	char dir[64];
	char big[128];		/* a million 'a' */
	char spaced[128];	/* "abc", in a file whose name has a space */
	struct cg_policy *p;
	GError *err;
};

FIXTURE_SETUP(pol)
{
	char a[1000];

	snprintf(self->dir, sizeof(self->dir), "/tmp/cprx-guard-policy.XXXXXX");
	ASSERT_NE_NULL(mkdtemp(self->dir));
	snprintf(self->big, sizeof(self->big), "%s/big", self->dir);
	snprintf(self->spaced, sizeof(self->spaced), "%s/my vmm", self->dir);
	memset(a, 'a', sizeof(a));
	write_file(self->big, a, sizeof(a), 1000);
	write_file(self->spaced, "abc", 3, 1);
	self->p = cg_policy_new();
	self->err = NULL;
}

FIXTURE_TEARDOWN(pol)
{
	char cmd[128];

	g_clear_error(&self->err);
	cg_policy_free(self->p);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
	if (system(cmd))
		TH_LOG("cannot remove %s", self->dir);
}

/* cg_policy_add(key, printf(fmt, ...)): TRUE, or FALSE with self->err. */
static gboolean add(struct cg_policy *p, GError **err, const char *key,
		    const char *fmt, ...) G_GNUC_PRINTF(4, 5);
static gboolean add(struct cg_policy *p, GError **err, const char *key,
		    const char *fmt, ...)
{
	g_autofree char *val = NULL;
	va_list ap;

	g_clear_error(err);
	va_start(ap, fmt);
	val = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return cg_policy_add(p, key, val, err);
}

#define ERR_HAS(s) (self->err && strstr(self->err->message, (s)))

/* Refused on its own syntax, before the file is looked at (no root needed). */
TEST_F(pol, bad_digests_refused)
{
	static const struct { const char *fmt, *why; } bad[] = {
		{ "%s sha256=%.63s", "64 hex digits (as sha256sum prints it), not 63" },
		{ "%s sha256=%s0", "not 65" },
		{ "%s sha256=%.0s", "not 0" },
		{ "%s sha256=%.62szz", "'z' is not a hex digit" },
		{ "%s sha256=%.61s-x0", "'-' is not a hex digit" },
		{ "%.0ssha256=%s", "names no file: a rule by digest alone is not supported" },
	};
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		EXPECT_FALSE(add(self->p, &self->err, "allow", bad[i].fmt,
				 self->big, MILLION_A));
		if (!ERR_HAS(bad[i].why))
			TH_LOG("case %u: '%s', want '%s'", i, self->err ?
			       self->err->message : "no error", bad[i].why);
		EXPECT_TRUE(ERR_HAS(bad[i].why));
	}
	EXPECT_EQ(0, self->p->allow->len);
}

TEST_F(pol, right_digest_either_case)
{
	g_autofree char *upper = g_ascii_strup(MILLION_A, -1);
	char real[PATH_MAX];
	const struct cg_rule *r;

	if (geteuid())
		SKIP(return, "a rule's file must be owned by root: run as root");
	ASSERT_NE_NULL(realpath(self->big, real));
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s sha256=%s",
			self->big, MILLION_A));
	ASSERT_EQ(1, self->p->allow->len);
	r = &g_array_index(self->p->allow, struct cg_rule, 0);
	EXPECT_STREQ(real, r->path);
	EXPECT_TRUE(r->has_sha256);
	/* uppercase is the same digest: the same file, still one rule */
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s sha256=%s",
			self->big, upper));
	EXPECT_EQ(1, self->p->allow->len);
	/* the digest is the last word: the path keeps its space */
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s sha256=%s",
			self->spaced, ABC));
	ASSERT_EQ(2, self->p->allow->len);
	r = &g_array_index(self->p->allow, struct cg_rule, 1);
	EXPECT_NE_NULL(strstr(r->path, "/my vmm"));
}

TEST_F(pol, wrong_digest_names_file_digests_and_fix)
{
	g_autofree char *want = NULL, *got = NULL;
	char real[PATH_MAX];

	if (geteuid())
		SKIP(return, "a rule's file must be owned by root: run as root");
	ASSERT_NE_NULL(realpath(self->big, real));
	EXPECT_FALSE(add(self->p, &self->err, "allow", "%s sha256=%s",
			 self->big, ABC));
	want = g_strdup_printf("the rule expects SHA-256 %s", ABC);
	got = g_strdup_printf("the file's is %s (fix: ", MILLION_A);
	EXPECT_TRUE(ERR_HAS(real));
	EXPECT_TRUE(ERR_HAS(want));
	EXPECT_TRUE(ERR_HAS(got));
	EXPECT_TRUE(ERR_HAS("cprx-guard hash"));
	if (self->err)
		TH_LOG("%s", self->err->message);
	EXPECT_EQ(0, self->p->allow->len);
}

/* A policy file: comments and blanks around the digest, its line named. */
TEST_F(pol, policy_file)
{
	g_autofree char *file = g_strdup_printf("%s/policy", self->dir);
	g_autofree char *text = NULL;

	if (geteuid())
		SKIP(return, "a rule's file must be owned by root: run as root");
	text = g_strdup_printf("guard-uid 4242\nallow %s\tsha256=%s  # reviewed\n"
			       "allow %s sha256=%s\n", self->big, MILLION_A,
			       self->spaced, ABC);
	ASSERT_TRUE(g_file_set_contents(file, text, -1, NULL));
	EXPECT_TRUE(cg_policy_load_file(self->p, file, &self->err));
	EXPECT_EQ(2, self->p->allow->len);
	g_free(text);
	text = g_strdup_printf("guard-uid 4242\nallow %s sha256=%s\n",
			       self->big, MILLION_A);
	text[strlen(text) - 2] ^= 1;	/* another digest */
	ASSERT_TRUE(g_file_set_contents(file, text, -1, NULL));
	g_clear_error(&self->err);
	EXPECT_FALSE(cg_policy_load_file(self->p, file, &self->err));
	g_free(text);
	text = g_strdup_printf("%s:2: ", file);
	EXPECT_TRUE(ERR_HAS(text));
	EXPECT_TRUE(ERR_HAS("does not have the content its rule names"));
}

/* Changes the file's change time (a chmod to the same mode), or fails. */
static gboolean touch_ctime(const char *path, const struct timespec *was)
{
	struct stat st;
	int i;

	for (i = 0; i < 200; i++) {	/* a coarse clock: wait for its tick */
		if (chmod(path, 0755) < 0 || stat(path, &st) < 0)
			return FALSE;
		if (st.st_ctim.tv_sec != was->tv_sec ||
		    st.st_ctim.tv_nsec != was->tv_nsec)
			return TRUE;
		usleep(5000);
	}
	return FALSE;
}

/*
 * The loader reads the kernel's key (which holds the change time) after
 * the check: a change in between is refused, not bound to the key.
 */
TEST_F(pol, changed_after_check_refused)
{
	const struct cg_rule *r;
	unsigned int i;

	if (geteuid())
		SKIP(return, "a rule's file must be owned by root: run as root");
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s sha256=%s",
			self->big, MILLION_A));
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s", self->spaced));
	ASSERT_EQ(2, self->p->allow->len);
	for (i = 0; i < 2; i++) {
		r = &g_array_index(self->p->allow, struct cg_rule, i);
		g_clear_error(&self->err);
		EXPECT_TRUE(cg_rule_unchanged(r, &self->err));
		ASSERT_TRUE(touch_ctime(r->path, &r->ctime));
		EXPECT_FALSE(cg_rule_unchanged(r, &self->err));
		EXPECT_TRUE(ERR_HAS("changed while the policy was loading"));
		EXPECT_TRUE(ERR_HAS("and hashed") == (i == 0));
	}
}

/*
 * Test Case: fuse_rule_refused
 * nobody's file, shown through bindfs as root's and read-only (what any
 * user's FUSE server may claim): refused naming FUSE, not bound to a key.
 */
TEST_F(pol, fuse_rule_refused)
{
	g_autofree char *src = g_strdup_printf("%s/src", self->dir);
	g_autofree char *mnt = g_strdup_printf("%s/mnt", self->dir);
	g_autofree char *file = g_strdup_printf("%s/vmm", src);
	g_autofree char *cmd = NULL;

	if (geteuid())
		SKIP(return, "mounting FUSE and a rule's file need root");
	if (access("/dev/fuse", R_OK | W_OK) || system("command -v bindfs >/dev/null"))
		SKIP(return, "no /dev/fuse or no bindfs (tools/deps.sh installs it)");
	ASSERT_EQ(0, mkdir(src, 0755));
	ASSERT_EQ(0, mkdir(mnt, 0755));
	write_file(file, "abc", 3, 1);
	ASSERT_EQ(0, chown(file, 65534, 65534));
	ASSERT_EQ(0, chmod(file, 0777));
	cmd = g_strdup_printf("bindfs --force-user=root --force-group=root "
			      "--perms=a-w '%s' '%s'", src, mnt);
	ASSERT_EQ(0, system(cmd));
	EXPECT_FALSE(add(self->p, &self->err, "allow", "%s/vmm", mnt));
	EXPECT_TRUE(ERR_HAS("is on a FUSE file system"));
	EXPECT_TRUE(ERR_HAS("fix: install the binary on a local file system"));
	EXPECT_EQ(0, self->p->allow->len);
	if (umount2(mnt, MNT_DETACH))
		TH_LOG("cannot unmount %s: %s", mnt, strerror(errno));
}

/*
 * Test Case: writer_refused
 * a root-owned 0755 file that a process still holds open for writing (as
 * from before a chown to root): an fd, then a shared mapping alone, which
 * on tmpfs writes without a new change time.  Refused while either is
 * there, naming the writer; accepted once both are gone.
 */
TEST_F(pol, writer_refused)
{
	g_autofree char *file = g_strdup_printf("%s/vmm", self->dir);
	char *map;
	int fd;

	if (geteuid())
		SKIP(return, "a rule's file must be root's: needs root");
	write_file(file, "abc", 3, 1);
	fd = open(file, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_FALSE(add(self->p, &self->err, "allow", "%s", file));
	EXPECT_TRUE(ERR_HAS("is open for writing"));
	map = mmap(NULL, 3, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	close(fd);
	EXPECT_FALSE(add(self->p, &self->err, "allow", "%s", file));
	EXPECT_TRUE(ERR_HAS("is open for writing"));
	EXPECT_EQ(0, self->p->allow->len);
	munmap(map, 3);
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s", file));
	EXPECT_EQ(1, self->p->allow->len);
}

/* Copies @from to @to, mode 0755. */
static gboolean copy_file(const char *from, const char *to)
{
	g_autofree char *data = NULL;
	gsize len;

	if (!g_file_get_contents(from, &data, &len, NULL))
		return FALSE;
	write_file(to, data, len, 1);
	return TRUE;
}

/*
 * Test Case: guard_exe_own_image
 * a guard-exe selects processes by their own image (/proc/PID/exe): a #!
 * script's processes run its interpreter and a binfmt_misc format's run
 * its handler, so such a rule guarded nobody, silently.  Refused, saying
 * why; an ELF binary, with its digest, is taken.
 */
TEST_F(pol, guard_exe_own_image)
{
	g_autofree char *script = g_strdup_printf("%s/vmm.sh", self->dir);
	g_autofree char *elf = g_strdup_printf("%s/vmm", self->dir);
	g_autofree char *data = NULL;
	struct cprx_sha256 c;
	guint8 d[32];
	char hex[65];
	gsize len;

	if (geteuid())
		SKIP(return, "a rule's file must be root's: needs root");
	write_file(script, "#!/bin/sh\nexec true\n", 20, 1);
	EXPECT_FALSE(add(self->p, &self->err, "guard-exe", "%s", script));
	EXPECT_TRUE(ERR_HAS("is a #! script"));
	EXPECT_TRUE(ERR_HAS("guard nobody"));
	EXPECT_FALSE(add(self->p, &self->err, "guard-exe", "%s sha256=%s",
			 self->big, MILLION_A));
	EXPECT_TRUE(ERR_HAS("not an ELF executable"));
	EXPECT_EQ(0, self->p->exes->len);
	/* as an allow rule the script is fine: every exec stage is checked */
	EXPECT_TRUE(add(self->p, &self->err, "allow", "%s", script));
	ASSERT_TRUE(copy_file("/bin/true", elf));
	ASSERT_TRUE(g_file_get_contents(elf, &data, &len, NULL));
	cprx_sha256_init(&c);
	cprx_sha256_update(&c, data, len);
	cprx_sha256_final(&c, d);
	cprx_sha256_hex(d, hex);
	EXPECT_TRUE(add(self->p, &self->err, "guard-exe", "%s sha256=%s", elf,
			hex));
	EXPECT_EQ(1, self->p->exes->len);
}

TEST_HARNESS_MAIN
