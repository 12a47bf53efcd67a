// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Whether a cprx-guard status file still describes a loaded guard: BPF
 * programs die with their kernel (a kexec, a reboot) and a foreground
 * guard's with its loader, whose pid may since name another process.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "guard_reader.h"

int cprx_guard_boot_id(char *buf, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	bool ok;

	if (!f)
		return -errno;
	ok = fgets(buf, len, f) != NULL;
	fclose(f);
	if (!ok)
		return -EIO;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Loaded in another boot: BPF programs do not outlive their kernel. */
static bool other_boot(const struct cprx_guard_status *st)
{
	char now[sizeof(st->boot_id)];

	return *st->boot_id && !cprx_guard_boot_id(now, sizeof(now)) &&
	       strcmp(now, st->boot_id);
}

int cprx_guard_proc_start(long pid, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	/* "pid (comm) state ...": comm may hold anything, ')' included */
	p = strrchr(buf, ')');
	/* from field 3 (state), 19 more fields to field 22 (starttime) */
	for (i = 0; p && i < 20; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", start) != 1)
		return -EBADMSG;
	return 0;
}

/*
 * Is the loader named by the status alive?  The pid alone is not enough:
 * a SIGKILLed loader's pid may be reused by anything.
 */
static bool loader_alive(const struct cprx_guard_status *st)
{
	unsigned long long start;

	if (!st->pid_start)	/* a status written before pid-start */
		return !(kill(st->pid, 0) < 0 && errno == ESRCH);
	return !cprx_guard_proc_start(st->pid, &start) && start == st->pid_start;
}

bool cprx_guard_status_stale(const struct cprx_guard_status *st, char *err,
			     size_t errlen)
{
	/* a status /run did not take along (a kexec's, or a persistent path) */
	if (other_boot(st)) {
		if (err)
			snprintf(err, errlen, "stale: written in another boot "
				 "(boot id %s)", st->boot_id);
		return true;
	}
	/* a loader that died without cleaning up: its programs died too */
	if (st->pid > 0 && !loader_alive(st)) {
		if (err && st->pid_start)
			snprintf(err, errlen, "stale: its loader (pid %ld, started "
				 "at %llu) is gone", st->pid, st->pid_start);
		else if (err)	/* an older status file: no start time */
			snprintf(err, errlen, "stale: its loader (pid %ld) is "
				 "gone", st->pid);
		return true;
	}
	return false;
}
