/*
 * Deterministic allocator workload. tests/guest/workload.py mirrors this
 * file operation by operation: change both together.
 *
 * Random numbers: xorshift64 (x ^= x << 13; x ^= x >> 7; x ^= x << 17) from
 * state = seed (seed 0 uses 0x9E3779B97F4A7C15); rnd(n) = (next() >> 32) % n.
 * Every allocator call bumps workload_ops; every result enters
 * workload_hash = (hash ^ value) * 0x100000001b3 (FNV-1a style, from
 * 0xcbf29ce484222325), value being the address (0 for NULL) of an
 * allocation and 1 or 0 for a reserve that succeeded or failed.
 *
 * Phases, each ending in a checkpoint:
 *   1  fresh boot, after the init calls
 *   2  vmalloc (3 small, 2 large), then opts.ops mixed operations
 *   3  up to 4 live allocations freed and reserved in place, 8 random reserves
 *   4  32 FLAG_FRESH allocations (2021; nothing in 2020)
 *   5  the slot of the smallest piece exhausted: orders 20..0 until NULL
 */
#include "guest.h"

#define LIVE_SLOTS 128
#define RES_SLOTS 16
#define FRESH_SLOTS 32
#define EXHAUST_TOP_ORDER 20

enum op_kind { OP_ALLOC, OP_MEMALIGN, OP_FREE, OP_RESERVE, OP_UNRESERVE, OP_AREA, OP_FRESH,
	       NR_OP_KINDS };

struct mix {
	const char *name;
	u8 weight[NR_OP_KINDS]; /* percent, in enum op_kind order */
};

static const struct mix mixes[] = {
	{ "default", { 34, 10, 38, 4, 4, 7, 3 } },
	{ "allocs", { 60, 15, 15, 2, 2, 4, 2 } },
	{ "reserve", { 30, 5, 30, 15, 15, 3, 2 } },
	{ "simple", { 50, 0, 50, 0, 0, 0, 0 } },
};

struct live_alloc {
	void *addr;
	unsigned long npages;
};

struct reservation {
	phys_addr_t addr;
	size_t n;
};

unsigned long workload_ops;
u64 workload_hash = 0xcbf29ce484222325ULL;
u64 rng_state;
struct live_alloc workload_live[LIVE_SLOTS];
struct reservation workload_reserved[RES_SLOTS];
void *workload_fresh[FRESH_SLOTS];
unsigned long workload_exhausted;
static const struct mix *mix;
static int slot_list[MAX_PIECES], nslots;

static u64 rng_next(void)
{
	u64 x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static u32 rnd(u32 n)
{
	return (u32)(rng_next() >> 32) % n;
}

static void account(u64 value)
{
	workload_ops++;
	workload_hash = (workload_hash ^ value) * 0x100000001b3ULL;
}

void *wl_alloc_pages(unsigned int order, unsigned int flags)
{
	void *p;
#if FORMAT == 2021
	p = alloc_pages_flags(order, flags);
#else
	p = alloc_pages_area((flags & AREA_MASK) ? (flags & AREA_MASK) : (unsigned int)AREA_ANY,
			     order);
#endif
	account((uintptr_t)p);
	if (opts.trace)
		printf("op %lu alloc order=%u flags=0x%x -> %p\n", workload_ops, order, flags, p);
	return p;
}

static void *wl_memalign(size_t alignment, size_t size, unsigned int flags)
{
	void *p;
#if FORMAT == 2021
	p = memalign_pages_flags(alignment, size, flags);
#else
	p = memalign_pages_area((flags & AREA_MASK) ? (flags & AREA_MASK) : (unsigned int)AREA_ANY,
				alignment, size);
#endif
	account((uintptr_t)p);
	if (opts.trace)
		printf("op %lu memalign alignment=0x%lx size=0x%lx flags=0x%x -> %p\n",
		       workload_ops, (unsigned long)alignment, (unsigned long)size, flags, p);
	return p;
}

static void wl_free(void *p)
{
	free_pages(p);
	workload_ops++;
	if (opts.trace)
		printf("op %lu free %p\n", workload_ops, p);
}

static bool wl_reserve(phys_addr_t addr, size_t n)
{
	bool ok;
#if FORMAT == 2021
	ok = reserve_pages(addr, n) == 0;
#else
	ok = alloc_pages_special(addr, n) != NULL;
#endif
	account(ok);
	if (opts.trace)
		printf("op %lu reserve addr=0x%llx n=%lu -> %d\n", workload_ops, addr,
		       (unsigned long)n, ok ? 0 : -1);
	return ok;
}

static void wl_unreserve(phys_addr_t addr, size_t n)
{
#if FORMAT == 2021
	unreserve_pages(addr, n);
#else
	free_pages_special(addr, n);
#endif
	workload_ops++;
	if (opts.trace)
		printf("op %lu unreserve addr=0x%llx n=%lu\n", workload_ops, addr,
		       (unsigned long)n);
}

static unsigned long pages_for(size_t bytes)
{
	unsigned long n = (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT, p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

static void live_clear(unsigned int idx)
{
	if (workload_live[idx].addr)
		wl_free(workload_live[idx].addr);
	workload_live[idx].addr = NULL;
	workload_live[idx].npages = 0;
}

static void live_set(unsigned int idx, void *p, unsigned long npages)
{
	workload_live[idx].addr = p;
	workload_live[idx].npages = p ? npages : 0;
}

static void res_clear(unsigned int idx)
{
	if (workload_reserved[idx].n)
		wl_unreserve(workload_reserved[idx].addr, workload_reserved[idx].n);
	workload_reserved[idx].addr = 0;
	workload_reserved[idx].n = 0;
}

static unsigned int pick_order(void)
{
	u32 r = rnd(64);
	if (r < 24)
		return 0;
	if (r < 40)
		return 1;
	if (r < 50)
		return 2;
	if (r < 57)
		return 3;
	if (r < 62)
		return 4;
	if (r == 62)
		return 5;
	return 6 + rnd(3);
}

static void op_alloc(void)
{
	unsigned int idx = rnd(LIVE_SLOTS), order = pick_order();
	unsigned int flags = (rnd(16) == 0 && order <= 1) ? 0 : FLAG_DONTZERO;
	live_clear(idx);
	live_set(idx, wl_alloc_pages(order, flags), 1UL << order);
}

static void op_memalign(void)
{
	unsigned int idx = rnd(LIVE_SLOTS);
	size_t alignment = (size_t)1 << (6 + rnd(12));
	size_t size = 1 + rnd(4 * PAGE_SIZE);
	live_clear(idx);
	live_set(idx, wl_memalign(alignment, size, FLAG_DONTZERO), pages_for(size));
}

static void op_free(void)
{
	live_clear(rnd(LIVE_SLOTS));
}

static void op_reserve(void)
{
	struct piece *pc = &pieces[rnd(npieces)];
	u64 pfn = pc->start + rnd(pc->top - pc->start);
	size_t n = 1 + rnd(8);
	unsigned int ridx = rnd(RES_SLOTS), victim = rnd(LIVE_SLOTS);

	/* one time in four, aim at a live allocation: that reserve fails */
	if (rnd(4) == 0 && workload_live[victim].addr)
		pfn = (uintptr_t)workload_live[victim].addr >> PAGE_SHIFT;
	res_clear(ridx);
	if (wl_reserve(pfn << PAGE_SHIFT, n)) {
		workload_reserved[ridx].addr = pfn << PAGE_SHIFT;
		workload_reserved[ridx].n = n;
	}
}

static void op_unreserve(void)
{
	res_clear(rnd(RES_SLOTS));
}

static void op_area(void)
{
	int slot = slot_list[rnd(nslots)];
	unsigned int idx = rnd(LIVE_SLOTS), order = rnd(3);
	live_clear(idx);
	live_set(idx, wl_alloc_pages(order, FLAG_DONTZERO | BIT(slot)), 1UL << order);
}

static void op_fresh(void)
{
	unsigned int idx = rnd(LIVE_SLOTS), order = rnd(3);
	live_clear(idx);
#if FORMAT == 2021
	live_set(idx, wl_alloc_pages(order, FLAG_FRESH | FLAG_DONTZERO), 1UL << order);
#else
	live_set(idx, wl_alloc_pages(order, FLAG_DONTZERO), 1UL << order);
#endif
}

static void (*const op_funcs[NR_OP_KINDS])(void) = {
	op_alloc, op_memalign, op_free, op_reserve, op_unreserve, op_area, op_fresh,
};

static void phase_vmalloc(void)
{
	vm_memalign(16, 100);
	vm_memalign(64, 200);
	vm_memalign(256, 1000);
	vm_memalign(PAGE_SIZE, 3 * PAGE_SIZE);
	vm_memalign(PAGE_SIZE, 5 * PAGE_SIZE + 10);
}

static void phase_mixed(void)
{
	unsigned long i;

	for (i = 0; i < opts.ops; i++) {
		u32 w = rnd(100);
		int k = 0;
		while (w >= mix->weight[k]) {
			w -= mix->weight[k];
			k++;
		}
		op_funcs[k]();
	}
}

static void phase_reserve(void)
{
	unsigned int j;

	for (j = 0; j < 4; j++) {
		unsigned int idx = rnd(LIVE_SLOTS);
		void *a = workload_live[idx].addr;
		unsigned long n = workload_live[idx].npages;
		if (!a)
			continue;
		live_clear(idx);
		res_clear(j);
		if (wl_reserve((uintptr_t)a, n)) {
			workload_reserved[j].addr = (uintptr_t)a;
			workload_reserved[j].n = n;
		}
	}
	for (j = 0; j < 8; j++)
		op_reserve();
}

static void phase_fresh(void)
{
#if FORMAT == 2021
	unsigned int j;

	for (j = 0; j < FRESH_SLOTS; j++) {
		unsigned int order = rnd(3);
		workload_fresh[j] = wl_alloc_pages(order, FLAG_FRESH | (j % 4 ? FLAG_DONTZERO : 0));
	}
#endif
}

static void phase_exhaust(void)
{
	int i, small = 0, order;

	for (i = 1; i < npieces; i++)
		if (pieces[i].top - pieces[i].start < pieces[small].top - pieces[small].start)
			small = i;
	for (order = EXHAUST_TOP_ORDER; order >= 0; order--)
		while (wl_alloc_pages(order, FLAG_DONTZERO | BIT(pieces[small].slot)))
			workload_exhausted++;
}

void workload_run(void)
{
	unsigned int i;
	int s;

	mix = NULL;
	for (i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
		if (!strncmp(mixes[i].name, opts.mix, ~(size_t)0))
			mix = &mixes[i];
	if (!mix) {
		printf("unknown mix %s\n", opts.mix);
		abort();
	}
	for (s = 0; s < NR_SLOTS; s++)
		for (i = 0; i < (unsigned int)npieces; i++)
			if (pieces[i].slot == s)
				slot_list[nslots++] = s;
	rng_state = opts.seed ? opts.seed : 0x9E3779B97F4A7C15ULL;

	checkpoint(1);
	phase_vmalloc();
	phase_mixed();
	checkpoint(2);
	if (!strncmp(opts.mode, "abort", 6))
		abort();
	if (!strncmp(opts.mode, "hang", 5))
		for (;;)
			cpu_relax();
	phase_reserve();
	checkpoint(3);
	phase_fresh();
	checkpoint(4);
	phase_exhaust();
	checkpoint(5);
}
