/*
 * riscv64 entry. OpenSBI (QEMU's default -bios on virt) enters the raw
 * image at 0x80200000 in S-mode with a0 = hartid, a1 = the DTB. Linked at
 * 0: apply our own R_RISCV_RELATIVE relocations first.
 */
#define R_RISCV_RELATIVE 3

	.section .text.boot, "ax"
	.globl start
start:
	csrw	sie, zero
	csrci	sstatus, 2		/* SIE */
	mv	s1, a1			/* the DTB */
	lla	s2, start		/* where we were loaded: our link offset */
	/* relocate: for each Elf64_Rela {offset, info, addend} */
	lla	t0, __rela_start
	lla	t1, __rela_end
	li	t5, R_RISCV_RELATIVE
1:	bgeu	t0, t1, 2f
	ld	t2, 0(t0)
	ld	t3, 8(t0)
	ld	t4, 16(t0)
	addi	t0, t0, 24
	bne	t3, t5, 1b
	add	t4, t4, s2
	add	t2, t2, s2
	sd	t4, 0(t2)
	j	1b
2:	/* clear .bss (the stack is in it) */
	lla	t0, __bss_start
	lla	t1, __bss_end
3:	bgeu	t0, t1, 4f
	sd	zero, 0(t0)
	addi	t0, t0, 8
	j	3b
4:	lla	sp, stack_top
	lla	t0, dtb_addr
	sd	s1, 0(t0)
	lla	t0, trap_entry
	csrw	stvec, t0
	li	ra, 0
	li	s0, 0
	call	main
5:	wfi
	j	5b

/* any trap: report it (arch.c) and power off */
	.align	2
trap_entry:
	csrr	a0, scause
	csrr	a1, sepc
	csrr	a2, stval
	j	arch_trap

	.section .bss
	.align 16
	.globl stack_bottom, stack_top
stack_bottom:
	.space 65536
stack_top:
