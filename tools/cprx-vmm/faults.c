/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault injection (--inject): the mechanisms behind the faults that the old
 * image causes itself; the new image's refusals are in incoming.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "vmm.h"

/*
 * e2big: execve caps argv+envp at min(stack rlimit / 4, 6 MiB) and each
 * string at 128 KiB (MAX_ARG_STRLEN, NUL included): 64 near-maximal
 * strings (8 MiB) exceed the cap whatever the rlimit is.
 */
#define E2BIG_ARGS	64
#define E2BIG_ARGLEN	(128 * 1024 - 1)

#if defined(__x86_64__)
#define AUDIT_ARCH_SELF	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_SELF	AUDIT_ARCH_AARCH64
#endif

/* execve/execveat fail with EPERM, everything else is allowed. */
int seccomp_deny_exec(void)
{
#ifdef AUDIT_ARCH_SELF
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0),
		/* another ABI (i386 via int 0x80): other numbers, deny it all */
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		return -errno;
	return 0;
#else
	return -ENOSYS;
#endif
}

/* Flips the byte in the middle of the state file cprx_save wrote. */
int corrupt_state(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct stat st;
	uint8_t b;
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || pread(fd, &b, 1, st.st_size / 2) != 1)
		r = -EIO;
	b ^= 0xff;
	if (!r && pwrite(fd, &b, 1, st.st_size / 2) != 1)
		r = -errno;
	close(fd);
	return r;
}

/* argv + E2BIG_ARGS huge strings, sharing one buffer. */
char **e2big_argv(struct vm *vm)
{
	char **av = calloc((size_t)vm->argc + E2BIG_ARGS + 1, sizeof(*av));
	char *pad = malloc(E2BIG_ARGLEN + 1);
	int i;

	if (!av || !pad)
		die(EXIT_SETUP, "out of memory for --inject e2big");
	memset(pad, 'x', E2BIG_ARGLEN);
	pad[E2BIG_ARGLEN] = '\0';
	for (i = 0; i < vm->argc; i++)
		av[i] = vm->argv[i];
	for (i = 0; i < E2BIG_ARGS; i++)
		av[vm->argc + i] = pad;
	return av;
}

/* The exec was refused and returned: the guest runs on without them. */
void e2big_argv_free(struct vm *vm, char **av)
{
	free(av[vm->argc]);
	free(av);
}

/*
 * forge-guardian-exe, a hostile VMM: every fd on this binary (libcprx holds
 * one for a rollback, and sends it to a guardian, which restarts from it)
 * names $CPRX_VMM_FORGED_EXE instead.
 */
int forge_exe_fd(void)
{
	const char *to = getenv("CPRX_VMM_FORGED_EXE");
	struct stat self, st;
	int fd, forged, found = 0;

	if (!to || stat("/proc/self/exe", &self) < 0)
		return -EINVAL;
	forged = open(to, O_RDONLY | O_CLOEXEC);
	if (forged < 0)
		return -errno;
	for (fd = 3; fd < 1024; fd++)
		if (fd != forged && !fstat(fd, &st) &&
		    st.st_dev == self.st_dev && st.st_ino == self.st_ino &&
		    dup3(forged, fd, O_CLOEXEC) == fd)
			found++;
	close(forged);
	return found ? 0 : -ENOENT;
}
