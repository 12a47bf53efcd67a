/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cprx.ko's tracepoint: one event after every ioctl that succeeded, in the
 * caller's context.  cprx-guard attaches a raw tracepoint program here, so
 * "armed", "retrieved" and "finished" come from what the module did, never
 * from what a process asked of some file.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM cprx

#if !defined(_CPRX_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _CPRX_TRACE_H

#include <linux/tracepoint.h>

/*
 * @cmd: the ioctl; @pins: files the session pins afterwards; @armed: the
 * session is armed afterwards.  Arguments are plain numbers so that a raw
 * tracepoint program needs no BTF of this module.
 */
TRACE_EVENT(cprx_ioctl_done,
	    TP_PROTO(unsigned int cmd, unsigned int pins, unsigned int armed),
	    TP_ARGS(cmd, pins, armed),
	    TP_STRUCT__entry(__field(unsigned int, cmd)
			     __field(unsigned int, pins)
			     __field(unsigned int, armed)),
	    TP_fast_assign(__entry->cmd = cmd;
			   __entry->pins = pins;
			   __entry->armed = armed;),
	    TP_printk("cmd=%#x pins=%u armed=%u", __entry->cmd, __entry->pins,
		      __entry->armed)
);

#endif /* _CPRX_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE cprx_trace
#include <trace/define_trace.h>
