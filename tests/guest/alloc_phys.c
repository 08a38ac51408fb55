/* Early boot physical allocator with the upstream globals, used before the page allocator. */
#include "guest.h"

#define PHYS_ALLOC_NR_REGIONS 256
#define DEFAULT_MINIMUM_ALIGNMENT 32

struct phys_alloc_region {
	phys_addr_t base;
	phys_addr_t size;
};

/* only the debugger reads it: `used` keeps the compiler from dropping the stores */
static struct phys_alloc_region regions[PHYS_ALLOC_NR_REGIONS] __attribute__((used));
static int nr_regions;
static phys_addr_t base, top;
static phys_addr_t align_min;

void phys_alloc_init(phys_addr_t base_addr, phys_addr_t size)
{
	base = base_addr;
	top = base + size;
	align_min = DEFAULT_MINIMUM_ALIGNMENT;
	nr_regions = 0;
}

void phys_alloc_set_minimum_alignment(phys_addr_t align)
{
	assert(align && !(align & (align - 1)));
	align_min = align;
}

phys_addr_t phys_alloc_aligned(phys_addr_t size, phys_addr_t align)
{
	phys_addr_t addr;

	if (align < align_min)
		align = align_min;
	addr = ALIGN_UP(base, align);
	if (addr + size > top || nr_regions >= PHYS_ALLOC_NR_REGIONS)
		return 0;
	regions[nr_regions].base = addr;
	regions[nr_regions].size = size;
	nr_regions++;
	base = addr + size;
	return addr;
}

void phys_alloc_get_unused(phys_addr_t *p_base, phys_addr_t *p_top)
{
	*p_base = base;
	*p_top = top;
	/* what is left now belongs to the page allocator */
	base = top;
}
