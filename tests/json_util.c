// SPDX-License-Identifier: LGPL-2.1-or-later
/* The tests' JSON reader (json_util.h): json-glib, looked up by path. */
#include <math.h>
#include <string.h>

#include "json_util.h"

JsonNode *ju_parse(const char *text, size_t len)
{
	g_autoptr(JsonParser) p = json_parser_new_immutable();
	JsonNode *root;

	if (!json_parser_load_from_data(p, text, (gssize)len, NULL))
		return NULL;
	root = json_parser_get_root(p);
	return root ? json_node_ref(root) : NULL;
}

JsonNode *ju_get(JsonNode *node, const char *path)
{
	const char *dot;
	char key[256];
	size_t n;

	while (node && path && *path) {
		if (!JSON_NODE_HOLDS_OBJECT(node))
			return NULL;
		dot = strchr(path, '.');
		n = dot ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		node = json_object_get_member(json_node_get_object(node), key);
		path = dot ? dot + 1 : NULL;
	}
	return node;
}

/* The value at @path when it holds a plain value of @type. */
static JsonNode *value_of(JsonNode *node, const char *path, GType type)
{
	node = ju_get(node, path);
	if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
	    json_node_get_value_type(node) != type)
		return NULL;
	return node;
}

const char *ju_str(JsonNode *node, const char *path)
{
	node = value_of(node, path, G_TYPE_STRING);
	return node ? json_node_get_string(node) : NULL;
}

long long ju_int(JsonNode *node, const char *path)
{
	node = value_of(node, path, G_TYPE_INT64);
	return node ? json_node_get_int(node) : -1;
}

double ju_num(JsonNode *node, const char *path)
{
	JsonNode *v = value_of(node, path, G_TYPE_DOUBLE);

	if (v)
		return json_node_get_double(v);
	v = value_of(node, path, G_TYPE_INT64);
	return v ? (double)json_node_get_int(v) : NAN;
}

int ju_bool(JsonNode *node, const char *path)
{
	node = value_of(node, path, G_TYPE_BOOLEAN);
	return node ? json_node_get_boolean(node) : -1;
}

JsonArray *ju_array(JsonNode *node, const char *path)
{
	node = ju_get(node, path);
	return node && JSON_NODE_HOLDS_ARRAY(node) ?
	       json_node_get_array(node) : NULL;
}
