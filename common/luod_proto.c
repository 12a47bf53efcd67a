// SPDX-License-Identifier: LGPL-2.1-or-later
/* cprx-luod's messages: a line and at most one fd (luod_proto.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "luod_proto.h"

int cprx_luod_send(int sock, const char *msg, int fd)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };

	return cprx_luod_sendv(sock, &iov, 1, fd, 0);
}

int cprx_luod_sendv(int sock, const struct iovec *iov, int niov, int fd,
		    int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = niov };
	struct cmsghdr *c;
	ssize_t n;

	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

void cprx_luod_drop_fd(int fd)
{
	struct linger off = { 0 };

	/* fails on anything but a socket, and asks no file system */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
	close(fd);
}

/* Every fd that came with the message: one is taken, more is an error. */
static int take_fds(struct msghdr *mh, int *fd)
{
	struct cmsghdr *c;
	int ret = 0;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t i, n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*fd < 0) {
				*fd = got;
				continue;
			}
			cprx_luod_drop_fd(got);
			ret = -EPROTO;
		}
	}
	return ret;
}

/*
 * Room for every fd one message can carry (the kernel's SCM_MAX_FD): those
 * a short buffer cannot take the kernel closes in the receiver, waiting on
 * whatever their close waits on.  All are taken, and dropped.
 */
#define MSG_FDS_MAX	253

int cprx_luod_recv(int sock, char *buf, size_t len, int *fd)
{
	char cbuf[CMSG_SPACE(MSG_FDS_MAX * sizeof(int))];
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	ssize_t n;
	int ret;

	*fd = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	ret = take_fds(&mh, fd);
	if (!ret && (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		ret = -EPROTO;
	if (ret || !n) {
		if (*fd >= 0)
			cprx_luod_drop_fd(*fd);
		*fd = -1;
		return ret ? ret : -ECONNRESET;
	}
	buf[n] = '\0';
	return (int)n;
}

const char *cprx_luod_path(void)
{
	/* a set-user-ID VMM must not ask whatever socket its user names */
	const char *env = secure_getenv(CPRX_LUOD_ENV);

	return env && *env ? env : CPRX_LUOD_SOCKET;
}

int cprx_luod_kname(char *out, size_t len, unsigned int uid, const char *name)
{
	int n = snprintf(out, len, "cprx-%u-%s", uid, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
