// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Whether the QEMU at a PID is the previous binary, restarted by libcprx's
 * rollback after the new one failed, and why: libcprx says so in the
 * handover it execs that binary with (CPRX_INCOMING "rb=1,why=..."), which
 * stays in /proc/PID/environ.  Read with libcprx's own parser
 * (common/handover.c): what QEMU was told, for the report only.
 */
#include "cprx-qmp.h"
#include "handover.h"

char *rollback_reason(pid_t pid)
{
	struct cprx_handover h;

	if (cprx_handover_of_pid(pid, &h, NULL, 0) || !h.rollback)
		return NULL;
	return g_strdup(h.why[0] ? h.why : "no reason given");
}
