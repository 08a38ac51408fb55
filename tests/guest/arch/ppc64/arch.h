/*
 * ppc64: big-endian, the pseries machine, real mode (MSR IR/DR off: under
 * QEMU's virtual hypervisor effective == guest physical), 64 KiB pages for
 * the allocator, a relocatable ELF loaded at 0x400000.
 */
#ifndef GUEST_ARCH_H
#define GUEST_ARCH_H

#define ARCH_NAME "ppc64"
#define PAGE_SHIFT 16
#define VFREE_TOP (1ULL << 40)
/* exit() powers off through RTAS: QEMU's status is 0, the console line says it */
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
