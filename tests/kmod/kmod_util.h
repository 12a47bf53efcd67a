/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the cprx.ko selftests (tests/kmod/kmod_*.c) share: the ioctls as
 * calls returning 0, an fd or -errno; process, /proc and /sys helpers;
 * exec into a numbered case; and the "kmod" fixture.
 *
 * Every test SKIPs when /dev/cprx is missing, so the host suite runs them as
 * skips; tests/vm/kmod-tests.sh runs them for real in a VM with the module
 * loaded, as root (some tests set module parameters, change uid, try to
 * unload the module or measure /proc/meminfo, so run them one at a time).
 *
 * "After an exec" is tested with the harness's exec cases: a test forks a
 * child that builds the old image's session and calls exec_or_die(NAME,
 * A0, A1, A2); the new image (same pid) runs KMOD_EXEC_CASE(NAME) and its
 * exit status is what the test checks.  New images and forked children
 * report with "# " lines only, and exit 1 on a failed CHECK().
 */
#ifndef CPRX_KMOD_UTIL_H
#define CPRX_KMOD_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>


#include <linux/cprx.h>
#include "harness.h"

#define SESS		"kmod-test"
#define TOK_MEM		0x8000000000000001ull	/* all 64 bits count */
#define TOK_EVT		2
#define TOK_PIPE_R	3
#define TOK_PIPE_W	4
#define MEM_SIZE	(1u << 20)
#define EVT_COUNT	42
#define PIPE_MSG	"bytes in flight"
#define NOBODY		65534
#define PAGE		4096u
#define PARAMS		"/sys/module/cprx/parameters/"
#define REFCNT		"/sys/module/cprx/refcnt"
#define PROC_SESSIONS	"/proc/cprx/sessions"
#define SHMEM_SLACK_KB	(16L << 10)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#ifndef offsetofend
#define offsetofend(T, m)	(offsetof(T, m) + sizeof(((T *)0)->m))
#endif

/* The smallest CREATE/RETRIEVE_SESSION argument: up to the fd it returns. */
#define SESSION_ARG_MIN	offsetofend(struct cprx_ioctl_create_session, fd)

/*
 * In forked children and new images: a "# " diagnostic, then exit 1.  The
 * arguments are evaluated before anything is printed.
 */
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		char check_msg[PATH_MAX + 512];				\
									\
		snprintf(check_msg, sizeof(check_msg), __VA_ARGS__);	\
		printf("# %s:%d: %s\n", __FILE__, __LINE__, check_msg);	\
		fflush(stdout);						\
		_exit(1);						\
	}								\
} while (0)

/* ioctl helpers: 0, an fd, or -errno */
int xioctl(int fd, unsigned long cmd, void *arg);
void set_name(__u8 *dst, const char *name);
int open_dev(void);
int create(int dev, const char *name);
int retrieve_session(int dev, const char *name);
int preserve(int sfd, int fd, uint64_t token);
int unpreserve(int sfd, uint64_t token);
int preserve_fds(int sfd, const struct cprx_preserve_entry *ents, uint32_t nr,
		 uint32_t *failed);
int arm(int sfd, uint32_t flags);
int retrieve_fd(int sfd, uint64_t token);
int finish(int sfd);
int query(int sfd, struct cprx_session_query *q,
	  struct cprx_query_entry *ents, uint32_t cap);
int kind_of(int sfd, uint64_t token);
int nr_pins(int sfd);

/* Processes and the system */
int cloexec_of(int fd);
int keep_on_exec(int fd);
long long now_ns(void);
pid_t fork_flushed(void);
int reap(pid_t pid);
int copy_self(const char *path, int gid);
int exec_self(const char *ecase, long a0, long a1, long a2);
__attribute__((noreturn))
void exec_or_die(const char *ecase, long a0, long a1, long a2);
long read_long(const char *path);
int write_long(const char *path, long v);
long meminfo_kb(const char *key);
long shmem_kb(void);
long module_refcnt(void);
long settle(long (*read)(void), long limit);
int proc_lines(void (*fn)(const char *line, int pid, const char *name,
			  void *arg), void *arg);
int proc_count(int pid, const char *name, char *line, size_t size);
long proc_total(void);
int memfd_pattern(size_t size, unsigned int seed);
long long memfd_bad(int fd, size_t size, unsigned int seed);
int nofile_at_least(rlim_t n);
int read_report(int fd, int *val, int ms);
void report(int fd, int val);
int send_fd(int sock, int fd);
int recv_fd(int sock);
__attribute__((noreturn))
void sleep_forever(void);

/*
 * KMOD_EXEC_CASE(name, a0, a1, a2) { ... }: the exec case "name", its three
 * arguments the numbers exec_self() passed (0 if missing).
 */
#define KMOD_EXEC_CASE(name, a0, a1, a2)				\
	static int kmod_case_##name(long a0, long a1, long a2);		\
	EXEC_CASE(name)							\
	{								\
		return kmod_case_##name(exec_arg(argc, argv, 0),	\
					exec_arg(argc, argv, 1),	\
					exec_arg(argc, argv, 2));	\
	}								\
	static int kmod_case_##name(long a0, long a1, long a2)

long exec_arg(int argc, char **argv, int i);

/* The fixture: skips without the module, leaves nothing behind */

enum { P_PINS, P_SESSIONS, P_USER_PINS, P_TOTAL_SESSIONS, P_TOTAL_PINS,
       NR_PARAMS };

FIXTURE(kmod) {
	int dev;
	long refcnt;			/* module references before the test */
	long saved[NR_PARAMS];		/* to restore; -1: untouched */
	pid_t kids[16];			/* killed and reaped by the teardown */
};

void kmod_setup(FIXTURE_DATA(kmod) *self);
void kmod_teardown(FIXTURE_DATA(kmod) *self);

/* Each file's tests use it; the work is in kmod_util.c. */
FIXTURE_SETUP(kmod)
{
	kmod_setup(self);
}

FIXTURE_TEARDOWN(kmod)
{
	kmod_teardown(self);
}

void track(FIXTURE_DATA(kmod) *self, pid_t pid);
int reap_kid(FIXTURE_DATA(kmod) *self, pid_t pid);
void kill_kid(FIXTURE_DATA(kmod) *self, pid_t pid);
int run_child(FIXTURE_DATA(kmod) *self, void (*fn)(long), long arg);
void set_param(FIXTURE_DATA(kmod) *self, int p, long v);

#endif /* CPRX_KMOD_UTIL_H */
