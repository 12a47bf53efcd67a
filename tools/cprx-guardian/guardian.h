/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-guardian: starts a VMM as the guardian of its live updates and
 * restarts the previous binary when the VMM dies in the middle of one.
 *
 *   main.c     options, the watch loop, exit status
 *   held.c     what the VMM sends at each update (common/guardian_proto.h)
 *   restart.c  starting the VMM, and restarting the previous binary
 */
#ifndef CPRX_GUARDIAN_TOOL_H
#define CPRX_GUARDIAN_TOOL_H

#include <stdbool.h>
#include <sys/types.h>
#include "guardian_proto.h"

#define MAX_HELD	(4096 + 2)	/* the state's fds, the state, the binary */

/* The set of one update: fds at the numbers the VMM had them. */
struct held {
	bool complete;		/* the chunk with CPRX_GMSG_LAST came */
	bool building;		/* a chunk with CPRX_GMSG_FIRST came */
	unsigned int backend;	/* enum cprx_backend */
	pid_t pid;		/* the VMM that sent it */
	char session[64];
	int state_fd, exe_fd;	/* numbers in the VMM */
	int guardian_fd;	/* the VMM's number for the socket */
	unsigned int nr;
	int fd[MAX_HELD];	/* ours */
	int num[MAX_HELD];	/* the VMM's */
	int adopted;		/* kmod: the session fd ADOPT_SESSION gave, or -1 */
};

/*
 * A binary the kernel showed the VMM (or a restart) running, held open: an
 * inode freed while noted would give its number to the next file made on
 * that file system, which a VMM could then send as its binary.
 */
struct ran {
	dev_t dev;
	ino_t ino;
	int fd;		/* O_PATH, ours */
};

#define MAX_RAN	16

struct guardian {
	char **argv;		/* the VMM's command line */
	unsigned int max_restarts;
	int sock;		/* our end; the VMM's is at guardian_fd there */
	int guardian_fd;	/* the number the VMM has its end at */
	pid_t pid;		/* the VMM */
	int pidfd;
	unsigned int restarts;	/* since the last commit */
	struct held held;
	/*
	 * What a restart may run: the VMM names its previous binary, and is
	 * not trusted to (a compromised one would have us, whom no guard
	 * policy need select, exec any file); it must be one of these.
	 */
	struct ran ran[MAX_RAN];
	unsigned int nr_ran;
};

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* held.c */
void held_init(struct held *h);
void held_drop(struct held *h);
/* Reads every message waiting: the commits among them, or -errno. */
int held_receive(struct held *h, int sock);
/* The previous binary and argv, from the state the set holds. */
int held_origin(struct held *h, char **exe, char ***argv);
/* Our copy of the fd the VMM named as its binary, or -1. */
int held_exe(const struct held *h);

/* restart.c */
/* Notes the binary the VMM runs now (/proc/PID/exe) as one it ran. */
void vmm_note_exe(struct guardian *g);
int vmm_start(struct guardian *g);
int vmm_restart(struct guardian *g, const char *why);

#endif /* CPRX_GUARDIAN_TOOL_H */
