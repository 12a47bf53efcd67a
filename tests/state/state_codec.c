// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state format's codec: round trips keep every field, the layout is
 * the documented one, and every truncation and single bit flip of a valid
 * state is refused with a message naming the problem, without leaks.
 */
#include "state_util.h"

/* Round trips ------------------------------------------------------------ */

FIXTURE(codec) {
	struct cprx_state in, out;
	struct cprx_rec_fd fds[2];
	struct cprx_rec_blob blobs[2];
	uint8_t *buf;
	size_t len;
	char err[256];
};

FIXTURE_SETUP(codec)
{
	void *buf;

	sample(&self->in, self->fds, self->blobs);
	ASSERT_EQ(0, cprx_state_encode(&self->in, &buf, &self->len));
	self->buf = buf;
}

FIXTURE_TEARDOWN(codec)
{
	cprx_state_free(&self->out);
	free(self->buf);
}

TEST_F(codec, round_trip)
{
	ASSERT_EQ(0, cprx_state_decode(self->buf, self->len, &self->out,
				       self->err, sizeof(self->err)));
	ASSERT_STREQ("", self->err);
	ASSERT_EQ(CPRX_STATE_VERSION, self->out.version);
	expect_same(&self->in, &self->out);
}

TEST_F(codec, layout)
{
	struct trec r[MAX_RECS];
	size_t len;
	uint8_t *again;
	int n;

	ASSERT_EQ(0, memcmp(self->buf, "CPRXSTAT", 8));
	ASSERT_EQ(CPRX_STATE_VERSION, le32(self->buf + 8));
	ASSERT_EQ(32u, le32(self->buf + 12));
	ASSERT_EQ(self->len, le32(self->buf + 16));
	ASSERT_EQ(0u, le32(self->buf + 20));
	ASSERT_EQ(6u, le32(self->buf + 24));
	ASSERT_EQ(0u, self->len % 8);
	n = split(self->buf, self->len, r);
	ASSERT_EQ(6, n);
	ASSERT_EQ(CPRX_REC_ORIGIN, r[0].type);
	ASSERT_EQ(CPRX_REC_TIMES, r[1].type);
	ASSERT_EQ(8u + 8 * CPRX_PH_MAX, r[1].len);
	ASSERT_EQ(CPRX_PH_MAX, le32(r[1].p));
	/* the test's writer and the library's agree to the byte */
	again = join(r, n, &len);
	ASSERT_EQ(self->len, len);
	EXPECT_EQ(0, memcmp(self->buf, again, len));
	free(again);
}

TEST_F(codec, buffer_longer_than_state)
{
	/* a memfd read back whole may be page-rounded */
	uint8_t *big = calloc(1, self->len + 4096);

	memcpy(big, self->buf, self->len);
	EXPECT_EQ(0, cprx_state_decode(big, self->len + 4096, &self->out,
				       self->err, sizeof(self->err)));
	free(big);
}

TEST(round_trip_large)
{
	struct cprx_state in, out;
	struct cprx_rec_fd fds[2];
	struct cprx_rec_blob blobs[3];
	size_t len;
	void *buf;
	char err[256];

	sample(&in, fds, blobs);
	blobs[2] = (struct cprx_rec_blob){ .token = "big", .len = 1 << 20 };
	blobs[2].data = malloc(1 << 20);
	ASSERT_NE_NULL(blobs[2].data);
	for (uint32_t i = 0; i < 1 << 20; i++)
		((uint8_t *)blobs[2].data)[i] = i * 2654435761u >> 24;
	in.nr_blobs = 3;
	ASSERT_EQ(0, cprx_state_encode(&in, &buf, &len));
	EXPECT_GT(len, 1u << 20);
	EXPECT_EQ(0, cprx_state_decode(buf, len, &out, err, sizeof(err)));
	expect_same(&in, &out);
	cprx_state_free(&out);
	free(buf);
	free(blobs[2].data);
}

TEST(round_trip_minimal)
{
	struct cprx_state in = { .exe_fd = -1 }, out;
	size_t len;
	void *buf;

	ASSERT_EQ(0, cprx_state_encode(&in, &buf, &len));
	ASSERT_EQ(0, cprx_state_decode(buf, len, &out, NULL, 0));
	EXPECT_EQ(-1, out.exe_fd);
	EXPECT_STREQ("", out.session);
	EXPECT_NULL(out.exe_path);	/* none in, none out */
	EXPECT_EQ(0u, out.argc);
	ASSERT_NE_NULL(out.argv);
	EXPECT_NULL(out.argv[0]);
	EXPECT_EQ(0u, out.nr_fds);
	EXPECT_EQ(0u, out.nr_blobs);
	cprx_state_free(&out);
	free(buf);
}

/* Hostile input -------------------------------------------------------- */

TEST_F(codec, every_truncation)
{
	for (size_t l = 0; l < self->len; l++) {
		int ret = cprx_state_decode(self->buf, l, &self->out,
					    self->err, sizeof(self->err));

		ASSERT_EQ(-EBADMSG, ret);
		ASSERT_NE_NULL(strstr(self->err, "truncated"));
		ASSERT_TRUE(zeroed(&self->out));
	}
	cprx_state_decode(self->buf, 31, &self->out, self->err,
			  sizeof(self->err));
	EXPECT_STREQ("state truncated: 31 bytes, header needs 32", self->err);
	cprx_state_decode(self->buf, 40, &self->out, self->err,
			  sizeof(self->err));
	EXPECT_NE_NULL(strstr(self->err, "header says"));
}

/*
 * No single flipped bit gets through: the header CRC covers the header,
 * record CRCs the payloads, zero checks the reserved fields and padding;
 * a flipped type makes an unknown type, a second ORIGIN or TIMES, or
 * leaves no ORIGIN.
 */
TEST_F(codec, every_bit_flip)
{
	struct cprx_state o;

	for (size_t bit = 0; bit < self->len * 8; bit++) {
		int ret;

		self->buf[bit / 8] ^= 1 << (bit % 8);
		ret = cprx_state_decode(self->buf, self->len, &self->out,
					self->err, sizeof(self->err));
		if (ret >= 0)
			TH_LOG("bit %zu accepted", bit);
		ASSERT_LT(ret, 0);
		ASSERT_NE(0, self->err[0]);
		ASSERT_TRUE(zeroed(&self->out));
		/* lenient: may pass, must not crash or leak */
		if (cprx_state_decode_origin(self->buf, self->len, &o, NULL, 0))
			ASSERT_TRUE(zeroed(&o));
		cprx_state_free(&o);
		self->buf[bit / 8] ^= 1 << (bit % 8);
	}
}

TEST_F(codec, wrong_version)
{
	char want[128];

	put32(self->buf + 8, CPRX_STATE_VERSION + 1);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EPROTO, cprx_state_decode(self->buf, self->len, &self->out,
					     self->err, sizeof(self->err)));
	snprintf(want, sizeof(want), "state version %u, this build reads %u",
		 CPRX_STATE_VERSION + 1, CPRX_STATE_VERSION);
	EXPECT_STREQ(want, self->err);
}

TEST_F(codec, origin_of_other_version)
{
	put32(self->buf + 8, CPRX_STATE_VERSION + 1);
	fix_header_crc(self->buf);
	ASSERT_EQ(0, cprx_state_decode_origin(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_EQ(CPRX_STATE_VERSION + 1, self->out.version);
	expect_origin_same(&self->in, &self->out);
	EXPECT_EQ(0u, self->out.nr_fds);
	EXPECT_EQ(0u, self->out.ts[CPRX_PH_EXEC]);
}

TEST_F(codec, origin_despite_bad_fd)
{
	struct trec r[MAX_RECS];

	split(self->buf, self->len, r);
	ASSERT_EQ(CPRX_REC_FD, r[2].type);
	((uint8_t *)r[2].p)[r[2].len - 1] ^= 0x40;	/* in the handle */
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("record 2 (fd 'ram0') checksum mismatch", self->err);
	ASSERT_EQ(0, cprx_state_decode_origin(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("", self->err);
	expect_origin_same(&self->in, &self->out);
}

TEST_F(codec, origin_refused_when_corrupt)
{
	struct trec r[MAX_RECS];

	split(self->buf, self->len, r);
	((uint8_t *)r[0].p)[5] ^= 1;
	ASSERT_EQ(-EBADMSG, cprx_state_decode_origin(self->buf, self->len,
						     &self->out, self->err,
						     sizeof(self->err)));
	EXPECT_STREQ("record 0 (origin) checksum mismatch", self->err);
	EXPECT_TRUE(zeroed(&self->out));
	/* and the header still counts */
	self->buf[0] = 'X';
	ASSERT_EQ(-EBADMSG, cprx_state_decode_origin(self->buf, self->len,
						     &self->out, self->err,
						     sizeof(self->err)));
	EXPECT_STREQ("not a cprx state (bad magic)", self->err);
}

TEST_F(codec, header_errors)
{
	/* no room for a message is fine */
	ASSERT_EQ(0, cprx_state_decode(self->buf, self->len, &self->out,
				       NULL, 0));
	cprx_state_free(&self->out);
	self->buf[12] = 40;		/* header_len, without fixing the CRC */
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("state header checksum mismatch", self->err);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("state header_len 40, expected 32", self->err);
	memcpy(self->buf, "CPRXSTAX", 8);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("not a cprx state (bad magic)", self->err);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(NULL, 0, &self->out, self->err,
					      sizeof(self->err)));
	/* a short buffer still gets a terminated message */
	cprx_state_decode(self->buf, 3, &self->out, self->err, 8);
	EXPECT_STREQ("state t", self->err);
}

TEST_F(codec, oversize)
{
	uint64_t huge = (uint64_t)CPRX_STATE_MAX + 8;
	size_t maplen = huge + 4096;
	uint8_t *map;

	put64(self->buf + 16, huge);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_NE_NULL(strstr(self->err, "truncated: header says 268435464"));

	/* only the header page gets touched */
	map = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED)
		SKIP(return, "no room to map %zu bytes", maplen);
	memcpy(map, self->buf, self->len);
	EXPECT_EQ(-E2BIG, cprx_state_decode(map, maplen, &self->out,
					    self->err, sizeof(self->err)));
	EXPECT_NE_NULL(strstr(self->err, "exceeds"));
	EXPECT_EQ(-E2BIG, cprx_state_decode_origin(map, maplen, &self->out,
						   NULL, 0));
	munmap(map, maplen);
}

TEST_F(codec, record_count_mismatch)
{
	put32(self->buf + 24, 7);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_NE_NULL(strstr(self->err, "record 6 truncated"));
	put32(self->buf + 24, 5);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_NE_NULL(strstr(self->err, "stray bytes after its 5 records"));
	put32(self->buf + 24, 0xffffffff);
	fix_header_crc(self->buf);
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	/* decode_origin walks no further than the bytes go */
	EXPECT_EQ(0, cprx_state_decode_origin(self->buf, self->len, &self->out,
					      NULL, 0));
}

TEST_F(codec, record_header_errors)
{
	struct trec r[MAX_RECS];
	uint8_t *hdr;
	char want[96];

	split(self->buf, self->len, r);
	hdr = (uint8_t *)r[4].p - 16;	/* blob 'cfg': 23 bytes + 1 pad */
	ASSERT_EQ(23u, r[4].len);
	hdr[16 + 23] = 1;
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	snprintf(want, sizeof(want),
		 "record 4 (blob): nonzero padding byte at offset %zu",
		 (size_t)(hdr + 16 + 23 - self->buf));
	EXPECT_STREQ(want, self->err);
	hdr[16 + 23] = 0;
	hdr[12] = 1;
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("record 4 (blob): reserved header field is 0x1, not zero",
		     self->err);
	hdr[12] = 0;
	hdr[0] = 9;
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_STREQ("record 4 (type 9): unknown record type", self->err);
	hdr[0] = CPRX_REC_BLOB;
	hdr[4] = 200;
	ASSERT_EQ(-EBADMSG, cprx_state_decode(self->buf, self->len, &self->out,
					      self->err, sizeof(self->err)));
	EXPECT_NE_NULL(strstr(self->err, "record 4 (blob) truncated"));
}

TEST_F(codec, duplicate_tokens)
{
	struct trec r[MAX_RECS];
	struct bb fd = { 0 };
	size_t len;
	void *buf;
	int n;

	/* the encoder refuses them */
	snprintf(self->fds[1].token, sizeof(self->fds[1].token), "ram0");
	EXPECT_EQ(-EINVAL, cprx_state_encode(&self->in, &buf, &len));
	snprintf(self->fds[1].token, sizeof(self->fds[1].token), "vhost-net");
	snprintf(self->blobs[1].token, sizeof(self->blobs[1].token), "cfg");
	EXPECT_EQ(-EINVAL, cprx_state_encode(&self->in, &buf, &len));

	/* and so does the decoder */
	n = split(self->buf, self->len, r);
	fd_payload(&fd, "ram0", 4, CPRX_FD_DEVICE, 0, 0);
	r[n++] = (struct trec){ CPRX_REC_FD, fd.n, fd.b };
	ASSERT_EQ(-EBADMSG, decode_recs(r, n, self->err, sizeof(self->err)));
	EXPECT_STREQ("record 6 (fd 'ram0'): duplicate token 'ram0' (also in record 2)",
		     self->err);
	r[n - 1] = r[5];
	ASSERT_EQ(-EBADMSG, decode_recs(r, n, self->err, sizeof(self->err)));
	EXPECT_STREQ("record 6 (blob 'empty'): duplicate token 'empty' (also in record 5)",
		     self->err);
	/* one token may name an fd and a blob */
	r[n - 1] = (struct trec){ CPRX_REC_FD, fd.n, fd.b };
	memcpy(fd.b + 4, "cfg\0", 4);
	put32(fd.b, 3);
	EXPECT_EQ(0, decode_recs(r, n, self->err, sizeof(self->err)));
}

TEST_F(codec, records_in_any_order)
{
	struct trec r[MAX_RECS], t;
	int n = split(self->buf, self->len, r);

	t = r[0];
	r[0] = r[n - 1];
	r[n - 1] = t;
	EXPECT_EQ(0, decode_recs(r, n, self->err, sizeof(self->err)));
}

TEST_HARNESS_MAIN
