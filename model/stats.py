"""Numbers about a snapshot: free pages per order, largest block,
fragmentation, and "would this allocation succeed now, and why".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import AREA_MASK, FLAG_FRESH
from .layout import Status
from .snapshot import AreaSnapshot, Snapshot

__all__ = ["AreaStats", "area_stats", "stats", "Why", "why"]


@dataclass(frozen=True)
class AreaStats:
    slot: int
    name: str
    pages: int
    fresh: int
    free: int                       # FREE pages (2020: every free page)
    allocated: int
    special: int
    invalid: int
    free_blocks: dict[int, int]     # order -> blocks
    largest_order: int | None
    max_order: int | None

    @property
    def free_pages(self) -> int:
        return self.fresh + self.free

    @property
    def largest_pages(self) -> int:
        return 0 if self.largest_order is None else 1 << self.largest_order

    @property
    def fragmentation(self) -> float:
        """1 - largest free block / free pages: 0 when all free memory is
        one block, near 1 when it is scattered pages."""
        return 0.0 if not self.free_pages else 1 - self.largest_pages / self.free_pages

    def to_json(self) -> dict:
        return {"slot": self.slot, "name": self.name, "pages": self.pages,
                "free_pages": self.free_pages, "largest_order": self.largest_order,
                "fragmentation": round(self.fragmentation, 4),
                "free_blocks": {str(k): v for k, v in sorted(self.free_blocks.items())}}


def area_stats(area: AreaSnapshot) -> AreaStats:
    counts = area.blocks.free_counts()
    p = area.blocks.pages
    return AreaStats(area.slot, area.name, area.pages, p[Status.FRESH], p[Status.FREE],
                     p[Status.ALLOCATED], p[Status.SPECIAL], p[Status.INVALID], counts,
                     max(counts, default=None), area.max_order)


def stats(snap: Snapshot) -> list[AreaStats]:
    return [area_stats(a) for a in snap.areas if a.decoded]


@dataclass(frozen=True)
class Why:
    ok: bool
    slot: int | None = None         # the area that would serve it
    block: int | None = None        # the free block split for it
    block_order: int | None = None
    result: int | None = None       # the address alloc would return
    reasons: tuple[str, ...] = field(default=())   # per area, in the order tried

    def to_json(self) -> dict:
        return {"ok": self.ok, "slot": self.slot, "block": self.block,
                "block_order": self.block_order, "result": self.result,
                "reasons": list(self.reasons)}


def why(snap: Snapshot, order: int, align: int | None = None, flags: int = 0) -> Why:
    """Would alloc(align, order) with these flags succeed from this state?
    Follows the design's candidate search (ALLOCATOR.md, alloc): areas in
    ascending slot order, one candidate per list from max(align, order) up
    to max_order; the first hit wins."""
    al = order if align is None else align
    fresh = bool(flags & FLAG_FRESH)
    nl = snap.layout.nlists
    o = max(al, order) + fresh
    mask = snap.areas_mask or 0
    wanted = flags & AREA_MASK & mask if flags & AREA_MASK else mask
    reasons = []
    if fresh and al > order:
        return Why(False, reasons=("FLAG_FRESH with alignment above size is not part of the design",))
    if o >= nl:
        return Why(False, reasons=(f"order {o} is not below NLISTS {nl}",))
    for a in sorted(snap.areas, key=lambda x: x.slot):
        tag = f"area {a.slot} {a.name}"
        if not wanted >> a.slot & 1:
            if a.initialised:
                reasons.append(f"{tag}: not selected by the flags")
            continue
        if not a.decoded:
            reasons.append(f"{tag}: not decoded")
            continue
        upper = a.max_order if a.max_order is not None else nl - 1
        hit = _candidate(snap, a, o, upper, fresh)
        if hit is not None:
            node, k = hit
            return Why(True, a.slot, node, k, _result(snap, a, node, k, order, fresh),
                       tuple(reasons) + (f"{tag}: list {k} has {'a FRESH ' if fresh else ''}block "
                                         f"{node:#x}" + (f", split down to order {order + fresh}"
                                                         if k > order + fresh else ""),))
        reasons.append(tag + ": " + _miss(a, o, upper, fresh))
    if not reasons:
        reasons.append("no initialised area is selected")
    return Why(False, reasons=tuple(reasons))


def _candidate(snap: Snapshot, a: AreaSnapshot, o: int, upper: int, fresh: bool):
    for k in range(o, min(upper, len(a.freelists) - 1) + 1):
        w = a.freelists[k]
        if not w.nodes:
            continue
        node = w.nodes[-1] if fresh else w.nodes[0]
        if fresh:
            if not w.complete:
                continue
            b = a.metadata[snap.pfn(node) - a.base] if a.base <= snap.pfn(node) < a.top else None
            if b is None or b & 0xC0 != 0:
                continue
        return node, k
    return None


def _result(snap, a, node, k, order, fresh) -> int:
    # Splitting keeps the first half; fresh returns the second half of the
    # order+1 block.
    return node + ((1 << order) << snap.layout.page_shift if fresh else 0)


def _miss(a: AreaSnapshot, o: int, upper: int, fresh: bool) -> str:
    nonempty = [k for k, w in enumerate(a.freelists) if w.nodes]
    largest = max(nonempty, default=None)
    if largest is None:
        return "every free list is empty"
    if largest < o:
        return f"the largest free block has order {largest}, below the {o} needed"
    if upper < o:
        return (f"max_order is {upper}, below the {o} needed; list(s) "
                f"{', '.join(str(k) for k in nonempty if k > upper)} hold blocks alloc does not look at")
    if fresh:
        return f"no list from {o} to {upper} ends in a FRESH block"
    above = [k for k in nonempty if k > upper]
    return f"lists {o}..{upper} are empty" + (
        f"; list(s) {', '.join(map(str, above))} above max_order hold blocks alloc does not look at"
        if above else "")
