/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cprx.ko fuzzer's state, shared by its driver (kmod_fuzz.c: threads,
 * forks, execs, the test) and its generator (kmod_fuzz_gen.c: what one
 * random ioctl looks like).
 */
#ifndef CPRX_KMOD_FUZZ_H
#define CPRX_KMOD_FUZZ_H

#include "kmod_util.h"

#define FZ_SESS		8
#define FZ_POOL		16
#define FZ_NERR		160
#define FZ_BUF		(2 * PAGE + 64)
#define FZ_EXECS	8
#define FZ_SWEEP	512
#define FZ_NCMDS	9		/* fz_cmds[] */

struct fz_stats {		/* on a memfd: shared by forks, kept by execs */
	uint64_t seed, target, threads;
	uint64_t calls, execs, forks;
	uint64_t err[FZ_NERR];	/* [0]: success; [FZ_NERR - 1]: the rest */
	uint64_t ok[FZ_NCMDS];	/* successes by command, as in fz_cmds[] */
};

struct fz {			/* one image's fds, shared by its threads */
	struct fz_stats *st;
	int stats_fd, dev, nr_ents, stop;
	int sess[FZ_SESS];
	int pool[FZ_POOL];
};

struct fz_thread {
	struct fz *f;
	uint64_t rng;
	uint8_t *buf;		/* FZ_BUF bytes right before a PROT_NONE page */
	struct cprx_query_entry *ents;	/* nr_ents, then PROT_NONE; also
					 * PRESERVE_FDS's entries */
	int id;			/* 0: sweeps and execs */
	bool child;		/* a fork: no exec, fork or malloc */
};

struct fz_cmd {
	const char *name;
	unsigned long cmd;
	uint32_t size;
	bool dev;		/* for /dev/cprx, else for a session */
	int weight;
};
extern const struct fz_cmd fz_cmds[FZ_NCMDS];

uint64_t fz_rand(struct fz_thread *t);
uint32_t fz_below(struct fz_thread *t, uint32_t n);
bool fz_pct(struct fz_thread *t, uint32_t pct);
int fz_call(struct fz_thread *t, int fd, unsigned long cmd, void *a);
bool fz_known(struct fz *f, int fd);
void fz_keep_session(struct fz_thread *t, int fd);
void fz_cmd(struct fz_thread *t);
void fz_random_cmd(struct fz_thread *t);

#endif /* CPRX_KMOD_FUZZ_H */
