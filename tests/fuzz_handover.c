// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for the handover string (common/handover.c): what
 * CPRX_INCOMING holds, which anyone who starts the process can set.
 *
 * The input, cut at its first NUL, goes to the parser; whatever parses
 * must obey the parser's promises and, written out again the way the old
 * image writes it, parse to the same handover.  The input also goes
 * through escape and unescape, which must give it back.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handover.h"

#define check(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_handover.c:%d: %s\n",	\
				__LINE__, #cond);			\
			abort();					\
		}							\
	} while (0)

static bool terminated(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

/* The handover @h as the old image would write it. */
static char *rewrite(const struct cprx_handover *h)
{
	size_t len = 3 * sizeof(h->why) + 3 * sizeof(h->mirror) + 512, off;
	char *out = malloc(len), *esc = malloc(3 * sizeof(h->mirror) + 1);
	unsigned int i;

	check(out && esc);
	off = snprintf(out, len, "v=%d,%s=%d,rb=%d,save=%llu,exec=%llu",
		       h->version, h->fd >= 0 ? "fd" : "kmod",
		       h->fd >= 0 ? h->fd : h->kmod, h->rollback, h->save_ns,
		       h->exec_ns);
	if (h->nr_keepers) {
		off += snprintf(out + off, len - off, ",keeper=");
		for (i = 0; i < h->nr_keepers; i++)
			off += snprintf(out + off, len - off, "%s%d",
					i ? ":" : "", (int)h->keepers[i]);
	}
	if (h->why[0]) {
		check(!cprx_handover_escape(esc, 3 * sizeof(h->mirror) + 1, h->why));
		off += snprintf(out + off, len - off, ",why=%s", esc);
	}
	if (h->mirror[0]) {
		check(!cprx_handover_escape(esc, 3 * sizeof(h->mirror) + 1,
					    h->mirror));
		off += snprintf(out + off, len - off, ",mirror=%s", esc);
	}
	check(off < len);
	free(esc);
	return out;
}

static void same(const struct cprx_handover *a, const struct cprx_handover *b)
{
	check(a->version == b->version && a->fd == b->fd && a->kmod == b->kmod);
	check(a->rollback == b->rollback && a->nr_keepers == b->nr_keepers);
	check(!memcmp(a->keepers, b->keepers, a->nr_keepers * sizeof(pid_t)));
	check(a->save_ns == b->save_ns && a->exec_ns == b->exec_ns);
	check(!strcmp(a->why, b->why) && !strcmp(a->mirror, b->mirror));
}

static void parse(const char *in)
{
	static struct cprx_handover h, again;
	char err[CPRX_MSG_MAX], *out;
	unsigned int i;
	int ret;

	memset(err, 'x', sizeof(err));
	ret = cprx_handover_parse(in, &h, err, sizeof(err));
	check(ret == 0 || ret == -EINVAL);
	check(terminated(err, sizeof(err)));
	if (ret) {
		check(err[0]);
		return;
	}
	check(!err[0]);
	check(h.version == 1);
	check((h.fd >= 0) != (h.kmod >= 0));
	check(h.rollback == 0 || h.rollback == 1);
	check(h.nr_keepers <= CPRX_MAX_KEEPERS);
	for (i = 0; i < h.nr_keepers; i++)
		check(h.keepers[i] > 0);
	check(terminated(h.why, sizeof(h.why)));
	check(terminated(h.mirror, sizeof(h.mirror)));
	check(!h.mirror[0] || h.mirror[0] == '/');

	out = rewrite(&h);
	check(!cprx_handover_parse(out, &again, err, sizeof(err)));
	same(&h, &again);
	free(out);
}

/* escape then unescape gives the input back, when it fits */
static void escape_round_trip(const char *in, size_t n)
{
	size_t len = 3 * n + 1;
	char *esc = malloc(len), *back = malloc(n + 1);

	check(esc && back);
	check(!cprx_handover_escape(esc, len, in));
	check(!strpbrk(esc, ","));
	check(!cprx_handover_unescape(back, n + 1, esc));
	check(!strcmp(back, in));
	/* cut short: still terminated, and said so */
	if (n > 2)
		check(cprx_handover_escape(esc, n / 2, in) == -ENAMETOOLONG &&
		      terminated(esc, n / 2));
	free(esc);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exactly as long as the string: a read past its NUL is caught */
	size_t n = strnlen((const char *)data, size);
	char *in = malloc(n + 1), out[64];

	check(in);
	memcpy(in, data, n);
	in[n] = '\0';
	parse(in);
	escape_round_trip(in, n);
	cprx_handover_unescape(out, sizeof(out), in);
	check(terminated(out, sizeof(out)));
	free(in);
	return 0;
}
