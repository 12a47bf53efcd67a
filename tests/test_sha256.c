// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * common/sha256.c: the hash of the status file's fingerprints (one-shot)
 * and of a policy's sha256= binaries (streamed).
 */
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "sha256.h"

/* The fingerprints' hash: FIPS 180-4's examples, and a two-block tail. */
TEST(sha256_known_vectors)
{
	static const struct { const char *in, *hex; } v[] = {
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	unsigned char out[32];
	char hex[65];
	unsigned int i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cprx_sha256(v[i].in, strlen(v[i].in), out);
		cprx_sha256_hex(out, hex);
		EXPECT_STREQ(v[i].hex, hex);
	}
}

/*
 * Streamed, as a policy's binaries are hashed: FIPS 180-4's 112-byte
 * example split at every byte (a partial block carried over, completed,
 * or left whole), and a million 'a' fed in uneven pieces.
 */
TEST(sha256_streamed)
{
	static const char two[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklm"
		"ghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	static const size_t piece[] = { 1, 63, 64, 65, 127, 4096, 55, 56, 9 };
	char *a = malloc(1000000), hex[65];
	struct cprx_sha256 c;
	unsigned char out[32];
	size_t i, off, n;

	ASSERT_NE_NULL(a);
	for (i = 0; i <= sizeof(two) - 1; i++) {
		cprx_sha256_init(&c);
		cprx_sha256_update(&c, two, i);
		cprx_sha256_update(&c, two + i, sizeof(two) - 1 - i);
		cprx_sha256_final(&c, out);
		cprx_sha256_hex(out, hex);
		EXPECT_STREQ("cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", hex);
	}
	memset(a, 'a', 1000000);
	cprx_sha256_init(&c);
	for (off = 0, i = 0; off < 1000000; off += n, i++) {
		n = piece[i % (sizeof(piece) / sizeof(piece[0]))];
		n = n < 1000000 - off ? n : 1000000 - off;
		cprx_sha256_update(&c, a + off, n);
	}
	cprx_sha256_final(&c, out);
	cprx_sha256_hex(out, hex);
	EXPECT_STREQ("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hex);
	free(a);
}

TEST_HARNESS_MAIN
