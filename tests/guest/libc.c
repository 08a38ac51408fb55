/* Tiny libc: memory helpers and a printf on the arch's console. */
#include "types.h"

#ifndef ARCH_MEMOPS
/* word stores where aligned: the allocator zeroes whole blocks with this */
void *memset(void *s, int c, size_t n)
{
	unsigned long w = (u8)c * (~0UL / 0xff);
	u8 *p = s;

	while (n && ((uintptr_t)p & (sizeof(long) - 1))) {
		*p++ = (u8)c;
		n--;
	}
	for (; n >= sizeof(long); n -= sizeof(long), p += sizeof(long))
		*(unsigned long *)p = w;
	while (n--)
		*p++ = (u8)c;
	return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *dd = d;
	const u8 *ss = s;

	while (n--)
		*dd++ = *ss++;
	return d;
}
#endif

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (u8)*a - (u8)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

void puts(const char *s)
{
	arch_puts(s);
}

struct buf {
	char *p;
	char *end;
};

static void bput(struct buf *b, char c)
{
	if (b->p < b->end)
		*b->p++ = c;
}

static void put_hex(struct buf *b, u64 v, int min)
{
	char tmp[17];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v);
	while (n < min)
		tmp[n++] = '0';
	while (n)
		bput(b, tmp[--n]);
}

static void put_dec(struct buf *b, unsigned long v, bool neg)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	if (neg)
		bput(b, '-');
	while (n)
		bput(b, tmp[--n]);
}

/* Supports %s %c %d %u %x with l/ll, and %p. No widths except 0-padding for x. */
static int vformat(char *out, size_t size, const char *fmt, va_list ap)
{
	struct buf b = { out, out + size - 1 };
	for (; *fmt; fmt++) {
		int longs = 0, min = 0;
		if (*fmt != '%') {
			bput(&b, *fmt);
			continue;
		}
		fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			min = min * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (*s)
				bput(&b, *s++);
			break;
		}
		case 'c':
			bput(&b, (char)va_arg(ap, int));
			break;
		case 'd': {
			long v = longs ? va_arg(ap, long) : va_arg(ap, int);
			put_dec(&b, v < 0 ? -(unsigned long)v : (unsigned long)v, v < 0);
			break;
		}
		case 'u':
			put_dec(&b, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int), false);
			break;
		case 'x': {
			u64 v;
			if (longs >= 2)
				v = va_arg(ap, u64);
			else if (longs == 1)
				v = va_arg(ap, unsigned long);
			else
				v = va_arg(ap, unsigned int);
			put_hex(&b, v, min);
			break;
		}
		case 'p':
			bput(&b, '0');
			bput(&b, 'x');
			put_hex(&b, (uintptr_t)va_arg(ap, void *), 1);
			break;
		case '%':
			bput(&b, '%');
			break;
		default:
			bput(&b, '?');
		}
	}
	*b.p = 0;
	return b.p - out;
}

int printf(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	puts(line);
	return n;
}
