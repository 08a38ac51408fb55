"""Python mirror of the fixture guest's workload (tests/guest/workload.c).

Replays, call for call, what the guest does after its init calls, driving
any allocator object with the reference model's interface
(`init_area`, `alloc_pages_flags`, `memalign_pages_flags`, `free_pages`,
`reserve_pages`, `unreserve_pages`). The sequence depends only on the
addresses the allocator returns, so a model that reproduces the guest's
results replays it exactly. Change this file and workload.c together.

Each call is recorded as an `Op` named after the guest's entry point and
with the guest's arguments: `alloc_pages_flags(order, flags)` in 2021,
`alloc_pages_area(areas, order)` in 2020 (AREA_ANY is 0xffffffff), and so
on. The 2020 guest never zeroes, so 2020 calls reach the model with
FLAG_DONTZERO added.

Per arch (model.arch): the page size (64 KiB on ppc64: memalign sizes,
vmalloc and reserve addresses scale with it) and the area slots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

__all__ = [
    "AREA_ANY_2020", "CHECKPOINTS", "DEFAULT_OPS", "InitCall", "MIXES", "Op",
    "Workload", "page_shift_of", "parse_init_calls", "run_workload", "slot_los",
    "slot_of_pfn",
]

AREA_ANY_NUMBER = 0xFF
AREA_MASK = 0xFFFF
FLAG_DONTZERO = 0x10000
FLAG_FRESH = 0x20000
AREA_ANY_2020 = 0xFFFFFFFF       # (unsigned int)AREA_ANY as the 2020 guest passes it
PAGE_SHIFT = 12                  # x86's; Workload.page_shift is the arch's
PAGE_SIZE = 1 << PAGE_SHIFT
DEFAULT_ARCH = "x86_64"

LIVE_SLOTS = 128
RES_SLOTS = 16
FRESH_SLOTS = 32
EXHAUST_TOP_ORDER = 20
DEFAULT_OPS = 5000
CHECKPOINTS = (1, 2, 3, 4, 5)
_MASK64 = (1 << 64) - 1

# (alloc, memalign, free, reserve, unreserve, area, fresh) in percent
MIXES: dict[str, tuple[int, ...]] = {
    "default": (34, 10, 38, 4, 4, 7, 3),
    "allocs": (60, 15, 15, 2, 2, 4, 2),
    "reserve": (30, 5, 30, 15, 15, 3, 2),
    "simple": (50, 0, 50, 0, 0, 0, 0),
}

FORMATS = ("2020", "2021")


def slot_los(fmt: str, arch: str = DEFAULT_ARCH) -> tuple[int, ...]:
    """Lowest pfn of each slot of `arch` in a `fmt` tree, slot 0 first
    (ALLOCATOR.md's slot table, as model.arch has it)."""
    from allocview.model.layout import slots_for

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    slots = sorted(slots_for(arch, fmt), key=lambda s: s.number)
    return tuple(s.pfn_start for s in slots)


def page_shift_of(arch: str) -> int:
    """The page shift the fixture guest of `arch` is built with (the arch's default)."""
    from allocview.model.arch import arch as arch_info

    return arch_info(arch).page_shift


class InitCall(NamedTuple):
    """One `init_area n=.. base=.. top=.. slot=..` console line (pfns)."""
    n: int
    base: int
    top: int
    slot: int | None = None


class Op(NamedTuple):
    """One allocator call: guest function name, its arguments, its result
    (address, 0 for NULL, reserve_pages' 0/-1; None for void calls)."""
    func: str
    args: tuple
    result: Any


_INIT_RE = re.compile(
    r"^init_area n=(\d+) base=0x([0-9a-f]+) top=0x([0-9a-f]+)(?: slot=(\d+))?\s*$", re.M)


def parse_init_calls(console: str) -> list[InitCall]:
    """The init calls the guest printed, in order."""
    return [InitCall(int(m[1]), int(m[2], 16), int(m[3], 16),
                     int(m[4]) if m[4] is not None else None)
            for m in _INIT_RE.finditer(console)]


def slot_of_pfn(fmt: str, pfn: int, arch: str = DEFAULT_ARCH) -> int:
    """The slot of `arch` whose pfn range holds pfn."""
    los = slot_los(fmt, arch)
    for n, lo in enumerate(los[:-1]):
        if pfn >= lo:
            return n
    return len(los) - 1


def _order_of_pages(n: int) -> int:
    return (n - 1).bit_length() if n > 1 else 0


def _pages_for(nbytes: int, page_size: int) -> int:
    return 1 << _order_of_pages(-(-nbytes // page_size))


@dataclass
class _Piece:
    start: int
    top: int
    slot: int


@dataclass
class Workload:
    """The guest's workload against `allocator`, advanced checkpoint by
    checkpoint with `run_to(n)`; `ops` lists every call so far and
    `checkpoints[n]` is (ops count, hash) as the guest prints them.
    `arch` defaults to the allocator's (`allocator.layout.arch.name`), else
    x86_64."""
    allocator: Any
    seed: int
    mix: str
    fmt: str
    init_calls: list[InitCall]
    nops: int = DEFAULT_OPS
    ops: list[Op] = field(default_factory=list)
    hash: int = 0xCBF29CE484222325
    checkpoints: dict[int, tuple[int, int]] = field(default_factory=dict)
    reached: int = 0
    arch: str | None = None

    def __post_init__(self) -> None:
        if self.arch is None:
            layout = getattr(self.allocator, "layout", None)
            self.arch = layout.arch.name if layout is not None else DEFAULT_ARCH
        self.slot_lo = slot_los(self.fmt, self.arch)
        self.page_shift = page_shift_of(self.arch)
        self.page_size = 1 << self.page_shift
        if self.mix not in MIXES:
            raise ValueError(f"unknown mix {self.mix!r}")
        self.state = self.seed & _MASK64 or 0x9E3779B97F4A7C15
        self.live: list[tuple[int, int]] = [(0, 0)] * LIVE_SLOTS
        self.reserved: list[tuple[int, int]] = [(0, 0)] * RES_SLOTS
        self.fresh: list[int] = [0] * FRESH_SLOTS
        self.vm_ptrs: list[int] = []
        self.exhausted = 0
        self.pieces: list[_Piece] = []
        self._init_done = False

    # ------------------------------------------------------------ randomness
    def _next(self) -> int:
        x = self.state
        x ^= (x << 13) & _MASK64
        x ^= x >> 7
        x ^= (x << 17) & _MASK64
        self.state = x
        return x

    def rnd(self, n: int) -> int:
        return ((self._next() >> 32) & 0xFFFFFFFF) % (n & 0xFFFFFFFF)

    # ------------------------------------------------------------ accounting
    def _account(self, value: int) -> None:
        self.hash = ((self.hash ^ (value & _MASK64)) * 0x100000001B3) & _MASK64

    # ------------------------------------------------------- allocator calls
    def alloc(self, order: int, flags: int) -> int:
        a = self.allocator
        if self.fmt == "2021":
            p = a.alloc_pages_flags(order, flags)
            self.ops.append(Op("alloc_pages_flags", (order, flags), p))
        else:
            areas = flags & AREA_MASK or AREA_ANY_2020
            p = a.alloc_pages_flags(order, (areas & AREA_MASK) | FLAG_DONTZERO)
            self.ops.append(Op("alloc_pages_area", (areas, order), p))
        self._account(p)
        return p

    def memalign(self, alignment: int, size: int, flags: int) -> int:
        a = self.allocator
        if self.fmt == "2021":
            p = a.memalign_pages_flags(alignment, size, flags)
            self.ops.append(Op("memalign_pages_flags", (alignment, size, flags), p))
        else:
            areas = flags & AREA_MASK or AREA_ANY_2020
            p = a.memalign_pages_flags(alignment, size, (areas & AREA_MASK) | FLAG_DONTZERO)
            self.ops.append(Op("memalign_pages_area", (areas, alignment, size), p))
        self._account(p)
        return p

    def free(self, p: int) -> None:
        self.allocator.free_pages(p)
        self.ops.append(Op("free_pages", (p,), None))

    def reserve(self, addr: int, n: int) -> bool:
        rc = self.allocator.reserve_pages(addr, n)
        ok = rc == 0
        if self.fmt == "2021":
            self.ops.append(Op("reserve_pages", (addr, n), rc))
        else:
            self.ops.append(Op("alloc_pages_special", (addr, n), addr if ok else 0))
        self._account(1 if ok else 0)
        return ok

    def unreserve(self, addr: int, n: int) -> None:
        self.allocator.unreserve_pages(addr, n)
        name = "unreserve_pages" if self.fmt == "2021" else "free_pages_special"
        self.ops.append(Op(name, (addr, n), None))

    # --------------------------------------------------------------- helpers
    def _live_clear(self, idx: int) -> None:
        if self.live[idx][0]:
            self.free(self.live[idx][0])
        self.live[idx] = (0, 0)

    def _live_set(self, idx: int, p: int, npages: int) -> None:
        self.live[idx] = (p, npages if p else 0)

    def _res_clear(self, idx: int) -> None:
        addr, n = self.reserved[idx]
        if n:
            self.unreserve(addr, n)
        self.reserved[idx] = (0, 0)

    def _pick_order(self) -> int:
        r = self.rnd(64)
        for limit, order in ((24, 0), (40, 1), (50, 2), (57, 3), (62, 4), (63, 5)):
            if r < limit:
                return order
        return 6 + self.rnd(3)

    # ------------------------------------------------------------ operations
    def op_alloc(self) -> None:
        idx = self.rnd(LIVE_SLOTS)
        order = self._pick_order()
        flags = 0 if (self.rnd(16) == 0 and order <= 1) else FLAG_DONTZERO
        self._live_clear(idx)
        self._live_set(idx, self.alloc(order, flags), 1 << order)

    def op_memalign(self) -> None:
        idx = self.rnd(LIVE_SLOTS)
        alignment = 1 << (6 + self.rnd(12))
        size = 1 + self.rnd(4 * self.page_size)
        self._live_clear(idx)
        self._live_set(idx, self.memalign(alignment, size, FLAG_DONTZERO),
                       _pages_for(size, self.page_size))

    def op_free(self) -> None:
        self._live_clear(self.rnd(LIVE_SLOTS))

    def op_reserve(self) -> None:
        pc = self.pieces[self.rnd(len(self.pieces))]
        pfn = pc.start + self.rnd(pc.top - pc.start)
        n = 1 + self.rnd(8)
        ridx = self.rnd(RES_SLOTS)
        victim = self.rnd(LIVE_SLOTS)
        # one time in four, aim at a live allocation: that reserve fails
        if self.rnd(4) == 0 and self.live[victim][0]:
            pfn = self.live[victim][0] >> self.page_shift
        self._res_clear(ridx)
        if self.reserve(pfn << self.page_shift, n):
            self.reserved[ridx] = (pfn << self.page_shift, n)

    def op_unreserve(self) -> None:
        self._res_clear(self.rnd(RES_SLOTS))

    def op_area(self) -> None:
        slot = self.slot_list[self.rnd(len(self.slot_list))]
        idx = self.rnd(LIVE_SLOTS)
        order = self.rnd(3)
        self._live_clear(idx)
        self._live_set(idx, self.alloc(order, FLAG_DONTZERO | (1 << slot)), 1 << order)

    def op_fresh(self) -> None:
        idx = self.rnd(LIVE_SLOTS)
        order = self.rnd(3)
        self._live_clear(idx)
        flags = FLAG_DONTZERO | (FLAG_FRESH if self.fmt == "2021" else 0)
        self._live_set(idx, self.alloc(order, flags), 1 << order)

    # ---------------------------------------------------------------- phases
    def _vm_memalign(self, alignment: int, size: int) -> None:
        ps = self.page_size
        if alignment < ps and size + alignment <= ps:
            page = self.alloc(0, FLAG_DONTZERO)
            if page:
                self.vm_ptrs.append(page + alignment)
        else:
            npages = -(-size // ps)
            page = self.alloc(_order_of_pages(npages + 1), FLAG_DONTZERO)
            if page:
                self.vm_ptrs.append(page + ps)

    def _phase_init(self) -> None:
        for call in self.init_calls:
            self.allocator.init_area(call.n, call.base, call.top)
            slot = slot_of_pfn(self.fmt, call.base, self.arch)
            if call.slot is not None and call.slot != slot:
                raise ValueError(f"init call {call} is not in slot {slot}")
            self.pieces.append(_Piece(call.base, call.top, slot))
        self.slot_list = [s for s in range(len(self.slot_lo))
                          for p in self.pieces if p.slot == s]

    def _phase_mixed(self) -> None:
        funcs = (self.op_alloc, self.op_memalign, self.op_free, self.op_reserve,
                 self.op_unreserve, self.op_area, self.op_fresh)
        weights = MIXES[self.mix]
        for _ in range(self.nops):
            w = self.rnd(100)
            k = 0
            while w >= weights[k]:
                w -= weights[k]
                k += 1
            funcs[k]()

    def _phase_reserve(self) -> None:
        for j in range(4):
            idx = self.rnd(LIVE_SLOTS)
            addr, n = self.live[idx]
            if not addr:
                continue
            self._live_clear(idx)
            self._res_clear(j)
            if self.reserve(addr, n):
                self.reserved[j] = (addr, n)
        for _ in range(8):
            self.op_reserve()

    def _phase_fresh(self) -> None:
        if self.fmt != "2021":
            return
        for j in range(FRESH_SLOTS):
            order = self.rnd(3)
            self.fresh[j] = self.alloc(order, FLAG_FRESH | (FLAG_DONTZERO if j % 4 else 0))

    def _phase_exhaust(self) -> None:
        small = 0
        for i, p in enumerate(self.pieces):
            if p.top - p.start < self.pieces[small].top - self.pieces[small].start:
                small = i
        mask = 1 << self.pieces[small].slot
        for order in range(EXHAUST_TOP_ORDER, -1, -1):
            while self.alloc(order, FLAG_DONTZERO | mask):
                self.exhausted += 1

    def _phases(self):
        yield self._phase_init
        ps = self.page_size
        yield lambda: (self._vm_memalign(16, 100), self._vm_memalign(64, 200),
                       self._vm_memalign(256, 1000), self._vm_memalign(ps, 3 * ps),
                       self._vm_memalign(ps, 5 * ps + 10), self._phase_mixed())
        yield self._phase_reserve
        yield self._phase_fresh
        yield self._phase_exhaust

    def run_to(self, checkpoint: int) -> "Workload":
        """Advance to `checkpoint` (1..5); already past it is an error."""
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"no checkpoint {checkpoint}")
        if checkpoint < self.reached:
            raise ValueError(f"already at checkpoint {self.reached}")
        phases = list(self._phases())
        while self.reached < checkpoint:
            phases[self.reached]()
            self.reached += 1
            self.checkpoints[self.reached] = (len(self.ops), self.hash)
        return self


def run_workload(allocator: Any, seed: int, mix: str, upto_checkpoint: int, *,
                 init_calls: Iterable[InitCall | tuple], fmt: str | None = None,
                 ops: int = DEFAULT_OPS, arch: str | None = None) -> list[Op]:
    """Init the allocator as the guest did and replay its workload up to
    `upto_checkpoint`; the calls made, in order (init calls not included).

    `fmt` defaults to `allocator.layout.format`, `arch` to its arch."""
    if fmt is None:
        fmt = allocator.layout.format
    calls = [c if isinstance(c, InitCall) else InitCall(*c) for c in init_calls]
    w = Workload(allocator, seed, mix, fmt, calls, nops=ops, arch=arch)
    return w.run_to(upto_checkpoint).ops
