/*
 * riscv64 on QEMU's virt machine: the DTB (a1 at entry) gives RAM and
 * bootargs; console on the ns16550 at 0x10000000; exit through the virt
 * test device at 0x100000 (FAIL with code (c << 1) | 1: QEMU exits with
 * that status), else SBI system reset (status 0).
 */
#include "fdt.h"

#define UART 0x10000000UL
#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define VIRT_TEST 0x100000UL
#define VIRT_TEST_FAIL 0x3333
#define SBI_EXT_SRST 0x53525354

/* stored by boot.S */
unsigned long dtb_addr;

static void uart_putc(char c)
{
	volatile u8 *uart = (volatile u8 *)UART;
	int spin = 100000;

	while (!(uart[UART_LSR] & UART_LSR_THRE) && --spin)
		;
	uart[UART_THR] = (u8)c;
}

void arch_puts(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

static noreturn void sbi_shutdown(void)
{
	register unsigned long a0 asm("a0") = 0;	/* shutdown */
	register unsigned long a1 asm("a1") = 0;	/* no reason */
	register unsigned long a6 asm("a6") = 0;	/* system_reset */
	register unsigned long a7 asm("a7") = SBI_EXT_SRST;

	for (;;)
		asm volatile("ecall" : "+r"(a0), "+r"(a1) : "r"(a6), "r"(a7) : "memory");
}

noreturn void arch_trap(u64 cause, u64 epc, u64 tval)
{
	printf("trap scause=0x%llx sepc=0x%llx stval=0x%llx\n", cause, epc, tval);
	sbi_shutdown();
}

noreturn void arch_poweroff(int code)
{
	u32 status = ((u32)code << 1) | 1;

	*(volatile u32 *)VIRT_TEST = status << 16 | VIRT_TEST_FAIL;
	sbi_shutdown();
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
