/*
 * riscv64: the virt machine, S-mode under OpenSBI, a relocatable image
 * loaded at 0x80200000, no MMU (satp = bare).
 */
#ifndef GUEST_ARCH_H
#define GUEST_ARCH_H

#define ARCH_NAME "riscv64"
#define PAGE_SHIFT 12
#define VFREE_TOP (1ULL << 40)
/* exit() ends through the virt test device (QEMU's status) and prints the line too */
#define ARCH_EXIT_STATUS_LINE 1

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
	asm volatile("nop" : : : "memory");
}

#endif
