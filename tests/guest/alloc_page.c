/*
 * Buddy page allocator of the fixture guest, implementing the Operations of
 * /work/shared/ALLOCATOR.md in either on-memory format.
 *
 * Defect builds (for testing the tools that watch this code):
 *   DEFECT_NOMERGE   free_pages never merges buddies
 *   DEFECT_SPLITEND  split pushes its halves at the wrong end of the list
 *   DEFECT_MULTI     four independent defects in one build (2021 only), two
 *                    of which kill the guest inside a call:
 *                    - memalign ignores an alignment larger than the size
 *                    - unreserve of n > 1 pages leaves the last one reserved
 *                    - a FRESH allocation of order 3 spins forever (lock held)
 *                    - reserve of exactly 11 pages aborts (lock held)
 *                    (the fixture workload never makes the last two calls)
 */
#include "alloc_page.h"

#define NLISTS (BITS_PER_LONG - PAGE_SHIFT)
#define ORDER_MASK 0x3f
#define STATUS_MASK 0xc0

#if FORMAT == 2021
typedef phys_addr_t pfn_t;
#define STATUS_FRESH 0x00
#define STATUS_FREE 0x40
#define STATUS_ALLOCATED 0x80
#define STATUS_SPECIAL 0xc0
#define MK_FRESH(o) ((u8)(STATUS_FRESH | (o)))
#define MK_FREE(o) ((u8)(STATUS_FREE | (o)))
#define MK_ALLOC(o) ((u8)(STATUS_ALLOCATED | (o)))
#define SPECIAL_BYTE ((u8)STATUS_SPECIAL)
#define IS_FREE(b) (((b) & STATUS_MASK) == STATUS_FRESH || ((b) & STATUS_MASK) == STATUS_FREE)
#define IS_FRESH(b) (((b) & STATUS_MASK) == STATUS_FRESH)
#define IS_ALLOC(b) (((b) & STATUS_MASK) == STATUS_ALLOCATED)
#else
typedef uintptr_t pfn_t;
#define ALLOC_FLAG 0x40
#define SPECIAL_FLAG 0x80
#define MK_FRESH(o) ((u8)(o))
#define MK_FREE(o) ((u8)(o))
#define MK_ALLOC(o) ((u8)(ALLOC_FLAG | (o)))
#define SPECIAL_BYTE ((u8)SPECIAL_FLAG)
#define IS_FREE(b) (((b) & STATUS_MASK) == 0)
#define IS_FRESH(b) false
#define IS_ALLOC(b) (((b) & STATUS_MASK) == ALLOC_FLAG)
#endif

#ifdef DEFECT_NOMERGE
#define DO_MERGE 0
#else
#define DO_MERGE 1
#endif
#ifdef DEFECT_SPLITEND
#define SPLIT_WRONG_END 1
#else
#define SPLIT_WRONG_END 0
#endif

#ifdef DEFECT_MULTI
#define MULTI 1
#else
#define MULTI 0
#endif

struct linked_list {
	struct linked_list *prev;
	struct linked_list *next;
};

struct mem_area {
	/* first usable pfn */
	pfn_t base;
	/* first pfn past the area */
	pfn_t top;
	/* one metadata byte per usable page */
	u8 *page_states;
#if FORMAT == 2021
	/* upper bound of the highest non-empty free list */
	u8 max_order;
#endif
	struct linked_list freelists[NLISTS];
};

struct spinlock {
	int v;
};

static struct mem_area areas[MAX_AREAS];
static unsigned int areas_mask;
static struct spinlock lock;

#ifdef ARCH_NO_ATOMICS
/* one CPU, no interrupts, and no exclusive accesses (aarch64 without MMU) */
static void spin_lock(struct spinlock *l)
{
	while (*(volatile int *)&l->v)
		cpu_relax();
	*(volatile int *)&l->v = 1;
}

static void spin_unlock(struct spinlock *l)
{
	*(volatile int *)&l->v = 0;
}
#else
static void spin_lock(struct spinlock *l)
{
	while (__sync_lock_test_and_set(&l->v, 1))
		cpu_relax();
}

static void spin_unlock(struct spinlock *l)
{
	__sync_lock_release(&l->v);
}
#endif

static inline void list_init(struct linked_list *head)
{
	head->prev = head;
	head->next = head;
}

static inline bool list_empty(struct linked_list *head)
{
	return head->next == head;
}

static inline void list_remove(struct linked_list *x)
{
	x->prev->next = x->next;
	x->next->prev = x->prev;
	x->prev = NULL;
	x->next = NULL;
}

/* insert x right after the head: the front */
static inline void list_add(struct linked_list *head, struct linked_list *x)
{
	x->next = head->next;
	x->prev = head;
	head->next->prev = x;
	head->next = x;
}

/* insert x right before the head: the back */
static inline void list_add_tail(struct linked_list *head, struct linked_list *x)
{
	x->prev = head->prev;
	x->next = head;
	head->prev->next = x;
	head->prev = x;
}

static inline void *pfn_to_virt(pfn_t pfn)
{
	return (void *)(uintptr_t)((u64)pfn << PAGE_SHIFT);
}

static inline pfn_t virt_to_pfn(const void *p)
{
	return (uintptr_t)p >> PAGE_SHIFT;
}

static inline struct linked_list *node(pfn_t pfn)
{
	return pfn_to_virt(pfn);
}

static inline u8 *state(struct mem_area *a, pfn_t pfn)
{
	return &a->page_states[pfn - a->base];
}

static inline u8 top_search_order(struct mem_area *a)
{
#if FORMAT == 2021
	return a->max_order;
#else
	(void)a;
	return NLISTS - 1;
#endif
}

static inline void raise_max_order(struct mem_area *a, unsigned int order)
{
#if FORMAT == 2021
	if (order > a->max_order)
		a->max_order = order;
#else
	(void)a;
	(void)order;
#endif
}

/* ceil(log2(n)), 0 for n = 0 */
static unsigned int get_order(size_t n)
{
	unsigned int order = 0;
	while (((size_t)1 << order) < n)
		order++;
	return order;
}

u64 slot_lo_pfn(int n)
{
	static const u64 lo[NR_SLOTS] = SLOT_LO_PFNS;
	return lo[n];
}

int slot_of_pfn(u64 pfn)
{
	int n;
	for (n = 0; n < NR_SLOTS - 1; n++)
		if (pfn >= slot_lo_pfn(n))
			return n;
	return NR_SLOTS - 1;
}

static struct mem_area *get_area(pfn_t pfn)
{
	unsigned int i;
	for (i = 0; i < MAX_AREAS; i++)
		if ((areas_mask & BIT(i)) && areas[i].base <= pfn && pfn < areas[i].top)
			return &areas[i];
	return NULL;
}

static void area_init(u8 n, pfn_t start, pfn_t top)
{
	struct mem_area *a = &areas[n];
	pfn_t nmeta = (top - start + PAGE_SIZE) / (PAGE_SIZE + 1);
	unsigned int order, i;
	pfn_t pfn;

	assert(n < MAX_AREAS);
	assert(!(areas_mask & BIT(n)));
	a->page_states = pfn_to_virt(start);
	a->base = start + nmeta;
	a->top = top;
#if FORMAT == 2021
	a->max_order = 0;
#endif
	for (i = 0; i < NLISTS; i++)
		list_init(&a->freelists[i]);
	for (pfn = a->base; pfn < top; pfn += (pfn_t)1 << order) {
		order = 0;
		while (order + 1 < NLISTS && !(pfn & (((pfn_t)2 << order) - 1)) &&
		       pfn + ((pfn_t)2 << order) <= top)
			order++;
		memset(state(a, pfn), MK_FRESH(order), (size_t)1 << order);
		list_add(&a->freelists[order], node(pfn));
		raise_max_order(a, order);
	}
	areas_mask |= BIT(n);
}

noinline void page_alloc_init_area(u8 n, phys_addr_t base_pfn, phys_addr_t top_pfn)
{
	int slot;

	spin_lock(&lock);
	if (n != AREA_ANY_NUMBER) {
		area_init(n, base_pfn, top_pfn);
	} else {
		/* cut [base, top) at the slot boundaries, highest slot first */
		u64 hi = ~0ULL;
		for (slot = 0; slot < NR_SLOTS; hi = slot_lo_pfn(slot), slot++) {
			u64 lo = slot_lo_pfn(slot);
			u64 s = base_pfn > lo ? base_pfn : lo;
			u64 t = top_pfn < hi ? top_pfn : hi;
			if (s < t)
				area_init(slot, s, t);
		}
	}
	spin_unlock(&lock);
}

/* Split the free block starting at pfn into two halves (ALLOCATOR.md split). */
static void split(struct mem_area *a, pfn_t pfn)
{
	u8 b = *state(a, pfn);
	unsigned int order = b & ORDER_MASK;
	bool fresh = IS_FRESH(b);
	struct linked_list *head;

	assert(IS_FREE(b) && order > 0);
	list_remove(node(pfn));
#if FORMAT == 2021
	if (order == a->max_order && list_empty(&a->freelists[order]))
		a->max_order--;
#endif
	order--;
	memset(state(a, pfn), (b & STATUS_MASK) | order, (size_t)2 << order);
	head = &a->freelists[order];
	if (fresh != SPLIT_WRONG_END) {
		list_add_tail(head, node(pfn));
		list_add_tail(head, node(pfn + ((pfn_t)1 << order)));
	} else {
		list_add(head, node(pfn));
		list_add(head, node(pfn + ((pfn_t)1 << order)));
	}
}

/* alloc(al, sz, fresh) in one area; returns the first pfn or 0 */
static pfn_t area_alloc(struct mem_area *a, unsigned int al, unsigned int sz, bool fresh)
{
	unsigned int o = (al > sz ? al : sz) + fresh;
	unsigned int want = sz + fresh;
	struct linked_list *cand = NULL;
	pfn_t pfn;

	for (; o <= top_search_order(a) && o < NLISTS; o++) {
		struct linked_list *head = &a->freelists[o];
		if (list_empty(head))
			continue;
		cand = fresh ? head->prev : head->next;
		if (fresh && !IS_FRESH(*state(a, virt_to_pfn(cand)))) {
			cand = NULL;
			continue;
		}
		break;
	}
	if (!cand)
		return 0;
	pfn = virt_to_pfn(cand);
	while ((*state(a, pfn) & ORDER_MASK) > want)
		split(a, pfn);
	list_remove(node(pfn));
	if (fresh) {
		memset(state(a, pfn), MK_FRESH(sz), (size_t)1 << sz);
		list_add_tail(&a->freelists[sz], node(pfn));
		pfn += (pfn_t)1 << sz;
	}
	memset(state(a, pfn), MK_ALLOC(sz), (size_t)1 << sz);
	return pfn;
}

static void *page_memalign_order_flags(unsigned int al, unsigned int sz, unsigned int flags)
{
	unsigned int mask = flags & AREA_MASK;
	bool fresh = false;
	pfn_t pfn = 0;
	unsigned int i;

#if FORMAT == 2021
	fresh = !!(flags & FLAG_FRESH);
#endif
	mask = mask ? mask & areas_mask : areas_mask;
	spin_lock(&lock);
	if (MULTI && fresh && sz == 3)
		for (;;)
			cpu_relax();
	for (i = 0; i < MAX_AREAS && !pfn; i++)
		if (mask & BIT(i))
			pfn = area_alloc(&areas[i], al, sz, fresh);
	spin_unlock(&lock);
	if (!pfn)
		return NULL;
#if FORMAT == 2021
	if (!(flags & FLAG_DONTZERO))
		memset(pfn_to_virt(pfn), 0, PAGE_SIZE << sz);
#endif
	return pfn_to_virt(pfn);
}

static void *memalign_flags(size_t alignment, size_t size, unsigned int flags)
{
	unsigned int al = get_order((alignment + PAGE_SIZE - 1) >> PAGE_SHIFT);
	unsigned int sz = get_order((size + PAGE_SIZE - 1) >> PAGE_SHIFT);

	assert(alignment && !(alignment & (alignment - 1)));
	if (MULTI && al > sz)
		al = sz;
	return page_memalign_order_flags(al, sz, flags);
}

/* Free the block at pfn, whose pages are ALLOCATED, then merge (ALLOCATOR.md free). */
static void area_free(struct mem_area *a, pfn_t pfn)
{
	unsigned int k = *state(a, pfn) & ORDER_MASK;

	memset(state(a, pfn), MK_FREE(k), (size_t)1 << k);
	list_add(&a->freelists[k], node(pfn));
	while (DO_MERGE && k + 1 < NLISTS) {
		pfn_t size = (pfn_t)1 << k;
		pfn_t lo = (pfn & ((size << 1) - 1)) ? pfn - size : pfn;
		pfn_t buddy = lo == pfn ? pfn + size : lo;
		u8 bb;

		if (lo < a->base || lo + (size << 1) > a->top)
			break;
		bb = *state(a, buddy);
		if (!IS_FREE(bb) || (bb & ORDER_MASK) != k)
			break;
		list_remove(node(lo + size));
		list_remove(node(lo));
		k++;
		memset(state(a, lo), MK_FREE(k), (size_t)1 << k);
		list_add(&a->freelists[k], node(lo));
		raise_max_order(a, k);
		pfn = lo;
	}
}

noinline void free_pages(void *mem)
{
	pfn_t pfn = virt_to_pfn(mem);
	struct mem_area *a;
	u8 b;

	if (!mem)
		return;
	spin_lock(&lock);
	a = get_area(pfn);
	if (!a || ((uintptr_t)mem & (PAGE_SIZE - 1))) {
		printf("bug: free_pages(%p): not in any area\n", mem);
		abort();
	}
	b = *state(a, pfn);
	if (!IS_ALLOC(b) || (pfn & (((pfn_t)1 << (b & ORDER_MASK)) - 1))) {
		printf("bug: free_pages(%p): byte 0x%x is not an allocated block start\n", mem, b);
		abort();
	}
	area_free(a, pfn);
	spin_unlock(&lock);
}

static bool reserve_one(pfn_t pfn)
{
	struct mem_area *a = get_area(pfn);
	u8 b;

	if (!a)
		return false;
	b = *state(a, pfn);
	if (!IS_FREE(b))
		return false;
	while ((b & ORDER_MASK) > 0) {
		split(a, pfn & ~(((pfn_t)1 << (b & ORDER_MASK)) - 1));
		b = *state(a, pfn);
	}
	list_remove(node(pfn));
	*state(a, pfn) = SPECIAL_BYTE;
	return true;
}

static void unreserve_one(pfn_t pfn)
{
	struct mem_area *a = get_area(pfn);

	if (!a || *state(a, pfn) != SPECIAL_BYTE) {
		printf("bug: unreserve of pfn 0x%llx, which is not reserved\n", (u64)pfn);
		abort();
	}
	*state(a, pfn) = MK_ALLOC(0);
	area_free(a, pfn);
}

static int reserve(phys_addr_t addr, size_t n)
{
	pfn_t pfn = addr >> PAGE_SHIFT;
	size_t i, j;
	int ret = 0;

	spin_lock(&lock);
	if (MULTI && n == 11) {
		printf("bug: reserve of 11 pages\n");
		abort();
	}
	for (i = 0; i < n; i++) {
		if (!reserve_one(pfn + i)) {
			for (j = 0; j < i; j++)
				unreserve_one(pfn + j);
			ret = -1;
			break;
		}
	}
	spin_unlock(&lock);
	return ret;
}

static void unreserve(phys_addr_t addr, size_t n)
{
	pfn_t pfn = addr >> PAGE_SHIFT;
	size_t i;

	spin_lock(&lock);
	for (i = 0; i < n - (MULTI && n > 1); i++)
		unreserve_one(pfn + i);
	spin_unlock(&lock);
}

#if FORMAT == 2021
noinline void *alloc_pages_flags(unsigned int order, unsigned int flags)
{
	return page_memalign_order_flags(order, order, flags);
}

noinline void *memalign_pages_flags(size_t alignment, size_t size, unsigned int flags)
{
	return memalign_flags(alignment, size, flags);
}

noinline int reserve_pages(phys_addr_t addr, size_t n)
{
	return reserve(addr, n);
}

noinline void unreserve_pages(phys_addr_t addr, size_t n)
{
	unreserve(addr, n);
}
#else
noinline void *alloc_pages_area(unsigned int areas, unsigned int order)
{
	/* the 2020 entry points know no flags: never fresh, never zeroed */
	return page_memalign_order_flags(order, order, areas & AREA_MASK);
}

noinline void *alloc_pages(unsigned int order)
{
	return alloc_pages_area(AREA_ANY, order);
}

noinline void *alloc_page(void)
{
	return alloc_pages(0);
}

noinline void *memalign_pages_area(unsigned int areas, size_t alignment, size_t size)
{
	return memalign_flags(alignment, size, areas & AREA_MASK);
}

noinline void *memalign_pages(size_t alignment, size_t size)
{
	return memalign_pages_area(AREA_ANY, alignment, size);
}

noinline void *alloc_pages_special(phys_addr_t addr, size_t n)
{
	return reserve(addr, n) ? NULL : (void *)(uintptr_t)addr;
}

noinline void free_pages_special(phys_addr_t addr, size_t n)
{
	unreserve(addr, n);
}
#endif
