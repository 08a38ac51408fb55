/*
 * Fixture guest for allocview: boots from multiboot, gives the RAM above
 * the image to the page allocator, runs a deterministic workload from the
 * command line and stops at numbered checkpoints.
 *
 * Console lines (COM1), one per event:
 *   allocview-guest arch=ARCH format=FMT defect=NAME
 *   cmdline: TEXT
 *   mmap base=0xADDR len=0xLEN type=T
 *   init_area n=255 base=0xPFN top=0xPFN slot=S
 *   skip_area base=0xPFN top=0xPFN slot=S reason=WORD
 *   checkpoint N ops=OPS hash=0xHASH
 *   abort
 *   exit code=C
 */
#include "guest.h"

#define MB_INFO_CMDLINE (1U << 2)
#define MB_INFO_MMAP (1U << 6)
#define MAX_MMAP 32
#define PHYS_EARLY_SIZE (64UL << 10)

#if BITS_PER_LONG == 64
#define ARCH_NAME "x86_64"
#define MAP_LIMIT (16ULL << 30) /* identity map of boot64.S */
#else
#define ARCH_NAME "i386"
#define MAP_LIMIT (4ULL << 30)
#endif

#if defined(DEFECT_NOMERGE)
#define DEFECT_NAME "nomerge"
#elif defined(DEFECT_SPLITEND)
#define DEFECT_NAME "splitend"
#else
#define DEFECT_NAME "none"
#endif

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

struct mem_range {
	u64 addr;
	u64 len;
	u32 type;
};

extern char _end[];
u32 mb_magic, mb_info;

struct options opts = { .seed = 1, .mix = "default", .ops = 5000, .mode = "normal" };
struct piece pieces[MAX_PIECES];
int npieces;
volatile int exit_request;
volatile int current_checkpoint;

static char cmdline[1024];
static struct mem_range mmap[MAX_MMAP];
static int nmmap;

static inline void outl(u16 port, u32 v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

noinline noreturn void exit(int code)
{
	printf("exit code=%d\n", code);
	/* isa-debug-exit: QEMU exits with status (code << 1) | 1 */
	outl(0xf4, code);
	for (;;)
		asm volatile("cli; hlt");
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
		asm volatile("pause");
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

static void read_multiboot(void)
{
	struct mb_info *mbi = (struct mb_info *)(uintptr_t)mb_info;
	u32 off;

	if (mb_magic != 0x2BADB002) {
		printf("bad multiboot magic 0x%x\n", mb_magic);
		abort();
	}
	if (mbi->flags & MB_INFO_CMDLINE) {
		const char *src = (const char *)(uintptr_t)mbi->cmdline;
		size_t n = strlen(src);
		if (n >= sizeof(cmdline))
			n = sizeof(cmdline) - 1;
		memcpy(cmdline, src, n);
		cmdline[n] = 0;
	}
	if (!(mbi->flags & MB_INFO_MMAP)) {
		printf("no multiboot memory map\n");
		abort();
	}
	for (off = 0; off < mbi->mmap_length && nmmap < MAX_MMAP;) {
		struct mb_mmap_entry *e = (void *)(uintptr_t)(mbi->mmap_addr + off);
		mmap[nmmap].addr = e->addr;
		mmap[nmmap].len = e->len;
		mmap[nmmap].type = e->type;
		nmmap++;
		off += e->size + 4;
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

	read_multiboot();
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
