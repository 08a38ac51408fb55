/*
 * A tiny vmalloc with the upstream metadata conventions. The guest is
 * identity mapped, so the pages come straight from the page allocator;
 * vfree_top records the lowest address handed out so far (growing down).
 */
#include "guest.h"

#define VM_MAGIC 0x7E57C0DEUL

struct metadata {
	unsigned long npages;
	unsigned long magic;
};

static void *vfree_top = (void *)VFREE_TOP;

void *vm_ptrs[8];
int vm_count;

static void note(void *region, void *p)
{
	if (region < vfree_top)
		vfree_top = region;
	if (vm_count < 8)
		vm_ptrs[vm_count++] = p;
}

void *vm_memalign(size_t alignment, size_t size)
{
	unsigned long *p;
	u8 *page;

	assert(alignment >= sizeof(unsigned long) && !(alignment & (alignment - 1)));
	if (alignment < PAGE_SIZE && size + alignment <= PAGE_SIZE) {
		/* fits in one page: alignment bytes into a fresh page, magic before */
		page = wl_alloc_pages(0, FLAG_DONTZERO);
		if (!page)
			return NULL;
		p = (unsigned long *)(page + alignment);
		p[-1] = VM_MAGIC;
	} else {
		/* one extra page in front, metadata right before the pointer */
		unsigned long npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
		unsigned int order = 0;
		struct metadata *m;

		while ((1UL << order) < npages + 1)
			order++;
		page = wl_alloc_pages(order, FLAG_DONTZERO);
		if (!page)
			return NULL;
		p = (unsigned long *)(page + PAGE_SIZE);
		m = (struct metadata *)p - 1;
		m->npages = npages;
		m->magic = VM_MAGIC;
	}
	note(page, p);
	return p;
}

void *vmalloc(size_t size)
{
	return vm_memalign(sizeof(unsigned long), size);
}
