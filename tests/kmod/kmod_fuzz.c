// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftest: a bounded random-ioctl fuzzer.
 *
 * Environment: CPRX_FUZZ_SEED, CPRX_FUZZ_CALLS, CPRX_FUZZ_THREADS.
 */
#include "kmod_fuzz.h"

/*
 * Random commands (mostly real ones), sizes, tails, tokens, fds and flags on
 * /dev/cprx and session fds, from two threads; now and then sessions come
 * and go, a child process forks off and tries its luck, and the fuzzer
 * execs itself with its sessions armed (at most FZ_EXECS times) to carry on
 * with RETRIEVE_SESSION and RETRIEVE_FD.  Calls are counted across images
 * in a shared memfd.  The test passes if nothing crashed; the runner checks
 * the kernel log.  A seed replays exactly with CPRX_FUZZ_THREADS=1.
 */

/* @size bytes that end right at a PROT_NONE page: overruns fault. */
static void *guarded(size_t size)
{
	size_t len = (size + PAGE - 1) / PAGE * PAGE;
	uint8_t *p = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + len, PAGE, PROT_NONE))
		return NULL;
	return p + len - size;
}

/* A new session "fz-@i" in slot @i. */
static void fz_open(struct fz_thread *t, int i)
{
	struct cprx_ioctl_create_session c = { .size = sizeof(c) };
	int old;

	snprintf((char *)c.name, sizeof(c.name), "fz-%d", i);
	if (fz_call(t, t->f->dev, CPRX_IOCTL_CREATE_SESSION, &c))
		return;
	old = __atomic_exchange_n(&t->f->sess[i], c.fd, __ATOMIC_RELAXED);
	if (old >= 0)
		close(old);
}

/* A session goes, maybe another comes. */
static void fz_churn(struct fz_thread *t)
{
	int i = fz_below(t, FZ_SESS);
	int old = __atomic_exchange_n(&t->f->sess[i], -1, __ATOMIC_RELAXED);

	if (old >= 0)
		close(old);
	if (fz_pct(t, 70))
		fz_open(t, i);
}

static void fz_step(struct fz_thread *t);

/* A child with copies of everything: all it may own is its own sessions. */
static void fz_fork(struct fz_thread *t)
{
	struct fz_thread c = *t;
	pid_t pid = fork();

	if (pid < 0)
		return;
	if (!pid) {
		c.child = true;
		c.rng ^= 0xc41d;
		for (int i = 0; i < 64; i++)
			fz_step(&c);
		_exit(0);
	}
	__atomic_add_fetch(&t->f->st->forks, 1, __ATOMIC_RELAXED);
	reap(pid);
}

static void fz_step(struct fz_thread *t)
{
	uint32_t r = fz_below(t, 1000);

	if (r < 15)
		fz_churn(t);
	else if (r < 17 && !t->child)
		fz_fork(t);
	else if (r < 120)
		fz_random_cmd(t);
	else
		fz_cmd(t);
}

/* Closes what calls handed out and nobody kept (sizes too small...). */
static void fz_sweep(struct fz *f)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int fd;

	if (!d)
		return;
	while ((e = readdir(d))) {
		fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d) && !fz_known(f, fd))
			close(fd);
	}
	closedir(d);
}

/* Arms what it has and goes on in a new image. */
static void fz_exec(struct fz_thread *t)
{
	struct cprx_session_arm a = { .size = sizeof(a) };
	struct fz *f = t->f;
	int fd;

	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < FZ_SESS; i++) {
		fd = __atomic_load_n(&f->sess[i], __ATOMIC_RELAXED);
		if (fd < 0)
			continue;
		/* something for the next image to take back */
		for (uint64_t tok = 0; tok < 4; tok++) {
			struct cprx_session_preserve_fd p = {
				.size = sizeof(p), .token = tok,
				.fd = f->pool[fz_below(t, FZ_POOL)],
			};

			fz_call(t, fd, CPRX_SESSION_PRESERVE_FD, &p);
		}
		fz_call(t, fd, CPRX_SESSION_ARM, &a);
		keep_on_exec(fd);
	}
	keep_on_exec(f->stats_fd);
	__atomic_add_fetch(&f->st->execs, 1, __ATOMIC_RELAXED);
	exec_or_die("fuzz", f->stats_fd, 0, 0);
}

static void *fz_loop(void *arg)
{
	struct fz_thread *t = arg;
	struct fz_stats *st = t->f->st;
	uint64_t n, i = 0;

	while (!__atomic_load_n(&t->f->stop, __ATOMIC_RELAXED)) {
		n = __atomic_load_n(&st->calls, __ATOMIC_RELAXED);
		if (n >= st->target)
			break;
		fz_step(t);
		if (t->id)
			continue;
		if (++i % FZ_SWEEP == 0)
			fz_sweep(t->f);
		if (st->execs < FZ_EXECS &&
		    n >= (st->execs + 1) * st->target / (FZ_EXECS + 1))
			fz_exec(t);
	}
	return NULL;
}

/* Files to pin: one of each kind, give or take. */
static void fz_pool(struct fz *f)
{
	int i = 0, p[2], s[2];

	f->pool[i++] = memfd_create("fz", MFD_CLOEXEC);
	f->pool[i++] = memfd_pattern(1 << 16, 0);
	f->pool[i++] = eventfd(1, EFD_CLOEXEC);
	f->pool[i++] = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
	if (!pipe2(p, O_CLOEXEC)) {
		f->pool[i++] = p[0];
		f->pool[i++] = p[1];
	}
	if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s)) {
		f->pool[i++] = s[0];
		f->pool[i++] = s[1];
	}
	f->pool[i++] = open("/dev/null", O_RDWR | O_CLOEXEC);
	f->pool[i++] = open(th_self, O_RDONLY | O_CLOEXEC);
	f->pool[i++] = open("/", O_PATH | O_CLOEXEC);
	f->pool[i++] = epoll_create1(EPOLL_CLOEXEC);
	f->pool[i++] = f->dev;
	f->pool[i++] = open_dev();
	while (i < FZ_POOL)
		f->pool[i++] = -1;
}

/* After an exec: the sessions the last image armed, and their pins. */
static void fz_adopt(struct fz_thread *t)
{
	struct cprx_ioctl_retrieve_session a;
	struct cprx_session_retrieve_fd r;
	char link[64], path[64];
	struct fz *f = t->f;
	struct dirent *e;
	int fd, n = 0;
	DIR *d = opendir("/proc/self/fd");

	/* the inherited session fds: old files, same sessions */
	while (d && (e = readdir(d))) {
		fd = atoi(e->d_name);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		memset(link, 0, sizeof(link));
		if (fd <= 2 || fz_known(f, fd) ||
		    readlink(path, link, sizeof(link) - 1) < 0)
			continue;
		if (strcmp(link, "anon_inode:[cprx-session]") || n >= FZ_SESS)
			close(fd);
		else
			f->sess[n++] = fd;
	}
	if (d)
		closedir(d);
	for (int i = 0; i < FZ_SESS + 2; i++) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		snprintf((char *)a.name, sizeof(a.name), "fz-%d", i);
		if (fz_call(t, f->dev, CPRX_IOCTL_RETRIEVE_SESSION, &a))
			continue;
		for (uint64_t tok = 0; tok < 16; tok++) {
			r = (struct cprx_session_retrieve_fd){
				.size = sizeof(r), .token = tok };
			if (!fz_call(t, a.fd, CPRX_SESSION_RETRIEVE_FD, &r))
				close(r.fd);
		}
		fz_keep_session(t, a.fd);
	}
}

static int fz_thread_init(struct fz_thread *t, struct fz *f, int id)
{
	uint64_t seed = f->st->seed;

	*t = (struct fz_thread){ .f = f, .id = id };
	t->rng = seed ^ (f->st->execs * 0x9e3779b97f4a7c15ull) ^
		 ((uint64_t)id << 56);
	fz_rand(t);
	t->buf = guarded(FZ_BUF);
	t->ents = guarded(f->nr_ents * sizeof(*t->ents));
	return t->buf && t->ents ? 0 : -ENOMEM;
}

/* One fuzzer image: the first, or one after an exec. */
static int fz_main(int stats_fd)
{
	struct fz f = { .stats_fd = stats_fd };
	struct fz_thread th[2];
	pthread_t tid;
	long max_pins = read_long(PARAMS "max_pins");
	int nr;

	f.st = mmap(NULL, sizeof(*f.st), PROT_READ | PROT_WRITE, MAP_SHARED,
		    stats_fd, 0);
	CHECK(f.st != MAP_FAILED, "mmap: %m");
	CHECK(!fcntl(stats_fd, F_SETFD, FD_CLOEXEC), "fcntl: %m");
	f.dev = open_dev();
	CHECK(f.dev >= 0, "open %s: %m", CPRX_DEVICE);
	f.nr_ents = max_pins > 4096 ? max_pins : 4096;
	for (int i = 0; i < FZ_SESS; i++)
		f.sess[i] = -1;
	fz_pool(&f);
	nr = f.st->threads > 1 ? 2 : 1;
	for (int i = 0; i < nr; i++)
		CHECK(!fz_thread_init(&th[i], &f, i), "no memory");
	if (f.st->execs)
		fz_adopt(&th[0]);
	for (int i = 0; i < FZ_SESS; i++)
		if (f.sess[i] < 0)
			fz_open(&th[0], i);
	if (nr > 1)
		CHECK(!pthread_create(&tid, NULL, fz_loop, &th[1]), "thread");
	fz_loop(&th[0]);
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	if (nr > 1)
		pthread_join(tid, NULL);
	return 0;
}

KMOD_EXEC_CASE(fuzz, stats_fd, a1, a2)
{
	(void)a1;
	(void)a2;
	return fz_main(stats_fd);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static void fz_print(const struct fz_stats *st, long long ns)
{
	char buf[2048];
	size_t n = 0;

	TH_LOG("fuzz: %" PRIu64 " calls in %lld ms, %" PRIu64 " execs, %"
	       PRIu64 " forks, %" PRIu64 " thread(s)", st->calls, ns / 1000000,
	       st->execs, st->forks, st->threads);
	for (int i = 0; i < FZ_NERR && n < sizeof(buf) - 64; i++) {
		const char *name = i == FZ_NERR - 1 ? "other" :
				   i ? strerrorname_np(i) : "ok";

		if (st->err[i])
			n += snprintf(buf + n, sizeof(buf) - n, " %s:%" PRIu64,
				      name ? name : "?", st->err[i]);
	}
	TH_LOG("fuzz: results:%s", buf);
	n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(fz_cmds); i++)
		n += snprintf(buf + n, sizeof(buf) - n, " %s:%" PRIu64,
			      fz_cmds[i].name, st->ok[i]);
	TH_LOG("fuzz: successes:%s", buf);
}

/*
 * Test Case: fuzz
 * 100000 random ioctls (CPRX_FUZZ_CALLS) from two threads, with forks and
 * 8 execs carrying armed sessions: the fuzzer exits cleanly having made them
 * all, and none of its sessions outlives it.  The runner then checks the
 * kernel log.
 */
TEST_F_TIMEOUT(kmod, fuzz, 900)
{
	struct fz_stats *st;
	long long t0;
	int fd, status;
	pid_t pid;

	fd = memfd_create("fz-stats", MFD_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, sizeof(*st)));
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, st);
	st->seed = env_u64("CPRX_FUZZ_SEED", (uint64_t)now_ns() ^ getpid());
	st->target = env_u64("CPRX_FUZZ_CALLS", 100000);
	st->threads = env_u64("CPRX_FUZZ_THREADS", 2);
	TH_LOG("fuzz: seed %#" PRIx64 " (CPRX_FUZZ_SEED; CPRX_FUZZ_THREADS=1 replays exactly), %" PRIu64 " calls",
	       st->seed, st->target);
	t0 = now_ns();
	pid = fork_flushed();
	ASSERT_GE(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fz_main(fd));
	}
	track(self, pid);
	status = reap_kid(self, pid);
	fz_print(st, now_ns() - t0);
	EXPECT_EQ(0, status);
	EXPECT_GE(st->calls, st->target);
	EXPECT_EQ(FZ_EXECS, st->execs);
	/* nothing of the fuzzer's outlives it */
	EXPECT_EQ(0, proc_count(pid, NULL, NULL, 0));
}

TEST_HARNESS_MAIN
