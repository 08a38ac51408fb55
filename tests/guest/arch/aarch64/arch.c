/*
 * aarch64 on QEMU's virt machine: the DTB (x0 at entry) gives RAM and
 * bootargs; console on the PL011 at 0x09000000; exit through semihosting
 * SYS_EXIT (QEMU -semihosting: status (code << 1) | 1), else PSCI
 * SYSTEM_OFF through HVC (status 0).
 */
#include "fdt.h"

#define PL011 0x09000000UL
#define UARTDR 0x00
#define UARTFR 0x18
#define UARTFR_TXFF (1U << 5)
#define SEMIHOSTING_SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define PSCI_SYSTEM_OFF 0x84000008UL

/* stored by boot.S */
unsigned long dtb_addr;

static inline u32 mmio_read32(unsigned long addr)
{
	return *(volatile u32 *)addr;
}

static inline void mmio_write32(unsigned long addr, u32 v)
{
	*(volatile u32 *)addr = v;
}

static void uart_putc(char c)
{
	int spin = 100000;
	while ((mmio_read32(PL011 + UARTFR) & UARTFR_TXFF) && --spin)
		;
	mmio_write32(PL011 + UARTDR, (u8)c);
}

void arch_puts(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

static noreturn void psci_off(void)
{
	register unsigned long x0 asm("x0") = PSCI_SYSTEM_OFF;
	for (;;)
		asm volatile("hvc #0" : "+r"(x0) : : "memory");
}

/* the semihosting trap: without -semihosting it is an undefined instruction */
extern char semihosting_hlt[];

noreturn void arch_trap(u64 esr, u64 elr, u64 far)
{
	if (elr != (uintptr_t)semihosting_hlt)
		printf("trap esr=0x%llx elr=0x%llx far=0x%llx\n", esr, elr, far);
	psci_off();
}

noreturn void arch_poweroff(int code)
{
	u64 block[2] = { ADP_STOPPED_APPLICATION_EXIT, ((u64)code << 1) | 1 };
	register unsigned long x0 asm("x0") = SEMIHOSTING_SYS_EXIT;
	register unsigned long x1 asm("x1") = (uintptr_t)block;

	asm volatile(".globl semihosting_hlt\n"
		     "semihosting_hlt: hlt #0xf000" : "+r"(x0) : "r"(x1) : "memory");
	psci_off();
}

int arch_setup(char *cmdline, size_t size, struct mem_range *ranges, int max)
{
	int n = fdt_scan((const void *)dtb_addr, cmdline, size, ranges, max);

	if (n <= 0) {
		printf("no memory in the device tree at 0x%lx\n", dtb_addr);
		abort();
	}
	return n;
}
