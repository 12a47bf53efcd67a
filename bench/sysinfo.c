/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cprx-bench: the machine, its free memory, sizes. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"

/* A "Key: value kB" line of a /proc file, in bytes; 0 if absent. */
static uint64_t proc_bytes(const char *file, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen(file, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoull(line + klen + 1, NULL, 10);
			if (strstr(line, "kB"))
				v <<= 10;
			break;
		}
	fclose(f);
	return v;
}

uint64_t mem_available(void)
{
	return proc_bytes("/proc/meminfo", "MemAvailable");
}

uint64_t hugetlb_free_bytes(void)
{
	return proc_bytes("/proc/meminfo", "HugePages_Free") *
	       proc_bytes("/proc/meminfo", "Hugepagesize");
}

/* Shmem THP is a sysfs policy: "never" or "deny" leaves memfds on 4k. */
bool thp_shmem_usable(char *why, size_t len)
{
	char buf[128] = "", *o, *c;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	if (!f) {
		snprintf(why, len, "no shmem THP in this kernel");
		return false;
	}
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	o = strchr(buf, '[');
	c = o ? strchr(o, ']') : NULL;
	if (!c)
		return true;
	*c = '\0';
	if (strcmp(o + 1, "never") && strcmp(o + 1, "deny"))
		return true;
	snprintf(why, len, "shmem THP is '%s' (/sys/kernel/mm/transparent_hugepage/"
		 "shmem_enabled): RAM stays on 4k pages", o + 1);
	return false;
}

static void cpu_model(char *buf, size_t len)
{
	char line[512], *p;
	FILE *f = fopen("/proc/cpuinfo", "re");

	snprintf(buf, len, "unknown CPU");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "model name", 10) && (p = strchr(line, ':'))) {
			p += 1 + strspn(p + 1, " \t");
			p[strcspn(p, "\n")] = '\0';
			snprintf(buf, len, "%s", p);
			break;
		}
	fclose(f);
}

void machine_read(struct machine *m)
{
	struct utsname u;

	memset(m, 0, sizeof(*m));
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%s %s", u.sysname, u.release);
		snprintf(m->host, sizeof(m->host), "%s", u.nodename);
	}
	cpu_model(m->cpu, sizeof(m->cpu));
	m->cores = (unsigned int)sysconf(_SC_NPROCESSORS_ONLN);
	m->mem_bytes = proc_bytes("/proc/meminfo", "MemTotal");
}

char *machine_line(const struct machine *m)
{
	return g_strdup_printf("%s, %s, %u cores, %.1f GiB", m->kernel, m->cpu,
			       m->cores, m->mem_bytes / (double)(1ull << 30));
}

/* "256M", "1G", "4096", "2GiB": bytes, or -1. */
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtoull(s, &end, 10);
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	}
	if (shift && (!strcmp(end, "iB") || !strcmp(end, "B")))
		end += strlen(end);
	if (*end || !v || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

/* 268435456 -> "256M"; sizes not a whole unit keep their bytes. */
void size_label(uint64_t n, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int i;

	for (i = 3; i >= 0; i--) {
		uint64_t u = 1ull << (10 * (i + 1));

		if (n >= u && n % u == 0) {
			snprintf(buf, len, "%" PRIu64 "%c", n / u, units[i]);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64, n);
}
