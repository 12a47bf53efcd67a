// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-luod - owns /dev/liveupdate and hands each VMM a Live Update
 * Orchestrator session of its own (man cprx-luod(8)).
 *
 *   cprx-luod [--socket PATH] [--device PATH] [--state-dir DIR] [--fake-kexec]
 *   cprx-luod status [--socket PATH]
 *
 * The daemon: socket-activated (the listening socket from systemd, fd 3),
 * or binding --socket itself.  It never exits on its own: the sessions it
 * holds live as long as its fds, and a kexec must find them open.
 * One loop serves every VMM, so nothing in it may wait on a peer: each
 * connection is a reader process's (reader.c), and the loop talks to
 * readers only, without blocking.
 * This file: options, the socket, the poll loop, and the client verbs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "luod.h"

#define STATE_DIR	"/var/lib/cprx-luod"

static volatile sig_atomic_t stopping, reap_due;

/*
 * One write per line.  The daemon's stderr, when a pipe or a socket (the
 * journal's), does not block (log_nonblocking): a line the log cannot take
 * now is counted, not waited for, since peers make lines at will.
 */
void logmsg(const char *fmt, ...)
{
	static unsigned long lost;
	char line[1024];
	int n, err = errno;	/* for %m */
	va_list ap;

	if (lost) {
		n = snprintf(line, sizeof(line), "cprx-luod: %lu log line%s "
			     "lost (the log did not keep up)\n", lost,
			     lost == 1 ? "" : "s");
		if (write(STDERR_FILENO, line, n) == n)
			lost = 0;
	}
	n = snprintf(line, sizeof(line), "cprx-luod: ");
	errno = err;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) != n)
		lost++;
}

static void log_nonblocking(void)
{
	struct stat st;

	if (!fstat(STDERR_FILENO, &st) &&
	    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		fcntl(STDERR_FILENO, F_SETFL,
		      fcntl(STDERR_FILENO, F_GETFL) | O_NONBLOCK);
}

static void usage(FILE *f)
{
	fputs("Usage: cprx-luod [OPTION]...        the daemon\n"
	      "       cprx-luod status [OPTION]... list the sessions it holds\n"
	      "       cprx-luod kexec [OPTION]...  --fake-kexec daemons only: act a kexec\n"
	      "Owns /dev/liveupdate and hands each VMM a Live Update Orchestrator session.\n"
	      "\n"
	      "  --socket PATH     the Unix socket (default $" CPRX_LUOD_ENV " or "
	      CPRX_LUOD_SOCKET ";\n"
	      "                    ignored when systemd passes the socket)\n"
	      "  --device PATH     the LUO device (default " CPRX_LUO_DEVICE ")\n"
	      "  --state-dir DIR   where held sessions are recorded (default " STATE_DIR ")\n"
	      "  --boot-id ID      this boot's id (default: the kernel's boot_id; for tests)\n"
	      "  --fake-kexec      no device: keep preserved memfds in the daemon, and let\n"
	      "                    root's KEXEC verb act a kexec (host tests only)\n"
	      "  -h, --help        this text\n"
	      "\n"
	      "Exit status: 0 stopped by a signal or a listing printed, 1 usage or setup\n"
	      "error, 2 the daemon refused the verb or could not be reached.\n", f);
}

static void read_boot_id(struct luod *d)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	if (!f || !fgets(d->boot_id, sizeof(d->boot_id), f))
		snprintf(d->boot_id, sizeof(d->boot_id), "unknown");
	d->boot_id[strcspn(d->boot_id, "\n")] = '\0';
	if (f)
		fclose(f);
}

/* systemd's socket activation: LISTEN_PID is us, the socket is fd 3. */
static int activated_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

	if (!pid || !fds || atoi(pid) != getpid() || atoi(fds) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	fcntl(3, F_SETFD, FD_CLOEXEC);
	return 3;
}

/* Any uid may connect: SO_PEERCRED, not the file mode, keeps them apart. */
static int bind_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		logmsg("socket path %s is too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0666) < 0 || listen(fd, 64) < 0) {
		logmsg("cannot listen on %s: %m", path);
		close(fd);
		return -1;
	}
	return fd;
}

static bool slot_used(const struct conn *c)
{
	return c->fd >= 0 || c->reader > 0;
}

/*
 * A connection refused.  The daemon must not be the one to drop its last
 * reference: closing it releases what the peer queued on it, and that may
 * wait on the peer.  So it goes back to its peer inside the refusal; a
 * peer already gone leaves it to one of the uid's readers to close.
 */
static void refuse_conn(struct luod *d, int fd, uid_t uid, const char *msg)
{
	unsigned int i;

	if (!cprx_luod_send(fd, msg, fd)) {
		close(fd);
		return;
	}
	for (i = 0; i < LUOD_MAX_CONNS; i++) {
		if (d->conns[i].fd >= 0 && d->conns[i].uid == uid &&
		    !ctl_drop(d->conns[i].fd, fd)) {
			logmsg("uid %u: a refused connection whose peer is gone "
			       "goes to the reader of pid %d to close",
			       (unsigned int)uid, (int)d->conns[i].pid);
			close(fd);
			return;
		}
	}
	logmsg("uid %u: a refused connection no reader of that uid can "
	       "take; closing it here", (unsigned int)uid);
	peer_close(fd);
}

static void accept_conn(struct luod *d)
{
	char msg[128];
	struct ucred cred;
	socklen_t len = sizeof(cred);
	unsigned int i, n;
	int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		logmsg("SO_PEERCRED: %m; connection refused");
		refuse_conn(d, fd, (uid_t)-1, "ERR 5 cprx-luod cannot tell who "
			    "you are");
		return;
	}
	/* a reader stalled in a close counts until it exits */
	for (i = 0, n = 0; i < LUOD_MAX_CONNS; i++)
		n += slot_used(&d->conns[i]) && d->conns[i].uid == cred.uid;
	if (n >= LUOD_CONNS_PER_UID) {
		snprintf(msg, sizeof(msg), "ERR 24 uid %u has %d connections to "
			 "cprx-luod, the most one uid may", (unsigned int)cred.uid,
			 LUOD_CONNS_PER_UID);
		return refuse_conn(d, fd, cred.uid, msg);
	}
	for (i = 0; i < LUOD_MAX_CONNS && slot_used(&d->conns[i]); i++)
		;
	if (i == LUOD_MAX_CONNS)
		return refuse_conn(d, fd, cred.uid, "ERR 24 cprx-luod has too "
				   "many connections");
	memset(&d->conns[i], 0, sizeof(d->conns[i]));
	d->conns[i].fd = -1;
	d->conns[i].uid = cred.uid;
	d->conns[i].pid = cred.pid;
	if (reader_start(&d->conns[i], fd)) {
		logmsg("pid %d uid %u: no reader for the connection: %m",
		       (int)cred.pid, (unsigned int)cred.uid);
		refuse_conn(d, fd, cred.uid, "ERR 11 cprx-luod cannot take the "
			    "connection now");
	}
}

/* Readers that exited: their slots are free once their sockets are. */
static void reap(struct luod *d)
{
	unsigned int i;
	int status;
	pid_t pid;

	reap_due = 0;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < LUOD_MAX_CONNS; i++) {
			if (d->conns[i].reader != pid)
				continue;
			d->conns[i].reader = 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				logmsg("the reader of pid %d uid %u ended with "
				       "status %#x", (int)d->conns[i].pid,
				       (unsigned int)d->conns[i].uid, status);
		}
	}
}

static void on_signal(int sig)
{
	if (sig == SIGCHLD)
		reap_due = 1;
	else
		stopping = 1;
}

/*
 * SIGCHLD, SIGTERM and SIGINT are blocked but inside ppoll, so a reader's
 * exit or a stop wakes the loop and is never missed between the check of
 * its flag and the wait (a stop that came just before ppoll would leave
 * the daemon waiting for a connection that may never come).
 */
static int serve(struct luod *d)
{
	struct pollfd pfd[LUOD_MAX_CONNS + 1];
	struct conn *who[LUOD_MAX_CONNS + 1];
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t wake, old;
	unsigned int i, n;

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&wake);
	sigaddset(&wake, SIGCHLD);
	sigaddset(&wake, SIGTERM);
	sigaddset(&wake, SIGINT);
	sigprocmask(SIG_BLOCK, &wake, &old);
	/* let them through in ppoll, whatever mask it was started with */
	sigdelset(&old, SIGCHLD);
	sigdelset(&old, SIGTERM);
	sigdelset(&old, SIGINT);
	while (!stopping) {
		if (reap_due)
			reap(d);
		pfd[0] = (struct pollfd){ .fd = d->lfd, .events = POLLIN };
		for (i = 0, n = 1; i < LUOD_MAX_CONNS; i++) {
			if (d->conns[i].fd < 0)
				continue;
			pfd[n] = (struct pollfd){ .fd = d->conns[i].fd,
						  .events = POLLIN };
			who[n++] = &d->conns[i];
		}
		if (ppoll(pfd, n, NULL, &old) < 0)
			continue;
		for (i = 1; i < n; i++)
			if (pfd[i].revents)
				conn_request(d, who[i]);
		if (pfd[0].revents & POLLIN)
			accept_conn(d);
	}
	for (i = 0; i < LUOD_MAX_SESSIONS; i++)
		if (d->sess[i].used && d->sess[i].state == S_HELD)
			logmsg("stopping: session %s is dropped with it; the "
			       "kexec will not find it", d->sess[i].kname);
	return 0;
}

/* `cprx-luod status` and `cprx-luod kexec`: one verb, its reply printed. */
static int client(const char *path, const char *verb)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static char msg[CPRX_LUOD_REPLY_MAX];
	int fd, rfd, n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "cprx-luod: cannot reach the daemon at %s: %m "
			"(systemctl start cprx-luod.socket)\n", path);
		return 2;
	}
	/* a daemon that does not answer is said so, not waited on for good */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){ .tv_sec = 30 },
		   sizeof(struct timeval));
	n = cprx_luod_send(fd, verb, -1);
	if (!n)
		n = cprx_luod_recv(fd, msg, sizeof(msg), &rfd);
	close(fd);
	if (n < 0) {
		fprintf(stderr, "cprx-luod: %s: %s\n", verb, strerror(-n));
		return 2;
	}
	if (strncmp(msg, "OK", 2)) {
		fprintf(stderr, "cprx-luod: %s refused: %s\n", verb, msg);
		return 2;
	}
	if (!strcmp(verb, "STATUS"))
		printf("%s\n", msg[2] ? msg + 3 : "0");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "boot-id", required_argument, NULL, 'b' },
		{ "fake-kexec", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct luod d;
	const char *verb = NULL;
	unsigned int i;
	int c;

	d.device = CPRX_LUO_DEVICE;
	d.state_dir = STATE_DIR;
	d.socket = cprx_luod_path();
	d.devfd = -1;
	read_boot_id(&d);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': d.socket = optarg; break;
		case 'd': d.device = optarg; break;
		case 'S': d.state_dir = optarg; break;
		case 'b': snprintf(d.boot_id, sizeof(d.boot_id), "%s", optarg); break;
		case 'f': d.fake = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc) {
		if (!strcmp(argv[optind], "status"))
			verb = "STATUS";
		else if (!strcmp(argv[optind], "kexec"))
			verb = "KEXEC";
		if (!verb || optind + 1 < argc) {
			usage(stderr);
			return 1;
		}
		return client(d.socket, verb);
	}
	for (i = 0; i < LUOD_MAX_CONNS; i++)
		d.conns[i].fd = -1;
	d.lfd = activated_socket();
	if (d.lfd >= 0)
		d.socket = "the socket systemd passed";
	else
		d.lfd = bind_socket(d.socket);
	if (d.lfd < 0)
		return 1;
	/* poll said a connection waits; if it went, accept must not wait */
	fcntl(d.lfd, F_SETFL, fcntl(d.lfd, F_GETFL) | O_NONBLOCK);
	log_nonblocking();
	markers_load(&d);
	logmsg("serving on %s, device %s%s, state in %s", d.socket, d.device,
	       d.fake ? " (fake: no kexec survives)" : "", d.state_dir);
	return serve(&d);
}
