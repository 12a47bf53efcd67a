/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading JSON in the tests, over json-glib: parse a line, then get a
 * member by its path, the keys joined by dots ("phases_ms.exec").  Every
 * getter takes NULL for @node and says "absent" then, so that a lookup of
 * a line that is not there fails the assertion, not the test program.
 */
#ifndef CPRX_TESTS_JSON_UTIL_H
#define CPRX_TESTS_JSON_UTIL_H

#include <stddef.h>
#include <json-glib/json-glib.h>

/* @len bytes of @text as one JSON value, or NULL; json_node_unref() it. */
JsonNode *ju_parse(const char *text, size_t len);

/* The value at @path below the object @node, or NULL when absent. */
JsonNode *ju_get(JsonNode *node, const char *path);

/* A string, or NULL when absent or not a string (null). */
const char *ju_str(JsonNode *node, const char *path);
/* An integer, or -1 when absent or not an integer: ours are unsigned. */
long long ju_int(JsonNode *node, const char *path);
/* Any number, or NAN when absent or not a number (null). */
double ju_num(JsonNode *node, const char *path);
/* 1, 0, or -1 when absent or not a boolean. */
int ju_bool(JsonNode *node, const char *path);
/* An array, or NULL when absent or not an array. */
JsonArray *ju_array(JsonNode *node, const char *path);

#endif /* CPRX_TESTS_JSON_UTIL_H */
