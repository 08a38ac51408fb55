/* Declarations shared by the fixture guest's files. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include "alloc_page.h"

#define MAX_PIECES 8

/* One page_alloc_init_area call made at boot: pfns [start, top) of one slot. */
struct piece {
	u64 start;
	u64 top;
	int slot;
};

extern struct piece pieces[MAX_PIECES];
extern int npieces;

struct options {
	u64 seed;
	const char *mix;
	unsigned long ops;
	int exit;
	int trace;
	const char *mode;
};

extern struct options opts;
extern unsigned long workload_ops;
extern u64 workload_hash;

/* workload.c */
void *wl_alloc_pages(unsigned int order, unsigned int flags);
void workload_run(void);

/* vmalloc.c */
void *vm_memalign(size_t alignment, size_t size);
void *vmalloc(size_t size);

/* alloc_phys.c */
void phys_alloc_init(phys_addr_t base_addr, phys_addr_t size);
void phys_alloc_set_minimum_alignment(phys_addr_t align);
phys_addr_t phys_alloc_aligned(phys_addr_t size, phys_addr_t align);
void phys_alloc_get_unused(phys_addr_t *p_base, phys_addr_t *p_top);

#endif
