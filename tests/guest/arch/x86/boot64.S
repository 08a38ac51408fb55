/*
 * x86_64 entry: multiboot 1 starts us in 32-bit protected mode; build long
 * mode with the static identity map below (0..16 GiB, 2 MiB pages) and call
 * main in 64-bit mode.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-aligned modules, memory info */
#define MAP_GIB 16

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.section .text.boot, "ax"
	.code32
	.globl start
start:
	cli
	mov %eax, %ebp
	mov %ebx, %esi
	cld
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb
	mov %ebp, mb_magic
	mov %esi, mb_info
	mov $stack_top, %esp

	mov $pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax /* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx /* EFER */
	rdmsr
	or $0x100, %eax /* LME */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax /* PG | PE */
	mov %eax, %cr0
	lgdt gdt_desc
	ljmp $0x08, $start64

	.code64
start64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov $stack_top, %rsp
	xor %ebp, %ebp
	call main
1:	hlt
	jmp 1b

	.section .rodata
	.align 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 64-bit code */
	.quad 0x00cf92000000ffff /* data */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .data
	.align 4096
pml4:
	.quad pdpt + 0x3
	.fill 511, 8, 0
pdpt:
	.set i, 0
	.rept MAP_GIB
	.quad pd + i * 4096 + 0x3
	.set i, i + 1
	.endr
	.fill 512 - MAP_GIB, 8, 0
pd:
	.set i, 0
	.rept MAP_GIB * 512
	.quad (i << 21) | 0x83
	.set i, i + 1
	.endr

	.section .bss
	.align 16
	.globl stack_bottom, stack_top
stack_bottom:
	.space 65536
stack_top:
