// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What the state-format tests share: a test-side writer of the container,
 * to craft states byte by byte, and a sample state with every record kind.
 */
#include "state_util.h"

/* A test-side writer of the container, to craft states byte by byte. */

uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

void put64(uint8_t *p, uint64_t v)
{
	put32(p, v);
	put32(p + 4, v >> 32);
}

void fix_header_crc(uint8_t *buf)
{
	put32(buf + 28, 0);
	put32(buf + 28, cprx_crc32c(0, buf, 32));
}

void bb_u32(struct bb *b, uint32_t v)
{
	put32(b->b + b->n, v);
	b->n += 4;
}

void bb_u64(struct bb *b, uint64_t v)
{
	put64(b->b + b->n, v);
	b->n += 8;
}

void bb_str(struct bb *b, const char *s, uint32_t n)
{
	bb_u32(b, n);
	memset(b->b + b->n, 0, (n + 3) & ~3u);
	memcpy(b->b + b->n, s, n);
	b->n += (n + 3) & ~3u;
}

/* Splits an encoded state into its records (trusting it). */
int split(const uint8_t *buf, size_t len, struct trec *r)
{
	size_t pos = 32;
	int n = 0;

	while (pos + 16 <= len && n < MAX_RECS) {
		r[n].type = le32(buf + pos);
		r[n].len = le32(buf + pos + 4);
		r[n].p = buf + pos + 16;
		pos += (16 + r[n].len + 7) & ~7ul;
		n++;
	}
	return n;
}

/* Builds a state with correct framing and checksums from records. */
uint8_t *join(const struct trec *r, int n, size_t *lenp)
{
	size_t len = 32, pos = 32;
	uint8_t *buf;
	int i;

	for (i = 0; i < n; i++)
		len += (16 + r[i].len + 7) & ~7ul;
	buf = calloc(1, len);
	memcpy(buf, CPRX_STATE_MAGIC, 8);
	put32(buf + 8, CPRX_STATE_VERSION);
	put32(buf + 12, 32);
	put64(buf + 16, len);
	put32(buf + 24, n);
	for (i = 0; i < n; i++) {
		put32(buf + pos, r[i].type);
		put32(buf + pos + 4, r[i].len);
		put32(buf + pos + 8, cprx_crc32c(0, r[i].p, r[i].len));
		memcpy(buf + pos + 16, r[i].p, r[i].len);
		pos += (16 + r[i].len + 7) & ~7ul;
	}
	fix_header_crc(buf);
	*lenp = len;
	return buf;
}

/* Decodes records; returns the error, err holds the message. */
int decode_recs(const struct trec *r, int n, char *err, size_t errlen)
{
	struct cprx_state st;
	size_t len;
	uint8_t *buf = join(r, n, &len);
	int ret = cprx_state_decode(buf, len, &st, err, errlen);

	cprx_state_free(&st);
	free(buf);
	return ret;
}

void origin_payload(struct bb *b, uint32_t backend, uint32_t argc)
{
	bb_u32(b, 3);		/* exe_fd */
	bb_u32(b, 100);		/* pid */
	bb_u32(b, 0);		/* keeper_pid */
	bb_u32(b, backend);
	bb_u32(b, 0);		/* generation */
	bb_str(b, "vm", 2);
	bb_str(b, "/bin/true", 9);
	bb_u32(b, argc);
	if (argc == 1)
		bb_str(b, "true", 4);
}

void times_payload(struct bb *b, uint32_t count)
{
	bb_u32(b, count);
	bb_u32(b, 0);
	for (uint32_t i = 0; i < count; i++)
		bb_u64(b, 1000 + i);
}

void fd_payload(struct bb *b, const char *tok, uint32_t toklen,
		       uint32_t kind, uint32_t page_kind, uint32_t zero)
{
	bb_str(b, tok, toklen);
	bb_u32(b, kind);
	bb_u32(b, page_kind);
	bb_u32(b, 9);		/* fd */
	bb_u32(b, zero);
	bb_u64(b, 4096);	/* size */
	bb_u64(b, 77);		/* handle */
}

static struct bb std_origin, std_times;

/* r[0], r[1]: a valid ORIGIN and TIMES; returns 2. */
int std_recs(struct trec *r)
{
	memset(&std_origin, 0, sizeof(std_origin));
	memset(&std_times, 0, sizeof(std_times));
	origin_payload(&std_origin, CPRX_BACKEND_CLOEXEC, 1);
	times_payload(&std_times, CPRX_PH_MAX);
	r[0] = (struct trec){ CPRX_REC_ORIGIN, std_origin.n, std_origin.b };
	r[1] = (struct trec){ CPRX_REC_TIMES, std_times.n, std_times.b };
	return 2;
}

/* A std state plus one record of @type: refused with @msg in the error. */
void expect_bad(const struct bb *b, uint32_t type, const char *msg)
{
	struct trec r[3];
	char err[256];
	int ret;

	std_recs(r);
	r[2] = (struct trec){ type, b->n, b->b };
	ret = decode_recs(r, 3, err, sizeof(err));
	EXPECT_EQ(-EBADMSG, ret);
	if (!strstr(err, msg)) {
		TH_LOG("got \"%s\", want \"%s\"", err, msg);
		th_failed(0);
	}
}

/* The sample state ----------------------------------------------------- */

static char *sample_argv[] = { "/usr/bin/qemu-system-x86_64", "-m", "1G",
			       "", NULL };
static char hello[] = "hello world";	/* 11 bytes: leaves record padding */

void sample(struct cprx_state *st, struct cprx_rec_fd *fds,
		   struct cprx_rec_blob *blobs)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->session, sizeof(st->session), "vm-one");
	st->exe_path = "/usr/bin/qemu-system-x86_64";
	st->argc = 4;
	st->argv = sample_argv;
	st->exe_fd = 5;
	st->pid = 1234;
	st->keeper_pid = -1;
	st->backend = CPRX_BACKEND_KMOD;
	st->generation = 3;
	for (int i = 0; i < CPRX_PH_MAX; i++)
		st->ts[i] = 1000000000ull * i + 7;
	fds[0] = (struct cprx_rec_fd){ .token = "ram0", .kind = CPRX_FD_RAM,
		.page_kind = CPRX_PAGE_HUGETLB, .fd = 7, .size = 1ull << 30,
		.handle = 0x1122334455667788ull, .dev = 0x10305 };
	fds[1] = (struct cprx_rec_fd){ .token = "vhost-net",
		.kind = CPRX_FD_DEVICE, .fd = 12 };
	st->nr_fds = 2;
	st->fds = fds;
	blobs[0] = (struct cprx_rec_blob){ .token = "cfg", .len = 11,
		.data = hello };
	blobs[1] = (struct cprx_rec_blob){ .token = "empty" };
	st->nr_blobs = 2;
	st->blobs = blobs;
}

bool zeroed(const struct cprx_state *st)
{
	static const struct cprx_state zero;

	return !memcmp(st, &zero, sizeof(zero));
}

void expect_origin_same(const struct cprx_state *a,
			       const struct cprx_state *b)
{
	ASSERT_STREQ(a->session, b->session);
	ASSERT_STREQ(a->exe_path, b->exe_path);
	ASSERT_EQ(a->argc, b->argc);
	for (uint32_t i = 0; i < a->argc; i++)
		ASSERT_STREQ(a->argv[i], b->argv[i]);
	ASSERT_NULL(b->argv[b->argc]);
	ASSERT_EQ(a->exe_fd, b->exe_fd);
	ASSERT_EQ(a->pid, b->pid);
	ASSERT_EQ(a->keeper_pid, b->keeper_pid);
	ASSERT_EQ(a->backend, b->backend);
	ASSERT_EQ(a->generation, b->generation);
}

void expect_same(const struct cprx_state *a, const struct cprx_state *b)
{
	expect_origin_same(a, b);
	ASSERT_EQ(0, memcmp(a->ts, b->ts, sizeof(a->ts)));
	ASSERT_EQ(a->nr_fds, b->nr_fds);
	for (uint32_t i = 0; i < a->nr_fds; i++) {
		ASSERT_STREQ(a->fds[i].token, b->fds[i].token);
		ASSERT_EQ(a->fds[i].kind, b->fds[i].kind);
		ASSERT_EQ(a->fds[i].page_kind, b->fds[i].page_kind);
		ASSERT_EQ(a->fds[i].fd, b->fds[i].fd);
		ASSERT_EQ(a->fds[i].size, b->fds[i].size);
		ASSERT_EQ(a->fds[i].handle, b->fds[i].handle);
		ASSERT_EQ(a->fds[i].dev, b->fds[i].dev);
	}
	ASSERT_EQ(a->nr_blobs, b->nr_blobs);
	for (uint32_t i = 0; i < a->nr_blobs; i++) {
		ASSERT_STREQ(a->blobs[i].token, b->blobs[i].token);
		ASSERT_EQ(a->blobs[i].len, b->blobs[i].len);
		ASSERT_NE_NULL(b->blobs[i].data);
		if (a->blobs[i].len)
			ASSERT_EQ(0, memcmp(a->blobs[i].data, b->blobs[i].data,
					    a->blobs[i].len));
	}
}
