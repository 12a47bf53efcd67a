/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Command line: the options, --help, their parsing into a struct vm_config
 * and the checks across options; and the libcprx session options they make.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vmm.h"

/* --inject FAULT: the names, their bits and --help's words for them. */
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
	{ "exit-before-commit", F_EXIT_EARLY,
	  "the new image exits 1 before it commits: libcprx rolls back by itself" },
	{ "crash-before-commit", F_CRASH_EARLY,
	  "the new image dies of SIGSEGV before it commits: rolled back too" },
	{ "kexec-device", F_KEXEC_DEVICE,
	  "--kexec also preserves the device fds, which preflight must refuse" },
	{ "kill-before-commit", F_KILL_EARLY,
	  "the new image is SIGKILLed before it commits: only a guardian helps" },
	{ "forge-guardian-exe", F_FORGE_EXE,
	  "a hostile VMM: its fds on its binary name $CPRX_VMM_FORGED_EXE" },
};

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
	OPT_KEXEC,
	OPT_NAME,
	OPT_CRASH_WINDOW,
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
	{ "kexec",	no_argument,	   NULL, OPT_KEXEC },
	{ "name",	required_argument, NULL, OPT_NAME },
	{ "crash-window", required_argument, NULL, OPT_CRASH_WINDOW },
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
	      "  --backend NAME    auto (default, honours $" CPRX_ENV_BACKEND "), cloexec, kmod\n"
	      "                    or luo\n"
	      "  --kexec           update across a kexec (backend luo, cprx-luod): preserve\n"
	      "                    RAM, carry the devices' state in the blob, hand the session\n"
	      "                    to cprx-luod and exit 0; started again with the same\n"
	      "                    options after the kexec, resume the guest from it\n"
	      "                    With --baseline copy --state PATH: RAM to PATH (fsync'd),\n"
	      "                    exit 0; started again after the kexec, read it back\n"
	      "  --name NAME       the session's name (default " VMM_NAME "; one per VMM of a\n"
	      "                    uid with --kexec; at most 47 bytes)\n"
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
	      "  --crash-window MS each update SIGKILLs this VMM at a random point up to MS ms\n"
	      "                    after its exec, unless the new image commits first (tests\n"
	      "                    of cprx-guardian, which restarts the previous binary)\n"
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
	      "3 an update was refused but the guest kept running intact, 4 the VM is lost\n"
	      "(with --kexec: also when the kexec lost the state, e.g. into a kernel without\n"
	      "/dev/liveupdate; cprx-luod unreachable is 1: nothing taken, run again).\n", f);
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
	static const char *const backends[] = { "auto", "cloexec", "kmod", "luo" };
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
		return parse_choice("backend", arg, backends, 4, &c->backend);
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
	case OPT_KEXEC:
		c->flags |= CFG_KEXEC;
		return 0;
	case OPT_NAME:
		if (!*arg || strlen(arg) > SESSION_NAME_MAX || strpbrk(arg, "/. ")) {
			bad_opt("name", "'%s' is not 1 to %d bytes without '/', '.' "
				"or spaces", arg, SESSION_NAME_MAX);
			return -1;
		}
		snprintf(c->name, sizeof(c->name), "%s", arg);
		return 0;
	case OPT_CRASH_WINDOW:
		if (parse_uint(arg, 1, 600000, &c->crash_window_ms) < 0) {
			bad_opt("crash-window", "'%s' is not a number of ms from 1 to 600000",
				arg);
			return -1;
		}
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
	/* the kexec baseline: RAM through a file that outlives the kernel */
	if ((c->flags & CFG_KEXEC) && cfg_baseline(c)) {
		if (cfg_baseline(c) != BASE_COPY || !c->state_path[0]) {
			bad_opt("kexec", "takes only --baseline copy, with --state PATH");
			return -1;
		}
	} else if (c->flags & CFG_KEXEC) {
		if (c->backend != CPRX_BACKEND_AUTO &&
		    c->backend != CPRX_BACKEND_LUO) {
			bad_opt("kexec", "needs the luo backend");
			return -1;
		}
		if (cfg_baseline(c) || c->state_path[0]) {
			bad_opt("kexec", "does not combine with --baseline or "
				"--state PATH");
			return -1;
		}
		c->backend = CPRX_BACKEND_LUO;
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
	snprintf(c->name, sizeof(c->name), "%s", VMM_NAME);
}

int parse_options(int argc, char **argv, struct vm_config *c)
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

void session_options(const struct vm_config *c, struct cprx_options *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->backend = (enum cprx_backend)c->backend;
	o->target = c->state_path[0] ? CPRX_STATE_FILE : CPRX_STATE_MEMFD;
	o->state_path = c->state_path[0] ? c->state_path : NULL;
	o->no_deferred_teardown = c->flags & CFG_INLINE;
	/* after a kexec, cprx_incoming asks cprx-luod for this session */
	o->kexec_session = c->flags & CFG_KEXEC ? c->name : NULL;
}
