/*
 * x86_64 and i386: multiboot 1 information (command line, memory map),
 * COM1 console, isa-debug-exit.
 */
#include "types.h"

#define COM1 0x3f8
#define MB_INFO_CMDLINE (1U << 2)
#define MB_INFO_MMAP (1U << 6)

struct mb_info {
	u32 flags;
	u32 mem_lower;
	u32 mem_upper;
	u32 boot_device;
	u32 cmdline;
	u32 mods_count;
	u32 mods_addr;
	u32 syms[4];
	u32 mmap_length;
	u32 mmap_addr;
};

struct mb_mmap_entry {
	u32 size;
	u64 addr;
	u64 len;
	u32 type;
} __attribute__((packed));

/* stored by boot32.S / boot64.S */
u32 mb_magic, mb_info;

static inline void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(u16 port, u32 v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

void *memset(void *s, int c, size_t n)
{
	void *d = s;
	asm volatile("cld; rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *dd = d;
	asm volatile("cld; rep movsb" : "+D"(dd), "+S"(s), "+c"(n) : : "memory");
	return d;
}

static void serial_putc(char c)
{
	int spin = 100000;
	while (!(inb(COM1 + 5) & 0x20) && --spin)
		;
	outb(COM1, c);
}

void arch_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

noreturn void arch_poweroff(int code)
{
	/* isa-debug-exit: QEMU exits with status (code << 1) | 1 */
	outl(0xf4, code);
	for (;;)
		asm volatile("cli; hlt");
}

int arch_setup(char *cmdline, size_t size, struct mem_range *ranges, int max)
{
	struct mb_info *mbi = (struct mb_info *)(uintptr_t)mb_info;
	int n = 0;
	u32 off;

	if (mb_magic != 0x2BADB002) {
		printf("bad multiboot magic 0x%x\n", mb_magic);
		abort();
	}
	if (mbi->flags & MB_INFO_CMDLINE) {
		const char *src = (const char *)(uintptr_t)mbi->cmdline;
		size_t len = strlen(src);
		if (len >= size)
			len = size - 1;
		memcpy(cmdline, src, len);
		cmdline[len] = 0;
	}
	if (!(mbi->flags & MB_INFO_MMAP)) {
		printf("no multiboot memory map\n");
		abort();
	}
	for (off = 0; off < mbi->mmap_length && n < max;) {
		struct mb_mmap_entry *e = (void *)(uintptr_t)(mbi->mmap_addr + off);
		ranges[n].addr = e->addr;
		ranges[n].len = e->len;
		ranges[n].type = e->type;
		n++;
		off += e->size + 4;
	}
	return n;
}
