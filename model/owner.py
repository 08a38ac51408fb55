"""Who owns a page: the blocks a trace's calls were handed, and the calls
that gave them back (Linux's page_owner, answered from outside the guest).

Every allocating call of a trace (model/trace.py) owns the block it
returned until a free_pages of that block's first page; a successful
reservation owns its pages until they are unreserved. `Owners` follows a
trace once and answers `owner(addr)` (the latest block holding addr, the
call that allocated it and the call that freed it, if any) and `live()`
(blocks never freed, grouped by call site, largest first).

A block's extent comes from the call's arguments as the design sizes it
(ALLOCATOR.md, Operations): an allocation of order k is 2^k pages; memalign
of `size` bytes is 2^get_order(pages(size)) pages; reserve_pages(addr, n)
takes n pages. Replaying the trace into the reference allocator would give
the same extents, since it executes the same rules, but it would need the
trace's start state and a guest that follows the design. Ownership must
not: a trace started mid-run, or a guest whose allocator is broken (when
ownership matters most), is still answered, and a guest that hands out
something else is what `replay` reports. A block that overlaps one still
live is recorded as handed out twice, never silently replaced.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable

from .reference import get_order
from .trace import Call

__all__ = ["Block", "Ownership", "CallSite", "Owners", "block_pages", "ALLOCATING",
           "RESERVING", "UNRESERVING"]

# Entry points that hand out a block: pages it spans, from (args, page size)
# as the design sizes it (the reference allocator's methods of the same name)
ALLOCATING: dict[str, Callable[[tuple[int, ...], int], int]] = {
    "alloc_pages_flags": lambda a, ps: 1 << a[0],                      # (order, flags)
    "memalign_pages_flags": lambda a, ps: _memalign_pages(a[1], ps),   # (alignment, size, flags)
    "alloc_pages_area": lambda a, ps: 1 << a[1],                       # (areas, order)
    "alloc_pages": lambda a, ps: 1 << a[0],                            # (order)
    "alloc_page": lambda a, ps: 1,
    "memalign_pages_area": lambda a, ps: _memalign_pages(a[2], ps),    # (areas, alignment, size)
    "memalign_pages": lambda a, ps: _memalign_pages(a[1], ps),         # (alignment, size)
}
# reserve: (addr, n) pages, owned when it succeeded; unreserve: (addr, n)
RESERVING = {"reserve_pages": lambda r: r == 0, "alloc_pages_special": lambda r: bool(r)}
UNRESERVING = frozenset({"unreserve_pages", "free_pages_special"})


def _memalign_pages(size: int, page_size: int) -> int:
    return 1 << get_order(-(-size // page_size))


def block_pages(call: Call, page_size: int) -> int | None:
    """Pages the call owns after it returned (None: it owns nothing)."""
    if call.func in ALLOCATING:
        return ALLOCATING[call.func](call.args, page_size) if call.result else None
    if call.func in RESERVING:
        return call.args[1] if RESERVING[call.func](call.result) and call.args[1] else None
    return None


@dataclass(frozen=True)
class Block:
    """[start, end) as the call that owns it got it. kind: "allocated" or
    "reserved"; freed_by: the call that gave it back (free_pages, or the
    unreserve that took its last page), None while live."""
    start: int
    end: int
    call: Call
    kind: str
    freed_by: Call | None = None

    @property
    def size(self) -> int:
        return self.end - self.start

    def holds(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "size": self.size, "kind": self.kind,
                "call": self.call.to_json(),
                "freed_by": self.freed_by.to_json() if self.freed_by else None}


@dataclass(frozen=True)
class Ownership:
    """What the trace says about one address. block: the latest block that
    held it (live or freed); earlier: blocks that held it before, oldest
    first; also_live: other live blocks holding it (the allocator handed
    the memory out twice); stray_frees: frees of addr that freed no block
    the trace saw allocated (allocated before the trace began)."""
    address: int
    block: Block | None
    earlier: tuple[Block, ...] = ()
    also_live: tuple[Block, ...] = ()
    stray_frees: tuple[Call, ...] = ()


@dataclass(frozen=True)
class CallSite:
    """Live blocks sharing one call site (key: what they were grouped by,
    the caller's return address by default)."""
    key: Hashable
    blocks: tuple[Block, ...]

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)


class Owners:
    """Ownership after every call of a trace. page_size: the guest's."""

    def __init__(self, calls: Iterable[Call], page_size: int):
        self.page_size = page_size
        self.calls = 0
        self.callers = 0                 # calls that carry their caller's address
        self.started_at_boot: bool | None = None   # the first call is page_alloc_init_area
        self._blocks: list[_Open] = []                 # every block, in call order
        self._live = _LiveSet()
        self.doubles: list[tuple[Block, Block]] = []   # (live, handed out again over it)
        self.stray_frees: list[Call] = []              # frees of blocks never seen allocated
        for c in calls:
            self._follow(c)

    # ------------------------------------------------------------ following
    def _follow(self, c: Call) -> None:
        if self.started_at_boot is None:
            self.started_at_boot = c.func == "page_alloc_init_area"
        self.calls += 1
        self.callers += c.ra is not None
        if c.func == "free_pages":
            if c.args[0]:
                got = self._live.allocated_at(c.args[0])
                if got is None:
                    self.stray_frees.append(c)
                else:
                    got.freed_by = c
                    self._live.remove(got)
            return
        if c.func in UNRESERVING:
            self._unreserve(c)
            return
        pages = block_pages(c, self.page_size)
        if pages is None:
            return
        start = c.result if c.func in ALLOCATING else c.args[0]
        assert start is not None
        kind = "allocated" if c.func in ALLOCATING else "reserved"
        new = _Open(start, start + pages * self.page_size, c, kind)
        for old in self._live.overlapping(new.start, new.end):
            self.doubles.append((old.frozen(), new.frozen()))
        self._blocks.append(new)
        self._live.add(new)

    def _unreserve(self, c: Call) -> None:
        """unreserve(addr, n): its pages stop being owned; a reservation
        cut in the middle leaves its other pages owned by the same call."""
        lo = c.args[0]
        hi = lo + c.args[1] * self.page_size
        for r in self._live.overlapping(lo, hi):
            if r.kind != "reserved":
                continue
            r.freed_by = c
            self._live.remove(r)
            for a, b in ((r.start, lo), (hi, r.end)):
                if a < b:                     # the part left: still the reserving call's
                    part = _Open(a, b, r.call, r.kind)
                    self._blocks.append(part)
                    self._live.add(part)

    # ------------------------------------------------------------- answers
    def owner(self, addr: int) -> Ownership | None:
        """The blocks that held addr, the latest first; None when no block
        the trace saw ever held it and no free named it."""
        held = [b for b in self._blocks if b.start <= addr < b.end]
        strays = tuple(c for c in self.stray_frees if c.args[0] == addr)
        if not held:
            return Ownership(addr, None, stray_frees=strays) if strays else None
        *before, latest = held
        return Ownership(addr, latest.frozen(),
                         tuple(b.frozen() for b in before if b.freed_by is not None),
                         tuple(b.frozen() for b in before if b.freed_by is None), strays)

    def live(self) -> list[Block]:
        """Blocks never freed, by address (then by call)."""
        return sorted((b.frozen() for b in self._blocks if b.freed_by is None),
                      key=lambda b: (b.start, b.call.i))

    def by_call_site(self, key: Callable[[Call], Hashable] = lambda c: c.ra,
                     ) -> list[CallSite]:
        """Live blocks grouped by `key` of their call (the caller's return
        address unless told otherwise), most bytes first, then most
        blocks, then the earliest call."""
        groups: dict[Hashable, list[Block]] = {}
        for b in self.live():
            groups.setdefault(key(b.call), []).append(b)
        sites = [CallSite(k, tuple(bs)) for k, bs in groups.items()]
        sites.sort(key=lambda s: (-s.size, -len(s.blocks), min(b.call.i for b in s.blocks)))
        return sites


class _LiveSet:
    """Live blocks by start address: the allocated block a free names, and
    every block overlapping a range, without a pass over all of them (a
    trace may leave tens of thousands live)."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []     # (start, serial), sorted
        self._by_key: dict[tuple[int, int], _Open] = {}
        self._serial = 0
        self._widest = 0                           # the largest block seen: how far back to look

    def add(self, b: "_Open") -> None:
        self._serial += 1
        b.key = (b.start, self._serial)
        insort(self._keys, b.key)
        self._by_key[b.key] = b
        self._widest = max(self._widest, b.end - b.start)

    def remove(self, b: "_Open") -> None:
        i = bisect_left(self._keys, b.key)
        del self._keys[i]
        del self._by_key[b.key]

    def overlapping(self, lo: int, hi: int) -> list["_Open"]:
        i = bisect_left(self._keys, (lo - self._widest + 1, 0))
        j = bisect_left(self._keys, (hi, 0))
        return [b for b in (self._by_key[k] for k in self._keys[i:j]) if b.end > lo]

    def allocated_at(self, start: int) -> "_Open | None":
        """The latest live allocated block starting at `start`."""
        i = bisect_left(self._keys, (start + 1, 0)) - 1
        while i >= 0 and self._keys[i][0] == start:
            b = self._by_key[self._keys[i]]
            if b.kind == "allocated":
                return b
            i -= 1
        return None


@dataclass
class _Open:
    """A block while the trace is followed (freed_by set later)."""
    start: int
    end: int
    call: Call
    kind: str
    freed_by: Call | None = None
    key: tuple[int, int] = (0, 0)        # its place in the _LiveSet

    def frozen(self) -> Block:
        return Block(self.start, self.end, self.call, self.kind, self.freed_by)
