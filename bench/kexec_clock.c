/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --kexec-clock, run in the guest by bench/kexec-guest.sh: ties
 * the TSC, the one clock that keeps counting across a kexec, to this
 * kernel's log clock, so that the kernel's own boot can be put on it.
 *
 * One JSON line: the TSC rate measured against CLOCK_MONOTONIC (and the
 * kernel's "tsc: Detected"/"Refined" lines, to compare); a marker written
 * to /dev/kmsg with the TSC around it (marker_tsc, marker_us: the same
 * instant on both clocks); the log times of "Run /init" (userspace starts)
 * and "Freeing unused kernel" (just before); the clocksource.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kexec.h"
#include "tsc.h"

#define MARKER "cprx-bench-clock"

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Over 500 ms: the read jitter of either clock stays under 1e-5. */
static double measured_hz(void)
{
	uint64_t n0 = mono_ns(), t0 = cprx_tsc(), n1, t1;

	g_usleep(500000);
	n1 = mono_ns();
	t1 = cprx_tsc();
	return (double)(t1 - t0) * 1e9 / (double)(n1 - n0);
}

struct klog {
	double detected_mhz, refined_mhz;
	double marker_us, run_init_us, freeing_us;
};

/* One /dev/kmsg record: "PRIO,SEQ,USEC,FLAGS;TEXT\n...". */
static void klog_record(struct klog *k, const char *rec)
{
	const char *text = strchr(rec, ';');
	unsigned long long us;
	double mhz;

	if (!text || sscanf(rec, "%*u,%*u,%llu", &us) != 1)
		return;
	text++;
	if (sscanf(text, "tsc: Detected %lf MHz", &mhz) == 1)
		k->detected_mhz = mhz;
	else if (sscanf(text, "tsc: Refined TSC clocksource calibration: %lf MHz",
			&mhz) == 1)
		k->refined_mhz = mhz;
	else if (!strncmp(text, "Run /", 5) && isnan(k->run_init_us))
		k->run_init_us = (double)us;
	else if (!strncmp(text, "Freeing unused kernel", 21) && isnan(k->freeing_us))
		k->freeing_us = (double)us;
	else if (!strncmp(text, MARKER, strlen(MARKER)))
		k->marker_us = (double)us;
}

/* The whole log from its start; EPIPE: records overwritten, go on. */
static int klog_read(struct klog *k)
{
	char rec[8192];
	ssize_t n;
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		klog_record(k, rec);
	}
	close(fd);
	return 0;
}

static void clocksource(char *buf, size_t len)
{
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
			"current_clocksource", "r");

	snprintf(buf, len, "unknown");
	if (f && fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	if (f)
		fclose(f);
}

static void num(const char *key, double v, bool last)
{
	if (isnan(v))
		printf("\"%s\":null%s", key, last ? "" : ",");
	else
		printf("\"%s\":%.3f%s", key, v, last ? "" : ",");
}

int kexec_clock(void)
{
	struct klog k = { 0, 0, NAN, NAN, NAN };
	uint64_t a, b;
	char cs[64];
	double hz;
	int fd, r;

	if (!cprx_tsc()) {
		g_printerr("cprx-bench: --kexec-clock: no TSC on this architecture\n");
		return 1;
	}
	fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		g_printerr("cprx-bench: --kexec-clock: /dev/kmsg: %s\n", g_strerror(errno));
		return 1;
	}
	a = cprx_tsc();
	r = (int)write(fd, MARKER "\n", strlen(MARKER) + 1);
	b = cprx_tsc();
	close(fd);
	hz = measured_hz();
	if (r < 0 || klog_read(&k) < 0 || isnan(k.marker_us)) {
		g_printerr("cprx-bench: --kexec-clock: the marker is not in the kernel log\n");
		return 1;
	}
	clocksource(cs, sizeof(cs));
	printf("{");
	num("hz", hz, false);
	num("detected_hz", k.detected_mhz ? k.detected_mhz * 1e6 : NAN, false);
	num("refined_hz", k.refined_mhz ? k.refined_mhz * 1e6 : NAN, false);
	printf("\"marker_tsc\":%llu,", (unsigned long long)(a + (b - a) / 2));
	printf("\"marker_window_tsc\":%llu,", (unsigned long long)(b - a));
	num("marker_us", k.marker_us, false);
	num("run_init_us", k.run_init_us, false);
	num("freeing_us", k.freeing_us, false);
	printf("\"clocksource\":\"%s\"}\n", cs);
	return 0;
}
