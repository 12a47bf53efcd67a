// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cprx.ko selftests across exec: updates through one and two execs and
 * through wrapper execs, what an unarmed, cancelled or close-on-exec session
 * leaves, a cancel from the new image, and retrieves that fault or find no
 * free fd (who may use a session: kmod_who.c).
 */
#include <sched.h>
#include "kmod_util.h"

/* --- Across exec ---------------------------------------------------------- */

/* The old image of "update": pins a memfd, an eventfd and a pipe, execs. */
static void update_old_image(long unused)
{
	int dev = open_dev(), sfd, mfd, efd, p[2];

	(void)unused;
	CHECK(dev >= 0, "open %s: %m", CPRX_DEVICE);
	sfd = create(dev, SESS);
	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(MEM_SIZE, 7);
	CHECK(mfd >= 0, "memfd: %d", mfd);
	efd = eventfd(EVT_COUNT, EFD_CLOEXEC);
	CHECK(efd >= 0, "eventfd: %m");
	CHECK(!pipe2(p, O_CLOEXEC), "pipe: %m");
	CHECK(write(p[1], PIPE_MSG, sizeof(PIPE_MSG)) == sizeof(PIPE_MSG),
	      "pipe write: %m");
	CHECK(!preserve(sfd, mfd, TOK_MEM), "preserve memfd");
	CHECK(!preserve(sfd, efd, TOK_EVT), "preserve eventfd");
	CHECK(!preserve(sfd, p[0], TOK_PIPE_R), "preserve pipe");
	CHECK(!preserve(sfd, p[1], TOK_PIPE_W), "preserve pipe");
	CHECK(!arm(sfd, 0), "arm");
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("update", sfd, 0, 0);
}

static void check_kinds(int sfd)
{
	static const struct { uint64_t token; uint32_t kind; } want[] = {
		{ TOK_MEM, CPRX_KIND_MEMFD }, { TOK_EVT, CPRX_KIND_EVENTFD },
		{ TOK_PIPE_R, CPRX_KIND_PIPE }, { TOK_PIPE_W, CPRX_KIND_PIPE },
	};
	struct cprx_query_entry ents[8];
	struct cprx_session_query q;
	int ret = query(sfd, &q, ents, ARRAY_SIZE(ents));

	CHECK(!ret, "query: %d", ret);
	CHECK(q.nr_entries == 4, "%u pins", q.nr_entries);
	CHECK(q.flags == CPRX_SESSION_RETRIEVED, "flags %#x", q.flags);
	CHECK(q.owner_pid == (uint32_t)getpid(), "owner %u", q.owner_pid);
	CHECK(!strcmp((char *)q.name, SESS), "name %s", q.name);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		int kind = kind_of(sfd, want[i].token);

		CHECK(kind == (int)want[i].kind, "token %#" PRIx64 ": kind %d",
		      want[i].token, kind);
	}
}

/* Takes every pin back and checks what is in it. */
static void check_contents(int sfd)
{
	struct stat a, b;
	char msg[sizeof(PIPE_MSG)];
	uint64_t count;
	int mfd, mfd2, efd, r, w;

	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd >= 0, "retrieve memfd: %d", mfd);
	CHECK(cloexec_of(mfd) == FD_CLOEXEC, "memfd not O_CLOEXEC");
	CHECK(memfd_bad(mfd, MEM_SIZE, 7) < 0, "memfd content lost at %lld",
	      memfd_bad(mfd, MEM_SIZE, 7));
	/* the pin stays until FINISH: the same file again */
	mfd2 = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd2 >= 0 && mfd2 != mfd, "second retrieve: %d", mfd2);
	CHECK(!fstat(mfd, &a) && !fstat(mfd2, &b) && a.st_ino == b.st_ino &&
	      a.st_dev == b.st_dev, "not the same memfd");
	efd = retrieve_fd(sfd, TOK_EVT);
	CHECK(efd >= 0 && cloexec_of(efd) == FD_CLOEXEC, "eventfd: %d", efd);
	CHECK(read(efd, &count, 8) == 8 && count == EVT_COUNT,
	      "eventfd count %" PRIu64, count);
	r = retrieve_fd(sfd, TOK_PIPE_R);
	w = retrieve_fd(sfd, TOK_PIPE_W);
	CHECK(r >= 0 && w >= 0, "pipe: %d %d", r, w);
	CHECK(cloexec_of(r) == FD_CLOEXEC && cloexec_of(w) == FD_CLOEXEC,
	      "pipe fds not O_CLOEXEC");
	CHECK(read(r, msg, sizeof(msg)) == sizeof(msg) &&
	      !memcmp(msg, PIPE_MSG, sizeof(msg)), "pipe bytes lost");
	CHECK(write(w, "!", 1) == 1 && read(r, msg, 1) == 1 && msg[0] == '!',
	      "the two ends are not one pipe");
	CHECK(retrieve_fd(sfd, 99) == -ENOENT, "unknown token");
}

KMOD_EXEC_CASE(update, old, a1, a2)
{
	char line[256];
	int dev = open_dev(), sfd, ret, mfd;

	(void)a1;
	(void)a2;
	CHECK(dev >= 0, "open %s: %m", CPRX_DEVICE);
	CHECK(cloexec_of(old) == 0, "the old session fd did not cross the exec");
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	CHECK(cloexec_of(sfd) == FD_CLOEXEC, "session fd not O_CLOEXEC");
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -EPERM, "retrieved twice: %d", ret);
	/* the inherited fd has done its job: closing it keeps the pins */
	CHECK(!close(old), "close: %m");
	check_kinds(sfd);
	CHECK(proc_count(getpid(), SESS, line, sizeof(line)) == 1,
	      "not in " PROC_SESSIONS);
	CHECK(!strncmp(strchr(line, '\t'), "\t" SESS "\t4\t0\t1\t",
		       strlen("\t" SESS "\t4\t0\t1\t")), "%s line: %s",
	      PROC_SESSIONS, line);
	check_contents(sfd);
	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(!finish(sfd), "finish");
	ret = retrieve_fd(sfd, TOK_MEM);
	CHECK(ret < 0, "retrieve_fd after finish: %d", ret);
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -ENOENT, "retrieve_session after finish: %d", ret);
	CHECK(nr_pins(sfd) == 0, "pins after finish");
	CHECK(proc_count(getpid(), SESS, NULL, 0) == 0, "finished but listed");
	/* what was retrieved is ours, pins or not */
	CHECK(memfd_bad(mfd, MEM_SIZE, 7) < 0, "memfd lost after finish");
	return 0;
}

/*
 * Test Case: update
 * A whole update: the old image pins a memfd, an eventfd and both ends of a
 * pipe, arms and execs; the new one retrieves the session once (again
 * EPERM), sees the kinds and its /proc line, takes back the same files,
 * close-on-exec and with their contents (pages, count, bytes in the pipe),
 * and FINISHes: nothing is retrievable or listed after, and what it took
 * stays its own.
 */
TEST_F(kmod, update)
{
	EXPECT_EQ(0, run_child(self, update_old_image, 0));
}

/* Image 1 pins and arms; image 2 retrieves and re-arms; image 3 gets it. */
static void rearm_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS), mfd;

	(void)unused;
	CHECK(sfd >= 0, "create: %d", sfd);
	mfd = memfd_pattern(MEM_SIZE, 3);
	CHECK(mfd >= 0 && !preserve(sfd, mfd, TOK_MEM), "preserve");
	CHECK(!arm(sfd, 0) && !keep_on_exec(sfd), "arm");
	exec_or_die("rearm", sfd, 2, 0);
}

KMOD_EXEC_CASE(rearm, old, image, a2)
{
	int dev = open_dev(), sfd, mfd, ret;

	(void)a2;
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "image %ld: retrieve_session: %d", image, sfd);
	CHECK(!close(old), "close: %m");
	mfd = retrieve_fd(sfd, TOK_MEM);
	CHECK(mfd >= 0, "image %ld: retrieve_fd: %d", image, mfd);
	CHECK(memfd_bad(mfd, MEM_SIZE, 3) < 0, "image %ld: content", image);
	if (image == 3)
		return finish(sfd) ? 1 : 0;
	/* a rollback: arm again, and the next image retrieves anew */
	CHECK(!arm(sfd, 0), "re-arm");
	ret = retrieve_fd(sfd, TOK_MEM);
	CHECK(ret == -EPERM, "retrieve_fd while re-armed: %d", ret);
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("rearm", sfd, 3, 0);
	return 1;
}

/*
 * Test Case: update_twice
 * Three images: the second retrieves, arms again as a rollback would
 * (RETRIEVE_FD EPERM meanwhile) and execs; the third retrieves the memfd
 * intact and finishes.
 */
TEST_F(kmod, update_twice)
{
	EXPECT_EQ(0, run_child(self, rearm_old_image, 0));
}

/* --- After one exec or several: what "after an exec" means --------------- */

/* Every image on one CPU: a freed mm is then the next one allocated. */
static void one_cpu(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/*
 * On one CPU, an exec first: the image that arms then has an mm allocated
 * on that CPU, as the wrappers' will be.
 */
static void wrapped_old_image(long wrappers)
{
	one_cpu();
	exec_or_die("wrapped_arm", wrappers, 0, 0);
}

/* Arms and execs through @wrappers images that only exec on. */
KMOD_EXEC_CASE(wrapped_arm, wrappers, a1, a2)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(EVT_COUNT, EFD_CLOEXEC);

	(void)a1;
	(void)a2;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	close(dev);
	close(efd);
	exec_or_die("wrapped", sfd, wrappers, 0);
	return 1;
}

/* A wrapper (env, a launcher) while @left > 0; then the new VMM. */
KMOD_EXEC_CASE(wrapped, old, left, a2)
{
	int dev, sfd, efd;
	uint64_t count;

	(void)a2;
	if (left > 0)
		exec_or_die("wrapped", old, left - 1, 0);
	dev = open_dev();
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	efd = retrieve_fd(sfd, TOK_EVT);
	CHECK(efd >= 0 && read(efd, &count, 8) == 8 && count == EVT_COUNT,
	      "retrieve_fd: %d", efd);
	return finish(sfd) ? 1 : 0;
}

/*
 * Test Case: retrieve_after_wrapper_execs
 * Armed, then exec'd through 1 to 3 wrapper images (all on one CPU, the
 * arming image exec'd there too, so the new image's mm is likely to land
 * where the armed one was freed), ten times each: the last image retrieves
 * the session and its eventfd every time.
 */
TEST_F_TIMEOUT(kmod, retrieve_after_wrapper_execs, 300)
{
	int bad = 0, ret;

	for (int wrappers = 1; wrappers <= 3; wrappers++) {
		for (int i = 0; i < 10; i++) {
			ret = run_child(self, wrapped_old_image, wrappers);
			if (ret)
				TH_LOG("%d wrapper(s), try %d: exit %d",
				       wrappers, i, ret);
			bad += !!ret;
		}
	}
	EXPECT_EQ(0, bad);
}

/* Arms and execs: the new image may not cancel what the old one armed. */
static void cancel_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(1, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("cancel", sfd, 0, 0);
}

KMOD_EXEC_CASE(cancel, old, a1, a2)
{
	struct cprx_session_query q;
	int ret, sfd;

	(void)a1;
	(void)a2;
	ret = arm(old, CPRX_ARM_CANCEL);
	CHECK(ret == -EPERM, "cancel in the new image: %d", ret);
	CHECK(!query(old, &q, NULL, 0) && q.flags == CPRX_SESSION_ARMED,
	      "flags %#x after a refused cancel", q.flags);
	sfd = retrieve_session(open_dev(), SESS);
	CHECK(sfd >= 0, "retrieve_session: %d", sfd);
	/* retrieved, it is not armed: nothing to cancel */
	ret = arm(sfd, CPRX_ARM_CANCEL);
	CHECK(ret == -EINVAL, "cancel after retrieve: %d", ret);
	return 0;
}

/*
 * Test Case: cancel_in_new_image
 * ARM|CANCEL undoes an arm only in the image that armed: from the image
 * after the exec it is EPERM and the session stays armed, retrievable.
 */
TEST_F(kmod, cancel_in_new_image)
{
	EXPECT_EQ(0, run_child(self, cancel_old_image, 0));
}

/* Old image for "eperm": @how 0 never arms, 1 arms and cancels. */
static void unarmed_old_image(long how)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(1, EFD_CLOEXEC);

	CHECK(sfd >= 0, "create: %d", sfd);
	CHECK(!preserve(sfd, efd, TOK_EVT), "preserve");
	if (how)
		CHECK(!arm(sfd, 0) && !arm(sfd, CPRX_ARM_CANCEL), "arm/cancel");
	CHECK(!keep_on_exec(sfd), "fcntl: %m");
	exec_or_die("eperm", sfd, 0, 0);
}

/* Past an exec, but the session was not armed: nothing to retrieve. */
KMOD_EXEC_CASE(eperm, old, a1, a2)
{
	struct cprx_session_query q;
	int dev = open_dev(), ret;

	(void)a1;
	(void)a2;
	ret = retrieve_session(dev, SESS);
	CHECK(ret == -EPERM, "retrieve_session: %d", ret);
	ret = retrieve_fd(old, TOK_EVT);
	CHECK(ret == -EPERM, "retrieve_fd on the inherited fd: %d", ret);
	/* the session itself lives on in the inherited fd */
	CHECK(!query(old, &q, NULL, 0) && q.nr_entries == 1 && !q.flags,
	      "query: %u pins, flags %#x", q.nr_entries, q.flags);
	return 0;
}

/*
 * Test Case: retrieve_unarmed_after_exec
 * A session never armed crosses an exec in its fd but gives nothing:
 * RETRIEVE_SESSION and RETRIEVE_FD EPERM, QUERY shows it unarmed with its
 * pin.
 */
TEST_F(kmod, retrieve_unarmed_after_exec)
{
	EXPECT_EQ(0, run_child(self, unarmed_old_image, 0));
}

/*
 * Test Case: retrieve_cancelled_after_exec
 * The same with the ARM cancelled before the exec.
 */
TEST_F(kmod, retrieve_cancelled_after_exec)
{
	EXPECT_EQ(0, run_child(self, unarmed_old_image, 1));
}

/* Armed, but the session fd stays close-on-exec: the session dies. */
static void cloexec_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(1, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0),
	      "setup");
	exec_or_die("gone", 0, 0, 0);
}

KMOD_EXEC_CASE(gone, a0, a1, a2)
{
	int ret = retrieve_session(open_dev(), SESS);

	(void)a0;
	(void)a1;
	(void)a2;
	CHECK(ret == -ENOENT, "retrieve_session: %d", ret);
	CHECK(proc_count(getpid(), NULL, NULL, 0) == 0, "still listed");
	return 0;
}

/*
 * Test Case: exec_closes_cloexec_session
 * Armed, but its fd close-on-exec: the exec ends the session (ENOENT, not
 * listed).
 */
TEST_F(kmod, exec_closes_cloexec_session)
{
	EXPECT_EQ(0, run_child(self, cloexec_old_image, 0));
}

/* Arms and execs: the new image retrieves with a read-only argument. */
static void fault_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(EVT_COUNT, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("fault", sfd, 0, 0);
}

KMOD_EXEC_CASE(fault, old, a1, a2)
{
	struct cprx_ioctl_retrieve_session a = { .size = sizeof(a) }, *ro;
	struct cprx_session_retrieve_fd r = {
		.size = sizeof(r), .token = TOK_EVT,
	}, *rro;
	struct cprx_session_query q;
	int dev = open_dev(), sfd, fd, ret;

	(void)a1;
	(void)a2;
	set_name(a.name, SESS);
	ro = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED, "mmap: %m");
	memcpy(ro, &a, sizeof(a));
	rro = (void *)((char *)ro + 2048);
	memcpy(rro, &r, sizeof(r));
	CHECK(!mprotect(ro, PAGE, PROT_READ), "mprotect: %m");
	fd = dup(dev);
	close(fd);
	ret = xioctl(dev, CPRX_IOCTL_RETRIEVE_SESSION, ro);
	CHECK(ret == -EFAULT, "retrieve_session, read-only: %d", ret);
	/* nothing changed: still armed, no fd taken */
	CHECK(!query(old, &q, NULL, 0) && q.flags == CPRX_SESSION_ARMED,
	      "flags %#x after a fault", q.flags);
	CHECK(dup(dev) == fd, "an fd was taken");
	close(fd);
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session after the fault: %d", sfd);
	fd = dup(dev);
	close(fd);
	ret = xioctl(sfd, CPRX_SESSION_RETRIEVE_FD, rro);
	CHECK(ret == -EFAULT, "retrieve_fd, read-only: %d", ret);
	CHECK(dup(dev) == fd, "retrieve_fd took an fd");
	close(fd);
	fd = retrieve_fd(sfd, TOK_EVT);
	CHECK(fd >= 0, "retrieve_fd after the fault: %d", fd);
	return 0;
}

/*
 * Test Case: retrieve_fault_changes_nothing
 * In the new image, RETRIEVE_SESSION and RETRIEVE_FD with their argument in
 * a read-only page: EFAULT, no fd taken, the session still armed; both
 * work after.
 */
TEST_F(kmod, retrieve_fault_changes_nothing)
{
	EXPECT_EQ(0, run_child(self, fault_old_image, 0));
}

/* Old image for "emfile": a pin, armed. */
static void emfile_old_image(long unused)
{
	int dev = open_dev(), sfd = create(dev, SESS);
	int efd = eventfd(EVT_COUNT, EFD_CLOEXEC);

	(void)unused;
	CHECK(sfd >= 0 && !preserve(sfd, efd, TOK_EVT) && !arm(sfd, 0) &&
	      !keep_on_exec(sfd), "setup");
	exec_or_die("emfile", sfd, 0, 0);
}

/* Fills the fd table up to RLIMIT_NOFILE; returns one of the new fds. */
static int fill_fds(int from)
{
	int fd, last = -1;

	while ((fd = dup(from)) >= 0)
		last = fd;
	CHECK(errno == EMFILE && last >= 0, "dup: %m");
	return last;
}

/* A retrieve that fails for want of an fd must leave the session as it was. */
KMOD_EXEC_CASE(emfile, old, a1, a2)
{
	struct rlimit rl = { 64, 64 };
	int dev = open_dev(), spare, sfd, fd;

	(void)old;
	(void)a1;
	(void)a2;
	CHECK(dev >= 0 && !setrlimit(RLIMIT_NOFILE, &rl), "setup: %m");
	spare = fill_fds(dev);
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd == -EMFILE, "retrieve_session without a free fd: %d", sfd);
	close(spare);
	sfd = retrieve_session(dev, SESS);
	CHECK(sfd >= 0, "retrieve_session after an EMFILE: %d", sfd);
	/* the new session fd took the last slot */
	CHECK(dup(dev) < 0 && errno == EMFILE, "the fd table is not full");
	fd = retrieve_fd(sfd, TOK_EVT);
	CHECK(fd == -EMFILE, "retrieve_fd without a free fd: %d", fd);
	close(dev);
	fd = retrieve_fd(sfd, TOK_EVT);
	CHECK(fd >= 0, "retrieve_fd after an EMFILE: %d", fd);
	return 0;
}

/*
 * Test Case: retrieve_without_free_fd
 * In the new image with the fd table full, RETRIEVE_SESSION and then
 * RETRIEVE_FD fail with EMFILE and leave the session as it was: each works
 * once an fd is free.
 */
TEST_F(kmod, retrieve_without_free_fd)
{
	EXPECT_EQ(0, run_child(self, emfile_old_image, 0));
}

TEST_HARNESS_MAIN
