// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Backends: how preserved files cross the exec.  "kmod" when cprx.ko's
 * /dev/cprx is there (only the session's fd crosses the exec), "cloexec"
 * otherwise; $CPRX_BACKEND or opts.backend force one.  "luo" (a kexec,
 * not an exec) is never chosen by itself: only when asked for.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static int parse_backend_env(struct cprx_session *s, enum cprx_backend *want)
{
	const char *env = getenv(CPRX_ENV_BACKEND);

	if (!env || !*env || !strcmp(env, "auto"))
		return 0;
	if (!strcmp(env, "cloexec"))
		*want = CPRX_BACKEND_CLOEXEC;
	else if (!strcmp(env, "kmod"))
		*want = CPRX_BACKEND_KMOD;
	else if (!strcmp(env, "luo"))
		*want = CPRX_BACKEND_LUO;
	else
		return cprx_fail(s, EINVAL, "use auto, cloexec, kmod or luo",
				 "%s=%s names no backend", CPRX_ENV_BACKEND, env);
	return 0;
}

int cprx_backend_select(struct cprx_session *s, enum cprx_backend want)
{
	int ret;

	if (want == CPRX_BACKEND_AUTO) {
		ret = parse_backend_env(s, &want);
		if (ret)
			return ret;
	}
	switch (want) {
	case CPRX_BACKEND_AUTO:
		s->backend = cprx_kmod_available() ? &cprx_backend_kmod
						   : &cprx_backend_cloexec;
		return 0;
	case CPRX_BACKEND_CLOEXEC:
		s->backend = &cprx_backend_cloexec;
		return 0;
	case CPRX_BACKEND_KMOD:
		if (!cprx_kmod_available())
			return cprx_fail(s, ENODEV, errno == EACCES ?
					 "/dev/cprx is root:kvm 0660: run the VMM "
					 "in group kvm, or use the cloexec backend "
					 "(CPRX_BACKEND=cloexec)" :
					 "load cprx.ko (modprobe cprx), or use the "
					 "cloexec backend (CPRX_BACKEND=cloexec)",
					 "kernel backend requested but %s is %s",
					 "/dev/cprx", errno == EACCES ?
					 "not ours to open" : "missing");
		s->backend = &cprx_backend_kmod;
		return 0;
	case CPRX_BACKEND_LUO:	/* its open reaches cprx-luod, or says why not */
		s->backend = &cprx_backend_luo;
		return 0;
	}
	return cprx_fail(s, EINVAL, "use enum cprx_backend",
			 "backend %d is unknown", want);
}
