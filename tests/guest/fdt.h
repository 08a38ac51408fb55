/* A flattened device tree reader: just what the fixture needs from it. */
#ifndef GUEST_FDT_H
#define GUEST_FDT_H

#include "types.h"

/*
 * From the DTB at fdt: /chosen/bootargs into cmdline (size bytes with the
 * NUL; empty when absent) and the reg ranges of every /memory node into
 * ranges (type 1). Returns how many ranges it stored, -1 for no DTB.
 */
int fdt_scan(const void *fdt, char *cmdline, size_t size, struct mem_range *ranges, int max);

#endif
