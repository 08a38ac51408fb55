/*
 * ppc64 on QEMU's pseries machine: RAM, bootargs, the console's vterm and
 * the RTAS power-off token through the Open Firmware client interface
 * (IEEE 1275: an array of 32-bit cells {service, nargs, nret, args...,
 * rets...}); console through the H_PUT_TERM_CHAR hcall; exit through
 * RTAS power-off (hcall KVMPPC_H_RTAS): QEMU's status is 0.
 *
 * Every client interface call happens in arch_setup, before the allocator
 * owns RAM: the firmware's memory is free game afterwards.
 */
#include "types.h"

#define H_SUCCESS 0
#define H_BUSY 1
#define H_PUT_TERM_CHAR 0x58
#define KVMPPC_H_RTAS 0xf000
#define OF_FAILED 0xffffffffU
#define DEFAULT_VTERM 0x71000000	/* the first spapr-vty */

/* stored by boot.S */
unsigned long of_entry;

long hcall(long opcode, ...);

static u32 vterm = DEFAULT_VTERM;
static u32 rtas_power_off = OF_FAILED;

struct of_args {
	u32 service;
	u32 nargs;
	u32 nret;
	u32 cells[12];
};

static u32 of_call(const char *service, int nargs, int nret, u32 a0, u32 a1, u32 a2, u32 a3)
{
	struct of_args args = { (u32)(uintptr_t)service, nargs, nret,
				{ a0, a1, a2, a3 } };
	int (*entry)(struct of_args *) = (void *)of_entry;

	if (entry(&args) < 0)
		return OF_FAILED;
	return nret ? args.cells[nargs] : 0;
}

static u32 of_ptr(const void *p)
{
	return (u32)(uintptr_t)p;
}

static u32 finddevice(const char *path)
{
	return of_call("finddevice", 1, 1, of_ptr(path), 0, 0, 0);
}

/* the property's length (-1 when absent); at most len bytes into buf */
static int getprop(u32 node, const char *name, void *buf, u32 len)
{
	return (int)of_call("getprop", 4, 1, node, of_ptr(name), of_ptr(buf), len);
}

/* a string property into buf (size bytes with the NUL); its length, or -1 */
static int getprop_str(u32 node, const char *name, char *buf, u32 size)
{
	int len = getprop(node, name, buf, size - 1);

	if (len < 0) {
		buf[0] = 0;
		return -1;
	}
	if ((u32)len > size - 1)
		len = size - 1;
	buf[len] = 0;
	return len;
}

static u32 getprop_u32(u32 node, const char *name, u32 dflt)
{
	u32 v;
	return getprop(node, name, &v, sizeof(v)) == sizeof(v) ? v : dflt;
}

static u32 child(u32 node)
{
	return of_call("child", 1, 1, node, 0, 0, 0);
}

static u32 peer(u32 node)
{
	return of_call("peer", 1, 1, node, 0, 0, 0);
}

static void put_term(const char *s, size_t n)
{
	while (n) {
		u64 w[2] = { 0, 0 };
		size_t k = n < 16 ? n : 16;
		memcpy(w, s, k);
		while (hcall(H_PUT_TERM_CHAR, (long)vterm, (long)k, w[0], w[1]) == H_BUSY)
			;
		s += k;
		n -= k;
	}
}

void arch_puts(const char *s)
{
	put_term(s, strlen(s));
}

noreturn void arch_poweroff(int code)
{
	/* token, nargs, nret, power-on masks (hi, lo), status */
	u32 rtas[6] = { rtas_power_off, 2, 1, ~0U, ~0U, 0 };

	for (;;)
		hcall(KVMPPC_H_RTAS, rtas);
}

static u64 cells(const u32 *p, u32 n)
{
	u64 v = 0;
	while (n--)
		v = v << 32 | *p++;
	return v;
}

int arch_setup(char *cmdline, size_t size, struct mem_range *ranges, int max)
{
	u32 root = finddevice("/"), chosen = finddevice("/chosen"), node;
	u32 ac = getprop_u32(root, "#address-cells", 2), sc = getprop_u32(root, "#size-cells", 1);
	char path[128], type[16];
	u32 reg[32];
	int n = 0, len;

	/* the console: /chosen/stdout-path names the vty, its reg the vterm */
	if (getprop_str(chosen, "stdout-path", path, sizeof(path)) > 0) {
		node = finddevice(path);
		if (node != OF_FAILED)
			vterm = getprop_u32(node, "reg", DEFAULT_VTERM);
	}
	rtas_power_off = getprop_u32(finddevice("/rtas"), "power-off", OF_FAILED);
	getprop_str(chosen, "bootargs", cmdline, size);
	/* RAM: every node of device_type "memory" under the root */
	for (node = child(root); node && node != OF_FAILED && n < max; node = peer(node)) {
		u32 i;
		if (getprop_str(node, "device_type", type, sizeof(type)) < 0 ||
		    strncmp(type, "memory", 7))
			continue;
		len = getprop(node, "reg", reg, sizeof(reg));
		if (len > (int)sizeof(reg))
			len = sizeof(reg);
		for (i = 0; (i + ac + sc) * 4 <= (u32)len && n < max; i += ac + sc) {
			ranges[n].addr = cells(reg + i, ac);
			ranges[n].len = cells(reg + i + ac, sc);
			ranges[n].type = 1;
			n++;
		}
	}
	if (rtas_power_off == OF_FAILED)
		printf("no RTAS power-off token: exit() will spin\n");
	if (!n) {
		printf("no memory node\n");
		abort();
	}
	return n;
}
