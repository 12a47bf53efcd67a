/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprx-bench --kexec: a guest's blackout across a kexec, split in parts
 * that follow each other from STOP to RESUMED (kexec.c), and its outputs
 * (kexec_report.c).
 */
#ifndef CPRX_BENCH_KEXEC_H
#define CPRX_BENCH_KEXEC_H

#include "bench.h"

#define KEXEC_SIZES_DEFAULT "256M,1G"

/*
 * The blackout's parts, in order; the VMM's own RAM check (verify, between
 * retrieve and resume) is left out, as its pause_ms leaves it out.
 */
enum kpart {
	KP_SAVE,	/* guest stop -> RAM and state preserved (or on disk) */
	KP_HANDOFF,	/* the VMM's exit -> the harness's kexec_file_load */
	KP_LOAD,	/* kexec_file_load and sync, before the reboot call */
	KP_KEXEC,	/* reboot(LINUX_REBOOT_CMD_KEXEC) -> the new kernel's t=0 */
	KP_BOOT,	/* the new kernel's t=0 -> "Run /init" */
	KP_USERSPACE,	/* "Run /init" -> the new VMM's cprx_incoming */
	KP_RETRIEVE,	/* -> RAM and state back (remap_end) */
	KP_RESUME,	/* verify_end -> guest RESUMED */
	KP_OTHER,	/* the other path's VMM, run inside this blackout */
	NR_KPARTS
};

enum kpath { KPATH_LUO, KPATH_BASE, NR_KPATHS };

extern const char *const kpart_names[NR_KPARTS];
extern const char *const kpath_names[NR_KPATHS];

struct krow {
	uint64_t size;
	char size_label[16];
	enum kpath path;
	unsigned int rep;
	double blackout_ms;	/* the new VMM's pause, at the parts' TSC rate */
	double vmm_pause_ms;	/* its pause_ms, at its own rate (vmm_hz) */
	double alone_ms;	/* without KP_OTHER */
	double parts[NR_KPARTS];
	double sum_ms;		/* of the parts */
	double verify_ms;	/* left out */
	double vmm_hz;		/* the TSC rate the new VMM measured */
	bool verified;
	char verify[64];
};

struct kexec_bench {
	GArray *rows;		/* struct krow */
	GPtrArray *notes;	/* char * */
	char *out, *command;
	struct machine m;
	double hz[2];		/* TSC rate measured in each kernel */
	double detected_hz, refined_hz;	/* the new kernel's log */
	char clocksource[32];
};

/* kexec.c */
int run_kexec(const struct options *o, int argc, char **argv);

/* kexec_clock.c: --kexec-clock, in the guest */
int kexec_clock(void);

/* kexec_report.c */
void kexec_report(const struct kexec_bench *kb);
int kexec_files(const struct kexec_bench *kb);

#endif
