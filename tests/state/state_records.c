// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state format's records, one by one: CRC32C, timestamps from other
 * builds, and malformed ORIGIN, FD, TIMES and BLOB payloads refused by name;
 * what the encoder refuses to write.
 */
#include "state_util.h"

static uint64_t get64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* CRC32C --------------------------------------------------------------- */

TEST(crc32c_known_vector)
{
	ASSERT_EQ(0xE3069283u, cprx_crc32c(0, "123456789", 9));
	ASSERT_EQ(0u, cprx_crc32c(0, "", 0));
	/* RFC 3720 B.4: 32 bytes of zeros */
	ASSERT_EQ(0x8A9136AAu, cprx_crc32c(0, (uint8_t[32]){ 0 }, 32));
}

TEST(crc32c_chains)
{
	static const char s[] = "The quick brown fox jumps over the lazy dog";
	uint32_t whole = cprx_crc32c(0, s, sizeof(s) - 1);

	for (size_t i = 0; i < sizeof(s); i++)
		ASSERT_EQ(whole, cprx_crc32c(cprx_crc32c(0, s, i), s + i,
					     sizeof(s) - 1 - i));
}

/* Round trips ------------------------------------------------------------ */
TEST(times_from_other_builds)
{
	struct trec r[2];
	struct bb t = { 0 };
	struct cprx_state st;
	size_t len;
	uint8_t *buf;

	/* fewer phases: the rest stay 0; more: the extra are dropped */
	for (uint32_t count = 0; count < CPRX_PH_MAX + 4; count += 3) {
		std_recs(r);
		memset(&t, 0, sizeof(t));
		times_payload(&t, count);
		r[1] = (struct trec){ CPRX_REC_TIMES, t.n, t.b };
		buf = join(r, 2, &len);
		ASSERT_EQ(0, cprx_state_decode(buf, len, &st, NULL, 0));
		for (uint32_t i = 0; i < CPRX_PH_MAX; i++)
			ASSERT_EQ(i < count ? 1000 + i : 0, st.ts[i]);
		cprx_state_free(&st);
		free(buf);
	}
	/* and none at all is fine */
	ASSERT_EQ(0, decode_recs(r, 1, NULL, 0));
}

/* FD records from before dev (40-byte payload for "ram0") and after (48). */
TEST(fd_record_with_and_without_dev)
{
	struct trec r[MAX_RECS];
	struct bb b = { 0 };
	struct cprx_state st;
	struct cprx_rec_fd f = { .token = "ram0", .fd = 9, .handle = 77,
				 .dev = 0x10305 };
	struct cprx_state in = { .session = "vm", .pid = 1, .exe_fd = -1,
				 .fds = &f, .nr_fds = 1 };
	size_t len;
	uint8_t *buf;
	void *enc;

	for (int with_dev = 0; with_dev < 2; with_dev++) {
		std_recs(r);
		b.n = 0;
		fd_payload(&b, "ram0", 4, 0, 0, 0);
		if (with_dev)
			bb_u64(&b, 0x10305);
		ASSERT_EQ(with_dev ? 48 : 40, b.n);
		r[2] = (struct trec){ CPRX_REC_FD, b.n, b.b };
		buf = join(r, 3, &len);
		ASSERT_EQ(0, cprx_state_decode(buf, len, &st, NULL, 0));
		ASSERT_EQ(1, st.nr_fds);
		ASSERT_EQ(77, st.fds[0].handle);
		ASSERT_EQ(with_dev ? 0x10305 : 0, st.fds[0].dev);
		cprx_state_free(&st);
		free(buf);
	}
	/* the encoder always writes dev */
	ASSERT_EQ(0, cprx_state_encode(&in, &enc, &len));
	ASSERT_EQ(3, split(enc, len, r));
	ASSERT_EQ(CPRX_REC_FD, r[2].type);
	ASSERT_EQ(48, r[2].len);
	ASSERT_EQ(0x10305, get64(r[2].p + 40));
	free(enc);
}

TEST(bad_origin)
{
	struct trec r[2];
	struct bb b = { 0 };
	char err[256];

	std_recs(r);
	origin_payload(&b, 7, 1);
	r[0] = (struct trec){ CPRX_REC_ORIGIN, b.n, b.b };
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_STREQ("record 0 (origin): backend 7 out of range", err);

	memset(&b, 0, sizeof(b));
	origin_payload(&b, 0, CPRX_STATE_MAX_ARGS + 1);
	r[0].len = b.n;
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_NE_NULL(strstr(err, "argc 4097 exceeds"));

	/* plausible count, no bytes behind it: refused before calloc */
	memset(&b, 0, sizeof(b));
	origin_payload(&b, 0, 100);
	r[0].len = b.n;
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_NE_NULL(strstr(err, "argc 100"));

	memset(&b, 0, sizeof(b));
	origin_payload(&b, 0, 1);
	r[0].len = b.n - 4;
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_STREQ("record 0 (origin): payload too short for argv[0]", err);
	r[0].len = b.n + 4;
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_STREQ("record 0 (origin): 4 stray bytes after the last field",
		     err);

	r[0] = r[1];
	ASSERT_EQ(-EBADMSG, decode_recs(r, 1, err, sizeof(err)));
	EXPECT_STREQ("state has no ORIGIN record", err);
	std_recs(r);
	r[1] = r[0];
	ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
	EXPECT_STREQ("record 1 (origin): second ORIGIN record", err);
}

TEST(bad_fd)
{
	struct bb b = { 0 };
	char tok[64];

	fd_payload(&b, "ram0", 4, 3, 0, 0);
	expect_bad(&b, CPRX_REC_FD, "record 2 (fd 'ram0'): kind 3 out of range");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 3, 0);
	expect_bad(&b, CPRX_REC_FD, "page_kind 3 out of range");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 0, 1);
	expect_bad(&b, CPRX_REC_FD, "reserved field is 0x1, not zero");
	b.n = 0;
	fd_payload(&b, "", 0, 0, 0, 0);
	expect_bad(&b, CPRX_REC_FD, "record 2 (fd): empty token");
	b.n = 0;
	memset(tok, 'a', sizeof(tok));
	fd_payload(&b, tok, 64, 0, 0, 0);
	expect_bad(&b, CPRX_REC_FD, "token length 64 exceeds 63");
	b.n = 0;
	fd_payload(&b, "ra\0m", 4, 0, 0, 0);
	expect_bad(&b, CPRX_REC_FD, "token contains a NUL byte");
	b.n = 0;
	fd_payload(&b, "ram", 3, 0, 0, 0);
	b.b[7] = '!';
	expect_bad(&b, CPRX_REC_FD, "nonzero padding after token");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 0, 0);
	b.n -= 4;
	expect_bad(&b, CPRX_REC_FD, "(fd 'ram0'): payload too short for handle");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 0, 0);
	b.n += 4;
	expect_bad(&b, CPRX_REC_FD, "4 stray bytes after the last field");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 0, 0);
	bb_u64(&b, 0x10305);	/* dev */
	b.n += 8;
	expect_bad(&b, CPRX_REC_FD, "8 stray bytes after the last field");
	b.n = 0;
	fd_payload(&b, "ram0", 4, 0, 0, 0);
	bb_u64(&b, 0x10305);
	b.n += 4;
	expect_bad(&b, CPRX_REC_FD, "4 stray bytes after the last field");
}

TEST(bad_times_and_blob)
{
	struct bb b = { 0 };

	times_payload(&b, 3);
	b.n -= 8;
	expect_bad(&b, CPRX_REC_TIMES,
		   "record 2 (times): second TIMES record");
	/* as the only TIMES: replace the std one */
	{
		struct trec r[2];
		char err[256];

		std_recs(r);
		r[1] = (struct trec){ CPRX_REC_TIMES, b.n, b.b };
		ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
		EXPECT_STREQ("record 1 (times): count 3 does not match 16 bytes of timestamps",
			     err);
		put32(b.b + 4, 2);
		ASSERT_EQ(-EBADMSG, decode_recs(r, 2, err, sizeof(err)));
		EXPECT_STREQ("record 1 (times): reserved field is 0x2, not zero",
			     err);
	}
	b.n = 0;
	bb_str(&b, "cfg", 3);
	bb_u32(&b, 100);
	bb_u64(&b, 0);
	expect_bad(&b, CPRX_REC_BLOB,
		   "record 2 (blob 'cfg'): payload too short for data");
	b.n = 0;
	bb_str(&b, "cfg", 3);
	bb_u32(&b, 0xffffffff);
	expect_bad(&b, CPRX_REC_BLOB, "payload too short for data");
}

TEST(encode_rejects_bad_input)
{
	struct cprx_state st;
	struct cprx_rec_fd fds[2];
	struct cprx_rec_blob blobs[2];
	size_t len = 1;
	void *buf = &len;

	sample(&st, fds, blobs);
	fds[0].kind = 9;
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	EXPECT_NULL(buf);
	EXPECT_EQ(0u, len);
	sample(&st, fds, blobs);
	fds[0].token[0] = '\0';
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	sample(&st, fds, blobs);
	memset(fds[0].token, 'x', sizeof(fds[0].token));	/* no NUL */
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	sample(&st, fds, blobs);
	st.argv = NULL;
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	sample(&st, fds, blobs);
	st.nr_fds = CPRX_STATE_MAX_FDS + 1;
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	sample(&st, fds, blobs);
	blobs[1].len = 1;	/* and no data */
	EXPECT_EQ(-EINVAL, cprx_state_encode(&st, &buf, &len));
	sample(&st, fds, blobs);
	blobs[0].len = CPRX_STATE_MAX + 1;
	EXPECT_EQ(-E2BIG, cprx_state_encode(&st, &buf, &len));
	EXPECT_EQ(-EINVAL, cprx_state_encode(NULL, &buf, &len));
}

TEST(free_is_idempotent)
{
	struct cprx_state st;

	memset(&st, 0, sizeof(st));
	cprx_state_free(&st);
	cprx_state_free(&st);
	cprx_state_free(NULL);
	EXPECT_TRUE(zeroed(&st));
}


TEST_HARNESS_MAIN
