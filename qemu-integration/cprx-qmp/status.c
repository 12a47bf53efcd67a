// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx-qmp status: what the running QEMU is and whether it can be updated
 * (the preflight's RAM and sandbox checks, nothing run or stopped).
 */
#include "cprx-qmp.h"

#include <stdio.h>

int do_status(struct qmp_opts *o)
{
	struct qmp_ctx c = { .o = o };
	int ret = connect_qemu(&c);
	g_autoptr(JsonNode) mem = NULL;
	g_autoptr(GString) d = g_string_new(NULL);
	const char *hint = NULL;

	if (ret)
		return ret;
	json_object_set_string_member(c.report, "guest_status", guest_status(&c));
	mem = qmp_cmd(c.q, "query-memdev", NULL, 5000, NULL);
	if (mem)
		json_object_set_member(c.report, "memdev", json_node_copy(mem));
	json_object_set_boolean_member(c.report, "ram_shared", check_ram(&c, d, &hint));
	json_object_set_string_member(c.report, "ram", d->str);
	g_string_truncate(d, 0);
	json_object_set_boolean_member(c.report, "exec_permitted", check_sandbox(&c, d, &hint));
	json_object_set_string_member(c.report, "sandbox", d->str);
	write_report(&c);
	if (!o->json) {
		g_autofree char *g = printable(json_object_get_string_member(c.report,
								"guest_status"));
		g_autofree char *ram = printable(json_object_get_string_member(c.report, "ram"));
		g_autofree char *exec = printable(d->str);

		printf("QEMU %s pid %d%s: guest %s\n  ram: %s (%s)\n  exec: %s (%s)\n",
		       qmp_version(c.q), c.pid, c.other_root ? " (chroot)" : "", g, ram,
		       json_object_get_boolean_member(c.report, "ram_shared") ? "ready" : "NOT shared",
		       exec, json_object_get_boolean_member(c.report, "exec_permitted") ?
		       "permitted" : "REFUSED");
	}
	ctx_free(&c);
	return 0;
}
