/*
 * Page allocator interface of the fixture guest, in the two on-memory
 * formats of the kvm-unit-tests allocator (FORMAT=2020 or FORMAT=2021),
 * written from /work/shared/ALLOCATOR.md.
 */
#ifndef GUEST_ALLOC_PAGE_H
#define GUEST_ALLOC_PAGE_H

#include "types.h"

#ifndef FORMAT
#error "build with -DFORMAT=2020 or -DFORMAT=2021"
#endif

#define AREA_ANY_NUMBER 0xff
#define AREA_MASK 0x0000ffff
#define FLAG_DONTZERO 0x10000
#define FLAG_FRESH 0x20000

/*
 * Slots come from arch.h: MAX_AREAS, NR_SLOTS (the slots of the table in
 * ALLOCATOR.md), SLOT_LO_PFNS (lowest pfn of each slot, slot 0 first) and
 * the AREA_*_NUMBER names.
 */
#if FORMAT == 2020
#define AREA_ANY (-1)
#endif

/* Lowest pfn of slot n; slot n covers [slot_lo_pfn(n), slot_lo_pfn(n - 1)). */
u64 slot_lo_pfn(int n);
/* The slot whose range holds pfn. */
int slot_of_pfn(u64 pfn);

void page_alloc_init_area(u8 n, phys_addr_t base_pfn, phys_addr_t top_pfn);
void free_pages(void *mem);

#if FORMAT == 2021
void *alloc_pages_flags(unsigned int order, unsigned int flags);
void *memalign_pages_flags(size_t alignment, size_t size, unsigned int flags);
int reserve_pages(phys_addr_t addr, size_t n);
void unreserve_pages(phys_addr_t addr, size_t n);

static inline void *alloc_pages_area(unsigned int areas, unsigned int order)
{
	return alloc_pages_flags(order, areas);
}

static inline void *alloc_pages(unsigned int order)
{
	return alloc_pages_flags(order, 0);
}

static inline void *alloc_page(void)
{
	return alloc_pages_flags(0, 0);
}

static inline void *memalign_pages_area(unsigned int areas, size_t alignment, size_t size)
{
	return memalign_pages_flags(alignment, size, areas);
}

static inline void *memalign_pages(size_t alignment, size_t size)
{
	return memalign_pages_flags(alignment, size, 0);
}
#else
void *alloc_pages_area(unsigned int areas, unsigned int order);
void *alloc_pages(unsigned int order);
void *alloc_page(void);
void *memalign_pages_area(unsigned int areas, size_t alignment, size_t size);
void *memalign_pages(size_t alignment, size_t size);
void *alloc_pages_special(phys_addr_t addr, size_t n);
void free_pages_special(phys_addr_t addr, size_t n);
#endif

#endif
