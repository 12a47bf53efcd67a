// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Writes a few valid states into a directory: the seed corpus of
 * fuzz_state.  Usage: fuzz_seed DIR.  With --handover, handover strings
 * as cprx_exec and cprx_rollback write them, for fuzz_handover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handover.h"
#include "state.h"

static int write_state(const char *dir, int n, const struct cprx_state *st)
{
	char path[4096];
	size_t len;
	void *buf;
	FILE *f;
	int ret;

	ret = cprx_state_encode(st, &buf, &len);
	if (ret) {
		fprintf(stderr, "fuzz_seed: encode %d: %s\n", n,
			strerror(-ret));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/seed-%d", dir, n);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		free(buf);
		return 1;
	}
	free(buf);
	return 0;
}

static int write_str(const char *dir, int n, const char *s)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/handover-%d", dir, n);
	f = fopen(path, "wb");
	if (!f || fputs(s, f) < 0 || fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

static int handover_seeds(const char *dir)
{
	static const char *const plain[] = {
		"v=1,fd=7,rb=0,keeper=31337,reap=,save=81234567890,exec=81234600000",
		"v=1,kmod=5,rb=0,keeper=0,reap=812:813:814,save=1,exec=2",
		"v=1,fd=3,rb=0,keeper=4000,reap=3999,save=0,exec=18446744073709551615",
		"v=1,fd=3,rb=0,keeper=1,reap=,save=5,exec=6,future=key",
	};
	char esc[512], buf[1024];
	int i, err = 0;

	for (i = 0; i < (int)(sizeof(plain) / sizeof(plain[0])); i++)
		err |= write_str(dir, i, plain[i]);
	cprx_handover_escape(esc, sizeof(esc),
			     "reclaim of 'ram0' failed: 100%, retry,\nthen stop");
	snprintf(buf, sizeof(buf), "v=1,fd=9,rb=1,why=%s,keeper=77,reap=,"
		 "save=10,exec=20", esc);
	err |= write_str(dir, i++, buf);
	cprx_handover_escape(esc, sizeof(esc), "/var/lib/cprx/vm,0%.state");
	snprintf(buf, sizeof(buf), "v=1,fd=4,rb=0,keeper=12,reap=,save=1,"
		 "exec=2,mirror=%s", esc);
	err |= write_str(dir, i++, buf);
	return err;
}

int main(int argc, char **argv)
{
	static char *args[] = { "/usr/bin/qemu", "-m", "1G", "", NULL };
	static char data[] = "0123456789abcdef";
	struct cprx_rec_fd fds[8] = { 0 };
	struct cprx_rec_blob blobs[4] = { 0 };
	struct cprx_state st = { .exe_fd = -1 };
	int i, err = 0;

	if (argc == 3 && !strcmp(argv[1], "--handover"))
		return handover_seeds(argv[2]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s [--handover] DIR\n", argv[0]);
		return 2;
	}
	err |= write_state(argv[1], 0, &st);

	snprintf(st.session, sizeof(st.session), "vm0");
	st.exe_path = "/usr/bin/qemu";
	st.argc = 4;
	st.argv = args;
	st.exe_fd = 4;
	st.pid = 4242;
	st.backend = CPRX_BACKEND_CLOEXEC;
	st.generation = 2;
	for (i = 0; i < CPRX_PH_MAX; i++)
		st.ts[i] = 1000 * i;
	for (i = 0; i < 8; i++) {
		snprintf(fds[i].token, sizeof(fds[i].token), "fd%d", i);
		fds[i].kind = i % 3;
		fds[i].page_kind = i % 3;
		fds[i].fd = 10 + i;
		fds[i].size = (uint64_t)i << 21;
		fds[i].handle = i * 0x9e3779b97f4a7c15ull;
		fds[i].dev = i ? 0x10300 + i : 0;
	}
	for (i = 0; i < 4; i++) {
		snprintf(blobs[i].token, sizeof(blobs[i].token), "blob%d", i);
		blobs[i].len = i * 5;
		blobs[i].data = data;
	}
	st.nr_fds = 1;
	st.fds = fds;
	st.nr_blobs = 1;
	st.blobs = blobs + 1;
	err |= write_state(argv[1], 1, &st);
	st.nr_fds = 8;
	st.nr_blobs = 4;
	st.blobs = blobs;
	err |= write_state(argv[1], 2, &st);
	return err;
}
