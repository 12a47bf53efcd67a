/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The clock of an update across a kexec.  CLOCK_MONOTONIC starts again in
 * the new kernel; the TSC does not (a kexec resets no CPU), so the stamps
 * that span the kexec are TSC reads, turned into time with the rate this
 * process measures against CLOCK_MONOTONIC over its own life.  Other
 * architectures have no such counter here: the figures stay null there.
 */
#include <math.h>

#include "tsc.h"
#include "vmm.h"

uint64_t tsc_now(void)
{
	return cprx_tsc();
}

/* The anchor of tsc_hz(): as early in main as can be. */
void xclock_start(struct vm *vm)
{
	vm->ns0 = now_ns();
	vm->tsc0 = tsc_now();
}

/*
 * TSC ticks per second, from the anchor to now; at least 50 ms apart so
 * that the two clocks' read jitter stays under 1e-4.  Off the clock: only
 * after the guest has resumed.
 */
double tsc_hz(const struct vm *vm)
{
	uint64_t ns = now_ns() - vm->ns0;

	if (!vm->tsc0)
		return NAN;
	if (ns < 50000000)
		sleep_ms((unsigned int)((50000000 - ns) / 1000000) + 1);
	ns = now_ns() - vm->ns0;
	return (double)(tsc_now() - vm->tsc0) * 1e9 / (double)ns;
}

/* TSC ticks to ms; NAN if either stamp is missing or they are out of order. */
double tsc_ms(uint64_t from, uint64_t to, double hz)
{
	if (!from || !to || to < from || !(hz > 0))
		return NAN;
	return (double)(to - from) * 1e3 / hz;
}

/* Guest downtime across the kexec, STOP to RESUMED without our RAM check. */
double kexec_pause_ms(const struct vm *vm, double hz)
{
	const uint64_t *x = vm->xt;
	double all = tsc_ms(vm->kc.stop_tsc, x[XT_RESUMED], hz);
	double verify = tsc_ms(x[XT_REMAP_END], x[XT_VERIFY_END], hz);

	return isnan(verify) ? all : all - verify;
}
