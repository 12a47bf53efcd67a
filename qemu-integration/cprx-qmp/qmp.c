// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * QMP over a unix socket, synchronously: a line of JSON per message, events
 * that arrive while a command is pending are queued for qmp_event(). Every
 * wait has a deadline so a hung or exec'ing QEMU never hangs the driver.
 */
#include "qmp.h"

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <gio/gunixcredentialsmessage.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a peer may make us hold: the longest message (QEMU's longest
 * answer here, a qom-list-get of a level of devices, is well under a
 * MiB), and the events queued unasked, the oldest dropped first. */
#define MSG_MAX (16 << 20)
#define EVENTS_MAX 1024

struct qmp {
	GSocket *sock;
	GString *buf;		/* bytes received, not yet a whole line */
	gsize scanned;		/* of buf, known to hold no newline */
	GQueue events;		/* JsonNode *, oldest first */
	char version[32];
	pid_t pid;
	int pidfd;		/* the listener's (SO_PEERPIDFD), or -1 */
	int pidfd_errno;
	gint64 limit;		/* no wait goes past it (monotonic), 0: none */
	gboolean stale;		/* a command timed out: its answer may come next */
};

G_DEFINE_QUARK(cprx-qmp-error-quark, qmp_error)

static gint64 deadline_of(struct qmp *q, int timeout_ms)
{
	gint64 d = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

	return q->limit && q->limit < d ? q->limit : d;
}

void qmp_set_limit(struct qmp *q, gint64 limit)
{
	q->limit = limit;
}

gboolean qmp_stale(struct qmp *q)
{
	return q->stale;
}

/* One whole line out of the buffer, or NULL. */
static char *take_line(struct qmp *q)
{
	char *nl = memchr(q->buf->str + q->scanned, '\n', q->buf->len - q->scanned);
	char *line;

	if (!nl) {
		q->scanned = q->buf->len;
		return NULL;
	}
	q->scanned = 0;
	line = g_strndup(q->buf->str, nl - q->buf->str);
	g_string_erase(q->buf, 0, nl - q->buf->str + 1);
	return g_strstrip(line);
}

/* Queues an event for qmp_event, dropping the oldest past EVENTS_MAX. */
static void queue_event(struct qmp *q, JsonNode *ev)
{
	g_queue_push_tail(&q->events, ev);
	if (q->events.length > EVENTS_MAX)
		json_node_unref(g_queue_pop_head(&q->events));
}

static gboolean fill(struct qmp *q, gint64 deadline, GError **err)
{
	char chunk[65536];
	GError *e = NULL;
	gssize n;
	gint64 left = deadline - g_get_monotonic_time();

	if (q->buf->len > MSG_MAX) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_IO, "QMP: a message over %d MiB",
			    MSG_MAX >> 20);
		return FALSE;
	}
	if (left <= 0 || !g_socket_condition_timed_wait(q->sock, G_IO_IN, left, NULL, NULL)) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT, "no answer from QEMU in time");
		return FALSE;
	}
	n = g_socket_receive(q->sock, chunk, sizeof(chunk), NULL, &e);
	if (n < 0) {
		/* A reset is how an exec'ing QEMU drops a half-accepted client. */
		g_set_error(err, QMP_ERROR, QMP_ERROR_EOF, "QMP: %s", e->message);
		g_error_free(e);
		return FALSE;
	}
	if (n == 0) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_EOF, "QEMU closed the QMP connection");
		return FALSE;
	}
	g_string_append_len(q->buf, chunk, n);
	return TRUE;
}

/* Next message, parsed. */
static JsonNode *read_msg(struct qmp *q, gint64 deadline, GError **err)
{
	g_autofree char *line = NULL;
	g_autoptr(JsonParser) p = json_parser_new();

	while (!(line = take_line(q)) || !*line) {
		g_clear_pointer(&line, g_free);
		if (!fill(q, deadline, err))
			return NULL;
	}
	if (!json_parser_load_from_data(p, line, -1, err))
		return NULL;
	if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_IO, "QMP: not an object: %.80s", line);
		return NULL;
	}
	if (!qmp_message_fits(json_parser_get_root(p), err))
		return NULL;
	return json_node_copy(json_parser_get_root(p));
}

static gboolean send_msg(struct qmp *q, JsonNode *msg, GError **err)
{
	g_autofree char *s = json_to_string(msg, FALSE);
	g_autofree char *line = g_strconcat(s, "\n", NULL);
	gsize len = strlen(line), off = 0;

	while (off < len) {
		GError *e = NULL;
		gssize n = g_socket_send(q->sock, line + off, len - off, NULL, &e);

		if (n < 0) {
			/* The peer is gone (an exec closes QEMU's end): as a
			 * receive would see it, end of file. */
			g_set_error(err, QMP_ERROR, QMP_ERROR_EOF, "QMP: %s", e->message);
			g_error_free(e);
			return FALSE;
		}
		off += n;
	}
	return TRUE;
}

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* The listener: its pid as it was when it listened (SO_PEERCRED), and a
 * pidfd of that very process, which says whether it still lives. */
static void set_peer(struct qmp *q)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int fd = g_socket_get_fd(q->sock);

	q->pid = -1;
	if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
		q->pid = cr.pid;
	len = sizeof(q->pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &q->pidfd, &len)) {
		q->pidfd = -1;
		q->pidfd_errno = errno;
	}
}

/* Whether the listener is gone: its pid may be another process's now. */
static gboolean peer_gone(struct qmp *q)
{
	struct pollfd p = { .fd = q->pidfd, .events = POLLIN };

	if (q->pidfd < 0)
		return q->pidfd_errno != ENOPROTOOPT;	/* before Linux 6.5: unknown */
	return poll(&p, 1, 0) != 0;
}

/* From a greeting qmp_greeting_fits passed: every member has its type. */
static void set_version(struct qmp *q, JsonNode *greeting)
{
	JsonObject *o = json_object_get_object_member(json_node_get_object(greeting), "QMP");
	JsonNode *v = json_object_get_member(o, "version");

	if (!v || JSON_NODE_HOLDS_NULL(v))
		return;
	o = json_object_get_object_member(json_node_get_object(v), "qemu");
	g_snprintf(q->version, sizeof(q->version), "%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT
		   ".%" G_GINT64_FORMAT, json_object_get_int_member(o, "major"),
		   json_object_get_int_member(o, "minor"), json_object_get_int_member(o, "micro"));
}

struct qmp *qmp_open_peer(const char *path, pid_t peer, GError **err)
{
	g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
	g_autoptr(JsonNode) greeting = NULL, ret = NULL;
	struct qmp *q = g_new0(struct qmp, 1);

	q->pidfd = -1;
	q->buf = g_string_new(NULL);
	g_queue_init(&q->events);
	q->sock = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, 0, err);
	if (!q->sock || !g_socket_connect(q->sock, addr, NULL, err))
		goto fail;
	set_peer(q);
	if (peer_gone(q)) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_PEER,
			    "%s is served by a socket whose listener (pid %d) has exited: "
			    "that pid may be another process's now", path, (int)q->pid);
		goto fail;
	}
	/* Checked before a byte is read: a stand-in must not even stall us. */
	if (peer > 0 && q->pid != peer) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_PEER,
			    "%s is served by pid %d, not by QEMU (pid %d)", path,
			    (int)q->pid, (int)peer);
		goto fail;
	}
	greeting = read_msg(q, deadline_of(q, 10000), err);
	if (!greeting || !qmp_greeting_fits(greeting, err))
		goto fail;
	set_version(q, greeting);
	ret = qmp_cmd(q, "qmp_capabilities", NULL, 10000, err);
	if (!ret)
		goto fail;
	return q;
fail:
	qmp_close(q);
	return NULL;
}

struct qmp *qmp_open(const char *path, GError **err)
{
	return qmp_open_peer(path, 0, err);
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->sock)
		g_socket_close(q->sock, NULL);
	g_clear_object(&q->sock);
	if (q->pidfd >= 0)
		close(q->pidfd);
	g_queue_clear_full(&q->events, (GDestroyNotify)json_node_unref);
	g_string_free(q->buf, TRUE);
	g_free(q);
}

int qmp_fd(struct qmp *q)
{
	return g_socket_get_fd(q->sock);
}

pid_t qmp_pid(struct qmp *q)
{
	return q->pid;
}

int qmp_pidfd(struct qmp *q)
{
	return q->pidfd;
}

const char *qmp_version(struct qmp *q)
{
	return q->version;
}

static JsonNode *qemu_error(JsonObject *o, GError **err)
{
	JsonObject *e = json_object_get_object_member(o, "error");

	g_set_error(err, QMP_ERROR, QMP_ERROR_QEMU, "%s",
		    e && json_object_has_member(e, "desc") ?
		    json_object_get_string_member(e, "desc") : "unknown QMP error");
	return NULL;
}

JsonNode *qmp_cmd(struct qmp *q, const char *cmd, JsonNode *args, int timeout_ms, GError **err)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) msg = NULL;
	gint64 deadline = deadline_of(q, timeout_ms);

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "execute");
	json_builder_add_string_value(b, cmd);
	if (args) {
		json_builder_set_member_name(b, "arguments");
		json_builder_add_value(b, args);
	}
	json_builder_end_object(b);
	msg = json_builder_get_root(b);
	/* QMP answers in order, without naming the command: once one was
	 * not waited for, no answer can be told apart from its */
	if (q->stale) {
		g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT, "QMP: an earlier command had no "
			    "answer in time");
		return NULL;
	}
	if (!send_msg(q, msg, err))
		return NULL;
	for (;;) {
		GError *e = NULL;
		g_autoptr(JsonNode) r = read_msg(q, deadline, &e);
		JsonObject *o;

		if (!r) {
			q->stale = g_error_matches(e, QMP_ERROR, QMP_ERROR_TIMEOUT);
			g_propagate_error(err, e);
			return NULL;
		}
		o = json_node_get_object(r);
		if (json_object_has_member(o, "event")) {
			queue_event(q, g_steal_pointer(&r));
			continue;
		}
		if (json_object_has_member(o, "error"))
			return qemu_error(o, err);
		if (json_object_has_member(o, "return")) {
			JsonNode *ret = json_object_get_member(o, "return");

			return qmp_answer_fits(cmd, ret, err) ? json_node_copy(ret) : NULL;
		}
	}
}

static gboolean is_event(JsonNode *n, const char *name)
{
	return !g_strcmp0(json_object_get_string_member_with_default(
		json_node_get_object(n), "event", ""), name);
}

JsonNode *qmp_event(struct qmp *q, const char *name, int timeout_ms, GError **err)
{
	gint64 deadline = deadline_of(q, timeout_ms);

	for (GList *l = q->events.head; l; l = l->next) {
		if (is_event(l->data, name)) {
			JsonNode *n = l->data;

			g_queue_delete_link(&q->events, l);
			return n;
		}
	}
	for (;;) {
		JsonNode *n = read_msg(q, deadline, err);

		if (!n)
			return NULL;
		if (is_event(n, name))
			return n;
		queue_event(q, n);
	}
}

gint64 qmp_event_usec(JsonNode *event)
{
	JsonObject *t = json_object_get_object_member(json_node_get_object(event), "timestamp");

	if (!t)
		return 0;
	return json_object_get_int_member(t, "seconds") * G_USEC_PER_SEC +
	       json_object_get_int_member(t, "microseconds");
}

gboolean qmp_wait_eof(struct qmp *q, int timeout_ms, GError **err)
{
	gint64 deadline = deadline_of(q, timeout_ms);
	GError *e = NULL;

	for (;;) {
		JsonNode *n = read_msg(q, deadline, &e);

		if (n) {
			queue_event(q, n);
			continue;
		}
		if (g_error_matches(e, QMP_ERROR, QMP_ERROR_EOF)) {
			g_error_free(e);
			return TRUE;
		}
		g_propagate_error(err, e);
		return FALSE;
	}
}

JsonNode *qmp_args(const char *key, ...)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	va_list ap;

	json_builder_begin_object(b);
	va_start(ap, key);
	for (; key; key = va_arg(ap, const char *)) {
		json_builder_set_member_name(b, key);
		json_builder_add_value(b, va_arg(ap, JsonNode *));
	}
	va_end(ap);
	json_builder_end_object(b);
	return json_builder_get_root(b);
}
