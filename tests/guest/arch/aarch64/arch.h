/*
 * aarch64: the virt machine, a relocatable image loaded 0x80000 into RAM,
 * MMU off (every data access is Device memory: no unaligned accesses, no
 * exclusives).
 */
#ifndef GUEST_ARCH_H
#define GUEST_ARCH_H

#define ARCH_NAME "aarch64"
#define PAGE_SHIFT 12
#define VFREE_TOP (1ULL << 40)
/* exit() ends through semihosting (QEMU's status) and prints the line too */
#define ARCH_EXIT_STATUS_LINE 1
#define ARCH_NO_ATOMICS 1

/* one slot (ALLOCATOR.md): 0 NORMAL, everything */
#if FORMAT == 2021
#define MAX_AREAS 1
#else
#define MAX_AREAS 6
#endif
#define AREA_NORMAL_NUMBER 0
#define NR_SLOTS 1
#define SLOT_LO_PFNS { 0 }

static inline void cpu_relax(void)
{
	asm volatile("yield" : : : "memory");
}

#endif
