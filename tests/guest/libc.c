/* Tiny libc: memory helpers and a printf on the COM1 serial port. */
#include "types.h"

#define COM1 0x3f8

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

static void serial_putc(char c)
{
	int spin = 100000;
	while (!(inb(COM1 + 5) & 0x20) && --spin)
		;
	outb(COM1, c);
}

void puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
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
