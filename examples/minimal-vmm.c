// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The smallest VMM that live-updates itself with libcprx: 64 MiB of "guest
 * RAM" in a memfd survives an exec of this binary, at a new address.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cprx.h>

#define RAM_SIZE (64 << 20)

static int fail(struct cprx_session *s, const char *what)
{
	fprintf(stderr, "%s: %s\n  hint: %s\n", what, cprx_errmsg(s),
		cprx_errhint(s));
	return 1;
}

/* New image: take RAM back, check it, commit. */
static int resume(struct cprx_session *s)
{
	uint64_t size;
	char *ram;
	int fd;

	if (cprx_reclaim_ram(s, "ram0", (void **)&ram, &size, &fd))
		return cprx_rollback(s, "RAM not reclaimed"), fail(s, "reclaim");
	printf("new image %d: guest RAM at %p says \"%s\"\n", getpid(),
	       (void *)ram, ram);
	cprx_commit(s);
	cprx_session_close(s);
	return strcmp(ram, "hello from the old image") != 0;
}

int main(int argc, char **argv)
{
	struct cprx_options opts = { .size = sizeof(opts) };
	char *probe[] = { argv[0], "--version", NULL };
	struct cprx_session *s;
	char *ram;
	int fd, ret;

	(void)argc;
	if (argc > 1 && !strcmp(argv[1], "--version"))
		return puts("minimal-vmm 1") < 0;
	ret = cprx_incoming(&s, NULL);
	if (ret < 0)	/* started by an update we cannot use: go back */
		return cprx_rollback(s, cprx_errmsg(s)), fail(s, "incoming");
	if (ret == 1)
		return resume(s);

	/* Old image: guest RAM must be shareable, so a memfd mapped shared. */
	fd = memfd_create("guest-ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, RAM_SIZE))
		return 1;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED)
		return 1;
	strcpy(ram, "hello from the old image");
	printf("old image %d: guest RAM at %p\n", getpid(), (void *)ram);

	if (cprx_session_open(&s, "minimal", &opts))
		return fail(NULL, "open");
	if (cprx_preserve_ram(s, "ram0", fd, ram, RAM_SIZE, CPRX_PAGE_4K))
		return fail(s, "preserve");
	if (cprx_preflight(s, argv[0], probe, NULL))
		return fail(s, "preflight");
	/* ... stop the vCPUs here; exec drops unflushed stdio buffers ... */
	fflush(stdout);
	cprx_exec(s, "/proc/self/exe", argv);
	/* Only on failure: every fd is as it was, resume the guest. */
	return fail(s, "exec");
}
