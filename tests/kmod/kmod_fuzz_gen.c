// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The cprx.ko fuzzer's generator: which command, with what size, tail,
 * tokens, fds, names and flags, on which file; and the bookkeeping of each
 * call (counts by result and command, the fds calls hand out).
 */
#include "kmod_fuzz.h"

const struct fz_cmd fz_cmds[] = {
	{ "CREATE_SESSION", CPRX_IOCTL_CREATE_SESSION,
	  sizeof(struct cprx_ioctl_create_session), true, 6 },
	{ "RETRIEVE_SESSION", CPRX_IOCTL_RETRIEVE_SESSION,
	  sizeof(struct cprx_ioctl_retrieve_session), true, 6 },
	{ "PRESERVE_FD", CPRX_SESSION_PRESERVE_FD,
	  sizeof(struct cprx_session_preserve_fd), false, 30 },
	{ "UNPRESERVE_FD", CPRX_SESSION_UNPRESERVE_FD,
	  sizeof(struct cprx_session_unpreserve_fd), false, 10 },
	{ "ARM", CPRX_SESSION_ARM, sizeof(struct cprx_session_arm), false,
	  12 },
	{ "RETRIEVE_FD", CPRX_SESSION_RETRIEVE_FD,
	  sizeof(struct cprx_session_retrieve_fd), false, 14 },
	{ "FINISH", CPRX_SESSION_FINISH, sizeof(struct cprx_session_finish),
	  false, 2 },
	{ "QUERY", CPRX_SESSION_QUERY, sizeof(struct cprx_session_query),
	  false, 20 },
	{ "PRESERVE_FDS", CPRX_SESSION_PRESERVE_FDS,
	  sizeof(struct cprx_session_preserve_fds), false, 10 },
};
_Static_assert(ARRAY_SIZE(fz_cmds) == FZ_NCMDS, "fz_stats.ok");

/* splitmix64 */
uint64_t fz_rand(struct fz_thread *t)
{
	uint64_t z = (t->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint32_t fz_below(struct fz_thread *t, uint32_t n)
{
	return fz_rand(t) % n;
}

bool fz_pct(struct fz_thread *t, uint32_t pct)
{
	return fz_below(t, 100) < pct;
}

int fz_call(struct fz_thread *t, int fd, unsigned long cmd, void *a)
{
	int err = ioctl(fd, cmd, a) ? errno : 0;
	struct fz_stats *st = t->f->st;

	__atomic_add_fetch(&st->calls, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&st->err[err < FZ_NERR ? err : FZ_NERR - 1], 1,
			   __ATOMIC_RELAXED);
	for (size_t i = 0; !err && i < ARRAY_SIZE(fz_cmds); i++)
		if (cmd == fz_cmds[i].cmd)
			__atomic_add_fetch(&st->ok[i], 1, __ATOMIC_RELAXED);
	return err;
}

static uint64_t fz_token(struct fz_thread *t)
{
	static const uint64_t odd[] = { 0, ~0ull, 1ull << 63, 1ull << 32 };
	uint32_t r = fz_below(t, 10);

	if (r < 7)
		return fz_below(t, 16);
	if (r < 9)
		return odd[fz_below(t, ARRAY_SIZE(odd))];
	return fz_rand(t);
}

/* A session fd, if there is one: empty slots only make EBADF. */
static int fz_session(struct fz_thread *t)
{
	int fd = -1;

	for (int i = 0; i < 4 && fd < 0; i++)
		fd = __atomic_load_n(&t->f->sess[fz_below(t, FZ_SESS)],
				     __ATOMIC_RELAXED);
	return fd;
}

/* An fd to pin: mostly real files, sometimes sessions or nonsense. */
static int fz_fd(struct fz_thread *t)
{
	static const int bad[] = { -1, -100, INT_MAX, 1 << 20, 1023, 4096 };
	uint32_t r = fz_below(t, 20);

	if (r < 12)
		return t->f->pool[fz_below(t, FZ_POOL)];
	if (r < 15)
		return fz_session(t);
	if (r < 16)
		return t->f->dev;
	return bad[fz_below(t, ARRAY_SIZE(bad))];
}

/* Mostly the few names sessions have here, so that they collide. */
static void fz_name(struct fz_thread *t, uint8_t *name)
{
	uint32_t r = fz_below(t, 10), len;

	memset(name, 0, CPRX_SESSION_NAME_LEN);
	if (r < 7) {
		snprintf((char *)name, CPRX_SESSION_NAME_LEN, "fz-%u",
			 fz_below(t, FZ_SESS + 2));
	} else if (r == 8) {
		memset(name, 'n', CPRX_SESSION_NAME_LEN);	/* no NUL */
	} else if (r == 9) {
		len = fz_below(t, CPRX_SESSION_NAME_LEN);
		for (uint32_t i = 0; i < len; i++)
			name[i] = 1 + fz_below(t, 255);
	}
}

static uint32_t fz_count(struct fz_thread *t)
{
	static const uint32_t odd[] = {
		0, 1, 2, 15, 16, 17, 255, 256, 4095, 4096, 4097,
		1u << 31, UINT32_MAX,
	};

	if (fz_pct(t, 50))
		return fz_below(t, 80);
	return odd[fz_below(t, ARRAY_SIZE(odd))];
}

/* Where QUERY writes: never memory of ours that is not fair game. */
static uint64_t fz_entries(struct fz_thread *t)
{
	switch (fz_below(t, 10)) {
	case 0:
		return 0;
	case 1:
		return (uintptr_t)(t->buf + FZ_BUF);	/* the guard page */
	case 2:
		return 0xffff888000000000ull;		/* the kernel's */
	case 3:
		return (uintptr_t)(t->buf + fz_below(t, FZ_BUF));
	default:
		return (uintptr_t)t->ents;
	}
}

static uint32_t fz_maybe(struct fz_thread *t)
{
	return fz_pct(t, 95) ? 0 : (uint32_t)fz_rand(t);
}

_Static_assert(sizeof(struct cprx_preserve_entry) ==
	       sizeof(struct cprx_query_entry), "t->ents serves both");

/*
 * PRESERVE_FDS: a few entries in t->ents (the thread's own), mostly; or a
 * count that runs into the guard page, or past max_pins; or a bad pointer.
 */
static void fz_fill_batch(struct fz_thread *t,
			  struct cprx_session_preserve_fds *b)
{
	struct cprx_preserve_entry *e = (void *)t->ents;
	uint32_t n = fz_below(t, 9);

	for (uint32_t i = 0; i < n; i++) {
		e[i].fd = fz_fd(t);
		e[i].reserved = fz_maybe(t);
		e[i].token = fz_token(t);
	}
	b->nr = fz_pct(t, 90) ? n : fz_count(t);
	b->entries = fz_pct(t, 90) ? (uintptr_t)e : fz_entries(t);
	b->failed = (uint32_t)fz_rand(t);
	b->reserved = fz_maybe(t);
}

/* A plausible argument for @cmd at @a (zeroed, our size). */
static void fz_fill(struct fz_thread *t, unsigned long cmd, uint8_t *a)
{
	struct cprx_ioctl_create_session *c = (void *)a;
	struct cprx_session_preserve_fd *p = (void *)a;
	struct cprx_session_unpreserve_fd *u = (void *)a;
	struct cprx_session_arm *arm = (void *)a;
	struct cprx_session_retrieve_fd *r = (void *)a;
	struct cprx_session_finish *fin = (void *)a;
	struct cprx_session_query *q = (void *)a;
	uint32_t x;

	switch (cmd) {
	case CPRX_IOCTL_CREATE_SESSION:
	case CPRX_IOCTL_RETRIEVE_SESSION:
		c->flags = fz_maybe(t);
		fz_name(t, c->name);
		c->fd = (int)fz_rand(t);
		c->reserved = fz_maybe(t);
		break;
	case CPRX_SESSION_PRESERVE_FD:
		p->fd = fz_fd(t);
		p->token = fz_token(t);
		break;
	case CPRX_SESSION_UNPRESERVE_FD:
		u->reserved = fz_maybe(t);
		u->token = fz_token(t);
		break;
	case CPRX_SESSION_ARM:
		x = fz_below(t, 10);
		arm->flags = x < 6 ? 0 : x < 9 ? CPRX_ARM_CANCEL : fz_rand(t);
		break;
	case CPRX_SESSION_RETRIEVE_FD:
		r->fd = (int)fz_rand(t);
		r->token = fz_token(t);
		break;
	case CPRX_SESSION_FINISH:
		fin->reserved = fz_maybe(t);
		break;
	case CPRX_SESSION_QUERY:
		q->flags = fz_maybe(t);
		q->nr_entries = fz_count(t);
		q->owner_pid = fz_maybe(t);
		q->entries = fz_entries(t);
		break;
	case CPRX_SESSION_PRESERVE_FDS:
		fz_fill_batch(t, (void *)a);
		break;
	}
}

static uint32_t fz_size(struct fz_thread *t, uint32_t ours)
{
	static const uint32_t odd[] = {
		0, 1, 3, 4, 7, 8, 15, 16, 17, 23, 24, 25, 71, 72, 75, 76, 79,
		80, 81, 87, 88, 89, 4095, 4096, 4097, 8192, UINT32_MAX,
	};
	uint32_t r = fz_below(t, 10);

	if (r < 7)
		return ours;
	if (r < 9)
		return odd[fz_below(t, ARRAY_SIZE(odd))];
	return fz_below(t, 2 * PAGE + 1);
}

bool fz_known(struct fz *f, int fd)
{
	if (fd <= 2 || fd == f->dev || fd == f->stats_fd)
		return true;
	for (int i = 0; i < FZ_SESS; i++)
		if (__atomic_load_n(&f->sess[i], __ATOMIC_RELAXED) == fd)
			return true;
	for (int i = 0; i < FZ_POOL; i++)
		if (f->pool[i] == fd)
			return true;
	return false;
}

void fz_keep_session(struct fz_thread *t, int fd)
{
	int i = fz_below(t, FZ_SESS);
	int old = __atomic_exchange_n(&t->f->sess[i], fd, __ATOMIC_RELAXED);

	if (old >= 0)
		close(old);
}

/* Takes care of the fd a successful call handed out. */
static void fz_result(struct fz_thread *t, unsigned long cmd,
		      const uint8_t *a, uint32_t size)
{
	int fd;

	if (cmd == CPRX_IOCTL_CREATE_SESSION ||
	    cmd == CPRX_IOCTL_RETRIEVE_SESSION) {
		if (size < SESSION_ARG_MIN)
			return;		/* the sweeper finds it */
		memcpy(&fd, a + offsetof(struct cprx_ioctl_create_session, fd),
		       sizeof(fd));
		if (!fz_known(t->f, fd))
			fz_keep_session(t, fd);
	} else if (cmd == CPRX_SESSION_RETRIEVE_FD &&
		   size >= offsetofend(struct cprx_session_retrieve_fd, fd)) {
		memcpy(&fd, a + offsetof(struct cprx_session_retrieve_fd, fd),
		       sizeof(fd));
		if (!fz_known(t->f, fd))
			close(fd);
	}
}

static const struct fz_cmd *fz_pick(struct fz_thread *t)
{
	int total = 0, r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(fz_cmds); i++)
		total += fz_cmds[i].weight;
	r = fz_below(t, total);
	for (i = 0; r >= fz_cmds[i].weight; i++)
		r -= fz_cmds[i].weight;
	return &fz_cmds[i];
}

/* The file a command goes to: mostly the right kind. */
static int fz_target(struct fz_thread *t, bool dev)
{
	uint32_t r = fz_below(t, 20);

	if (r < 17)
		return dev ? t->f->dev : fz_session(t);
	if (r < 18)
		return dev ? fz_session(t) : t->f->dev;
	if (r < 19)
		return -1;
	/* other files only get cprx-typed commands: they answer ENOTTY */
	return t->f->pool[fz_below(t, FZ_POOL)];
}

/* Mostly @a; sometimes NULL, straddling the guard page, or the kernel's. */
static uint8_t *fz_where(struct fz_thread *t, uint8_t *a, uint32_t ours)
{
	uint32_t r = fz_below(t, 50), k;
	uint8_t *end = t->buf + FZ_BUF;

	if (r == 0)
		return NULL;
	if (r == 1)
		return (uint8_t *)0xffff888000000000ull;
	if (r == 2) {
		k = 1 + fz_below(t, ours);
		memmove(end - k, a, k);
		return end - k;
	}
	return a;
}

/* One well-formed-ish command, with a random size and tail now and then. */
void fz_cmd(struct fz_thread *t)
{
	const struct fz_cmd *c = fz_pick(t);
	uint32_t size = fz_size(t, c->size);
	uint8_t *a = t->buf;
	size_t clear = size < FZ_BUF ? size : FZ_BUF;

	memset(a, 0, clear > c->size ? clear : c->size);
	fz_fill(t, c->cmd, a);
	memcpy(a, &size, sizeof(size));
	if (size > c->size && size <= FZ_BUF && fz_pct(t, 25))
		a[c->size + fz_below(t, size - c->size)] = 1 + fz_below(t, 255);
	a = fz_where(t, a, c->size);
	if (!fz_call(t, fz_target(t, c->dev), c->cmd, a))
		fz_result(t, c->cmd, a, size);
}

/*
 * Any command number on a cprx file.  Types 'X', 'f' and 0x94 are left
 * out: the VFS acts on those itself (FIFREEZE, FS_IOC_SETFLAGS on the
 * devtmpfs inode, FICLONE...), which is not what is under test.
 */
void fz_random_cmd(struct fz_thread *t)
{
	uint32_t r = fz_below(t, 4), size = fz_size(t, 88), type;
	unsigned long cmd;
	uint8_t *a = t->buf;
	int fd;

	if (r < 2)
		cmd = _IO(CPRX_IOCTL_TYPE, fz_below(t, 256));
	else if (r == 2)
		cmd = _IOC(fz_below(t, 4), CPRX_IOCTL_TYPE, fz_below(t, 256),
			   fz_below(t, 1 << 14));
	else
		cmd = (uint32_t)fz_rand(t);
	type = _IOC_TYPE(cmd);
	if (type == 'X' || type == 'f' || type == 0x94)
		cmd = _IO(CPRX_IOCTL_TYPE, 0xff);
	for (int i = 0; i < 128; i += 8) {
		uint64_t v = fz_pct(t, 50) ? 0 : fz_rand(t);

		memcpy(a + i, &v, 8);
	}
	memcpy(a, &size, sizeof(size));
	fd = fz_pct(t, 70) ? fz_session(t) : t->f->dev;
	if (!fz_call(t, fd, cmd, a))
		fz_result(t, cmd, a, size);
}
