/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the live-update tests (tests/exec/exec_*.c) share: the "guest" they
 * update (RAM in a memfd, an eventfd, a pipe with bytes in flight, a file
 * at an offset), its preserve/reclaim/check, and both halves' plumbing.
 *
 * A test forks a child (in_child()) that makes a guest, preserves it and
 * calls exec_case(): cprx_exec() of this binary into the harness's exec
 * case NAME.  The new image (same pid) runs that EXEC_CASE(), which starts
 * with incoming(), and its exit status is what the test checks.  Exec cases
 * live in the binary whose tests exec into them.  Refusals are checked in
 * the child itself: it must come back with the guest intact.
 */
#ifndef CPRX_EXEC_UTIL_H
#define CPRX_EXEC_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/audit.h>
#include <linux/filter.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

/* The seccomp_data.arch of this build's system calls. */
#if defined(__x86_64__)
#define NATIVE_ARCH	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH	AUDIT_ARCH_AARCH64
#endif

#include "cprx.h"
#include "harness.h"

#define RAM_SIZE	(64ull << 20)
#define SEED		0x5eedc0ffeeull
#define PIPE_MSG	"unread pipe bytes"
#define EVENT_COUNT	5
#define FILE_OFFSET	3

/* Failures in a new image are reported as diagnostics and the exit status. */
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		printf("# %s:%d: ", __FILE__, __LINE__);		\
		printf(__VA_ARGS__);					\
		printf("\n");						\
		fflush(stdout);						\
		_exit(1);						\
	}								\
} while (0)

struct guest {
	int ram_fd;
	uint64_t *ram;
	uint64_t size;
	int efd;
	int pipe[2];
	int file_fd;
};

/* The guest model */
void make_guest(struct guest *g, uint64_t size, int map_flags);
struct cprx_session *preserve_guest(struct guest *g,
				    const struct cprx_options *opts);
void check_guest(struct guest *g);
void reclaim_guest(struct cprx_session *s, struct guest *g);

/* Processes and fds */
void check_fd_set(struct guest *g);
int fd_count(void);
bool proc_stat(pid_t pid, char *state, int *ppid);
int nr_children(void);
void wait_no_children(void);
int in_child(void (*fn)(const void *), const void *arg);
int seccomp_filter(const struct sock_filter *body, size_t n,
		   unsigned int flags);
void install_filter(int a, int b);
void install_exec_filter(void);
void write_file(const char *path, const void *data, size_t len, mode_t mode);

/* The old image's way out and the new image's way in */
void exec_case(struct cprx_session *s, const char *name);
struct cprx_session *incoming(void);

#endif /* CPRX_EXEC_UTIL_H */
