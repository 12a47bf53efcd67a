/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-vmm - synthetic VMM workload for libcprx tests, benchmark and docs.
 *
 * Guest RAM is a memfd cut into 4 KiB guest pages.  Each page carries an
 * invariant (header + pattern words derived from its index and a sequence
 * number) that vCPU threads keep rewriting, so a page that was lost, zeroed,
 * swapped or went stale across an update is caught.  A few device fds
 * (eventfd, pipe, socketpair, file) carry known state across the update.
 *
 * The same binary is the old image (saves and execs) and the new one
 * (reclaims, verifies, resumes); the new image takes its configuration from
 * the "vmm" blob, not from argv.
 *
 * Exit: 0 all verified, 1 usage or setup error, 2 verification failed,
 * 3 an update was refused but the guest kept running intact, 4 VM lost.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "cprx.h"

#define VMM_NAME	"cprx-vmm"
#define VMM_VERSION	"0.1.0"

#define GPAGE		4096u	/* guest page: the unit of the RAM invariant */
#define MAX_VCPUS	64
#define PAGE_MAGIC	0x316d6d7678727063ull	/* "cprxvmm1" */
#define BLOB_MAGIC	0x626f6c626d6d7663ull	/* "cvmmblob" */
#define BLOB_VERSION	1
#define BLOB_TOKEN	"vmm"
#define RAM_TOKEN	"ram0"
#define EXTRA_TOKEN	"dev.extra"
#define NR_DEVICES	4	/* eventfd, pipe, socketpair, file */

/*
 * e2big: execve caps argv+envp at min(stack rlimit / 4, 6 MiB) and each
 * string at 128 KiB (MAX_ARG_STRLEN, NUL included): 64 near-maximal
 * strings (8 MiB) exceed the cap whatever the rlimit is.
 */
#define E2BIG_ARGS	64
#define E2BIG_ARGLEN	(128 * 1024 - 1)

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

enum exit_code {
	EXIT_OK = 0,
	EXIT_SETUP = 1,
	EXIT_VERIFY = 2,
	EXIT_REFUSED = 3,
	EXIT_LOST = 4,
};

/* Injected faults (--inject). */
enum fault {
	F_SECCOMP	= 1u << 0,
	F_CORRUPT	= 1u << 1,
	F_REJECT	= 1u << 2,
	F_REJECT_ALWAYS	= 1u << 3,
	F_REQUIRE_TOKEN	= 1u << 4,
	F_PRIVATE_RAM	= 1u << 5,
	F_E2BIG		= 1u << 6,
};

static const struct fault_desc {
	const char *name;
	unsigned int bit;
	const char *help;
} fault_descs[] = {
	{ "seccomp-deny-exec", F_SECCOMP,
	  "a seccomp filter makes execve fail with EPERM (implies --force)" },
	{ "corrupt-state", F_CORRUPT,
	  "flip a byte in the middle of the saved state (needs --state PATH)" },
	{ "reject-state", F_REJECT,
	  "the new image refuses to start and rolls back" },
	{ "reject-always", F_REJECT_ALWAYS,
	  "the rollback image refuses too: the VM is lost (exit 4)" },
	{ "require-token", F_REQUIRE_TOKEN,
	  "the new image also wants \"" EXTRA_TOKEN "\", never saved: rollback" },
	{ "private-ram", F_PRIVATE_RAM,
	  "map guest RAM MAP_PRIVATE, which preflight must refuse" },
	{ "e2big", F_E2BIG,
	  "exec with 8 MiB of extra arguments: execve fails with E2BIG" },
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
	char state_path[PATH_MAX];	/* "" = state in a memfd */
	char exec_path[PATH_MAX];
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

/* Guest page header; pattern words sit at pat_off[]. */
struct page_hdr {
	uint64_t magic;
	uint64_t index;
	uint64_t seq;
	uint64_t check;
};

static const unsigned int pat_off[] = { GPAGE / 4, GPAGE / 2, GPAGE - 8 };

enum dev_slot {
	DEV_EFD,
	DEV_PIPE_R,
	DEV_PIPE_W,
	DEV_SOCK_A,
	DEV_SOCK_B,
	DEV_FILE,
	NR_DEV_FDS
};

static const char *const dev_token[NR_DEV_FDS] = {
	[DEV_EFD]	= "dev.eventfd",
	[DEV_PIPE_R]	= "dev.pipe.r",
	[DEV_PIPE_W]	= "dev.pipe.w",
	[DEV_SOCK_A]	= "dev.sock.a",
	[DEV_SOCK_B]	= "dev.sock.b",
	[DEV_FILE]	= "dev.file",
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
	bool rollback;
	bool resumed;
	bool verified;
	char verify[320];
};

static struct vm the_vm;

/* Helpers ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
		;
}

static void __attribute__((noreturn, format(printf, 2, 3)))
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs(VMM_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void __attribute__((format(printf, 1, 2)))
warn_msg(const char *fmt, ...)
{
	va_list ap;

	fputs(VMM_NAME ": warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* splitmix64 finalizer: cheap, and every input bit reaches every output bit */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static const char *errname(int err)
{
	const char *n = strerrorname_np(err < 0 ? -err : err);

	return n ? n : "EUNKNOWN";
}

/* The session's message, or strerror when there is no session or message. */
static const char *sess_msg(const struct cprx_session *s, int err)
{
	const char *m = s ? cprx_errmsg(s) : NULL;

	return m && *m ? m : strerror(err < 0 ? -err : err);
}

static const char *sess_hint(const struct cprx_session *s)
{
	const char *h = s ? cprx_errhint(s) : NULL;

	return h ? h : "";
}

static const char *page_kind_name(uint32_t kind)
{
	switch (kind) {
	case CPRX_PAGE_THP:
		return "thp";
	case CPRX_PAGE_HUGETLB:
		return "hugetlb";
	default:
		return "4k";
	}
}

static void fmt_bytes(char *buf, size_t len, uint64_t n)
{
	if (n >= (1ull << 30))
		snprintf(buf, len, "%.1f GiB", (double)n / (1ull << 30));
	else if (n >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)n / (1ull << 20));
	else
		snprintf(buf, len, "%.1f KiB", (double)n / (1ull << 10));
}

/* Reads "Key:   value kB" from a /proc file; -1 if absent. */
static long long proc_kb(const char *path, const char *key)
{
	size_t klen = strlen(key);
	long long v = -1;
	char line[256];
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static uint64_t hugepage_bytes(void)
{
	long long kb = proc_kb("/proc/meminfo", "Hugepagesize");

	return kb > 0 ? (uint64_t)kb << 10 : 2ull << 20;
}

static const char *const baseline_names[] = { "none", "floor", "naive", "copy" };

static enum baseline cfg_baseline(const struct vm_config *c)
{
	return (enum baseline)((c->flags & CFG_BASE_MASK) >> CFG_BASE_SHIFT);
}

/* Options ------------------------------------------------------------------ */

enum {
	OPT_RAM = 256,
	OPT_PAGES,
	OPT_VCPUS,
	OPT_UPDATES,
	OPT_RUN_MS,
	OPT_EXEC,
	OPT_TEARDOWN,
	OPT_STATE,
	OPT_BACKEND,
	OPT_NO_PROBE,
	OPT_FORCE,
	OPT_JSON,
	OPT_HUMAN,
	OPT_INJECT,
	OPT_VERSION,
	OPT_DEVICES,
	OPT_BASELINE,
	OPT_SETTLE,
};

static const struct option long_opts[] = {
	{ "ram",	required_argument, NULL, OPT_RAM },
	{ "pages",	required_argument, NULL, OPT_PAGES },
	{ "vcpus",	required_argument, NULL, OPT_VCPUS },
	{ "updates",	required_argument, NULL, OPT_UPDATES },
	{ "run-ms",	required_argument, NULL, OPT_RUN_MS },
	{ "exec",	required_argument, NULL, OPT_EXEC },
	{ "teardown",	required_argument, NULL, OPT_TEARDOWN },
	{ "state",	required_argument, NULL, OPT_STATE },
	{ "backend",	required_argument, NULL, OPT_BACKEND },
	{ "no-probe",	no_argument,	   NULL, OPT_NO_PROBE },
	{ "force",	no_argument,	   NULL, OPT_FORCE },
	{ "json",	no_argument,	   NULL, OPT_JSON },
	{ "human",	no_argument,	   NULL, OPT_HUMAN },
	{ "inject",	required_argument, NULL, OPT_INJECT },
	{ "version",	no_argument,	   NULL, OPT_VERSION },
	{ "devices",	required_argument, NULL, OPT_DEVICES },
	{ "baseline",	required_argument, NULL, OPT_BASELINE },
	{ "settle",	no_argument,	   NULL, OPT_SETTLE },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static void usage(FILE *f)
{
	unsigned int i;

	fputs("Usage: " VMM_NAME " [OPTION]...\n"
	      "Synthetic VMM: guest RAM in a memfd, vCPU threads rewriting it, a few device\n"
	      "fds.  Live-updates itself with libcprx and verifies that all of it came through.\n"
	      "\n"
	      "  --ram SIZE        guest RAM (default 256M; suffixes K, M, G, T)\n"
	      "  --pages KIND      RAM backing: 4k (default), thp or hugetlb\n"
	      "  --vcpus N         vCPU threads, 1..64 (default 2)\n"
	      "  --updates N       live updates to chain (default 1; 0: run and verify only)\n"
	      "  --run-ms MS       guest run time before each update and at the end (default 100)\n"
	      "  --exec PATH       binary to update to (default: this one, from /proc/self/exe)\n"
	      "  --teardown MODE   deferred (default: old mm torn down after the exec) or inline\n"
	      "  --state TARGET    where the state goes: memfd (default) or a file PATH\n"
	      "  --backend NAME    auto (default, honours $" CPRX_ENV_BACKEND "), cloexec or kmod\n"
	      "  --no-probe        preflight skips the \"PATH --version\" probe run\n"
	      "  --force           exec even when preflight fails (to test error paths)\n"
	      "  --json            one JSON line per event (default unless stdout is a tty)\n"
	      "  --human           short human-readable lines instead of JSON\n"
	      "  --devices N       N more devices (eventfds with a count), 0..1000 (default 0)\n"
	      "  --baseline MODE   update without libcprx, for comparison (bench/cprx-bench):\n"
	      "      floor   execve with RAM mapped, the old mm kept off the critical path;\n"
	      "              the new image maps the inherited RAM fd and resumes: no state,\n"
	      "              no devices, no checks\n"
	      "      naive   the same with the teardown inside execve\n"
	      "      copy    write RAM to a file (--state PATH, else $TMPDIR), execve, read\n"
	      "              it into new RAM; what migration without CPR does\n"
	      "  --settle          before each update, wait (up to 30 s) until the last one's\n"
	      "                    teardown is over, so that it does not share the CPUs\n"
	      "  --inject FAULT    inject a fault; repeatable or comma-separated:\n", f);
	for (i = 0; i < ARRAY_SIZE(fault_descs); i++)
		fprintf(f, "      %-19s %s\n", fault_descs[i].name, fault_descs[i].help);
	fputs("  --version         print the version and exit (the preflight probe)\n"
	      "  -h, --help        this text\n"
	      "\n"
	      "pause_ms is the guest downtime, STOP to RESUMED, minus the verify phase: reading\n"
	      "all of guest RAM is this tool's own check, a real VMM does not do it.\n"
	      "\n"
	      "Exit status: 0 all verified, 1 usage or setup error, 2 verification failed,\n"
	      "3 an update was refused but the guest kept running intact, 4 the VM is lost.\n", f);
}

static void __attribute__((format(printf, 2, 3)))
bad_opt(const char *opt, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, VMM_NAME ": --%s: ", opt);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
}

/* "256M", "1G", "4096", "2GiB": bytes, or -1 on anything else. */
static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	}
	if (shift) {
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max,
		      uint32_t *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_faults(struct vm_config *c, const char *arg)
{
	char buf[256], *tok, *save = NULL;
	unsigned int i;

	if (strlen(arg) >= sizeof(buf)) {
		bad_opt("inject", "argument too long");
		return -1;
	}
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < ARRAY_SIZE(fault_descs); i++)
			if (!strcmp(tok, fault_descs[i].name))
				break;
		if (i == ARRAY_SIZE(fault_descs)) {
			bad_opt("inject", "unknown fault '%s'", tok);
			return -1;
		}
		c->faults |= fault_descs[i].bit;
	}
	return 0;
}

static int parse_path(const char *opt, char *dst, const char *arg)
{
	if (!*arg || strlen(arg) >= PATH_MAX) {
		bad_opt(opt, "path is empty or longer than %d bytes", PATH_MAX - 1);
		return -1;
	}
	strcpy(dst, arg);
	return 0;
}

static int parse_choice(const char *opt, const char *arg,
			const char *const *names, unsigned int n, uint32_t *out)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (!strcmp(arg, names[i])) {
			*out = i;
			return 0;
		}
	bad_opt(opt, "'%s' is not one of %s%s%s%s%s%s%s", arg, names[0],
		n > 1 ? ", " : "", n > 1 ? names[1] : "",
		n > 2 ? ", " : "", n > 2 ? names[2] : "",
		n > 3 ? ", " : "", n > 3 ? names[3] : "");
	return -1;
}

static int parse_one(struct vm_config *c, int opt, const char *arg)
{
	static const char *const pages[] = { "4k", "thp", "hugetlb" };
	static const char *const backends[] = { "auto", "cloexec", "kmod" };
	static const char *const teardowns[] = { "deferred", "inline" };
	static const char *const baselines[] = { "none", "floor", "naive", "copy" };
	uint32_t v;

	switch (opt) {
	case OPT_RAM:
		if (parse_size(arg, &c->ram_bytes) < 0 || !c->ram_bytes) {
			bad_opt("ram", "'%s' is not a size; use e.g. 256M, 1G or 1048576", arg);
			return -1;
		}
		return 0;
	case OPT_PAGES:
		return parse_choice("pages", arg, pages, 3, &c->page_kind);
	case OPT_VCPUS:
		if (parse_uint(arg, 1, MAX_VCPUS, &c->vcpus) < 0) {
			bad_opt("vcpus", "'%s' is not a number from 1 to %d", arg, MAX_VCPUS);
			return -1;
		}
		return 0;
	case OPT_UPDATES:
		if (parse_uint(arg, 0, 1000000, &c->updates) < 0) {
			bad_opt("updates", "'%s' is not a number from 0 to 1000000", arg);
			return -1;
		}
		return 0;
	case OPT_RUN_MS:
		if (parse_uint(arg, 0, 3600000, &c->run_ms) < 0) {
			bad_opt("run-ms", "'%s' is not a number of ms up to 3600000", arg);
			return -1;
		}
		return 0;
	case OPT_EXEC:
		return parse_path("exec", c->exec_path, arg);
	case OPT_TEARDOWN:
		if (parse_choice("teardown", arg, teardowns, 2, &v) < 0)
			return -1;
		c->flags = v ? c->flags | CFG_INLINE : c->flags & ~CFG_INLINE;
		return 0;
	case OPT_STATE:
		if (!strcmp(arg, "memfd")) {
			c->state_path[0] = '\0';
			return 0;
		}
		return parse_path("state", c->state_path, arg);
	case OPT_BACKEND:
		return parse_choice("backend", arg, backends, 3, &c->backend);
	case OPT_NO_PROBE:
		c->flags |= CFG_NO_PROBE;
		return 0;
	case OPT_FORCE:
		c->flags |= CFG_FORCE;
		return 0;
	case OPT_JSON:	/* the later of --json/--human wins */
		c->flags = (c->flags & ~CFG_HUMAN) | CFG_JSON;
		return 0;
	case OPT_HUMAN:
		c->flags = (c->flags & ~CFG_JSON) | CFG_HUMAN;
		return 0;
	case OPT_INJECT:
		return parse_faults(c, arg);
	case OPT_DEVICES:
		if (parse_uint(arg, 0, MAX_XDEVS, &c->devices) < 0) {
			bad_opt("devices", "'%s' is not a number from 0 to %d", arg, MAX_XDEVS);
			return -1;
		}
		return 0;
	case OPT_BASELINE:
		if (parse_choice("baseline", arg, baselines, 4, &v) < 0)
			return -1;
		c->flags = (c->flags & ~CFG_BASE_MASK) | (v << CFG_BASE_SHIFT);
		return 0;
	case OPT_SETTLE:
		c->flags |= CFG_SETTLE;
		return 0;
	}
	return -1;
}

/* Cross-option checks, so that setup does not fail half-way. */
static int check_config(struct vm_config *c)
{
	uint64_t hp = hugepage_bytes();

	if (c->ram_bytes % GPAGE) {
		bad_opt("ram", "%" PRIu64 " is not a multiple of %u", c->ram_bytes, GPAGE);
		return -1;
	}
	if (c->ram_bytes / GPAGE < c->vcpus) {
		bad_opt("ram", "too small: each of the %u vCPUs needs a %u-byte page",
			c->vcpus, GPAGE);
		return -1;
	}
	if (c->page_kind == CPRX_PAGE_HUGETLB && c->ram_bytes % hp) {
		bad_opt("ram", "with --pages hugetlb it must be a multiple of the %" PRIu64
			" KiB huge page", hp >> 10);
		return -1;
	}
	if ((c->faults & F_CORRUPT) && !c->state_path[0]) {
		bad_opt("inject", "corrupt-state needs --state PATH: a memfd state is sealed");
		return -1;
	}
	/* floor keeps the old mm off the critical path, the others do not */
	if (cfg_baseline(c) == BASE_FLOOR)
		c->flags &= ~CFG_INLINE;
	else if (cfg_baseline(c))
		c->flags |= CFG_INLINE;
	if (cfg_baseline(c) && c->faults) {
		bad_opt("baseline", "does not combine with --inject");
		return -1;
	}
	/* the point of seccomp-deny-exec is a refused execve, not preflight */
	if (c->faults & F_SECCOMP)
		c->flags |= CFG_FORCE;
	return 0;
}

static void config_defaults(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->ram_bytes = 256ull << 20;
	c->page_kind = CPRX_PAGE_4K;
	c->vcpus = 2;
	c->updates = 1;
	c->run_ms = 100;
	c->backend = CPRX_BACKEND_AUTO;
}

static int parse_options(int argc, char **argv, struct vm_config *c)
{
	int opt, err = 0;

	config_defaults(c);
	while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		case OPT_VERSION:	/* the probe: touch nothing */
			puts(VMM_NAME " " VMM_VERSION);
			exit(EXIT_OK);
		case '?':
			err = -1;
			break;
		default:
			if (parse_one(c, opt, optarg) < 0)
				err = -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, VMM_NAME ": unexpected argument '%.40s' (see --help)\n",
			argv[optind]);
		err = -1;
	}
	return err ? err : check_config(c);
}

static void session_options(const struct vm_config *c, struct cprx_options *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->backend = (enum cprx_backend)c->backend;
	o->target = c->state_path[0] ? CPRX_STATE_FILE : CPRX_STATE_MEMFD;
	o->state_path = c->state_path[0] ? c->state_path : NULL;
	o->no_deferred_teardown = c->flags & CFG_INLINE;
}

/* Guest RAM ---------------------------------------------------------------- */

static uint64_t page_word(uint64_t idx, uint64_t seq, unsigned int slot)
{
	return mix64(mix64(idx ^ ((uint64_t)slot << 56)) ^ seq);
}

static void page_write(uint8_t *ram, uint64_t idx, uint64_t seq)
{
	uint8_t *pg = ram + idx * GPAGE;
	struct page_hdr *h = (struct page_hdr *)pg;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(pat_off); i++)
		*(uint64_t *)(pg + pat_off[i]) = page_word(idx, seq, i + 1);
	h->magic = PAGE_MAGIC;
	h->index = idx;
	h->seq = seq;
	h->check = page_word(idx, seq, 0);
}

/* 0 and the page's seq, or -1 and why the invariant does not hold. */
static int page_check(const uint8_t *ram, uint64_t idx, uint64_t *seq,
		      char *why, size_t len)
{
	const uint8_t *pg = ram + idx * GPAGE;
	const struct page_hdr *h = (const struct page_hdr *)pg;
	unsigned int i;

	if (h->magic != PAGE_MAGIC) {
		snprintf(why, len, "page %" PRIu64 ": magic %#" PRIx64 "%s", idx,
			 h->magic, h->magic ? "" : " (zeroed: content lost)");
		return -1;
	}
	if (h->index != idx) {
		snprintf(why, len, "page %" PRIu64 " holds page %" PRIu64
			 " (pages swapped)", idx, h->index);
		return -1;
	}
	if (h->check != page_word(idx, h->seq, 0)) {
		snprintf(why, len, "page %" PRIu64 ": header check fails at seq %"
			 PRIu64, idx, h->seq);
		return -1;
	}
	for (i = 0; i < ARRAY_SIZE(pat_off); i++)
		if (*(const uint64_t *)(pg + pat_off[i]) != page_word(idx, h->seq, i + 1)) {
			snprintf(why, len, "page %" PRIu64 ": word at +%u is not seq %"
				 PRIu64 "'s (partial content)", idx, pat_off[i], h->seq);
			return -1;
		}
	*seq = h->seq;
	return 0;
}

/* Every page's invariant, then each stripe's seq sum: stale pages show there. */
static bool ram_verify(const struct vm *vm, char *msg, size_t len)
{
	uint64_t sum[MAX_VCPUS] = { 0 };
	uint64_t idx, seq, bad = 0;
	unsigned int n = vm->cfg.vcpus, i;
	char first[200] = "";

	for (idx = 0; idx < vm->npages; idx++) {
		if (page_check(vm->ram, idx, &seq, bad ? NULL : first,
			       bad ? 0 : sizeof(first)) < 0)
			bad++;
		else
			sum[idx % n] += seq;
	}
	if (bad) {
		snprintf(msg, len, "FAIL: %" PRIu64 " of %" PRIu64 " pages bad, first: %s",
			 bad, vm->npages, first);
		return false;
	}
	for (i = 0; i < n; i++)
		if (sum[i] != vm->stripe_sum[i]) {
			snprintf(msg, len, "FAIL: vCPU %u's pages have seq sum %" PRIu64
				 ", expected %" PRIu64 " (stale or lost guest writes)",
				 i, sum[i], vm->stripe_sum[i]);
			return false;
		}
	return true;
}

/* Writes every page so that guest RAM is really resident. */
static void ram_populate(struct vm *vm)
{
	uint64_t idx;

	memset(vm->stripe_sum, 0, sizeof(vm->stripe_sum));
	for (idx = 0; idx < vm->npages; idx++) {
		page_write(vm->ram, idx, 1);
		vm->stripe_sum[idx % vm->cfg.vcpus]++;
	}
}

/* Shmem THP is a sysfs policy: a mapping's madvise alone may not be enough. */
static void thp_report(void)
{
	char buf[128], *open_b, *close_b;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	if (!f) {
		warn_msg("--pages thp: no shmem THP support in this kernel; running on 4k pages");
		return;
	}
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	open_b = strchr(buf, '[');
	close_b = open_b ? strchr(open_b, ']') : NULL;
	if (!close_b)
		return;
	*close_b = '\0';
	if (!strcmp(open_b + 1, "never") || !strcmp(open_b + 1, "deny"))
		warn_msg("--pages thp: shmem THP is '%s' in /sys/kernel/mm/transparent_hugepage/"
		      "shmem_enabled, guest RAM stays on 4k pages; set it to 'advise'",
		      open_b + 1);
}

static void ram_advise(struct vm *vm)
{
	if (vm->cfg.page_kind != CPRX_PAGE_THP)
		return;
	/* shmem aligns mappings of 2 MiB and more itself, no need to here */
	if (madvise(vm->ram, vm->cfg.ram_bytes, MADV_HUGEPAGE) < 0)
		warn_msg("madvise(MADV_HUGEPAGE) on guest RAM: %m");
}

static void __attribute__((noreturn))
ram_failed(const struct vm_config *c, const char *what)
{
	char sz[32];

	fmt_bytes(sz, sizeof(sz), c->ram_bytes);
	if (c->page_kind == CPRX_PAGE_HUGETLB && (errno == ENOMEM || errno == ENOSPC))
		die(EXIT_SETUP, "--pages hugetlb: not enough free huge pages for %s; "
		    "reserve them: echo %" PRIu64 " > /proc/sys/vm/nr_hugepages", sz,
		    c->ram_bytes / hugepage_bytes());
	die(EXIT_SETUP, "%s of %s of guest RAM: %m", what, sz);
}

/*
 * Allocating in bulk is several times faster than faulting 4k at a time.
 * Not for THP: with no VM_HUGEPAGE mapping yet, shmem "advise" would hand
 * out 4k folios.
 */
static int ram_prealloc(const struct vm_config *c, int fd)
{
	if (c->page_kind == CPRX_PAGE_THP)
		return 0;
	if (fallocate(fd, 0, 0, (off_t)c->ram_bytes) < 0) {
		if (errno != EOPNOTSUPP)
			ram_failed(c, "fallocate");
		return 0;
	}
	return MAP_POPULATE;
}

static void ram_create(struct vm *vm, bool populate)
{
	const struct vm_config *c = &vm->cfg;
	unsigned int mflags = MFD_CLOEXEC;
	int map = MAP_SHARED;

	if (c->page_kind == CPRX_PAGE_HUGETLB)
		mflags |= MFD_HUGETLB;
	vm->ram_fd = memfd_create("cprx-vmm-ram", mflags);
	if (vm->ram_fd < 0)
		die(EXIT_SETUP, "memfd_create(%s) for guest RAM: %m%s",
		    page_kind_name(c->page_kind), c->page_kind == CPRX_PAGE_HUGETLB ?
		    " (hugetlbfs support missing?)" : "");
	if (ftruncate(vm->ram_fd, (off_t)c->ram_bytes) < 0)
		ram_failed(c, "ftruncate");
	map |= ram_prealloc(c, vm->ram_fd);
	/* private-ram: guest writes land in COW copies, never in the memfd */
	if (c->faults & F_PRIVATE_RAM)
		map = (map & ~MAP_SHARED) | MAP_PRIVATE;
	vm->ram = mmap(NULL, c->ram_bytes, PROT_READ | PROT_WRITE, map, vm->ram_fd, 0);
	if (vm->ram == MAP_FAILED)
		ram_failed(c, "mmap");
	vm->npages = c->ram_bytes / GPAGE;
	if (c->page_kind == CPRX_PAGE_THP)
		thp_report();
	ram_advise(vm);
	if (populate)
		ram_populate(vm);
}

/* vCPUs -------------------------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Acknowledges stop request @c and sleeps until ctl moves on from it. */
static void vcpu_park(struct vm *vm, uint32_t c)
{
	atomic_fetch_add_explicit(&vm->stopped, 1, memory_order_release);
	futex_wake(&vm->stopped, 1);
	while (atomic_load_explicit(&vm->ctl, memory_order_acquire) == c)
		futex_wait(&vm->ctl, c);
}

/* The guest: rewrite random pages of this vCPU's stripe, forever. */
static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	uint64_t n = vm->cfg.vcpus;
	uint64_t stripe = (vm->npages - v->id + n - 1) / n;
	struct page_hdr *h;
	uint64_t idx;
	uint32_t c;

	for (;;) {
		c = atomic_load_explicit(&vm->ctl, memory_order_acquire);
		if (c & 1) {
			vcpu_park(vm, c);
			continue;
		}
		idx = v->id + n * (xorshift64(&v->rng) % stripe);
		h = (struct page_hdr *)(vm->ram + idx * GPAGE);
		page_write(vm->ram, idx, h->seq + 1);
		v->writes++;
	}
	return NULL;
}

static void vcpus_start(struct vm *vm)
{
	unsigned int i;
	int r;

	atomic_store(&vm->ctl, 0);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		struct vcpu *v = &vm->vcpu[i];

		v->vm = vm;
		v->id = i;
		v->writes = 0;
		v->rng = mix64(now_ns() ^ i) | 1;
		r = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (r)
			die(EXIT_SETUP, "creating vCPU thread %u: %s", i, strerror(r));
	}
	vm->threads_up = true;
	vm->running = true;
}

/* Returns once every vCPU is parked; folds their writes into the sums. */
static void vcpus_stop(struct vm *vm)
{
	uint32_t n;
	unsigned int i;

	if (!vm->running)
		return;
	atomic_store_explicit(&vm->stopped, 0, memory_order_relaxed);
	atomic_fetch_add(&vm->ctl, 1);	/* odd: stop */
	while ((n = atomic_load_explicit(&vm->stopped, memory_order_acquire)) <
	       vm->cfg.vcpus)
		futex_wait(&vm->stopped, n);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		vm->stripe_sum[i] += vm->vcpu[i].writes;
		vm->vcpu[i].writes = 0;
	}
	vm->running = false;
}

static void vcpus_resume(struct vm *vm)
{
	if (vm->running || !vm->threads_up)
		return;
	atomic_fetch_add(&vm->ctl, 1);	/* even: run */
	futex_wake(&vm->ctl, INT_MAX);
	vm->running = true;
}

static uint64_t guest_writes(const struct vm *vm)
{
	uint64_t total = 0;
	unsigned int i;

	/* every page started at seq 1 */
	for (i = 0; i < vm->cfg.vcpus; i++)
		total += vm->stripe_sum[i];
	return total - vm->npages;
}

/* Devices ------------------------------------------------------------------ */

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

static void xdev_token(char *buf, size_t len, unsigned int i)
{
	snprintf(buf, len, XDEV_TOKEN "%u", i);
}

static void devs_create(struct vm *vm)
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

/* Puts the state the new image of generation @gen must find into the devices. */
static int devs_arm(struct vm *vm, uint32_t gen)
{
	struct dev_expect *d = &vm->dev;
	unsigned int i;

	memset(d, 0, sizeof(*d));
	d->gen = gen;
	d->efd_count = 1000 + gen;
	d->file_size = 8192 + gen % 4096;
	d->file_off = 1000 + gen % 4096;
	snprintf(d->pipe_msg, sizeof(d->pipe_msg), "cprx-pipe-%u", gen);
	snprintf(d->sock_msg, sizeof(d->sock_msg), "cprx-sock-%u", gen);
	d->armed = 1;	/* even half-armed: the check drains what is there */
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
static bool fds_cloexec(const struct vm *vm, char *msg, size_t len)
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
static bool vm_verify(struct vm *vm, char *msg, size_t len)
{
	bool ok = ram_verify(vm, msg, len);

	/* drain the devices even after a RAM failure: no leftovers */
	if (!devs_verify(vm, ok ? msg : NULL, ok ? len : 0))
		ok = false;
	if (ok)
		snprintf(msg, len, "ok");
	return ok;
}

/* Faults ------------------------------------------------------------------- */

#if defined(__x86_64__)
#define AUDIT_ARCH_SELF	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_SELF	AUDIT_ARCH_AARCH64
#endif

/* execve/execveat fail with EPERM, everything else is allowed. */
static int seccomp_deny_exec(void)
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
static int corrupt_state(const char *path)
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
static char **e2big_argv(struct vm *vm)
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

/* JSON output -------------------------------------------------------------- */

struct jw {
	FILE *f;
	bool first;
};

static void json_string(FILE *f, const char *s)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* A key (NULL inside an array), with the comma the previous item needs. */
static void jw_key(struct jw *w, const char *k)
{
	if (!w->first)
		fputc(',', w->f);
	w->first = false;
	if (k) {
		json_string(w->f, k);
		fputc(':', w->f);
	}
}

static void jw_str(struct jw *w, const char *k, const char *v)
{
	jw_key(w, k);
	if (v)
		json_string(w->f, v);
	else
		fputs("null", w->f);
}

static void jw_u64(struct jw *w, const char *k, uint64_t v)
{
	jw_key(w, k);
	fprintf(w->f, "%" PRIu64, v);
}

static void jw_bool(struct jw *w, const char *k, bool v)
{
	jw_key(w, k);
	fputs(v ? "true" : "false", w->f);
}

static void jw_ms(struct jw *w, const char *k, double ms)
{
	jw_key(w, k);
	if (isnan(ms))
		fputs("null", w->f);
	else
		fprintf(w->f, "%.3f", ms);
}

static void jw_open(struct jw *w, const char *k, char c)
{
	jw_key(w, k);
	fputc(c, w->f);
	w->first = true;
}

static void jw_close(struct jw *w, char c)
{
	fputc(c, w->f);
	w->first = false;
}

static void jw_begin(struct jw *w, const char *event)
{
	w->f = stdout;
	w->first = true;
	fputc('{', w->f);
	jw_str(w, "event", event);
}

static void jw_end(struct jw *w)
{
	fputs("}\n", w->f);
	fflush(w->f);
}

/* Reporting ---------------------------------------------------------------- */

static const struct phase_span {
	const char *name;
	enum cprx_phase from, to;
} spans[] = {
	{ "preflight",	CPRX_PH_PREFLIGHT_START, CPRX_PH_PREFLIGHT_END },
	{ "stop",	CPRX_PH_STOP,		CPRX_PH_STOPPED },
	{ "save",	CPRX_PH_SAVE_START,	CPRX_PH_SAVE_END },
	{ "exec",	CPRX_PH_EXEC,		CPRX_PH_INCOMING },
	{ "reclaim",	CPRX_PH_INCOMING,	CPRX_PH_RECLAIM_END },
	{ "remap",	CPRX_PH_RECLAIM_END,	CPRX_PH_REMAP_END },
	{ "verify",	CPRX_PH_REMAP_END,	CPRX_PH_VERIFY_END },
	{ "resume",	CPRX_PH_VERIFY_END,	CPRX_PH_RESUMED },
};

static double span_ms(const uint64_t *ts, enum cprx_phase a, enum cprx_phase b)
{
	if (!ts[a] || !ts[b] || ts[b] < ts[a])
		return NAN;
	return (double)(ts[b] - ts[a]) / 1e6;
}

/* Guest downtime without our own RAM check, which a real VMM does not do. */
static double pause_ms(const uint64_t *ts)
{
	double all = span_ms(ts, CPRX_PH_STOP, CPRX_PH_RESUMED);
	double verify = span_ms(ts, CPRX_PH_REMAP_END, CPRX_PH_VERIFY_END);

	return isnan(verify) ? all : all - verify;
}

static const char *verdict_name(enum cprx_verdict v)
{
	return v == CPRX_PASS ? "pass" : v == CPRX_WARN ? "warn" : "fail";
}

static void json_checks(struct jw *w, const struct cprx_preflight_report *pf)
{
	unsigned int i, n = pf->nr_checks < CPRX_MAX_CHECKS ? pf->nr_checks :
			    CPRX_MAX_CHECKS;

	jw_open(w, "checks", '[');
	for (i = 0; i < n; i++) {
		jw_open(w, NULL, '{');
		jw_str(w, "name", pf->checks[i].name);
		jw_str(w, "verdict", verdict_name(pf->checks[i].verdict));
		jw_str(w, "reason", pf->checks[i].reason);
		jw_close(w, '}');
	}
	jw_close(w, ']');
}

/* Raw stamps from STOP on, so that a breakdown can cover every gap. */
static void json_timeline(struct jw *w, const uint64_t *ts)
{
	static const char *const names[CPRX_PH_MAX] = {
		[CPRX_PH_STOP] = "stop", [CPRX_PH_STOPPED] = "stopped",
		[CPRX_PH_SAVE_START] = "save_start", [CPRX_PH_SAVE_END] = "save_end",
		[CPRX_PH_EXEC] = "exec", [CPRX_PH_INCOMING] = "incoming",
		[CPRX_PH_RECLAIM_END] = "reclaim_end", [CPRX_PH_REMAP_END] = "remap_end",
		[CPRX_PH_VERIFY_END] = "verify_end", [CPRX_PH_RESUMED] = "resumed",
	};
	unsigned int i;

	if (!ts[CPRX_PH_STOP])
		return;
	jw_open(w, "timeline_ms", '{');
	for (i = CPRX_PH_STOP; i <= CPRX_PH_RESUMED; i++)
		if (ts[i] >= ts[CPRX_PH_STOP])
			jw_ms(w, names[i], (double)(ts[i] - ts[CPRX_PH_STOP]) / 1e6);
	jw_close(w, '}');
}

static void json_update(const struct vm *vm, const struct report *rep)
{
	const struct vm_config *c = &vm->cfg;
	struct jw w;
	unsigned int i;

	jw_begin(&w, "update");
	jw_bool(&w, "ok", !rep->stage && !rep->rollback);
	jw_u64(&w, "generation", vm->generation);
	jw_u64(&w, "pid", (uint64_t)getpid());
	jw_str(&w, "backend", rep->backend);
	jw_bool(&w, "rollback", rep->rollback);
	jw_u64(&w, "ram_bytes", c->ram_bytes);
	jw_str(&w, "pages", page_kind_name(c->page_kind));
	jw_u64(&w, "vcpus", c->vcpus);
	jw_str(&w, "teardown", c->flags & CFG_INLINE ? "inline" : "deferred");
	jw_str(&w, "state", c->state_path[0] || cfg_baseline(c) == BASE_COPY ?
	       "file" : "memfd");
	jw_ms(&w, "pause_ms", rep->pause_ms);
	jw_open(&w, "phases_ms", '{');
	for (i = 0; i < ARRAY_SIZE(spans); i++)
		jw_ms(&w, spans[i].name, span_ms(rep->ts, spans[i].from, spans[i].to));
	jw_close(&w, '}');
	json_timeline(&w, rep->ts);
	if (cfg_baseline(c))
		jw_str(&w, "baseline", baseline_names[cfg_baseline(c)]);
	jw_str(&w, "verify", rep->verify);
	if (rep->stage) {
		jw_str(&w, "stage", rep->stage);
		jw_str(&w, "errno", errname(rep->err));
		jw_str(&w, "error", rep->error);
		jw_str(&w, "hint", rep->hint);
		jw_bool(&w, "resumed", rep->resumed);
	}
	if (rep->pf)
		json_checks(&w, rep->pf);
	jw_end(&w);
}

static void human_checks(const struct cprx_preflight_report *pf)
{
	unsigned int i;

	for (i = 0; i < pf->nr_checks && i < CPRX_MAX_CHECKS; i++)
		if (pf->checks[i].verdict != CPRX_PASS)
			printf("  preflight %s %s: %s\n", verdict_name(pf->checks[i].verdict),
			       pf->checks[i].name, pf->checks[i].reason);
}

static void human_update(const struct vm *vm, const struct report *rep)
{
	const uint64_t *ts = rep->ts;
	char sz[32];

	fmt_bytes(sz, sizeof(sz), vm->cfg.ram_bytes);
	if (rep->stage) {
		printf("update %u refused at %s: %s: %s%s%s%s; guest %s, verify %s\n",
		       vm->generation + 1, rep->stage, errname(rep->err), rep->error,
		       rep->hint[0] ? " (hint: " : "", rep->hint, rep->hint[0] ? ")" : "",
		       rep->resumed ? "resumed" : "NOT resumed", rep->verify);
	} else {
		printf("update %u%s: pause %.3f ms (stop %.3f, save %.3f, exec %.3f, "
		       "reclaim %.3f, remap %.3f, resume %.3f), RAM %s %s, %d devices %s\n",
		       rep->rollback ? vm->generation + 1 : vm->generation,
		       rep->rollback ? " rolled back, guest resumed on the previous binary" : "",
		       rep->pause_ms,
		       span_ms(ts, CPRX_PH_STOP, CPRX_PH_STOPPED),
		       span_ms(ts, CPRX_PH_SAVE_START, CPRX_PH_SAVE_END),
		       span_ms(ts, CPRX_PH_EXEC, CPRX_PH_INCOMING),
		       span_ms(ts, CPRX_PH_INCOMING, CPRX_PH_RECLAIM_END),
		       span_ms(ts, CPRX_PH_RECLAIM_END, CPRX_PH_REMAP_END),
		       span_ms(ts, CPRX_PH_VERIFY_END, CPRX_PH_RESUMED),
		       sz, rep->verified ? "verified" : rep->verify, NR_DEVICES,
		       rep->verified ? "verified" : "not verified");
	}
	if (rep->pf)
		human_checks(rep->pf);
	fflush(stdout);
}

static void print_update(const struct vm *vm, const struct report *rep)
{
	if (vm->human)
		human_update(vm, rep);
	else
		json_update(vm, rep);
}

/* A forced update goes on despite preflight: say what preflight thought. */
static void print_preflight(const struct vm *vm, const struct cprx_session *s,
			    int err, const struct cprx_preflight_report *pf)
{
	struct jw w;

	if (vm->human) {
		printf("preflight failed (%s: %s), forcing the update\n", errname(err),
		       sess_msg(s, err));
		human_checks(pf);
		fflush(stdout);
		return;
	}
	jw_begin(&w, "preflight");
	jw_bool(&w, "ok", false);
	jw_bool(&w, "forced", true);
	jw_str(&w, "errno", errname(err));
	jw_str(&w, "error", sess_msg(s, err));
	jw_str(&w, "hint", sess_hint(s));
	json_checks(&w, pf);
	jw_end(&w);
}

static void print_warnings(const struct cprx_preflight_report *pf)
{
	unsigned int i;

	for (i = 0; i < pf->nr_checks && i < CPRX_MAX_CHECKS; i++)
		if (pf->checks[i].verdict == CPRX_WARN)
			warn_msg("preflight %s: %s", pf->checks[i].name, pf->checks[i].reason);
}

/* A new image gives up: "rollback", or "error" when even that failed. */
static void print_event(const struct vm *vm, const char *event, const char *stage,
			int err, const char *error, const char *hint)
{
	struct jw w;

	if (vm->human) {
		printf("%s at %s: %s: %s%s%s%s\n", !strcmp(event, "rollback") ?
		       "rolling back" : "VM LOST", stage, errname(err), error,
		       hint && *hint ? " (hint: " : "", hint ? hint : "",
		       hint && *hint ? ")" : "");
		fflush(stdout);
		return;
	}
	jw_begin(&w, event);
	if (!strcmp(event, "error"))
		jw_bool(&w, "fatal", true);
	jw_u64(&w, "generation", vm->generation);
	jw_u64(&w, "pid", (uint64_t)getpid());
	jw_str(&w, "stage", stage);
	jw_str(&w, "errno", errname(err));
	jw_str(&w, "error", error);
	jw_str(&w, "hint", hint);
	jw_end(&w);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Our fds beyond stdio, without the directory fd that lists them. */
static unsigned int list_fds(int *fds, unsigned int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned int n = 0;
	int fd;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			fd = atoi(e->d_name);
			if (fd > 2 && fd != dirfd(d) && n < max)
				fds[n++] = fd;
		}
	closedir(d);
	qsort(fds, n, sizeof(*fds), cmp_int);
	return n;
}

static const char *fd_token(const struct vm *vm, int fd)
{
	unsigned int i;

	if (fd == vm->ram_fd)
		return RAM_TOKEN;
	for (i = 0; i < NR_DEV_FDS; i++)
		if (fd == vm->dev_fd[i])
			return dev_token[i];
	for (i = 0; i < vm->cfg.devices; i++)
		if (fd == vm->xdev_fd[i])
			return XDEV_TOKEN;
	return NULL;
}

static void json_fds(struct jw *w, const struct vm *vm, const int *fds,
		     unsigned int n)
{
	char path[64], target[PATH_MAX];
	unsigned int i;
	ssize_t len;

	jw_open(w, "fds", '[');
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		len = readlink(path, target, sizeof(target) - 1);
		target[len < 0 ? 0 : len] = '\0';
		jw_open(w, NULL, '{');
		jw_u64(w, "fd", (uint64_t)fds[i]);
		jw_str(w, "target", target);
		jw_str(w, "token", fd_token(vm, fds[i]));
		jw_close(w, '}');
	}
	jw_close(w, ']');
}

static void print_exit(const struct vm *vm, const char *verify, int code)
{
	long long rss = proc_kb("/proc/self/status", "VmRSS");
	uint64_t up = (now_ns() - vm->t_start_ns) / 1000000;
	unsigned int n, i, stray = 0;
	int fds[1024];
	struct jw w;

	n = list_fds(fds, ARRAY_SIZE(fds));
	if (vm->human) {
		for (i = 0; i < n; i++)
			stray += !fd_token(vm, fds[i]);
		printf("exit: generation %u, %u updates ok, %u refused, verify %s, "
		       "%" PRIu64 " guest writes, RSS %lld KiB, %u fds (%u stray), exit %d\n",
		       vm->generation, vm->updates_ok, vm->refused, verify,
		       guest_writes(vm), rss, n, stray, code);
		fflush(stdout);
		return;
	}
	jw_begin(&w, "exit");
	jw_u64(&w, "generation", vm->generation);
	jw_u64(&w, "pid", (uint64_t)getpid());
	jw_u64(&w, "updates_ok", vm->updates_ok);
	jw_u64(&w, "refused", vm->refused);
	jw_str(&w, "verify", verify);
	jw_u64(&w, "guest_writes", guest_writes(vm));
	jw_u64(&w, "uptime_ms", up);
	jw_key(&w, "vm_rss_kb");
	fprintf(w.f, "%lld", rss);
	json_fds(&w, vm, fds, n);
	jw_u64(&w, "exit_code", (uint64_t)code);
	jw_end(&w);
}

/* Old image: the update ------------------------------------------------------ */

static void report_init(struct report *rep, const struct cprx_session *s)
{
	const char *b = s ? cprx_backend_name(s) : NULL;

	memset(rep, 0, sizeof(*rep));
	snprintf(rep->backend, sizeof(rep->backend), "%s", b ? b : "none");
	rep->pause_ms = NAN;
}

/*
 * The update did not happen and we are still the old image: verify the guest
 * while it is stopped (a check that the failed attempt disturbed nothing),
 * resume it, say why.  Later updates are not tried: the same cause would
 * refuse them too.
 */
static void update_refused(struct vm *vm, struct cprx_session *s,
			   const char *stage, int err,
			   const struct cprx_preflight_report *pf)
{
	struct report rep;
	uint64_t t0, t1;

	report_init(&rep, s);
	rep.stage = stage;
	rep.err = err;
	rep.pf = pf;
	snprintf(rep.error, sizeof(rep.error), "%s", sess_msg(s, err));
	snprintf(rep.hint, sizeof(rep.hint), "%s", sess_hint(s));
	if (s)
		cprx_timeline(s, rep.ts);
	vcpus_stop(vm);
	t0 = now_ns();
	rep.verified = vm_verify(vm, rep.verify, sizeof(rep.verify)) &&
		       fds_cloexec(vm, rep.verify, sizeof(rep.verify));
	t1 = now_ns();
	vcpus_resume(vm);
	rep.resumed = true;
	/* only when the update itself had stopped the guest */
	if (rep.ts[CPRX_PH_STOP])
		rep.pause_ms = (double)(now_ns() - rep.ts[CPRX_PH_STOP] - (t1 - t0)) / 1e6;
	print_update(vm, &rep);
	cprx_session_close(s);
	vm->verify_failed |= !rep.verified;
	vm->refused++;
	vm->cfg.updates = 0;
}

static int preserve_all(struct vm *vm, struct cprx_session *s)
{
	unsigned int i;
	int r;

	r = cprx_preserve_ram(s, RAM_TOKEN, vm->ram_fd, vm->ram, vm->cfg.ram_bytes,
			      (enum cprx_page_kind)vm->cfg.page_kind);
	for (i = 0; !r && i < NR_DEV_FDS; i++)
		r = cprx_preserve_fd(s, dev_token[i], vm->dev_fd[i]);
	for (i = 0; !r && i < vm->cfg.devices; i++) {
		char tok[32];

		xdev_token(tok, sizeof(tok), i);
		r = cprx_preserve_fd(s, tok, vm->xdev_fd[i]);
	}
	return r;
}

static void blob_fill(const struct vm *vm, struct vm_blob *b)
{
	memset(b, 0, sizeof(*b));
	b->magic = BLOB_MAGIC;
	b->version = BLOB_VERSION;
	b->size = sizeof(*b);
	b->cfg = vm->cfg;
	b->generation = vm->generation;
	b->updates_ok = vm->updates_ok;
	b->refused = vm->refused;
	b->verify_failed = vm->verify_failed;
	b->t_start_ns = vm->t_start_ns;
	memcpy(b->stripe_sum, vm->stripe_sum, sizeof(b->stripe_sum));
	b->dev = vm->dev;
}

/*
 * The blob is added with the guest stopped: it carries the stripe sums,
 * which are only final then.
 */
static int stop_and_save(struct vm *vm, struct cprx_session *s, const char **stage)
{
	static struct vm_blob blob;
	int r;

	cprx_mark(s, CPRX_PH_STOP);
	vcpus_stop(vm);
	cprx_mark(s, CPRX_PH_STOPPED);
	blob_fill(vm, &blob);
	*stage = "blob";
	r = cprx_add_blob(s, BLOB_TOKEN, &blob, sizeof(blob));
	if (r < 0)
		return r;
	*stage = "save";
	r = cprx_save(s);
	if (r < 0 || !(vm->cfg.faults & F_CORRUPT))
		return r;
	*stage = "corrupt-state";
	return corrupt_state(vm->cfg.state_path);
}

static int update_prepare(struct vm *vm, struct cprx_session *s,
			  const char **stage)
{
	int r;

	if ((vm->cfg.faults & F_SECCOMP) && !vm->seccomp_on) {
		*stage = "seccomp-deny-exec";
		r = seccomp_deny_exec();
		if (r < 0)
			return r;
		vm->seccomp_on = true;
	}
	*stage = "devices";
	r = devs_arm(vm, vm->generation + 1);
	if (r < 0)
		return -EIO;
	*stage = "preserve";
	return preserve_all(vm, s);
}

static void exec_path_default(struct vm *vm)
{
	ssize_t n;

	if (vm->cfg.exec_path[0])
		return;
	n = readlink("/proc/self/exe", vm->cfg.exec_path, PATH_MAX - 1);
	if (n < 0)
		die(EXIT_SETUP, "readlink /proc/self/exe: %m; pass --exec PATH");
	vm->cfg.exec_path[n] = '\0';
}

/* Baselines (--baseline) ---------------------------------------------------
 *
 * Updates without libcprx, measured with the same stamps, so that the bench
 * can put the library's pause next to what a bare exec costs.  The handover
 * is one environment variable; the new image re-reads argv for the rest.
 */

static int keeper_pipe[2];
static char keeper_stack[64 * 1024] __attribute__((aligned(64)));

/* Shares our mm: the exec closes the pipe, it exits and tears the mm down. */
static int keeper_main(void *arg)
{
	struct sched_param sp = { 0 };
	char c;

	(void)arg;
	close(keeper_pipe[1]);
	sched_setscheduler(0, SCHED_IDLE, &sp);
	while (read(keeper_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	syscall(SYS_exit, 0);
	return 0;
}

/* A process, not a thread: execve kills our threads but not it. */
static pid_t keeper_start(void)
{
	pid_t pid;

	if (pipe2(keeper_pipe, O_CLOEXEC) < 0)
		die(EXIT_SETUP, "baseline keeper pipe: %m");
	pid = clone(keeper_main, keeper_stack + sizeof(keeper_stack),
		    CLONE_VM | SIGCHLD, NULL);
	if (pid < 0)
		die(EXIT_SETUP, "baseline keeper clone: %m");
	close(keeper_pipe[0]);
	return pid;	/* keeper_pipe[1] goes at the exec */
}

static void copy_path(const struct vm_config *c, char *buf, size_t len)
{
	const char *dir = getenv("TMPDIR");

	if (c->state_path[0])
		snprintf(buf, len, "%s", c->state_path);
	else
		snprintf(buf, len, "%s/cprx-vmm-copy.%d", dir && *dir ? dir : "/var/tmp",
			 (int)getpid());
}

/* Plain pwrite/pread in 8 MiB pieces, page cache included: a kind baseline. */
static void copy_io(struct vm *vm, const char *path, bool out)
{
	const size_t chunk = 8u << 20;
	uint64_t off, size = vm->cfg.ram_bytes;
	ssize_t n = 0;
	int fd;

	fd = open(path, out ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC :
		  O_RDONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		die(EXIT_SETUP, "baseline copy: %s: %m", path);
	for (off = 0; off < size; off += (uint64_t)n) {
		size_t len = size - off < chunk ? size - off : chunk;

		n = out ? pwrite(fd, vm->ram + off, len, (off_t)off) :
			  pread(fd, vm->ram + off, len, (off_t)off);
		if (n <= 0)
			die(EXIT_SETUP, "baseline copy: %s %s at %" PRIu64 ": %s", out ?
			    "writing" : "reading", path, off, n < 0 ? strerror(errno) :
			    "short file");
	}
	close(fd);
}

static void keeper_reap(struct vm *vm)
{
	if (vm->base_keeper > 0 && waitpid(vm->base_keeper, NULL, 0) < 0)
		warn_msg("reaping the baseline keeper %d: %m", (int)vm->base_keeper);
	vm->base_keeper = 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static void ram_map_all(struct vm *vm)
{
	volatile const uint8_t *p = vm->ram;
	uint64_t off;

	if (madvise(vm->ram, vm->cfg.ram_bytes, MADV_POPULATE_READ) == 0)
		return;
	for (off = 0; off < vm->cfg.ram_bytes; off += GPAGE)
		(void)p[off];
}

/* Any child left (a keeper tearing down, or one not yet reaped)? */
static bool have_children(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	char path[64], c;
	bool any = false;
	int fd;

	if (!d)
		return false;
	while (!any && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.16s/children", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		any = read(fd, &c, 1) == 1;
		close(fd);
	}
	closedir(d);
	return any;
}

/*
 * --settle: the last update's old mm may still be torn down by its keeper
 * (about 0.5 s of CPU at 16 GiB); updates minutes apart never see that, a
 * benchmark doing one every 100 ms would.
 */
static void settle(struct vm *vm)
{
	unsigned int i;

	if (!(vm->cfg.flags & CFG_SETTLE))
		return;
	keeper_reap(vm);
	for (i = 0; i < 3000 && have_children(); i++)
		sleep_ms(10);
}

static void __attribute__((noreturn)) baseline_update(struct vm *vm)
{
	enum baseline b = cfg_baseline(&vm->cfg);
	uint64_t ts[CPRX_PH_MAX] = { 0 };
	char env[PATH_MAX + 256], path[PATH_MAX];
	pid_t keeper = 0;

	keeper_reap(vm);	/* the last teardown stays out of this pause */
	copy_path(&vm->cfg, path, sizeof(path));
	ts[CPRX_PH_STOP] = now_ns();
	vcpus_stop(vm);
	ts[CPRX_PH_STOPPED] = ts[CPRX_PH_SAVE_START] = now_ns();
	if (b == BASE_COPY)
		copy_io(vm, path, true);
	ts[CPRX_PH_SAVE_END] = now_ns();
	if (b == BASE_FLOOR)
		keeper = keeper_start();
	/* copy: the RAM fd dies with the exec, RAM comes back from the file */
	if (b != BASE_COPY && fcntl(vm->ram_fd, F_SETFD, 0) < 0)
		die(EXIT_SETUP, "baseline: clearing FD_CLOEXEC on guest RAM: %m");
	fflush(NULL);
	ts[CPRX_PH_EXEC] = now_ns();
	snprintf(env, sizeof(env), "%u %u %u %d %d %" PRIu64 " %" PRIu64 " %" PRIu64
		 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %s", (unsigned int)b,
		 vm->generation, vm->cfg.updates, vm->ram_fd, (int)keeper,
		 vm->t_start_ns, ts[CPRX_PH_STOP], ts[CPRX_PH_STOPPED],
		 ts[CPRX_PH_SAVE_END], ts[CPRX_PH_EXEC], (uint64_t)vm->updates_ok, path);
	setenv(BASELINE_ENV, env, 1);
	execv(vm->cfg.exec_path, vm->argv);
	die(EXIT_LOST, "baseline: execv %s: %m", vm->cfg.exec_path);
}

/* New image of a baseline update: RAM back, vCPUs running, nothing else. */
static void baseline_incoming(struct vm *vm, const char *env)
{
	uint64_t t_in = now_ns(), ts[CPRX_PH_MAX] = { 0 }, ok = 0;
	unsigned int b = 0, gen = 0, left = 0;
	int ram_fd = -1, keeper = 0, pos = 0;
	struct report rep;

	if (sscanf(env, "%u %u %u %d %d %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		   " %" SCNu64 " %" SCNu64 " %n", &b, &gen, &left, &ram_fd, &keeper,
		   &vm->t_start_ns, &ts[CPRX_PH_STOP], &ts[CPRX_PH_STOPPED],
		   &ts[CPRX_PH_SAVE_END], &ts[CPRX_PH_EXEC], &ok, &pos) < 11 ||
	    b != cfg_baseline(&vm->cfg))
		die(EXIT_LOST, "baseline: bad $" BASELINE_ENV " '%.80s'", env);
	ts[CPRX_PH_SAVE_START] = ts[CPRX_PH_STOPPED];
	ts[CPRX_PH_INCOMING] = ts[CPRX_PH_RECLAIM_END] = t_in;
	if (b == BASE_COPY) {
		ram_create(vm, false);
		copy_io(vm, env + pos, false);
		unlink(env + pos);
	} else {
		vm->ram_fd = ram_fd;
		vm->ram = mmap(NULL, vm->cfg.ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
			       ram_fd, 0);
		if (vm->ram == MAP_FAILED)
			die(EXIT_LOST, "baseline: mmap of the inherited RAM fd %d: %m", ram_fd);
		vm->npages = vm->cfg.ram_bytes / GPAGE;
		ram_advise(vm);
	}
	ts[CPRX_PH_REMAP_END] = ts[CPRX_PH_VERIFY_END] = now_ns();
	vcpus_start(vm);
	ts[CPRX_PH_RESUMED] = now_ns();

	/*
	 * Off the clock from here.  libcprx's new image has all of RAM mapped
	 * after cprx-vmm's verify; map it all here too, or the next update
	 * would tear down a smaller address space than the library's does.
	 */
	if (b != BASE_COPY)
		ram_map_all(vm);
	/* the keeper may tear down at normal priority now */
	if (keeper > 0)
		setpriority(PRIO_PROCESS, (id_t)keeper, 0),
		sched_setscheduler(keeper, SCHED_OTHER, &(struct sched_param){ 0 });
	if (ram_fd >= 0 && b != BASE_COPY)
		fcntl(ram_fd, F_SETFD, FD_CLOEXEC);
	unsetenv(BASELINE_ENV);
	vm->base_keeper = keeper;
	vm->generation = gen + 1;
	vm->updates_ok = (unsigned int)ok + 1;
	vm->cfg.updates = left;
	exec_path_default(vm);
	devs_create(vm);
	report_init(&rep, NULL);
	memcpy(rep.ts, ts, sizeof(ts));
	rep.pause_ms = pause_ms(ts);
	rep.resumed = true;
	snprintf(rep.verify, sizeof(rep.verify), "not verified (baseline)");
	print_update(vm, &rep);
}

/* Returns only when the update was refused; the guest then runs on. */
static void update(struct vm *vm)
{
	static struct cprx_preflight_report pf;
	char *probe[] = { vm->cfg.exec_path, "--version", NULL };
	struct cprx_session *s = NULL;
	struct cprx_options o;
	const char *stage = "open";
	int r;

	if (cfg_baseline(&vm->cfg))
		baseline_update(vm);	/* execs or dies */
	session_options(&vm->cfg, &o);
	r = cprx_session_open(&s, VMM_NAME, &o);
	if (r < 0)
		goto refused;
	r = update_prepare(vm, s, &stage);
	if (r < 0)
		goto refused;
	memset(&pf, 0, sizeof(pf));
	pf.size = sizeof(pf);
	stage = "preflight";
	r = cprx_preflight(s, vm->cfg.exec_path,
			   vm->cfg.flags & CFG_NO_PROBE ? NULL : probe, &pf);
	if (r < 0 && !(vm->cfg.flags & CFG_FORCE)) {
		update_refused(vm, s, stage, r, &pf);
		return;
	}
	if (r < 0)
		print_preflight(vm, s, r, &pf);
	else
		print_warnings(&pf);
	r = stop_and_save(vm, s, &stage);
	if (r < 0)
		goto refused;
	fflush(NULL);	/* exec drops stdio buffers */
	stage = "exec";
	r = cprx_exec(s, vm->cfg.exec_path,
		      vm->cfg.faults & F_E2BIG ? e2big_argv(vm) : vm->argv);
refused:
	update_refused(vm, s, stage, r, NULL);
}

/* New image ---------------------------------------------------------------- */

/*
 * Hands the guest back to the previous binary; returns only if that failed.
 * @hint only when the failure is libcprx's.
 */
static void __attribute__((noreturn))
reject(struct vm *vm, struct cprx_session *s, const char *stage, int err,
       const char *why, const char *hint)
{
	char msg[CPRX_MSG_MAX];
	int r;

	snprintf(msg, sizeof(msg), "%s", why);
	print_event(vm, "rollback", stage, err, msg, hint);
	fflush(NULL);
	r = s ? cprx_rollback(s, msg) : -EINVAL;
	print_event(vm, "error", "rollback", r, sess_msg(s, r), sess_hint(s));
	exit(EXIT_LOST);
}

static int blob_check(const struct vm_blob *b, size_t len, char *why, size_t wlen)
{
	if (len != sizeof(*b) || b->magic != BLOB_MAGIC || b->version != BLOB_VERSION ||
	    b->size != sizeof(*b)) {
		snprintf(why, wlen, "blob '" BLOB_TOKEN "': %zu bytes, not a version %d "
			 "cprx-vmm blob of %zu", len, BLOB_VERSION, sizeof(*b));
		return -1;
	}
	if (!b->cfg.vcpus || b->cfg.vcpus > MAX_VCPUS || b->cfg.page_kind > 2 ||
	    !b->cfg.ram_bytes || b->cfg.ram_bytes % GPAGE ||
	    b->cfg.devices > MAX_XDEVS ||
	    b->cfg.ram_bytes / GPAGE < b->cfg.vcpus ||
	    !memchr(b->cfg.exec_path, 0, PATH_MAX) ||
	    !memchr(b->cfg.state_path, 0, PATH_MAX) ||
	    !memchr(b->dev.pipe_msg, 0, sizeof(b->dev.pipe_msg)) ||
	    !memchr(b->dev.sock_msg, 0, sizeof(b->dev.sock_msg))) {
		snprintf(why, wlen, "blob '" BLOB_TOKEN "': inconsistent configuration");
		return -1;
	}
	return 0;
}

/* A rollback image takes the state back as it was: no update happened. */
static void blob_load(struct vm *vm, struct cprx_session *s, bool rollback)
{
	static struct vm_blob blob;
	const struct vm_blob *b = &blob;
	const void *data;
	char why[256];
	size_t len;
	int r;

	r = cprx_get_blob(s, BLOB_TOKEN, &data, &len);
	if (r < 0)
		reject(vm, s, "blob", r, sess_msg(s, r), sess_hint(s));
	/* a copy: nothing promises the session's bytes are 8-byte aligned */
	memcpy(&blob, data, len < sizeof(blob) ? len : sizeof(blob));
	if (blob_check(b, len, why, sizeof(why)) < 0)
		reject(vm, s, "blob", -EBADMSG, why, NULL);
	vm->cfg = b->cfg;
	vm->generation = b->generation + !rollback;
	vm->updates_ok = b->updates_ok + !rollback;
	vm->refused = b->refused + rollback;
	vm->verify_failed = b->verify_failed;
	vm->t_start_ns = b->t_start_ns;
	memcpy(vm->stripe_sum, b->stripe_sum, sizeof(vm->stripe_sum));
	vm->dev = b->dev;
	if (rollback)
		vm->cfg.updates = 0;
	if (!rollback && cprx_generation(s) != vm->generation)
		warn_msg("libcprx says generation %u, the blob says %u",
		      cprx_generation(s), vm->generation);
}

static void reclaim_fd(struct vm *vm, struct cprx_session *s, const char *token,
		       int *fd)
{
	char why[CPRX_MSG_MAX];
	int r, fl;

	r = cprx_reclaim_fd(s, token, fd);
	if (r < 0) {
		snprintf(why, sizeof(why), "reclaiming %s: %s", token, sess_msg(s, r));
		reject(vm, s, "reclaim", r, why, sess_hint(s));
	}
	fl = fcntl(*fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		warn_msg("reclaimed %s (fd %d) without FD_CLOEXEC", token, *fd);
}

static void reclaim_devs(struct vm *vm, struct cprx_session *s, bool rollback)
{
	unsigned int i;
	int extra;

	for (i = 0; i < NR_DEV_FDS; i++)
		reclaim_fd(vm, s, dev_token[i], &vm->dev_fd[i]);
	for (i = 0; i < vm->cfg.devices; i++) {
		char tok[32];

		xdev_token(tok, sizeof(tok), i);
		reclaim_fd(vm, s, tok, &vm->xdev_fd[i]);
	}
	if (!(vm->cfg.faults & F_REQUIRE_TOKEN) || rollback)
		return;
	/* a device the old image never had: this must send us back */
	reclaim_fd(vm, s, EXTRA_TOKEN, &extra);
	close(extra);
	reject(vm, s, "reclaim", -EEXIST, "require-token: " EXTRA_TOKEN
	       " was reclaimed although the old image never preserved it", NULL);
}

static void reclaim_ram(struct vm *vm, struct cprx_session *s)
{
	char why[CPRX_MSG_MAX];
	uint64_t size = 0;
	void *addr = NULL;
	int r;

	r = cprx_reclaim_ram(s, RAM_TOKEN, &addr, &size, &vm->ram_fd);
	if (r < 0) {
		snprintf(why, sizeof(why), "reclaiming " RAM_TOKEN ": %s", sess_msg(s, r));
		reject(vm, s, "remap", r, why, sess_hint(s));
	}
	if (size != vm->cfg.ram_bytes) {
		snprintf(why, sizeof(why), RAM_TOKEN " is %" PRIu64 " bytes, the blob says %"
			 PRIu64, size, vm->cfg.ram_bytes);
		reject(vm, s, "remap", -EBADMSG, why, NULL);
	}
	vm->ram = addr;
	vm->npages = size / GPAGE;
	ram_advise(vm);
}

/* Injected refusals; before verify, which drains the devices. */
static void maybe_reject(struct vm *vm, struct cprx_session *s, bool rollback)
{
	if (vm->cfg.faults & F_REJECT_ALWAYS)
		reject(vm, s, "start", -ECANCELED,
		       "injected fault reject-always: this image refuses to run the guest",
		       NULL);
	if ((vm->cfg.faults & F_REJECT) && !rollback)
		reject(vm, s, "start", -ECANCELED,
		       "injected fault reject-state: the new image refuses the state",
		       NULL);
}

static void new_image(struct vm *vm, struct cprx_session *s)
{
	bool rollback = cprx_is_rollback(s);
	struct report rep;
	int r;

	vm->generation = cprx_generation(s);	/* until the blob says */
	blob_load(vm, s, rollback);
	reclaim_devs(vm, s, rollback);
	cprx_mark(s, CPRX_PH_RECLAIM_END);
	reclaim_ram(vm, s);
	cprx_mark(s, CPRX_PH_REMAP_END);
	maybe_reject(vm, s, rollback);

	report_init(&rep, s);
	rep.rollback = rollback;
	rep.verified = vm_verify(vm, rep.verify, sizeof(rep.verify));
	vm->verify_failed |= !rep.verified;
	cprx_mark(s, CPRX_PH_VERIFY_END);
	vcpus_start(vm);
	cprx_mark(s, CPRX_PH_RESUMED);
	r = cprx_commit(s);
	if (r < 0)
		warn_msg("cprx_commit: %s", sess_msg(s, r));
	cprx_timeline(s, rep.ts);
	rep.pause_ms = pause_ms(rep.ts);
	print_update(vm, &rep);
	cprx_session_close(s);
}

/* The incoming state is unusable: the previous binary may still read it. */
static void __attribute__((noreturn))
incoming_failed(struct vm *vm, struct cprx_session *s, int err)
{
	char why[CPRX_MSG_MAX];

	snprintf(why, sizeof(why), "incoming state unusable: %s", sess_msg(s, err));
	if (!s) {
		print_event(vm, "error", "incoming", err, why, NULL);
		exit(EXIT_LOST);
	}
	vm->generation = cprx_generation(s);
	reject(vm, s, "incoming", err, why, sess_hint(s));
}

/* Both ---------------------------------------------------------------------- */

static void fresh_start(struct vm *vm)
{
	vm->t_start_ns = now_ns();
	exec_path_default(vm);
	ram_create(vm, true);
	devs_create(vm);
	vcpus_start(vm);
}

static void set_output(struct vm *vm)
{
	vm->human = (vm->cfg.flags & CFG_HUMAN) ||
		    (!(vm->cfg.flags & CFG_JSON) && isatty(STDOUT_FILENO));
}

static int finish(struct vm *vm)
{
	char msg[320];
	bool ok;
	int code;

	vcpus_stop(vm);
	if (cfg_baseline(&vm->cfg)) {	/* nothing was carried over to check */
		keeper_reap(vm);
		print_exit(vm, "not verified (baseline)", EXIT_OK);
		return EXIT_OK;
	}
	ok = vm_verify(vm, msg, sizeof(msg));
	if (ok && vm->verify_failed)
		snprintf(msg, sizeof(msg), "FAIL: an earlier verify failed");
	code = !ok || vm->verify_failed ? EXIT_VERIFY :
	       vm->refused ? EXIT_REFUSED : EXIT_OK;
	print_exit(vm, msg, code);
	return code;
}

int main(int argc, char **argv)
{
	struct vm *vm = &the_vm;
	struct cprx_session *s = NULL;
	struct cprx_options o;
	bool incoming = getenv(CPRX_ENV) != NULL;
	int r, perr;

	/* a new image takes its config from the blob: argv is only a fallback */
	perr = parse_options(argc, argv, &vm->cfg);
	if (perr < 0 && !incoming)
		return EXIT_SETUP;
	vm->argc = argc;
	vm->argv = argv;
	vm->ram_fd = -1;
	memset(vm->dev_fd, -1, sizeof(vm->dev_fd));
	memset(vm->xdev_fd, -1, sizeof(vm->xdev_fd));

	if (getenv(BASELINE_ENV) && perr == 0) {
		set_output(vm);
		baseline_incoming(vm, getenv(BASELINE_ENV));
		goto run;
	}
	session_options(&vm->cfg, &o);
	r = cprx_incoming(&s, &o);
	if (r < 0)
		incoming_failed(vm, s, r);
	if (r == 0 && perr < 0)
		return EXIT_SETUP;
	set_output(vm);
	if (r == 1)
		new_image(vm, s);
	else
		fresh_start(vm);
	set_output(vm);	/* the blob may have brought other output flags */
run:

	while (vm->cfg.updates > 0) {
		settle(vm);
		sleep_ms(vm->cfg.run_ms);
		vm->cfg.updates--;
		update(vm);	/* returns only when refused */
	}
	sleep_ms(vm->cfg.run_ms);
	return finish(vm);
}
