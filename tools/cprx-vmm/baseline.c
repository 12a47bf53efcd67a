/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Baselines (--baseline): updates without libcprx, measured with the same
 * stamps, so that the bench can put the library's pause next to what a bare
 * exec costs.  The handover is one environment variable; the new image
 * re-reads argv for the rest.  Also --settle, which waits for the keeper
 * that tears an old mm down.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "vmm.h"

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

/*
 * Plain pwrite/pread in 8 MiB pieces, page cache included: a kind baseline.
 * @sync: fsync before close (across a kexec the page cache is gone).
 */
static void copy_io(struct vm *vm, const char *path, bool out, bool sync)
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
	if (sync && fsync(fd) < 0)
		die(EXIT_LOST, "baseline copy: fsync %s: %m", path);
	close(fd);
}

void keeper_reap(struct vm *vm)
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
void settle(struct vm *vm)
{
	unsigned int i;

	if (!(vm->cfg.flags & CFG_SETTLE))
		return;
	keeper_reap(vm);
	for (i = 0; i < 3000 && have_children(); i++)
		sleep_ms(10);
}

/* --kexec --baseline copy: the blob and the TSC stamps beside RAM's file. */
struct kexec_meta {
	struct vm_blob blob;
	struct kexec_clock kc;
};

static void meta_path(const struct vm_config *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s.meta", c->state_path);
}

bool baseline_kexec_pending(const struct vm_config *c)
{
	char meta[PATH_MAX + 8];

	if (cfg_baseline(c) != BASE_COPY || !(c->flags & CFG_KEXEC))
		return false;
	meta_path(c, meta, sizeof(meta));
	return !access(meta, F_OK);
}

static void meta_io(const char *path, struct kexec_meta *m, bool out)
{
	int fd = open(path, out ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC :
		      O_RDONLY | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0)
		die(EXIT_LOST, "baseline copy: %s: %m", path);
	n = out ? write(fd, m, sizeof(*m)) : read(fd, m, sizeof(*m));
	if (n != (ssize_t)sizeof(*m) || (out && fsync(fd) < 0))
		die(EXIT_LOST, "baseline copy: %s %s: %s", out ? "writing" : "reading",
		    path, n < 0 ? strerror(errno) : "short");
	close(fd);
}

/*
 * What migration through storage does across a host kernel update: guest
 * RAM and state to a file that outlives the kernel, fsync'd; this process
 * exits and one started after the kexec reads them back.
 */
static void __attribute__((noreturn)) baseline_kexec_save(struct vm *vm)
{
	static struct kexec_meta m;
	uint64_t ts[CPRX_PH_MAX] = { 0 }, prepared_tsc;
	char meta[PATH_MAX + 8], msg[CPRX_MSG_MAX];

	meta_path(&vm->cfg, meta, sizeof(meta));
	/* devices as --kexec leaves them: armed, their state in the blob */
	if (devs_arm(vm, vm->generation + 1) < 0)
		die(EXIT_SETUP, "baseline copy: arming the devices failed");
	ts[CPRX_PH_STOP] = now_ns();
	vm->kc.stop_tsc = tsc_now();
	vcpus_stop(vm);
	ts[CPRX_PH_STOPPED] = ts[CPRX_PH_SAVE_START] = now_ns();
	copy_io(vm, vm->cfg.state_path, true, true);
	blob_fill(vm, &m.blob);
	m.kc = vm->kc;
	meta_io(meta, &m, true);
	ts[CPRX_PH_SAVE_END] = now_ns();
	prepared_tsc = tsc_now();
	snprintf(msg, sizeof(msg), "guest RAM in %.300s; start " VMM_NAME " again with "
		 "the same options after the kexec", vm->cfg.state_path);
	print_kexec_prepared(vm, msg, prepared_tsc, ts);
	fflush(NULL);
	exit(EXIT_OK);
}

/* After the kexec: RAM and state back from the files, verified, resumed. */
void baseline_kexec_incoming(struct vm *vm)
{
	static struct kexec_meta m;
	char meta[PATH_MAX + 8];
	struct report rep;

	meta_path(&vm->cfg, meta, sizeof(meta));
	meta_io(meta, &m, false);
	if (m.blob.magic != BLOB_MAGIC || m.blob.version != BLOB_VERSION ||
	    m.blob.size != sizeof(m.blob) || m.blob.cfg.ram_bytes != vm->cfg.ram_bytes)
		die(EXIT_LOST, "baseline copy: %s is not this guest's state", meta);
	vm->across_kexec = true;
	vm->kc = m.kc;
	vm->cfg.vcpus = m.blob.cfg.vcpus;
	vm->generation = m.blob.generation + 1;
	vm->updates_ok = m.blob.updates_ok + 1;
	vm->t_start_ns = now_ns();	/* the old kernel's clock means nothing */
	memcpy(vm->stripe_sum, m.blob.stripe_sum, sizeof(vm->stripe_sum));
	vm->dev = m.blob.dev;
	vm->cfg.updates = m.blob.cfg.updates;
	ram_create(vm, false);
	copy_io(vm, vm->cfg.state_path, false, false);
	vm->xt[XT_REMAP_END] = tsc_now();
	exec_path_default(vm);
	report_init(&rep, NULL);
	if (devs_restore(vm) < 0)
		die(EXIT_LOST, "baseline copy: the device state in %s is wrong", meta);
	rep.verified = vm_verify(vm, rep.verify, sizeof(rep.verify));
	vm->verify_failed |= !rep.verified;
	vm->xt[XT_VERIFY_END] = tsc_now();
	vcpus_start(vm);
	vm->xt[XT_RESUMED] = tsc_now();
	unlink(vm->cfg.state_path);
	unlink(meta);
	rep.resumed = true;
	rep.tsc_hz = tsc_hz(vm);
	rep.pause_ms = kexec_pause_ms(vm, rep.tsc_hz);
	print_update(vm, &rep);
}

void __attribute__((noreturn)) baseline_update(struct vm *vm)
{
	enum baseline b = cfg_baseline(&vm->cfg);
	uint64_t ts[CPRX_PH_MAX] = { 0 };
	char env[PATH_MAX + 256], path[PATH_MAX];
	pid_t keeper = 0;

	if (vm->cfg.flags & CFG_KEXEC)
		baseline_kexec_save(vm);

	keeper_reap(vm);	/* the last teardown stays out of this pause */
	copy_path(&vm->cfg, path, sizeof(path));
	ts[CPRX_PH_STOP] = now_ns();
	vcpus_stop(vm);
	ts[CPRX_PH_STOPPED] = ts[CPRX_PH_SAVE_START] = now_ns();
	if (b == BASE_COPY)
		copy_io(vm, path, true, false);
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
void baseline_incoming(struct vm *vm, const char *env)
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
		copy_io(vm, env + pos, false, false);
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
