/*
 * Flattened device tree (devicetree.org specification, "Flattened
 * Devicetree (DTB) Format"): a big-endian header, a structure block of
 * tokens (BEGIN_NODE name, PROP len nameoff value, END_NODE, NOP, END) and
 * a strings block. Read byte by byte: no alignment assumed.
 */
#include "fdt.h"

#define FDT_MAGIC 0xd00dfeed
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE 2
#define FDT_PROP 3
#define FDT_NOP 4
#define FDT_END 9

static u32 be32(const u8 *p)
{
	return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

static u64 cells(const u8 *p, u32 n)
{
	u64 v = 0;
	while (n--) {
		v = v << 32 | be32(p);
		p += 4;
	}
	return v;
}

static bool prefix(const char *s, const char *word)
{
	size_t n = strlen(word);
	return !strncmp(s, word, n) && (s[n] == 0 || s[n] == '@');
}

int fdt_scan(const void *fdt, char *cmdline, size_t size, struct mem_range *ranges, int max)
{
	const u8 *base = fdt, *p, *strings;
	u32 addr_cells = 2, size_cells = 1;
	int depth = 0, n = 0;
	bool in_memory = false, in_chosen = false;

	cmdline[0] = 0;
	if (!fdt || be32(base) != FDT_MAGIC)
		return -1;
	p = base + be32(base + 8);
	strings = base + be32(base + 12);
	for (;;) {
		u32 token = be32(p);
		p += 4;
		if (token == FDT_BEGIN_NODE) {
			const char *name = (const char *)p;
			depth++;
			if (depth == 2) {
				in_memory = prefix(name, "memory");
				in_chosen = prefix(name, "chosen");
			}
			p += ALIGN_UP(strlen(name) + 1, 4);
		} else if (token == FDT_END_NODE) {
			depth--;
			if (depth < 2)
				in_memory = in_chosen = false;
			if (depth == 0)
				break;
		} else if (token == FDT_PROP) {
			u32 len = be32(p), stride;
			const char *name = (const char *)strings + be32(p + 4);
			const u8 *val = p + 8;

			p = val + ALIGN_UP(len, 4);
			if (depth == 1 && !strncmp(name, "#address-cells", 15))
				addr_cells = be32(val);
			else if (depth == 1 && !strncmp(name, "#size-cells", 12))
				size_cells = be32(val);
			else if (depth == 2 && in_chosen && !strncmp(name, "bootargs", 9)) {
				size_t k = len < size ? len : size - 1;
				memcpy(cmdline, val, k);
				cmdline[k] = 0;
			} else if (depth == 2 && in_memory && !strncmp(name, "reg", 4)) {
				stride = 4 * (addr_cells + size_cells);
				for (; len >= stride && n < max; len -= stride, val += stride) {
					ranges[n].addr = cells(val, addr_cells);
					ranges[n].len = cells(val + 4 * addr_cells, size_cells);
					ranges[n].type = 1;
					n++;
				}
			}
		} else if (token != FDT_NOP) {
			break;	/* FDT_END or garbage */
		}
	}
	return n;
}
