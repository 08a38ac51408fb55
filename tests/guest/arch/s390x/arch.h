/* s390x: the s390-ccw-virtio machine, the ELF booted as is (DAT off). */
#ifndef GUEST_ARCH_H
#define GUEST_ARCH_H

#define ARCH_NAME "s390x"
#define PAGE_SHIFT 12
#define VFREE_TOP (1ULL << 40)
/* exit() stops the CPU: QEMU's status is 0, the console line says it */
#define ARCH_EXIT_STATUS_LINE 1

/* slots (ALLOCATOR.md): 0 NORMAL >= 2 GiB, 1 LOW below */
#if FORMAT == 2021
#define MAX_AREAS 2
#else
#define MAX_AREAS 6
#endif
#define AREA_NORMAL_NUMBER 0
#define AREA_LOW_NUMBER 1
#define NR_SLOTS 2
#define SLOT_LO_PFNS { (2ULL << 30) >> PAGE_SHIFT, 0 }

static inline void cpu_relax(void)
{
	asm volatile("" : : : "memory");
}

#endif
