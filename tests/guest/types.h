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
#define PAGE_SHIFT 12
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

#define assert(cond)                                                         \
	do {                                                                 \
		if (!(cond)) {                                               \
			printf("assert failed: %s:%d: %s\n", __FILE__,       \
			       __LINE__, #cond);                             \
			abort();                                             \
		}                                                            \
	} while (0)

#endif
