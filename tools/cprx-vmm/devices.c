/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The devices: an eventfd, a pipe, a socketpair, a file and --devices more
 * eventfds, armed with known contents before an update and checked and
 * drained after it; and the whole VM's verify (RAM, then devices).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "vmm.h"

const char *const dev_token[NR_DEV_FDS] = {
	[DEV_EFD]	= "dev.eventfd",
	[DEV_PIPE_R]	= "dev.pipe.r",
	[DEV_PIPE_W]	= "dev.pipe.w",
	[DEV_SOCK_A]	= "dev.sock.a",
	[DEV_SOCK_B]	= "dev.sock.b",
	[DEV_FILE]	= "dev.file",
};

static int tmpfile_open(void)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];
	int fd;

	if (!dir || !*dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;
	/* no O_TMPFILE on this filesystem: a named file, unlinked at once */
	snprintf(path, sizeof(path), "%s/cprx-vmm-dev.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* 1000 devices and libcprx's own fds do not fit a soft limit of 1024. */
static void nofile_raise(unsigned int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		warn_msg("raising RLIMIT_NOFILE to %u: %m", need);
}

static void xdevs_create(struct vm *vm)
{
	unsigned int i;

	nofile_raise(vm->cfg.devices + 256);
	for (i = 0; i < vm->cfg.devices; i++) {
		vm->xdev_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vm->xdev_fd[i] < 0)
			die(EXIT_SETUP, "eventfd for device %u of --devices %u: %m", i,
			    vm->cfg.devices);
	}
}

/* The count extra device @i holds for generation @gen. */
static uint64_t xdev_count(uint32_t gen, unsigned int i)
{
	return (uint64_t)gen * 4096 + i + 1;
}

void xdev_token(char *buf, size_t len, unsigned int i)
{
	snprintf(buf, len, XDEV_TOKEN "%u", i);
}

void devs_create(struct vm *vm)
{
	int p[2], sv[2];

	vm->dev_fd[DEV_EFD] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->dev_fd[DEV_EFD] < 0)
		die(EXIT_SETUP, "eventfd: %m");
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		die(EXIT_SETUP, "pipe2: %m");
	vm->dev_fd[DEV_PIPE_R] = p[0];
	vm->dev_fd[DEV_PIPE_W] = p[1];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		die(EXIT_SETUP, "socketpair: %m");
	vm->dev_fd[DEV_SOCK_A] = sv[0];
	vm->dev_fd[DEV_SOCK_B] = sv[1];
	vm->dev_fd[DEV_FILE] = tmpfile_open();
	if (vm->dev_fd[DEV_FILE] < 0)
		die(EXIT_SETUP, "temporary file in $TMPDIR or /tmp: %m");
	xdevs_create(vm);
}

static uint8_t file_byte(uint32_t gen, uint64_t off)
{
	return (uint8_t)mix64(((uint64_t)gen << 32) ^ off);
}

static int write_all(int fd, const void *buf, size_t len, const char *what)
{
	ssize_t n = write(fd, buf, len);

	if (n == (ssize_t)len)
		return 0;
	warn_msg("arming %s: %s", what, n < 0 ? strerror(errno) : "short write");
	return -1;
}

static int file_arm(struct vm *vm, const struct dev_expect *d)
{
	int fd = vm->dev_fd[DEV_FILE];
	uint8_t *buf = malloc(d->file_size);
	uint64_t k;
	ssize_t n;

	if (!buf)
		return -1;
	for (k = 0; k < d->file_size; k++)
		buf[k] = file_byte(d->gen, k);
	n = pwrite(fd, buf, d->file_size, 0);
	free(buf);
	if (n != (ssize_t)d->file_size ||
	    lseek(fd, (off_t)d->file_off, SEEK_SET) != (off_t)d->file_off) {
		warn_msg("arming %s: %m", dev_token[DEV_FILE]);
		return -1;
	}
	return 0;
}

/* Writes vm->dev, the state the devices must hold, into them. */
static int devs_write(struct vm *vm)
{
	const struct dev_expect *d = &vm->dev;
	uint32_t gen = d->gen;
	unsigned int i;

	if (write_all(vm->dev_fd[DEV_EFD], &d->efd_count, 8, dev_token[DEV_EFD]) ||
	    write_all(vm->dev_fd[DEV_PIPE_W], d->pipe_msg, strlen(d->pipe_msg),
		      dev_token[DEV_PIPE_W]) ||
	    write_all(vm->dev_fd[DEV_SOCK_A], d->sock_msg, strlen(d->sock_msg),
		      dev_token[DEV_SOCK_A]))
		return -1;
	for (i = 0; i < vm->cfg.devices; i++) {
		uint64_t v = xdev_count(gen, i);

		if (write_all(vm->xdev_fd[i], &v, 8, XDEV_TOKEN))
			return -1;
	}
	return file_arm(vm, d);
}

/* Puts the state the new image of generation @gen must find into the devices. */
int devs_arm(struct vm *vm, uint32_t gen)
{
	struct dev_expect *d = &vm->dev;

	memset(d, 0, sizeof(*d));
	d->gen = gen;
	d->efd_count = 1000 + gen;
	d->file_size = 8192 + gen % 4096;
	d->file_off = 1000 + gen % 4096;
	snprintf(d->pipe_msg, sizeof(d->pipe_msg), "cprx-pipe-%u", gen);
	snprintf(d->sock_msg, sizeof(d->sock_msg), "cprx-sock-%u", gen);
	d->armed = 1;	/* even half-armed: the check drains what is there */
	return devs_write(vm);
}

/*
 * After a kexec no device fd survives: new devices get the state the blob
 * carried (vm->dev), which verify then checks is the generation's.
 */
int devs_restore(struct vm *vm)
{
	struct dev_expect want = vm->dev;

	devs_create(vm);
	if (!want.armed || devs_arm(vm, want.gen))
		return -1;
	return memcmp(&want, &vm->dev, sizeof(want)) ? -1 : 0;
}

/* Reads what is queued in @fd: it must be exactly @want, then nothing. */
static int drain_check(int fd, const void *want, size_t len, const char *token,
		       char *msg, size_t mlen)
{
	char buf[64];
	ssize_t n = want ? read(fd, buf, sizeof(buf)) : 0;

	if (want && (n != (ssize_t)len || memcmp(buf, want, len))) {
		snprintf(msg, mlen, "FAIL: %s: read %zd bytes%s, expected %zu bytes", token,
			 n, n < 0 ? " (nothing queued)" : " that differ", len);
		return -1;
	}
	n = read(fd, buf, sizeof(buf));
	if (n >= 0 || errno != EAGAIN) {
		snprintf(msg, mlen, "FAIL: %s: leftover data after the expected state",
			 token);
		return -1;
	}
	return 0;
}

static int file_check(struct vm *vm, const struct dev_expect *d, char *msg,
		      size_t mlen)
{
	int fd = vm->dev_fd[DEV_FILE];
	off_t off = lseek(fd, 0, SEEK_CUR);
	uint8_t buf[4096];
	uint64_t k, i;
	struct stat st;
	ssize_t n;

	memset(&st, 0, sizeof(st));
	if (off != (off_t)d->file_off || fstat(fd, &st) < 0 ||
	    st.st_size != (off_t)d->file_size) {
		snprintf(msg, mlen, "FAIL: %s: offset %jd size %jd, expected %" PRIu64
			 " and %" PRIu64, dev_token[DEV_FILE], (intmax_t)off,
			 (intmax_t)st.st_size, d->file_off, d->file_size);
		return -1;
	}
	for (k = 0; k < d->file_size; k += (uint64_t)n) {
		n = pread(fd, buf, sizeof(buf), (off_t)k);
		if (n <= 0)
			break;
		for (i = 0; i < (uint64_t)n; i++)
			if (buf[i] != file_byte(d->gen, k + i)) {
				snprintf(msg, mlen, "FAIL: %s: byte %" PRIu64 " differs",
					 dev_token[DEV_FILE], k + i);
				return -1;
			}
	}
	return 0;
}

/* Drains every extra device, even after a failure: no leftovers. */
static int xdevs_verify(struct vm *vm, char *msg, size_t len)
{
	const struct dev_expect *d = &vm->dev;
	unsigned int i;
	int bad = 0;

	for (i = 0; i < vm->cfg.devices; i++) {
		uint64_t v = xdev_count(d->gen, i);

		if (drain_check(vm->xdev_fd[i], d->armed ? &v : NULL, 8, XDEV_TOKEN
				" count", bad ? NULL : msg, bad ? 0 : len))
			bad = -1;
	}
	return bad;
}

/* Checks and drains the devices; empty again afterwards, armed or not. */
static bool devs_verify(struct vm *vm, char *msg, size_t len)
{
	struct dev_expect *d = &vm->dev;
	bool armed = d->armed;
	int bad;

	bad = drain_check(vm->dev_fd[DEV_EFD], armed ? &d->efd_count : NULL, 8,
			  "dev.eventfd count", msg, len) ||
	      drain_check(vm->dev_fd[DEV_PIPE_R], armed ? d->pipe_msg : NULL,
			  strlen(d->pipe_msg), "dev.pipe", msg, len) ||
	      drain_check(vm->dev_fd[DEV_SOCK_B], armed ? d->sock_msg : NULL,
			  strlen(d->sock_msg), "dev.sock a->b", msg, len) ||
	      drain_check(vm->dev_fd[DEV_SOCK_A], NULL, 0, "dev.sock b->a", msg, len) ||
	      (armed && file_check(vm, d, msg, len)) ||
	      xdevs_verify(vm, msg, len);
	if (ftruncate(vm->dev_fd[DEV_FILE], 0) < 0 ||
	    lseek(vm->dev_fd[DEV_FILE], 0, SEEK_SET) < 0)
		warn_msg("emptying %s: %m", dev_token[DEV_FILE]);
	memset(d, 0, sizeof(*d));
	return !bad;
}

/* cprx_exec promises every fd flag back when it fails. */
bool fds_cloexec(const struct vm *vm, char *msg, size_t len)
{
	unsigned int i;
	int fl;

	fl = fcntl(vm->ram_fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC)) {
		snprintf(msg, len, "FAIL: " RAM_TOKEN " fd %d lost FD_CLOEXEC", vm->ram_fd);
		return false;
	}
	for (i = 0; i < NR_DEV_FDS; i++) {
		fl = fcntl(vm->dev_fd[i], F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC)) {
			snprintf(msg, len, "FAIL: %s fd %d lost FD_CLOEXEC", dev_token[i],
				 vm->dev_fd[i]);
			return false;
		}
	}
	for (i = 0; i < vm->cfg.devices; i++) {
		fl = fcntl(vm->xdev_fd[i], F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC)) {
			snprintf(msg, len, "FAIL: " XDEV_TOKEN "%u fd %d lost FD_CLOEXEC",
				 i, vm->xdev_fd[i]);
			return false;
		}
	}
	return true;
}

/* Guest must be stopped.  RAM first: it is what matters most. */
bool vm_verify(struct vm *vm, char *msg, size_t len)
{
	bool ok = ram_verify(vm, msg, len);

	/* drain the devices even after a RAM failure: no leftovers */
	if (!devs_verify(vm, ok ? msg : NULL, ok ? len : 0))
		ok = false;
	if (ok)
		snprintf(msg, len, "ok");
	return ok;
}
