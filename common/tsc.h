/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TSC: the one clock a kexec does not reset (the CPU is not), read by
 * cprx-vmm and cprx-bench on both sides of one.  0 where there is none.
 */
#ifndef CPRX_TSC_H
#define CPRX_TSC_H

#include <stdint.h>

static inline uint64_t cprx_tsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
#else
	return 0;
#endif
}

#endif
