/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-vmm's shared types and prototypes: the configuration, the blob the
 * new image gets, the VM itself, and what each of the tool's files offers
 * the others.
 */
#ifndef CPRX_VMM_H
#define CPRX_VMM_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cprx.h"

#define VMM_NAME	"cprx-vmm"
#define VMM_VERSION	"0.1.0"

#define GPAGE		4096u	/* guest page: the unit of the RAM invariant */
#define MAX_VCPUS	64
#define BLOB_MAGIC	0x626f6c626d6d7663ull	/* "cvmmblob" */
#define BLOB_VERSION	2
#define BLOB_TOKEN	"vmm"
#define RAM_TOKEN	"ram0"
#define EXTRA_TOKEN	"dev.extra"
#define NR_DEVICES	4	/* eventfd, pipe, socketpair, file */

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

enum exit_code {
	EXIT_OK = 0,
	EXIT_SETUP = 1,
	EXIT_VERIFY = 2,
	EXIT_REFUSED = 3,
	EXIT_LOST = 4,
};

/* Injected faults (--inject); their names and help: options.c. */
enum fault {
	F_SECCOMP	= 1u << 0,
	F_CORRUPT	= 1u << 1,
	F_REJECT	= 1u << 2,
	F_REJECT_ALWAYS	= 1u << 3,
	F_REQUIRE_TOKEN	= 1u << 4,
	F_PRIVATE_RAM	= 1u << 5,
	F_E2BIG		= 1u << 6,
	F_EXIT_EARLY	= 1u << 7,
	F_CRASH_EARLY	= 1u << 8,
	F_KEXEC_DEVICE	= 1u << 9,
	F_KILL_EARLY	= 1u << 10,
	F_FORGE_EXE	= 1u << 11,
};

/* vm_config.flags */
#define CFG_INLINE	(1u << 0)	/* --teardown inline */
#define CFG_NO_PROBE	(1u << 1)
#define CFG_FORCE	(1u << 2)
#define CFG_JSON	(1u << 3)
#define CFG_HUMAN	(1u << 4)
/* --baseline (bench/cprx-bench): an update without libcprx, for comparison */
#define CFG_BASE_SHIFT	5
#define CFG_BASE_MASK	(3u << CFG_BASE_SHIFT)
#define CFG_SETTLE	(1u << 7)	/* --settle */
#define CFG_KEXEC	(1u << 8)	/* --kexec: backend luo, across a kexec */
#define SESSION_NAME_MAX 47	/* what cprx-luod takes, the uid added */
enum baseline { BASE_NONE, BASE_FLOOR, BASE_NAIVE, BASE_COPY };
#define BASELINE_ENV	"CPRX_VMM_BASELINE"
#define MAX_XDEVS	1000	/* --devices: extra eventfd devices */
#define XDEV_TOKEN	"dev.x"

/* Everything the new image needs to carry on; travels in the blob. */
struct vm_config {
	uint64_t ram_bytes;
	uint32_t page_kind;		/* enum cprx_page_kind */
	uint32_t vcpus;
	uint32_t updates;		/* updates still to do */
	uint32_t run_ms;
	uint32_t backend;		/* enum cprx_backend */
	uint32_t flags;			/* CFG_* */
	uint32_t faults;		/* F_* */
	uint32_t devices;		/* --devices: extra eventfds */
	uint32_t crash_window_ms;	/* --crash-window (crash.c) */
	char state_path[PATH_MAX];	/* "" = state in a memfd */
	char exec_path[PATH_MAX];
	char name[SESSION_NAME_MAX + 1];	/* --name: the libcprx session's */
};

/* What the devices must hold when the new image looks at them. */
struct dev_expect {
	uint32_t armed;
	uint32_t gen;			/* generation the contents were made for */
	uint64_t efd_count;
	uint64_t file_off;
	uint64_t file_size;
	char pipe_msg[32];
	char sock_msg[32];
};

struct vm_blob {
	uint64_t magic;
	uint32_t version;
	uint32_t size;			/* sizeof(struct vm_blob) */
	struct vm_config cfg;
	uint32_t generation;		/* of the image that saved it */
	uint32_t updates_ok;
	uint32_t refused;
	uint32_t verify_failed;
	uint64_t t_start_ns;		/* CLOCK_MONOTONIC, first image's start */
	uint64_t stripe_sum[MAX_VCPUS];	/* expected sum of seq per stripe */
	struct dev_expect dev;
};

enum dev_slot {
	DEV_EFD,
	DEV_PIPE_R,
	DEV_PIPE_W,
	DEV_SOCK_A,
	DEV_SOCK_B,
	DEV_FILE,
	NR_DEV_FDS
};

/*
 * Across a kexec (xclock.c): TSC stamps of the old image, carried in the
 * "clock" blob (luo) or the copy baseline's side file.
 */
#define CLOCK_TOKEN	"clock"
struct kexec_clock {
	uint64_t start_tsc;		/* the first image's start */
	uint64_t stop_tsc;		/* CPRX_PH_STOP */
};

/* TSC stamps of this image's side of an update across a kexec. */
enum xstamp {
	XT_INCOMING,	/* before cprx_incoming (the process just started) */
	XT_REMAP_END,
	XT_VERIFY_END,
	XT_RESUMED,
	NR_XT
};

struct vm;

struct vcpu {
	pthread_t thread;
	struct vm *vm;
	unsigned int id;
	uint64_t rng;
	uint64_t writes;	/* since the last stop; main reads it stopped */
} __attribute__((aligned(64)));

struct vm {
	struct vm_config cfg;
	char **argv;
	int argc;
	unsigned int generation;
	unsigned int updates_ok;
	unsigned int refused;
	bool verify_failed;
	bool human;
	bool seccomp_on;
	uint64_t t_start_ns;

	int ram_fd;
	uint8_t *ram;
	uint64_t npages;
	uint64_t stripe_sum[MAX_VCPUS];

	bool threads_up;
	bool running;
	_Atomic uint32_t ctl;		/* odd: stop requested (futex word) */
	_Atomic uint32_t stopped;	/* vCPUs parked for this stop (futex) */
	struct vcpu vcpu[MAX_VCPUS];

	int dev_fd[NR_DEV_FDS];
	struct dev_expect dev;
	int xdev_fd[MAX_XDEVS];		/* --devices */
	pid_t base_keeper;		/* --baseline floor: old mm's holder */

	uint64_t ns0, tsc0;		/* xclock.c: this process's anchor */
	uint64_t xt[NR_XT];		/* new image, across a kexec */
	struct kexec_clock kc;		/* the old image's stamps */
	bool across_kexec;		/* this image resumed after a kexec */
};

/* What one update line reports. */
struct report {
	const char *stage;	/* where a refused update failed, else NULL */
	int err;
	char error[CPRX_MSG_MAX];
	char hint[CPRX_MSG_MAX];
	const struct cprx_preflight_report *pf;
	uint64_t ts[CPRX_PH_MAX];
	char backend[32];
	double pause_ms;
	double tsc_hz;		/* across a kexec: the rate of the TSC stamps */
	bool rollback;
	char reason[CPRX_MSG_MAX];	/* the rollback's, as the failed image gave it */
	bool resumed;
	bool verified;
	char verify[320];
};

/* splitmix64 finalizer: cheap, and every input bit reaches every output bit */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline enum baseline cfg_baseline(const struct vm_config *c)
{
	return (enum baseline)((c->flags & CFG_BASE_MASK) >> CFG_BASE_SHIFT);
}

/* util.c */
uint64_t now_ns(void);
void sleep_ms(unsigned int ms);
void __attribute__((noreturn, format(printf, 2, 3)))
die(int code, const char *fmt, ...);
void __attribute__((format(printf, 1, 2))) warn_msg(const char *fmt, ...);
const char *sess_msg(const struct cprx_session *s, int err);
const char *sess_hint(const struct cprx_session *s);
const char *page_kind_name(uint32_t kind);
void fmt_bytes(char *buf, size_t len, uint64_t n);
long long proc_kb(const char *path, const char *key);
uint64_t hugepage_bytes(void);

/* xclock.c */
uint64_t tsc_now(void);
void xclock_start(struct vm *vm);
double tsc_hz(const struct vm *vm);
double tsc_ms(uint64_t from, uint64_t to, double hz);
double kexec_pause_ms(const struct vm *vm, double hz);

/* options.c */
int parse_options(int argc, char **argv, struct vm_config *c);
void session_options(const struct vm_config *c, struct cprx_options *o);

/* guest.c */
void ram_create(struct vm *vm, bool populate);
void ram_advise(struct vm *vm);
bool ram_verify(const struct vm *vm, char *msg, size_t len);
void vcpus_start(struct vm *vm);
void vcpus_stop(struct vm *vm);
void vcpus_resume(struct vm *vm);
uint64_t guest_writes(const struct vm *vm);

/* devices.c */
extern const char *const dev_token[NR_DEV_FDS];
void xdev_token(char *buf, size_t len, unsigned int i);
void devs_create(struct vm *vm);
int devs_arm(struct vm *vm, uint32_t gen);
int devs_restore(struct vm *vm);
bool fds_cloexec(const struct vm *vm, char *msg, size_t len);
bool vm_verify(struct vm *vm, char *msg, size_t len);

/* faults.c */
int seccomp_deny_exec(void);
int corrupt_state(const char *path);
char **e2big_argv(struct vm *vm);
void e2big_argv_free(struct vm *vm, char **av);
int forge_exe_fd(void);

/* crash.c */
void crash_arm(struct vm *vm);
void crash_stop(void);

/* report.c */
void report_init(struct report *rep, const struct cprx_session *s);
double pause_ms(const uint64_t *ts);
void print_update(const struct vm *vm, const struct report *rep);
void print_preflight(const struct vm *vm, const struct cprx_session *s,
		     int err, const struct cprx_preflight_report *pf);
void print_warnings(const struct cprx_preflight_report *pf);
void print_event(const struct vm *vm, const char *event, const char *stage,
		 int err, const char *error, const char *hint);
void print_exit(const struct vm *vm, const char *verify, int code);
void print_kexec_prepared(const struct vm *vm, const char *msg,
			  uint64_t prepared_tsc, const uint64_t *ts);

/* update.c */
void exec_path_default(struct vm *vm);
void update(struct vm *vm);
void blob_fill(const struct vm *vm, struct vm_blob *b);
void __attribute__((noreturn)) kexec_prepared(struct vm *vm,
					      struct cprx_session *s);

/* baseline.c */
void keeper_reap(struct vm *vm);
void settle(struct vm *vm);
void __attribute__((noreturn)) baseline_update(struct vm *vm);
void baseline_incoming(struct vm *vm, const char *env);
bool baseline_kexec_pending(const struct vm_config *c);
void baseline_kexec_incoming(struct vm *vm);

/* incoming.c */
void new_image(struct vm *vm, struct cprx_session *s);
void __attribute__((noreturn))
incoming_failed(struct vm *vm, struct cprx_session *s, int err);

#endif
