/*
 * Fixture guest for allocview: boots (arch/<arch>/: multiboot, SCLP,
 * Linux image, Open Firmware, OpenSBI), gives the RAM above the image to
 * the page allocator, runs a deterministic workload from the command line
 * and stops at numbered checkpoints.
 *
 * Console lines, one per event:
 *   allocview-guest arch=ARCH format=FMT defect=NAME
 *   cmdline: TEXT
 *   mmap base=0xADDR len=0xLEN type=T
 *   init_area n=255 base=0xPFN top=0xPFN slot=S
 *   skip_area base=0xPFN top=0xPFN slot=S reason=WORD
 *   checkpoint N ops=OPS hash=0xHASH
 *   abort
 *   exit code=C
 *   EXIT: STATUS=S          (S = (C << 1) | 1; arches without isa-debug-exit)
 */
#include "guest.h"

#define MAX_MMAP 32
/* alloc_phys gets 16 pages right after the image (64 KiB with 4 KiB pages) */
#define PHYS_EARLY_SIZE (16 * PAGE_SIZE)

#ifndef MAP_LIMIT
#define MAP_LIMIT (~0ULL)
#endif

#if defined(DEFECT_NOMERGE)
#define DEFECT_NAME "nomerge"
#elif defined(DEFECT_SPLITEND)
#define DEFECT_NAME "splitend"
#elif defined(DEFECT_MULTI)
#define DEFECT_NAME "multi"
#else
#define DEFECT_NAME "none"
#endif

extern char _end[];

struct options opts = { .seed = 1, .mix = "default", .ops = 5000, .mode = "normal" };
struct piece pieces[MAX_PIECES];
int npieces;
volatile int exit_request;
volatile int current_checkpoint;

static char cmdline[1024];
static struct mem_range mmap[MAX_MMAP];
static int nmmap;

noinline noreturn void exit(int code)
{
	printf("exit code=%d\n", code);
#if ARCH_EXIT_STATUS_LINE
	/* what kvm-unit-tests runners parse where QEMU's status cannot say it */
	printf("EXIT: STATUS=%d\n", (code << 1) | 1);
#endif
	arch_poweroff(code);
}

noinline noreturn void abort(void)
{
	printf("abort\n");
	exit(64);
}

noinline void checkpoint(int n)
{
	current_checkpoint = n;
	printf("checkpoint %d ops=%lu hash=0x%llx\n", n, workload_ops, workload_hash);
	asm volatile("" : : : "memory");
}

noinline void idle(void)
{
	for (;;) {
		if (exit_request)
			exit(exit_request);
		cpu_relax();
	}
}

static bool streq(const char *a, const char *b)
{
	return !strncmp(a, b, ~(size_t)0);
}

static u64 parse_u64(const char *s)
{
	u64 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (s += 2; *s; s++) {
			int d = *s >= 'a' ? *s - 'a' + 10 : *s >= 'A' ? *s - 'A' + 10 : *s - '0';
			v = v * 16 + d;
		}
	} else {
		for (; *s; s++)
			v = v * 10 + (*s - '0');
	}
	return v;
}

static void parse_cmdline(void)
{
	char *p = cmdline;

	while (*p) {
		char *key, *val = NULL;
		while (*p == ' ')
			*p++ = 0;
		if (!*p)
			break;
		key = p;
		while (*p && *p != ' ') {
			if (*p == '=' && !val) {
				*p = 0;
				val = p + 1;
			}
			p++;
		}
		if (*p)
			*p++ = 0;
		if (!val)
			continue; /* the kernel path QEMU puts first */
		if (streq(key, "seed"))
			opts.seed = parse_u64(val);
		else if (streq(key, "mix"))
			opts.mix = val;
		else if (streq(key, "ops"))
			opts.ops = parse_u64(val);
		else if (streq(key, "exit"))
			opts.exit = parse_u64(val);
		else if (streq(key, "trace"))
			opts.trace = parse_u64(val);
		else if (streq(key, "mode"))
			opts.mode = val;
		else
			printf("cmdline: unknown key %s\n", key);
	}
}

/* Give one piece, inside one slot, to the page allocator. */
static void add_piece(u64 start, u64 top, u32 *used)
{
	int slot = slot_of_pfn(start);
	const char *why = NULL;

	if (*used & BIT(slot))
		why = "slot_taken";
	else if (top - start < 16)
		why = "too_small";
	else if (npieces == MAX_PIECES)
		why = "too_many";
	if (why) {
		printf("skip_area base=0x%llx top=0x%llx slot=%d reason=%s\n", start, top, slot,
		       why);
		return;
	}
	printf("init_area n=%d base=0x%llx top=0x%llx slot=%d\n", AREA_ANY_NUMBER, start, top,
	       slot);
	page_alloc_init_area(AREA_ANY_NUMBER, start, top);
	*used |= BIT(slot);
	pieces[npieces].start = start;
	pieces[npieces].top = top;
	pieces[npieces].slot = slot;
	npieces++;
}

static void setup_memory(void)
{
	phys_addr_t early_base = ALIGN_UP((uintptr_t)_end, PAGE_SIZE), early_top;
	struct mem_range *copy;
	u32 used = 0;
	int i, slot;

	/* the early allocator gets a little room right after the image */
	phys_alloc_init(early_base, PHYS_EARLY_SIZE);
	phys_alloc_set_minimum_alignment(64);
	copy = (void *)(uintptr_t)phys_alloc_aligned(sizeof(mmap), 64);
	memcpy(copy, mmap, sizeof(mmap));
	phys_alloc_aligned(PAGE_SIZE, PAGE_SIZE); /* a pretend per-cpu page */
	phys_alloc_aligned(256, 256);
	phys_alloc_get_unused(&early_base, &early_top);

	for (i = 0; i < nmmap; i++) {
		u64 s = ALIGN_UP(mmap[i].addr, PAGE_SIZE), t = mmap[i].addr + mmap[i].len;

		if (mmap[i].type != 1)
			continue;
		if (s < early_top)
			s = early_top;
		if (t > MAP_LIMIT)
			t = MAP_LIMIT;
		s >>= PAGE_SHIFT;
		t >>= PAGE_SHIFT;
		/* cut at the slot boundaries, lowest piece first */
		for (slot = NR_SLOTS - 1; slot >= 0 && s < t; slot--) {
			u64 hi = slot ? slot_lo_pfn(slot - 1) : ~0ULL;
			u64 e = t < hi ? t : hi;
			if (s < e) {
				add_piece(s, e, &used);
				s = e;
			}
		}
	}
}

void main(void)
{
	int i;

	nmmap = arch_setup(cmdline, sizeof(cmdline), mmap, MAX_MMAP);
	printf("allocview-guest arch=%s format=%d defect=%s\n", ARCH_NAME, FORMAT, DEFECT_NAME);
	printf("cmdline: %s\n", cmdline);
	parse_cmdline();
	for (i = 0; i < nmmap; i++)
		printf("mmap base=0x%llx len=0x%llx type=%u\n", mmap[i].addr, mmap[i].len,
		       mmap[i].type);
	if (streq(opts.mode, "noalloc")) {
		printf("noalloc\n");
		if (opts.exit)
			exit(0);
		idle();
	}
	setup_memory();
	workload_run();
	if (opts.exit)
		exit(0);
	idle();
}
