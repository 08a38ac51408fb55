"""Drive's operations, generated from the entry-point table.

An operation is a call of one entry point. Which entry point comes from
its role (model/entry_points.py: alloc, memalign, free, reserve,
unreserve) and the mix's weights, among those the program's tree defines
(2020 wrappers such as alloc_page() included); each argument is made by
its parameter's name (`_ARGS`). A new entry point is driven by adding it
to the table: its role picks when, its parameter names pick how.

Arguments that depend on earlier calls (the block to free, the range to
unreserve, a reserve inside a block allocated or freed earlier) name that
operation (`ref`) and are resolved while driving (`to_call`), so shrinking
keeps them meaningful. page_alloc_init_area is never driven: it needs
memory outside every area, which a running test does not have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .constants import AREA_ANY_2020, FLAG_DONTZERO, FLAG_FRESH
from .entry_points import BY_NAME, ENTRY_POINTS
from .errors import AllocviewError
from .layout import Layout
from .snapshot import Snapshot

__all__ = ["Op", "MIXES", "generate", "to_call", "got_reserved", "mix_help"]


@dataclass(frozen=True)
class Mix:
    summary: str
    weights: dict[str, int]          # by role; "burst": allocations then their frees


MIXES: dict[str, Mix] = {
    "default": Mix("every entry point and argument class, allocations and frees balanced",
                   {"alloc": 30, "memalign": 10, "free": 35, "reserve": 13, "unreserve": 12}),
    "allocs": Mix("mostly allocations (every order, flag and area mask): the heap fills",
                  {"alloc": 60, "memalign": 15, "free": 20, "reserve": 3, "unreserve": 2}),
    "merge": Mix("runs of same-order allocations freed in shuffled order: frees that must "
                 "merge with their buddies, up through the orders",
                 {"burst": 40, "alloc": 10, "free": 50}),
    "reserve": Mix("reserve and unreserve of fresh, free, freed, allocated and reserved "
                   "pages, ranges across block boundaries and area ends",
                   {"alloc": 20, "free": 15, "reserve": 40, "unreserve": 25}),
    "flags": Mix("allocations with every flag combination (DONTZERO, FRESH, area masks) "
                 "and every order from 0 up, memalign with alignment above and below size",
                 {"alloc": 45, "memalign": 25, "free": 30}),
}


def mix_help() -> str:
    return "; ".join(f"{name}: {m.summary}" for name, m in MIXES.items())


@dataclass(frozen=True)
class Op:
    """One generated call. `ref`: the operation whose block (free; a
    reserve `offset` pages into it) or whose reserved range (`in_range`:
    unreserve `count` pages from `offset`, 0 = the rest; a reserve
    overlapping it) it uses."""
    n: int
    func: str
    args: tuple[int, ...] = ()
    ref: int | None = None
    in_range: bool = False          # ref is a reserve: its range, not a block
    offset: int = 0
    count: int = 0

    @property
    def role(self) -> str:
        return BY_NAME[self.func].role


# ------------------------------------------------------------------ generation
@dataclass
class _Gen:
    """What generation knows: the program, the start state, and the
    operations so far (their block sizes, which are live or freed, the
    reserved ranges not yet given back)."""
    rnd: random.Random
    layout: Layout
    tree: str
    funcs: dict[str, list[str]]                       # role -> entry points
    areas: list[tuple[int, int, int]]                 # (slot, base pfn, top pfn)
    max_order: int
    fresh_pfns: list[int]                             # sampled pfns, FRESH at the start
    free_pfns: list[int]                              # sampled pfns, FREE at the start
    area_bits: int
    always_dontzero: bool = False
    fresh_allowed: bool = True
    ops: list[Op] = field(default_factory=list)
    live: list[tuple[int, int]] = field(default_factory=list)     # (op n, pages)
    freed: list[tuple[int, int]] = field(default_factory=list)
    reserved: list[tuple[int, int, int]] = field(default_factory=list)   # (op n, offset, count)

    @property
    def n(self) -> int:
        return len(self.ops)

    def order(self) -> int:
        """Mostly small orders, and every order up to the largest free
        block's now and then."""
        if self.rnd.random() < 0.75:
            return self.rnd.choice((0, 0, 0, 1, 1, 2, 3, 4))
        return self.rnd.randint(0, self.max_order)

    def area_mask(self) -> int:
        """No mask (any area), one area, two, or every slot's bit (some
        of which may have no area: nothing to allocate from there)."""
        if self.area_bits:
            return self.area_bits
        r = self.rnd.random()
        slots = [a[0] for a in self.areas]
        if r < 0.55 or not slots:
            return 0
        if r < 0.8:
            return 1 << self.rnd.choice(slots)
        if r < 0.9:
            return sum({1 << self.rnd.choice(slots) for _ in range(2)})
        return (1 << self.layout.max_areas) - 1

    def flags(self, order: int, fresh_share: float) -> int:
        f = self.area_mask()
        if self.rnd.random() < 0.7 or order > 6 or self.always_dontzero:
            f |= FLAG_DONTZERO          # zeroing large blocks costs seconds under TCG
        if self.tree == "2021" and self.fresh_allowed and self.rnd.random() < fresh_share:
            f |= FLAG_FRESH
        return f

    def areas_arg(self) -> int:
        m = self.area_mask()
        return m if m else AREA_ANY_2020 & 0xFFFFFFFF

    def alignment_and_size(self) -> tuple[int, int, int]:
        """alignment, size and the pages of the block it takes: alignment above, equal to and
        below the size, sizes of whole powers of two and between them,
        alignments below a page."""
        ps = self.layout.page_size
        so = self.rnd.choice((0, 0, 1, 1, 2, 3, 4, 5))
        ao = self.rnd.choice((0, 0, 1, 2, 3, 4, 5, 6))
        size = {0: ps << so, 1: (ps << so) - 1, 2: (ps << so) + 1}[self.rnd.randrange(3)]
        align = ps << ao if self.rnd.random() < 0.85 else 1 << self.rnd.randrange(3, 12)
        pages = -(-size // ps)
        return align, size, 1 << max(0, (pages - 1).bit_length())

    def reserve_target(self) -> tuple[int | None, int, int, int]:
        """(ref, offset pages, pfn, count): pages that are fresh, free,
        freed before, allocated, reserved; ranges across a block boundary
        or an area's end."""
        rnd = self.rnd
        count = rnd.choice((1, 1, 1, 2, 2, 3, 4)) if rnd.random() < 0.8 else rnd.randint(5, 16)
        what = rnd.choice(("fresh", "free", "freed", "allocated", "reserved", "boundary", "end"))
        if what == "freed" and self.freed:
            ref, pages = rnd.choice(self.freed)
            return ref, rnd.randrange(pages), 0, count
        if what == "allocated" and self.live:
            ref, pages = rnd.choice(self.live)
            return ref, rnd.randrange(pages), 0, count
        if what == "reserved" and self.reserved:
            ref, off, cnt = rnd.choice(self.reserved)
            return ref, -(off + rnd.randrange(cnt)) - 1, 0, count   # negative: in its range
        slot, base, top = rnd.choice(self.areas)
        if what == "end":
            return None, 0, max(base, top - rnd.randint(1, count)), count
        if what == "boundary":
            k = rnd.randint(1, 8)
            edge = (rnd.randrange(base, top) >> k << k)
            return None, 0, max(base, edge - rnd.randint(1, max(1, count - 1))), count
        pool = self.fresh_pfns if what == "fresh" and self.fresh_pfns else self.free_pfns
        pfn = rnd.choice(pool) if pool else rnd.randrange(base, top)
        return None, 0, pfn, count

    # ---------------------------------------------------------- each role
    def add(self, func: str, args: tuple[int, ...] = (), **kw) -> int:
        self.ops.append(Op(self.n, func, args, **kw))
        return self.n - 1

    def alloc(self, fresh_share: float = 0.25, order: int | None = None) -> None:
        func = self.rnd.choice(self.funcs["alloc"])
        o = self.order() if order is None else order
        made = {"order": lambda: o, "flags": lambda: self.flags(o, fresh_share),
                "areas": self.areas_arg}
        args = tuple(made[p]() for p, _ in _params(func))
        pages = 1 << (o if "order" in dict(_params(func)) else 0)
        self.live.append((self.add(func, args), pages))

    def memalign(self) -> None:
        func = self.rnd.choice(self.funcs["memalign"])
        align, size, pages = self.alignment_and_size()
        # FRESH with alignment above the size is a caller's bug (ALLOCATOR.md)
        fresh_share = 0.15 if align <= pages * self.layout.page_size else 0.0
        made = {"alignment": lambda: align, "size": lambda: size,
                "flags": lambda: self.flags(0, fresh_share), "areas": self.areas_arg}
        self.live.append((self.add(func, tuple(made[p]() for p, _ in _params(func))), pages))

    def free(self) -> None:
        if not self.live:
            return self.alloc()
        ref, pages = self.live.pop(self.rnd.randrange(len(self.live)))
        self.add(self.rnd.choice(self.funcs["free"]), ref=ref)
        self.freed.append((ref, pages))

    def reserve(self) -> None:
        ref, offset, pfn, count = self.reserve_target()
        func = self.rnd.choice(self.funcs["reserve"])
        in_range = offset < 0
        n = self.add(func, (pfn * self.layout.page_size, count), ref=ref, in_range=in_range,
                     offset=-offset - 1 if in_range else offset)
        self.reserved.append((n, 0, count))

    def unreserve(self) -> None:
        if not self.reserved:
            return self.reserve()
        ref, off, cnt = self.reserved.pop(self.rnd.randrange(len(self.reserved)))
        part = cnt if cnt == 1 or self.rnd.random() < 0.6 else self.rnd.randint(1, cnt - 1)
        self.add(self.rnd.choice(self.funcs["unreserve"]), ref=ref, in_range=True, offset=off,
                 count=part)
        if part < cnt:
            self.reserved.append((ref, off + part, cnt - part))

    def burst(self) -> None:
        """2..16 allocations of one order (they split one larger block,
        so their buddies are each other), then their frees shuffled."""
        order = self.rnd.choice((0, 0, 1, 2, 3))
        first = len(self.live)
        for _ in range(1 << self.rnd.randint(1, 4)):
            self.alloc(fresh_share=0.0, order=order)
        run = self.live[first:]
        del self.live[first:]
        self.rnd.shuffle(run)
        for ref, pages in run:
            self.add(self.rnd.choice(self.funcs["free"]), ref=ref)
            self.freed.append((ref, pages))


def _params(func: str) -> tuple[tuple[str, int], ...]:
    return BY_NAME[func].params


def _sample_pages(snap: Snapshot, fmt: str, rnd: random.Random) -> tuple[list[int], list[int]]:
    """Up to 256 pfns each that were FRESH (2021) and FREE at the start."""
    fresh: list[int] = []
    free: list[int] = []
    for a in snap.state():
        meta = a.metadata
        if not meta:
            continue
        for _ in range(512):
            i = rnd.randrange(len(meta))
            status = meta[i] >> 6
            if fmt == "2021" and status == 0:
                fresh.append(a.base + i)
            elif status == (1 if fmt == "2021" else 0):
                free.append(a.base + i)
    return fresh[:256], free[:256]


def generate(seed: int, n: int, layout: Layout, snap: Snapshot, *, mix: str = "default",
             area_bits: int = 0, names=None, dontzero: bool = False,
             fresh: bool = True) -> list[Op]:
    """About n operations of the mix (a burst may end a few past n), for
    the entry points of the program's tree (`names`: the functions it
    defines; None: all of the tree). `dontzero`: every allocation with
    FLAG_DONTZERO (a guest that hands out a block in use then survives it:
    it is reported as a wrong result, not zeroed under the guest); `fresh`
    False: no FLAG_FRESH (to look past a FRESH path that kills the guest)."""
    if mix not in MIXES:
        raise AllocviewError(f"unknown mix {mix!r} (known: {', '.join(MIXES)})")
    tree = layout.format
    have = set(names) if names is not None else {e.name for e in ENTRY_POINTS}
    funcs: dict[str, list[str]] = {}
    for e in ENTRY_POINTS:
        if e.tree in (tree, "both") and e.name in have and e.role != "init":
            funcs.setdefault(e.role, []).append(e.name)
    if not funcs.get("alloc"):
        raise AllocviewError(f"the program defines none of format {tree}'s entry points")
    rnd = random.Random(seed)
    areas = [(a.slot, a.base, a.top) for a in snap.areas if a.decoded and a.pages > 8]
    if not areas:
        raise AllocviewError("no area with pages to drive")
    state = snap.state()
    max_order = max((a.max_order or 0) for a in state) if tree == "2021" else \
        max(k for a in state for k, nodes in enumerate(a.freelists) if nodes) \
        if any(n for a in state for n in a.freelists) else 0
    fresh_pfns, free_pfns = _sample_pages(snap, tree, rnd)
    g = _Gen(rnd, layout, tree, funcs, areas, max_order, fresh_pfns, free_pfns, area_bits,
             dontzero, fresh)
    weights = {r: w for r, w in MIXES[mix].weights.items() if r == "burst" or funcs.get(r)}
    roles, w = zip(*weights.items())
    while g.n < n:
        getattr(g, rnd.choices(roles, w)[0])()
    return g.ops


# ------------------------------------------------------------------ resolution
def got_reserved(result, v2021: bool) -> bool:
    return result == 0 if v2021 else bool(result)


def to_call(op: Op, layout: Layout, results: dict[int, int | None],
            args_of: dict[int, tuple]) -> tuple[str, tuple] | None:
    """The call for op now, or None when what it refers to gave nothing (a
    failed allocation or reserve, or an operation not run). `results` and
    `args_of`: each earlier operation's result and arguments, by Op.n."""
    if op.ref is None:
        return op.func, op.args
    if op.ref not in results:
        return None
    if op.in_range:
        if not got_reserved(results[op.ref], layout.format == "2021"):
            return None
        base, count = args_of[op.ref]
    else:
        base, count = results[op.ref], 0
        if not base:
            return None
    addr = base + op.offset * layout.page_size
    if op.role == "free":
        return op.func, (addr,)
    if op.role == "reserve":
        return op.func, (addr, op.args[1])
    return op.func, (addr, op.count or count - op.offset)
