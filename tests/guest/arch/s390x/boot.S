/*
 * s390x entry. QEMU loads this ELF (-kernel) and, its entry being 0x10000,
 * copies the -append text to 0x10480 and starts the CPU there in 64-bit
 * z/Architecture mode, DAT off, every interruption masked.
 */
#define WAIT_PSW_MASK 0x0002000180000000 /* wait, EA+BA (64-bit), nothing enabled */

	.section .text.boot, "ax"
	.globl start
start:
	/* clear .bss (the stack is in it) */
	larl	%r2, __bss_start
	larl	%r3, __bss_end
1:	clgr	%r2, %r3
	jhe	2f
	mvi	0(%r2), 0
	la	%r2, 1(%r2)
	j	1b
2:	/* any interruption: load a disabled-wait PSW (QEMU reports it) */
	larl	%r1, wait_psw
	mvc	0x1b0(16), 0(%r1)	/* external new PSW */
	mvc	0x1c0(16), 0(%r1)	/* supervisor call */
	mvc	0x1d0(16), 0(%r1)	/* program */
	mvc	0x1e0(16), 0(%r1)	/* machine check */
	mvc	0x1f0(16), 0(%r1)	/* I/O */
	/* the ABI's 160-byte register save area below the stack top */
	larl	%r15, stack_top
	aghi	%r15, -160
	brasl	%r14, main
3:	j	3b

	.align	8
wait_psw:
	.quad	WAIT_PSW_MASK, 0xdead

	.section .bss
	.align 16
	.globl stack_bottom, stack_top
stack_bottom:
	.space 65536
stack_top:
