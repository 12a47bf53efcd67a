// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Preflight: everything that can be known before the guest stops, checked
 * without changing anything.  A failed live update costs a VM; a failed
 * preflight costs nothing.  The probe run of the new binary is in
 * preflight_probe.c.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include "internal.h"
#include "preflight.h"
#include "guard_reader.h"

static void vreport(struct preflight *pf, const char *name, enum cprx_verdict v,
		    int err, const char *fmt, va_list ap)
{
	struct cprx_preflight_report *rep = pf->rep;
	struct cprx_check spare, *c = &spare;

	/*
	 * Every check counts and the verdict is kept even when the caller's
	 * array is full: a check that does not fit must not turn a fail into
	 * a pass.  nr_checks may exceed max_checks; the rest is not stored.
	 */
	if (rep->nr_checks < rep->max_checks)
		c = &rep->checks[rep->nr_checks];
	rep->nr_checks++;
	rep->nr_failed += v == CPRX_FAIL;
	rep->nr_warned += v == CPRX_WARN;
	if (!strcmp(name, "binary"))
		pf->binary = v;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->verdict = v;
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	if (v == CPRX_FAIL && !pf->first_err) {
		pf->first_err = err ? err : EINVAL;
		cprx_fail(pf->s, pf->first_err, pf->first_hint,
			  "preflight: %s: %s", name, c->reason);
	}
}

static void __attribute__((format(printf, 5, 6)))
report(struct preflight *pf, const char *name, enum cprx_verdict v, int err,
       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(pf, name, v, err, fmt, ap);
	va_end(ap);
}

static void hint(struct preflight *pf, const char *h)
{
	if (!pf->first_err)
		snprintf(pf->first_hint, sizeof(pf->first_hint), "%s", h);
}

/* The same two for preflight_probe.c. */
void cprx_pf_report(struct preflight *pf, const char *name, enum cprx_verdict v,
		    int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(pf, name, v, err, fmt, ap);
	va_end(ap);
}

void cprx_pf_hint(struct preflight *pf, const char *h)
{
	hint(pf, h);
}

/*
 * The ELF header of this very library, mapped by the loader (GNU ld, gold
 * and lld define the symbol): its e_machine is this machine's, with no
 * per-arch list, and reading it works for an execute-only binary too.
 * e_machine sits at the same offset in 32- and 64-bit headers.
 */
extern const Elf64_Ehdr __ehdr_start __attribute__((weak, visibility("hidden")));

static int own_machine(Elf64_Half *machine)
{
	unsigned char hdr[EI_NIDENT + 4];
	ssize_t n;
	int fd;

	if (&__ehdr_start) {
		*machine = __ehdr_start.e_machine;
		return 0;
	}
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, hdr, sizeof(hdr));
	close(fd);
	if (n != (ssize_t)sizeof(hdr) || memcmp(hdr, ELFMAG, SELFMAG))
		return -1;
	memcpy(machine, hdr + EI_NIDENT + 2, sizeof(*machine));
	return 0;
}

static void check_binary(struct preflight *pf, const char *path)
{
	unsigned char hdr[EI_NIDENT + 4] = { 0 };
	Elf64_Half machine, ours;
	struct stat st;
	int fd;

	if (stat(path, &st) < 0) {
		hint(pf, "check the path of the new binary");
		report(pf, "binary", CPRX_FAIL, ENOENT, "'%s' does not exist", path);
		return;
	}
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
		hint(pf, "chmod +x it, or move it off a noexec mount");
		report(pf, "binary", CPRX_FAIL, EACCES,
		       "'%s' is not an executable regular file", path);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, hdr, sizeof(hdr)) < 4) {
		if (fd >= 0)
			close(fd);
		hint(pf, "make the binary readable");
		report(pf, "binary", CPRX_FAIL, EACCES, "'%s' cannot be read", path);
		return;
	}
	close(fd);
	if (!memcmp(hdr, "#!", 2)) {
		report(pf, "binary", CPRX_PASS, 0, "'%s' is a script", path);
		return;
	}
	memcpy(&machine, hdr + EI_NIDENT + 2, sizeof(machine));
	if (own_machine(&ours) < 0) {	/* unreadable /proc/self/exe */
		report(pf, "binary", CPRX_WARN, 0, "'%s': cannot compare its "
		       "machine with this process's", path);
		return;
	}
	if (memcmp(hdr, ELFMAG, SELFMAG) || machine != ours) {
		hint(pf, "install a binary built for this machine");
		report(pf, "binary", CPRX_FAIL, ENOEXEC, "'%s' is not an ELF "
		       "executable for this machine (e_machine %u)", path, ours);
		return;
	}
	report(pf, "binary", CPRX_PASS, 0, "'%s' is an ELF executable for this "
	       "machine (e_machine %u)", path, ours);
}

/* Is [addr] mapped shared?  1 shared, 0 private, -1 not mapped. */
static int mapping_shared(const void *addr)
{
	unsigned long lo, hi, a = (unsigned long)addr;
	char line[512], perms[8];
	int ret = -1;
	FILE *f;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		if (a >= lo && a < hi) {
			ret = perms[3] == 's';
			break;
		}
	}
	fclose(f);
	return ret;
}

static void check_ram(struct preflight *pf, struct cprx_entry *e)
{
	const char *what;
	struct statfs sfs;
	struct stat st;
	char name[CPRX_NAME_MAX + 8];
	int shared;

	snprintf(name, sizeof(name), "ram:%s", e->token);
	if (fstatfs(e->fd, &sfs) < 0 || fstat(e->fd, &st) < 0) {
		hint(pf, "keep guest RAM fds open until the update");
		report(pf, name, CPRX_FAIL, EBADF, "fd %d is closed", e->fd);
		return;
	}
	if (sfs.f_type == TMPFS_MAGIC)
		what = "memfd/shmem";
	else if (sfs.f_type == HUGETLBFS_MAGIC)
		what = "hugetlbfs";
	else if (S_ISREG(st.st_mode))
		what = "file";
	else {
		hint(pf, "back guest RAM with a memfd (QEMU: memory-backend-memfd)");
		report(pf, name, CPRX_FAIL, EINVAL,
		       "fd %d is not a shareable file (mode %o)", e->fd,
		       st.st_mode & S_IFMT);
		return;
	}
	if ((uint64_t)st.st_size < e->size) {
		hint(pf, "ftruncate the RAM fd to the guest's RAM size");
		report(pf, name, CPRX_FAIL, EINVAL,
		       "%s is %lld bytes, smaller than the %llu registered", what,
		       (long long)st.st_size, (unsigned long long)e->size);
		return;
	}
	shared = e->addr ? mapping_shared(e->addr) : 1;
	if (shared == 0) {
		hint(pf, "map guest RAM MAP_SHARED (QEMU: share=on)");
		report(pf, name, CPRX_FAIL, EINVAL,
		       "mapped MAP_PRIVATE at %p: the guest writes to private "
		       "copies that exec destroys, so RAM would be lost", e->addr);
		return;
	}
	if (shared < 0) {
		hint(pf, "pass the address the guest RAM is mapped at, or NULL");
		report(pf, name, CPRX_FAIL, EFAULT, "%p is not mapped", e->addr);
		return;
	}
	report(pf, name, CPRX_PASS, 0, "%s, %llu bytes, mapped shared", what,
	       (unsigned long long)e->size);
}

static void check_fds(struct preflight *pf)
{
	char link[PATH_MAX], path[64], leaks[256] = "";
	size_t off = 0;
	unsigned int i, nr_leaks = 0;
	struct dirent *d;
	DIR *dir;

	for (i = 0; i < pf->s->nr_ents; i++) {
		struct cprx_entry *e = &pf->s->ents[i];
		struct stat st;

		if (fstat(e->fd, &st) < 0 || (uint64_t)st.st_ino != e->ino) {
			hint(pf, "keep preserved fds open until the update");
			report(pf, "fds", CPRX_FAIL, EBADF,
			       "fd %d of '%s' was closed or replaced", e->fd,
			       e->token);
			return;
		}
	}
	/* Anything open without FD_CLOEXEC and not preserved leaks across. */
	dir = opendir("/proc/self/fd");
	while (dir && (d = readdir(dir))) {
		int fd = atoi(d->d_name), flags;
		ssize_t n;

		/* the guardian's socket crosses on purpose */
		if (d->d_name[0] == '.' || fd <= 2 || fd == dirfd(dir) ||
		    fd == pf->s->guardian_fd)
			continue;
		flags = fcntl(fd, F_GETFD);
		if (flags < 0 || (flags & FD_CLOEXEC))
			continue;
		for (i = 0; i < pf->s->nr_ents && pf->s->ents[i].fd != fd; i++)
			;
		if (i < pf->s->nr_ents)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		if (off < sizeof(leaks))
			off += snprintf(leaks + off, sizeof(leaks) - off, "%s%d (%s)",
					nr_leaks ? ", " : "", fd, link);
		nr_leaks++;
	}
	if (dir)
		closedir(dir);
	if (nr_leaks)
		report(pf, "fds", CPRX_WARN, 0, "%u fd%s not close-on-exec and "
		       "not preserved will leak into the new image: %s; open "
		       "them O_CLOEXEC", nr_leaks, nr_leaks == 1 ? "" : "s", leaks);
	else
		report(pf, "fds", CPRX_PASS, 0, "%u preserved, no other fd leaks",
		       pf->s->nr_ents);
}

static void check_seccomp(struct preflight *pf)
{
	unsigned int nr;
	int mode = cprx_seccomp_mode(&nr);

	if (mode == 1) {
		hint(pf, "strict seccomp allows no exec: disable it");
		report(pf, "seccomp", CPRX_FAIL, EPERM, "strict mode: exec impossible");
	} else if (mode == 2) {
		report(pf, "seccomp", CPRX_WARN, 0, "%u filter%s active: execve "
		       "may be refused (the probe tells)", nr, nr == 1 ? "" : "s");
	} else {
		report(pf, "seccomp", CPRX_PASS, 0, "no seccomp filter");
	}
}

static void check_lsm(struct preflight *pf)
{
	char lsm[256];

	cprx_describe_lsm(lsm, sizeof(lsm));
	report(pf, "lsm", CPRX_PASS, 0, "active: %s", lsm);
}

/*
 * The keeper's own system calls, run by a keeper under this thread's
 * seccomp filter; it stays, ready for cprx_exec (keeper.c says why).  Never
 * a failure: without a keeper the exec only tears the old mm down inline.
 */
static void check_keeper(struct preflight *pf)
{
	char why[sizeof(((struct cprx_check *)0)->reason)];

	if (pf->s->opts.no_deferred_teardown) {
		report(pf, "keeper", CPRX_PASS, 0, "off (no_deferred_teardown)");
		return;
	}
	if (pf->s->backend == &cprx_backend_luo) {	/* nothing to tear down */
		report(pf, "keeper", CPRX_PASS, 0, "off (luo: a kexec, no exec)");
		return;
	}
	cprx_keeper_drop(&pf->s->keeper);	/* an earlier preflight's */
	report(pf, "keeper", cprx_keeper_probe(&pf->s->keeper, why, sizeof(why)) ?
	       CPRX_WARN : CPRX_PASS, 0, "%s", why);
}

/* cprx-guard's verdict on the new binary, when a guard policy is active. */
static void check_guard(struct preflight *pf, const char *path)
{
	char why[CPRX_MSG_MAX], h[CPRX_MSG_MAX];
	bool armed = pf->s->backend == &cprx_backend_kmod;

	switch (cprx_guard_verdict(path, armed, why, sizeof(why), h, sizeof(h))) {
	case CPRX_GUARD_NONE:
		return;
	case CPRX_GUARD_DENY:
		hint(pf, h);
		report(pf, "guard", CPRX_FAIL, EPERM, "%s", why);
		return;
	case CPRX_GUARD_WOULD_DENY:
		report(pf, "guard", CPRX_WARN, 0, "%s", why);
		return;
	default:
		report(pf, "guard", CPRX_PASS, 0, "%s", why);
	}
}

/*
 * luo: a kexec keeps only what LUO preserves, shmem memfds.  Each other
 * file is refused here, by its token, while the guest still runs.
 */
static void check_luo(struct preflight *pf, const struct cprx_entry *e)
{
	char name[CPRX_NAME_MAX + 8], why[CPRX_MSG_MAX];
	int err = cprx_luo_check_fd(e->fd, why, sizeof(why));

	snprintf(name, sizeof(name), "luo:%s", e->token);
	if (!err) {
		report(pf, name, CPRX_PASS, 0, "%s", why);
		return;
	}
	pf->luo_refused++;
	hint(pf, e->kind == CPRX_FD_RAM ? "back guest RAM with a plain memfd "
	     "(no MFD_HUGETLB) to keep it across a kexec" : "a kexec keeps "
	     "no device fd: unpreserve it and carry the device's state in a "
	     "blob (cprx_add_blob), to be recreated after the kexec");
	report(pf, name, CPRX_FAIL, -err, "%s '%s': %s", e->kind == CPRX_FD_RAM ?
	       "RAM" : "device", e->token, why);
}

/*
 * A backend that defers work from preserve (kmod queues its pins) does it
 * now, while the guest runs: what it would refuse at exec is known here.
 */
static void check_backend(struct preflight *pf)
{
	char why[CPRX_MSG_MAX];
	int err;

	if (pf->luo_refused) {
		report(pf, "backend", CPRX_WARN, 0, "luo: nothing sent to "
		       "cprx-luod while %u file%s refused above",
		       pf->luo_refused, pf->luo_refused == 1 ? " is" : "s are");
		return;
	}
	err = pf->s->backend->flush ? pf->s->backend->flush(pf->s) : 0;

	if (err) {
		snprintf(why, sizeof(why), "%s", pf->s->msg);
		hint(pf, pf->s->hint);
		report(pf, "backend", CPRX_FAIL, -err, "%s", why);
		return;
	}
	if (pf->s->backend == &cprx_backend_kmod)
		report(pf, "backend", CPRX_PASS, 0, "kmod: cprx.ko pins %u fds "
		       "in session '%s'", pf->s->nr_ents, pf->s->name);
	else if (pf->s->backend == &cprx_backend_luo)
		report(pf, "backend", CPRX_PASS, 0, "luo: %u memfds in cprx-luod's "
		       "session '%s' for this uid", pf->s->nr_ents, pf->s->name);
	else
		report(pf, "backend", CPRX_PASS, 0, "cloexec: fds cross the exec "
		       "with FD_CLOEXEC cleared%s", cprx_kmod_available() ? "" :
		       " (no /dev/cprx)");
}

static const char *io_how(const struct cprx_session *s)
{
	return s->ring ? ", io_uring" : ", io_uring unavailable: pwrite";
}

static void check_state_target(struct preflight *pf)
{
	char dir[PATH_MAX], *slash;
	const char *path = pf->s->opts.state_path;
	struct stat st;

	if (pf->s->opts.target != CPRX_STATE_FILE) {
		report(pf, "state", CPRX_PASS, 0, "memfd%s", io_how(pf->s));
		return;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (access(dir, W_OK) < 0) {
		hint(pf, "choose a state path in a writable directory");
		report(pf, "state", CPRX_FAIL, EACCES, "directory '%s' is not "
		       "writable", dir);
		return;
	}
	if (!lstat(path, &st) && S_ISDIR(st.st_mode)) {
		hint(pf, "choose a state path that names a file");
		report(pf, "state", CPRX_FAIL, EISDIR, "'%s' is a directory", path);
		return;
	}
	report(pf, "state", CPRX_PASS, 0, "memfd, with a copy in file %s%s%s",
	       path, io_how(pf->s), !lstat(path, &st) && S_ISLNK(st.st_mode) ?
	       " (the symlink there is replaced, not followed)" : "");
}

/* A rollback re-runs this argv: it must fit the state whole. */
static void check_argv(struct preflight *pf)
{
	char why[CPRX_MSG_MAX];
	int err = cprx_argv_check(pf->s, why, sizeof(why));

	if (err) {
		hint(pf, pf->s->exe_fd < 0 ? "make this binary readable by the "
		     "VMM's user, or use the cloexec backend" :
		     "start the VMM with fewer or shorter arguments (e.g. a "
		     "config file), so a rollback can re-run it");
		report(pf, "rollback", CPRX_FAIL, -err, "a rollback could not "
		       "re-run this VMM: %s", why);
		return;
	}
	report(pf, "rollback", CPRX_PASS, 0, "this binary held open, %u "
	       "arguments carried", pf->s->origin.argc);
}

CPRX_EXPORT int cprx_preflight(struct cprx_session *s, const char *path,
			       char *const probe_argv[],
			       struct cprx_preflight_report *rep)
{
	struct cprx_preflight_report local = { .size = sizeof(local) };
	struct preflight pf = { .s = s, .binary = CPRX_FAIL };
	char resolved[PATH_MAX];
	unsigned int i;
	int ret;

	if (!s || !path)
		return cprx_null_arg(s, __func__, s ? "path" : "s");
	if (!rep)
		rep = &local;
	if (rep->size < sizeof(*rep))
		return cprx_fail(s, EINVAL, "set report->size = sizeof(*report)",
				 "preflight report size %u is smaller than the "
				 "%zu bytes of struct cprx_preflight_report",
				 rep->size, sizeof(*rep));
	if (rep->max_checks && !rep->checks)
		return cprx_null_arg(s, __func__, "report->checks");
	rep->nr_checks = rep->nr_failed = rep->nr_warned = 0;
	pf.rep = rep;
	cprx_mark(s, CPRX_PH_PREFLIGHT_START);
	ret = cprx_resolve_path(path, resolved, sizeof(resolved));
	if (ret == -ENAMETOOLONG) {
		hint(&pf, "shorten the path of the new binary");
		report(&pf, "binary", CPRX_FAIL, ENAMETOOLONG, "the path is longer "
		       "than PATH_MAX (%d bytes)", PATH_MAX);
	} else if (ret) {
		hint(&pf, "pass the new binary's path, or add its directory to PATH");
		report(&pf, "binary", CPRX_FAIL, ENOENT, "'%s' is in no directory "
		       "of PATH", path);
	} else {
		check_binary(&pf, resolved);
	}
	for (i = 0; i < s->nr_ents; i++)
		if (s->ents[i].kind == CPRX_FD_RAM)
			check_ram(&pf, &s->ents[i]);
	for (i = 0; s->backend == &cprx_backend_luo && i < s->nr_ents; i++)
		check_luo(&pf, &s->ents[i]);
	check_fds(&pf);
	check_backend(&pf);
	check_seccomp(&pf);
	check_keeper(&pf);
	check_lsm(&pf);
	if (!ret)
		check_guard(&pf, resolved);
	check_state_target(&pf);
	check_argv(&pf);
	if (probe_argv && pf.binary != CPRX_FAIL)
		cprx_pf_probe(&pf, resolved, probe_argv);
	cprx_mark(s, CPRX_PH_PREFLIGHT_END);
	return pf.first_err ? -pf.first_err : 0;
}
