/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small synchronous QMP client on GIO sockets and json-glib. */
#ifndef CPRX_QMP_QMP_H
#define CPRX_QMP_QMP_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/types.h>

#define QMP_ERROR (qmp_error_quark())
GQuark qmp_error_quark(void);

enum {
	QMP_ERROR_IO,		/* socket or JSON trouble */
	QMP_ERROR_EOF,		/* QEMU closed the connection (exit or exec) */
	QMP_ERROR_TIMEOUT,
	QMP_ERROR_QEMU,		/* QEMU answered {"error": ...} */
	QMP_ERROR_PEER,		/* another process serves the socket */
};

struct qmp;

/* Connects, reads the greeting and leaves capability negotiation.  A
 * socket whose listener has exited is refused (QMP_ERROR_PEER): the pid
 * it listened with may be another process's now. */
struct qmp *qmp_open(const char *path, GError **err);
/*
 * The same, when the socket is served by process @peer (SO_PEERCRED)
 * and by no other: a process that bound the path in QEMU's place gets
 * no command, and is named in the QMP_ERROR_PEER error.
 */
struct qmp *qmp_open_peer(const char *path, pid_t peer, GError **err);
void qmp_close(struct qmp *q);
/* The connection's socket. */
int qmp_fd(struct qmp *q);
/* Peer's PID from SO_PEERCRED, -1 when unknown. */
pid_t qmp_pid(struct qmp *q);
/* A pidfd of that very process (SO_PEERPIDFD, Linux 6.5), -1 without;
 * the connection's own. */
int qmp_pidfd(struct qmp *q);
/* No wait on @q goes past @limit (g_get_monotonic_time's; 0: none): a
 * peer that answers each command just in time cannot make many of them
 * last longer. */
void qmp_set_limit(struct qmp *q, gint64 limit);
/* Whether a command timed out (qmp_cmd fails from then on). */
gboolean qmp_stale(struct qmp *q);
/* The greeting's QEMU version, "major.minor.micro". */
const char *qmp_version(struct qmp *q);
/* Runs a command; args is consumed (may be NULL). Returns the "return" node.
 * Once one timed out, every later one fails (its answer could be taken for
 * theirs). */
JsonNode *qmp_cmd(struct qmp *q, const char *cmd, JsonNode *args, int timeout_ms, GError **err);
/* Waits for an event by name (queued ones first); returns the event object. */
JsonNode *qmp_event(struct qmp *q, const char *name, int timeout_ms, GError **err);
/* Timestamp of an event in microseconds since the epoch (QEMU's wall clock). */
gint64 qmp_event_usec(JsonNode *event);
/* Waits until QEMU closes the connection. */
gboolean qmp_wait_eof(struct qmp *q, int timeout_ms, GError **err);

/*
 * qmp_shape.c: whether a message has the shape QMP documents for it (an
 * error naming what differs when not).  qmp_open and qmp_cmd check every
 * greeting, event, error and answer of a command listed there.
 */
gboolean qmp_greeting_fits(JsonNode *msg, GError **err);
gboolean qmp_message_fits(JsonNode *msg, GError **err);
gboolean qmp_answer_fits(const char *cmd, JsonNode *ret, GError **err);
/* A value of an answer left unchecked (qom-get's): its string or NULL;
 * its boolean or -1. */
const char *qmp_node_string(JsonNode *n);
int qmp_node_bool(JsonNode *n);

/* Builds {"key": value, ...}: pairs of const char * and JsonNode * (consumed). */
JsonNode *qmp_args(const char *key, ...) G_GNUC_NULL_TERMINATED;

#endif
