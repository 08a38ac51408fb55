/*
 * ppc64 entry (ELFv2 ABI, big-endian). QEMU loads the ELF at 0x400000;
 * the Open Firmware (VOF or SLOF) enters its first byte with r5 = the
 * client interface entry. Linked at 0: find TOC, stack and relocations
 * PC-relatively, then apply our own R_PPC64_RELATIVE relocations.
 */
#define R_PPC64_RELATIVE 22

	.section .text.boot, "ax"
	/*
	 * The firmware enters the image's first byte; the ELF's entry (where
	 * gdb puts the breakpoint that ends an inferior call) must not be 0,
	 * which gdb reads as "entry point unknown" on ppc64.
	 */
	.globl _head
_head:
	b	start

	.globl start
start:
	/* 64-bit mode (MSR[SF]) */
	mfmsr	r0
	li	r11, 1
	sldi	r11, r11, 63
	or	r0, r0, r11
	mtmsrd	r0
	isync
	mr	r30, r5			/* the client interface */
	bl	0f
0:	mflr	r12
	addi	r31, r12, -(0b - _head)	/* where we were loaded: our link offset */
	addis	r2, r12, (.TOC. - 0b)@ha
	addi	r2, r2, (.TOC. - 0b)@l
	addis	r1, r12, (stack_top - 0b)@ha
	addi	r1, r1, (stack_top - 0b)@l
	addis	r3, r12, (__rela_start - 0b)@ha
	addi	r3, r3, (__rela_start - 0b)@l
	addis	r4, r12, (__rela_end - 0b)@ha
	addi	r4, r4, (__rela_end - 0b)@l
	/* relocate: for each Elf64_Rela {offset, info, addend} */
1:	cmpld	r3, r4
	bge	2f
	ld	r5, 0(r3)
	ld	r6, 8(r3)
	ld	r7, 16(r3)
	addi	r3, r3, 24
	cmpdi	r6, R_PPC64_RELATIVE
	bne	1b
	add	r7, r7, r31
	stdx	r7, r31, r5
	b	1b
2:	/* clear .bss (the stack is in it) */
	addis	r3, r12, (__bss_start - 0b)@ha
	addi	r3, r3, (__bss_start - 0b)@l
	addis	r4, r12, (__bss_end - 0b)@ha
	addi	r4, r4, (__bss_end - 0b)@l
	li	r0, 0
3:	cmpld	r3, r4
	bge	4f
	std	r0, 0(r3)
	addi	r3, r3, 8
	b	3b
4:	/* a first frame whose back chain ends backtraces */
	stdu	r0, -64(r1)
	addis	r3, r2, of_entry@toc@ha
	std	r30, of_entry@toc@l(r3)
	bl	main
	nop
5:	b	5b

/* long hcall(long opcode, ...): sc 1 with r3 = opcode, r4.. = arguments */
	.text
	.globl hcall
	.type hcall, @function
hcall:
	sc	1
	blr
	.size hcall, . - hcall

	.section .bss
	.align 16
	.globl stack_bottom, stack_top
stack_bottom:
	.space 65536
stack_top:
