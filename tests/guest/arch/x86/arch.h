/* x86_64 and i386: the PC machine, booted by QEMU's multiboot loader. */
#ifndef GUEST_ARCH_H
#define GUEST_ARCH_H

#if __SIZEOF_LONG__ == 8
#define ARCH_NAME "x86_64"
#define MAP_LIMIT (16ULL << 30) /* identity map of boot64.S */
#define VFREE_TOP (16ULL << 30)
#else
#define ARCH_NAME "i386"
#define MAP_LIMIT (4ULL << 30)
#define VFREE_TOP 0xfffff000UL
#endif

#define PAGE_SHIFT 12
/* exit() ends through isa-debug-exit: QEMU's status says it all */
#define ARCH_EXIT_STATUS_LINE 0
/* memset and memcpy are rep stosb / rep movsb (arch.c) */
#define ARCH_MEMOPS 1

/* slots: number, lowest pfn of the slot's range (ALLOCATOR.md) */
#if FORMAT == 2021
#define MAX_AREAS 4
#define AREA_NORMAL_NUMBER 0
#define AREA_HIGH_NUMBER 1
#define AREA_LOW_NUMBER 2
#define AREA_LOWEST_NUMBER 3
#define NR_SLOTS 4
#define SLOT_LO_PFNS { (64ULL << 30) >> PAGE_SHIFT, (4ULL << 30) >> PAGE_SHIFT, \
		       (16ULL << 20) >> PAGE_SHIFT, 0 }
#else
#define MAX_AREAS 6
#define AREA_NORMAL_NUMBER 0
#define AREA_PAE_HIGH_NUMBER 1
#define AREA_LOW_NUMBER 2
#define NR_SLOTS 3
#define SLOT_LO_PFNS { (64ULL << 30) >> PAGE_SHIFT, (4ULL << 30) >> PAGE_SHIFT, 0 }
#endif

static inline void cpu_relax(void)
{
	asm volatile("pause");
}

#endif
