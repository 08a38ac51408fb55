/*
 * aarch64 entry. guest.flat is a raw image with an arm64 Linux Image
 * header, so QEMU's virt machine loads it at RAM + text_offset
 * (0x40080000) and enters it at EL1, MMU off, x0 = the DTB. Linked at 0:
 * apply our own R_AARCH64_RELATIVE relocations first.
 */
#define R_AARCH64_RELATIVE 1027

	.section .text.head, "ax"
	.globl _head
_head:
	b	start			/* code0 */
	.long	0			/* code1 */
	.quad	0x80000			/* text_offset */
	/* image_size: a QUAD in guest.ld, between the two parts */
	.section .text.head.rest, "ax"
	.quad	0			/* flags: little-endian, any page size */
	.quad	0, 0, 0			/* res2-res4 */
	.ascii	"ARM\x64"		/* magic */
	.long	0			/* res5 */

	.section .text.boot, "ax"
	.globl start
start:
	msr	daifset, #0xf
	mov	x19, x0			/* the DTB */
	adr	x20, _head		/* where we were loaded: our link offset */
	/* relocate: for each Elf64_Rela {offset, info, addend} */
	adrp	x1, __rela_start
	add	x1, x1, :lo12:__rela_start
	adrp	x2, __rela_end
	add	x2, x2, :lo12:__rela_end
1:	cmp	x1, x2
	b.hs	2f
	ldp	x3, x4, [x1]
	ldr	x5, [x1, #16]
	add	x1, x1, #24
	cmp	x4, #R_AARCH64_RELATIVE
	b.ne	1b
	add	x5, x5, x20
	str	x5, [x20, x3]
	b	1b
2:	/* clear .bss (the stack is in it), 8 bytes at a time */
	adrp	x1, __bss_start
	add	x1, x1, :lo12:__bss_start
	adrp	x2, __bss_end
	add	x2, x2, :lo12:__bss_end
3:	cmp	x1, x2
	b.hs	4f
	str	xzr, [x1], #8
	b	3b
4:	adrp	x1, stack_top
	add	x1, x1, :lo12:stack_top
	mov	sp, x1
	adr	x1, vectors
	msr	vbar_el1, x1
	isb
	adrp	x1, dtb_addr
	str	x19, [x1, :lo12:dtb_addr]
	mov	x29, #0
	mov	x30, #0
	bl	main
5:	wfi
	b	5b

/*
 * Every exception lands in arch_trap (arch.c): it reports, then powers off.
 * Sixteen 128-byte slots, the table 2 KiB aligned.
 */
	.section .text.vectors, "ax"
	.align	11
vectors:
	.rept	16
	.align	7
	mrs	x0, esr_el1
	mrs	x1, elr_el1
	mrs	x2, far_el1
	b	arch_trap
	.endr

	.section .bss
	.align 16
	.globl stack_bottom, stack_top
stack_bottom:
	.space 65536
stack_top:
