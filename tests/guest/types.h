/* Basic freestanding types for the allocview fixture guest. */
#ifndef GUEST_TYPES_H
#define GUEST_TYPES_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long s64;
typedef unsigned long uintptr_t;
typedef u64 phys_addr_t;

#define BITS_PER_LONG (__SIZEOF_LONG__ * 8)

/*
 * The arch's own facts (arch/<arch>/arch.h, found through -I): ARCH_NAME,
 * PAGE_SHIFT, MAP_LIMIT, VFREE_TOP, the area slots, cpu_relax().
 */
#include "arch.h"

#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define BIT(n) (1U << (n))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))

#define noinline __attribute__((noinline, noclone))
#define noreturn __attribute__((noreturn))

/* libc.c */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void puts(const char *s);

/* main.c */
noreturn void exit(int code);
noreturn void abort(void);
void checkpoint(int n);
void idle(void);

/*
 * arch/<arch>/arch.c: what every arch provides.
 *
 * arch_setup: read the boot information: the command line (at most size-1
 * bytes, NUL terminated) and the RAM ranges (type 1: usable); returns how
 * many ranges it stored. The console works once it returns.
 * arch_puts: write a string to the console.
 * arch_poweroff: end the machine after exit() printed its lines; QEMU's
 * own exit status is (code << 1) | 1 where the machine allows it.
 */
struct mem_range {
	u64 addr;
	u64 len;
	u32 type;
};

int arch_setup(char *cmdline, size_t size, struct mem_range *ranges, int max);
void arch_puts(const char *s);
noreturn void arch_poweroff(int code);

#define assert(cond)                                                         \
	do {                                                                 \
		if (!(cond)) {                                               \
			printf("assert failed: %s:%d: %s\n", __FILE__,       \
			       __LINE__, #cond);                             \
			abort();                                             \
		}                                                            \
	} while (0)

#endif
