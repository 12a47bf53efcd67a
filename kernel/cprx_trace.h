/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cprx.ko's tracepoints: one event after every ioctl that succeeded, in the
 * caller's context, and one when a session dies without FINISH, in
 * whatever context that happens.  cprx-guard attaches a raw tracepoint
 * program to each, so "armed", "retrieved", "finished" and "gone" come
 * from what the module did, never from what a process asked of some file.
 * Arguments are plain numbers so that a raw tracepoint program needs no BTF
 * of this module.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM cprx

#if !defined(_CPRX_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _CPRX_TRACE_H

#include <linux/tracepoint.h>

/*
 * @cmd: the ioctl; @pins: files the session pins afterwards; @armed: the
 * session is armed afterwards.
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

/*
 * A session died without FINISH: its last file closed, or its owner gone.
 * It may run in a work item or in another process, so the owner is named
 * here, never by current: @owner its tgid in the initial pid namespace,
 * @start its leader's start time (task_struct.start_time, which a reused
 * pid does not share).  @armed: the session was armed.  @left: the owner's
 * live sessions after it, @left_armed of them armed: the owner's whole
 * state, so a follower needs no count of its own.  Once per session; a
 * finished one has said so through cprx_ioctl_done.
 */
TRACE_EVENT(cprx_session_end,
	    TP_PROTO(unsigned int owner, u64 start, unsigned int armed,
		     unsigned int left, unsigned int left_armed),
	    TP_ARGS(owner, start, armed, left, left_armed),
	    TP_STRUCT__entry(__field(unsigned int, owner)
			     __field(u64, start)
			     __field(unsigned int, armed)
			     __field(unsigned int, left)
			     __field(unsigned int, left_armed)),
	    TP_fast_assign(__entry->owner = owner;
			   __entry->start = start;
			   __entry->armed = armed;
			   __entry->left = left;
			   __entry->left_armed = left_armed;),
	    TP_printk("owner=%u start=%llu armed=%u left=%u left_armed=%u",
		      __entry->owner, __entry->start, __entry->armed,
		      __entry->left, __entry->left_armed)
);

#endif /* _CPRX_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE cprx_trace
#include <trace/define_trace.h>
