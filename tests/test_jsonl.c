// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * common/jsonl.c, the tools' JSON lines writer: exact bytes for string
 * escaping (quotes, backslash, newline, control characters, DEL, UTF-8)
 * and number formats, and a line with every kind of value read back by
 * json-glib (json_util.h) as what was written.
 */
#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "json_util.h"
#include "jsonl.h"

/* Rotating buffers: a few outputs are compared in one EXPECT. */
static char *out_buf(char *mem, size_t len)
{
	static char bufs[4][512];
	static unsigned int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%.*s", (int)len, mem ? mem : "");
	free(mem);
	return b;
}

/* jsonl_string(@s), as written. */
static const char *escaped(const char *s)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);

	if (!f)
		return NULL;
	jsonl_string(f, s);
	fclose(f);
	return out_buf(mem, len);
}

TEST(escape_quote_backslash)
{
	EXPECT_STREQ("\"a\\\"b\"", escaped("a\"b"));
	EXPECT_STREQ("\"a\\\\b\"", escaped("a\\b"));
	EXPECT_STREQ("\"\\\\\\\"\"", escaped("\\\""));
	EXPECT_STREQ("\"\"", escaped(""));
}

TEST(escape_control)
{
	EXPECT_STREQ("\"a\\nb\"", escaped("a\nb"));
	EXPECT_STREQ("\"\\u0001\"", escaped("\x01"));
	EXPECT_STREQ("\"\\u001f\\u0009\\u000d\"", escaped("\x1f\t\r"));
	EXPECT_STREQ("\"\\u007f\"", escaped("\x7f"));
}

/* UTF-8 goes through as it is, byte for byte, not as \u escapes. */
TEST(escape_utf8)
{
	EXPECT_STREQ("\"d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x98\x80\"",
		     escaped("d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x98\x80"));
}

/*
 * Bytes that are not well-formed UTF-8 (a path or a comm from the kernel
 * can hold anything) become U+FFFD, each: the line stays valid JSON.
 */
TEST(escape_invalid_utf8)
{
	EXPECT_STREQ("\"a\\ufffdb\"", escaped("a\xff" "b"));		/* not a lead */
	EXPECT_STREQ("\"\\ufffd\"", escaped("\x80"));		/* lone continuation */
	EXPECT_STREQ("\"\\ufffdA\"", escaped("\xc3" "A"));	/* truncated */
	EXPECT_STREQ("\"\\ufffd\"", escaped("\xc3"));		/* cut by the end */
	EXPECT_STREQ("\"\\ufffd\\ufffd\"", escaped("\xc0\xaf"));	/* overlong '/' */
	EXPECT_STREQ("\"\\ufffd\\ufffd\\ufffd\"", escaped("\xed\xa0\x80")); /* surrogate */
	EXPECT_STREQ("\"\\ufffd\\ufffd\\ufffd\\ufffd\"",
		     escaped("\xf4\x90\x80\x80"));			/* > U+10FFFF */
	EXPECT_STREQ("\"\xf4\x8f\xbf\xbf\"", escaped("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
}

/* The line the other tests read back; @text gets it, with its newline. */
static const char *sample(const char *text)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	struct jsonl w;

	if (!f)
		return NULL;
	jsonl_begin(&w, f);
	jsonl_str(&w, "event", "test");
	jsonl_str(&w, "text", text);
	jsonl_str(&w, "none", NULL);
	jsonl_int(&w, "neg", -42);
	jsonl_u64(&w, "big", UINT64_MAX);
	jsonl_bool(&w, "yes", true);
	jsonl_bool(&w, "no", false);
	jsonl_null(&w, "nothing");
	jsonl_ms(&w, "ms", 1.5);
	jsonl_ms(&w, "ms_nan", NAN);
	jsonl_double(&w, "tenth", 0.1);
	jsonl_double(&w, "inf", INFINITY);
	jsonl_object_begin(&w, "obj");
	jsonl_object_begin(&w, "inner");
	jsonl_u64(&w, "n", 7);
	jsonl_object_end(&w);
	jsonl_array_begin(&w, "list");
	jsonl_u64(&w, NULL, 1);
	jsonl_str(&w, NULL, "two");
	jsonl_object_begin(&w, NULL);
	jsonl_bool(&w, "three", true);
	jsonl_object_end(&w);
	jsonl_array_begin(&w, NULL);
	jsonl_array_end(&w);
	jsonl_array_end(&w);
	jsonl_object_end(&w);
	jsonl_u64(&w, "last", 9);
	jsonl_end(&w);
	fclose(f);
	return out_buf(mem, len);
}

TEST(number_formats)
{
	const char *l = sample("x");

	ASSERT_NE_NULL(l);
	EXPECT_TRUE(strstr(l, "\"neg\":-42,") != NULL);
	EXPECT_TRUE(strstr(l, "\"big\":18446744073709551615,") != NULL);
	EXPECT_TRUE(strstr(l, "\"ms\":1.500,") != NULL);
	EXPECT_TRUE(strstr(l, "\"ms_nan\":null,") != NULL);
	EXPECT_TRUE(strstr(l, "\"tenth\":0.1,") != NULL);
	EXPECT_TRUE(strstr(l, "\"inf\":null,") != NULL);
}

TEST(one_line_exactly)
{
	const char *l = sample("a\nb\n");

	ASSERT_NE_NULL(l);
	EXPECT_EQ(1, (long)strlen(l) - (long)strcspn(l, "\n"));
	EXPECT_EQ('{', l[0]);
	EXPECT_STREQ("}\n", l + strlen(l) - 2);
	EXPECT_TRUE(strstr(l, "{\"event\":\"test\",\"text\":") == l);
	EXPECT_TRUE(strstr(l, "\"list\":[1,\"two\",{\"three\":true},[]]}") !=
		    NULL);
}

/* A JSON parser reads back every value, escaped strings included. */
TEST(reads_back)
{
	static const char text[] = "q\" b\\ n\n c\x01 u\xc3\xa9 d\x7f";
	const char *l = sample(text);
	JsonArray *list;
	JsonNode *n;

	ASSERT_NE_NULL(l);
	n = ju_parse(l, strlen(l) - 1);
	ASSERT_NE_NULL(n);
	EXPECT_STREQ("test", ju_str(n, "event"));
	EXPECT_STREQ(text, ju_str(n, "text"));
	EXPECT_TRUE(ju_get(n, "none") && JSON_NODE_HOLDS_NULL(ju_get(n, "none")));
	EXPECT_EQ(-42, ju_int(n, "neg"));
	EXPECT_EQ(1, ju_bool(n, "yes"));
	EXPECT_EQ(0, ju_bool(n, "no"));
	EXPECT_TRUE(JSON_NODE_HOLDS_NULL(ju_get(n, "nothing")));
	EXPECT_TRUE(ju_num(n, "ms") == 1.5);
	EXPECT_TRUE(isnan(ju_num(n, "ms_nan")));
	EXPECT_TRUE(ju_num(n, "tenth") == 0.1);
	EXPECT_EQ(7, ju_int(n, "obj.inner.n"));
	list = ju_array(n, "obj.list");
	ASSERT_NE_NULL(list);
	EXPECT_EQ(4, (int)json_array_get_length(list));
	EXPECT_EQ(1, ju_bool(json_array_get_element(list, 2), "three"));
	EXPECT_EQ(9, ju_int(n, "last"));
	json_node_unref(n);
}

TEST_HARNESS_MAIN
