/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest: RAM (a memfd of guest pages, each under an invariant that
 * verify checks) and the vCPU threads that keep rewriting it, stopped and
 * resumed around each update.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "vmm.h"

#define PAGE_MAGIC	0x316d6d7678727063ull	/* "cprxvmm1" */

/* Guest page header; pattern words sit at pat_off[]. */
struct page_hdr {
	uint64_t magic;
	uint64_t index;
	uint64_t seq;
	uint64_t check;
};

static const unsigned int pat_off[] = { GPAGE / 4, GPAGE / 2, GPAGE - 8 };

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t page_word(uint64_t idx, uint64_t seq, unsigned int slot)
{
	return mix64(mix64(idx ^ ((uint64_t)slot << 56)) ^ seq);
}

static void page_write(uint8_t *ram, uint64_t idx, uint64_t seq)
{
	uint8_t *pg = ram + idx * GPAGE;
	struct page_hdr *h = (struct page_hdr *)pg;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(pat_off); i++)
		*(uint64_t *)(pg + pat_off[i]) = page_word(idx, seq, i + 1);
	h->magic = PAGE_MAGIC;
	h->index = idx;
	h->seq = seq;
	h->check = page_word(idx, seq, 0);
}

/* 0 and the page's seq, or -1 and why the invariant does not hold. */
static int page_check(const uint8_t *ram, uint64_t idx, uint64_t *seq,
		      char *why, size_t len)
{
	const uint8_t *pg = ram + idx * GPAGE;
	const struct page_hdr *h = (const struct page_hdr *)pg;
	unsigned int i;

	if (h->magic != PAGE_MAGIC) {
		snprintf(why, len, "page %" PRIu64 ": magic %#" PRIx64 "%s", idx,
			 h->magic, h->magic ? "" : " (zeroed: content lost)");
		return -1;
	}
	if (h->index != idx) {
		snprintf(why, len, "page %" PRIu64 " holds page %" PRIu64
			 " (pages swapped)", idx, h->index);
		return -1;
	}
	if (h->check != page_word(idx, h->seq, 0)) {
		snprintf(why, len, "page %" PRIu64 ": header check fails at seq %"
			 PRIu64, idx, h->seq);
		return -1;
	}
	for (i = 0; i < ARRAY_SIZE(pat_off); i++)
		if (*(const uint64_t *)(pg + pat_off[i]) != page_word(idx, h->seq, i + 1)) {
			snprintf(why, len, "page %" PRIu64 ": word at +%u is not seq %"
				 PRIu64 "'s (partial content)", idx, pat_off[i], h->seq);
			return -1;
		}
	*seq = h->seq;
	return 0;
}

/* Every page's invariant, then each stripe's seq sum: stale pages show there. */
bool ram_verify(const struct vm *vm, char *msg, size_t len)
{
	uint64_t sum[MAX_VCPUS] = { 0 };
	uint64_t idx, seq, bad = 0;
	unsigned int n = vm->cfg.vcpus, i;
	char first[200] = "";

	for (idx = 0; idx < vm->npages; idx++) {
		if (page_check(vm->ram, idx, &seq, bad ? NULL : first,
			       bad ? 0 : sizeof(first)) < 0)
			bad++;
		else
			sum[idx % n] += seq;
	}
	if (bad) {
		snprintf(msg, len, "FAIL: %" PRIu64 " of %" PRIu64 " pages bad, first: %s",
			 bad, vm->npages, first);
		return false;
	}
	for (i = 0; i < n; i++)
		if (sum[i] != vm->stripe_sum[i]) {
			snprintf(msg, len, "FAIL: vCPU %u's pages have seq sum %" PRIu64
				 ", expected %" PRIu64 " (stale or lost guest writes)",
				 i, sum[i], vm->stripe_sum[i]);
			return false;
		}
	return true;
}

/* Writes every page so that guest RAM is really resident. */
static void ram_populate(struct vm *vm)
{
	uint64_t idx;

	memset(vm->stripe_sum, 0, sizeof(vm->stripe_sum));
	for (idx = 0; idx < vm->npages; idx++) {
		page_write(vm->ram, idx, 1);
		vm->stripe_sum[idx % vm->cfg.vcpus]++;
	}
}

/* Shmem THP is a sysfs policy: a mapping's madvise alone may not be enough. */
static void thp_report(void)
{
	char buf[128], *open_b, *close_b;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	if (!f) {
		warn_msg("--pages thp: no shmem THP support in this kernel; running on 4k pages");
		return;
	}
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	open_b = strchr(buf, '[');
	close_b = open_b ? strchr(open_b, ']') : NULL;
	if (!close_b)
		return;
	*close_b = '\0';
	if (!strcmp(open_b + 1, "never") || !strcmp(open_b + 1, "deny"))
		warn_msg("--pages thp: shmem THP is '%s' in /sys/kernel/mm/transparent_hugepage/"
		      "shmem_enabled, guest RAM stays on 4k pages; set it to 'advise'",
		      open_b + 1);
}

void ram_advise(struct vm *vm)
{
	if (vm->cfg.page_kind != CPRX_PAGE_THP)
		return;
	/* shmem aligns mappings of 2 MiB and more itself, no need to here */
	if (madvise(vm->ram, vm->cfg.ram_bytes, MADV_HUGEPAGE) < 0)
		warn_msg("madvise(MADV_HUGEPAGE) on guest RAM: %m");
}

static void __attribute__((noreturn))
ram_failed(const struct vm_config *c, const char *what)
{
	char sz[32];

	fmt_bytes(sz, sizeof(sz), c->ram_bytes);
	if (c->page_kind == CPRX_PAGE_HUGETLB && (errno == ENOMEM || errno == ENOSPC))
		die(EXIT_SETUP, "--pages hugetlb: not enough free huge pages for %s; "
		    "reserve them: echo %" PRIu64 " > /proc/sys/vm/nr_hugepages", sz,
		    c->ram_bytes / hugepage_bytes());
	die(EXIT_SETUP, "%s of %s of guest RAM: %m", what, sz);
}

/*
 * Allocating in bulk is several times faster than faulting 4k at a time.
 * Not for THP: with no VM_HUGEPAGE mapping yet, shmem "advise" would hand
 * out 4k folios.
 */
static int ram_prealloc(const struct vm_config *c, int fd)
{
	if (c->page_kind == CPRX_PAGE_THP)
		return 0;
	if (fallocate(fd, 0, 0, (off_t)c->ram_bytes) < 0) {
		if (errno != EOPNOTSUPP)
			ram_failed(c, "fallocate");
		return 0;
	}
	return MAP_POPULATE;
}

void ram_create(struct vm *vm, bool populate)
{
	const struct vm_config *c = &vm->cfg;
	unsigned int mflags = MFD_CLOEXEC;
	int map = MAP_SHARED;

	if (c->page_kind == CPRX_PAGE_HUGETLB)
		mflags |= MFD_HUGETLB;
	vm->ram_fd = memfd_create("cprx-vmm-ram", mflags);
	if (vm->ram_fd < 0)
		die(EXIT_SETUP, "memfd_create(%s) for guest RAM: %m%s",
		    page_kind_name(c->page_kind), c->page_kind == CPRX_PAGE_HUGETLB ?
		    " (hugetlbfs support missing?)" : "");
	if (ftruncate(vm->ram_fd, (off_t)c->ram_bytes) < 0)
		ram_failed(c, "ftruncate");
	map |= ram_prealloc(c, vm->ram_fd);
	/* private-ram: guest writes land in COW copies, never in the memfd */
	if (c->faults & F_PRIVATE_RAM)
		map = (map & ~MAP_SHARED) | MAP_PRIVATE;
	vm->ram = mmap(NULL, c->ram_bytes, PROT_READ | PROT_WRITE, map, vm->ram_fd, 0);
	if (vm->ram == MAP_FAILED)
		ram_failed(c, "mmap");
	vm->npages = c->ram_bytes / GPAGE;
	if (c->page_kind == CPRX_PAGE_THP)
		thp_report();
	ram_advise(vm);
	if (populate)
		ram_populate(vm);
}

/* vCPUs -------------------------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Acknowledges stop request @c and sleeps until ctl moves on from it. */
static void vcpu_park(struct vm *vm, uint32_t c)
{
	atomic_fetch_add_explicit(&vm->stopped, 1, memory_order_release);
	futex_wake(&vm->stopped, 1);
	while (atomic_load_explicit(&vm->ctl, memory_order_acquire) == c)
		futex_wait(&vm->ctl, c);
}

/* The guest: rewrite random pages of this vCPU's stripe, forever. */
static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	uint64_t n = vm->cfg.vcpus;
	uint64_t stripe = (vm->npages - v->id + n - 1) / n;
	struct page_hdr *h;
	uint64_t idx;
	uint32_t c;

	for (;;) {
		c = atomic_load_explicit(&vm->ctl, memory_order_acquire);
		if (c & 1) {
			vcpu_park(vm, c);
			continue;
		}
		idx = v->id + n * (xorshift64(&v->rng) % stripe);
		h = (struct page_hdr *)(vm->ram + idx * GPAGE);
		page_write(vm->ram, idx, h->seq + 1);
		v->writes++;
	}
	return NULL;
}

void vcpus_start(struct vm *vm)
{
	unsigned int i;
	int r;

	atomic_store(&vm->ctl, 0);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		struct vcpu *v = &vm->vcpu[i];

		v->vm = vm;
		v->id = i;
		v->writes = 0;
		v->rng = mix64(now_ns() ^ i) | 1;
		r = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (r)
			die(EXIT_SETUP, "creating vCPU thread %u: %s", i, strerror(r));
	}
	vm->threads_up = true;
	vm->running = true;
}

/* Returns once every vCPU is parked; folds their writes into the sums. */
void vcpus_stop(struct vm *vm)
{
	uint32_t n;
	unsigned int i;

	if (!vm->running)
		return;
	atomic_store_explicit(&vm->stopped, 0, memory_order_relaxed);
	atomic_fetch_add(&vm->ctl, 1);	/* odd: stop */
	while ((n = atomic_load_explicit(&vm->stopped, memory_order_acquire)) <
	       vm->cfg.vcpus)
		futex_wait(&vm->stopped, n);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		vm->stripe_sum[i] += vm->vcpu[i].writes;
		vm->vcpu[i].writes = 0;
	}
	vm->running = false;
}

void vcpus_resume(struct vm *vm)
{
	if (vm->running || !vm->threads_up)
		return;
	atomic_fetch_add(&vm->ctl, 1);	/* even: run */
	futex_wake(&vm->ctl, INT_MAX);
	vm->running = true;
}

uint64_t guest_writes(const struct vm *vm)
{
	uint64_t total = 0;
	unsigned int i;

	/* every page started at seq 1 */
	for (i = 0; i < vm->cfg.vcpus; i++)
		total += vm->stripe_sum[i];
	return total - vm->npages;
}
