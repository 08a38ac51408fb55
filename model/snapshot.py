"""Guest bytes -> a decoded snapshot of the page allocator.

`decode(memory, layout, areas_addr, mask_addr)` reads `areas[]` and
`areas_mask` once, each initialised area's metadata in one read, and every
free-list node once; it never raises on garbage: what it cannot read, or
what is too implausible to follow, becomes a finding in `problems`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import MemoryReadError
from .findings import Finding, Severity
from .errors import LayoutError
from .layout import FORMATS, Layout
from .list import ListWalk, walk_list
from .memory import Memory, read_many
from .pages import BlockMap, scan_blocks
from .reference import AreaState

__all__ = ["AreaSnapshot", "Snapshot", "decode", "detect_format", "MAX_METADATA"]

# Refuse to read more metadata than a 4 TiB area has: a garbage `top` must
# not make us read gigabytes.
MAX_METADATA = 1 << 30


@dataclass(frozen=True)
class AreaSnapshot:
    slot: int
    name: str
    desc_addr: int
    base: int                 # pfn
    top: int                  # pfn
    page_states: int          # address of the metadata bytes
    max_order: int | None     # None in 2020 layouts
    initialised: bool         # bit `slot` of areas_mask
    metadata: bytes | None = field(default=None, repr=False)
    blocks: BlockMap | None = field(default=None, repr=False)
    freelists: tuple[ListWalk, ...] = field(default=(), repr=False)

    @property
    def pages(self) -> int:
        return max(self.top - self.base, 0)

    @property
    def decoded(self) -> bool:
        return self.blocks is not None

    def state(self) -> AreaState:
        """The comparable value the reference allocator's state() gives."""
        return AreaState(self.slot, self.base, self.top, self.page_states, self.max_order,
                         self.metadata or b"", tuple(w.nodes for w in self.freelists))


@dataclass(frozen=True)
class Snapshot:
    layout: Layout
    areas_addr: int
    mask_addr: int
    areas_mask: int | None
    areas: tuple[AreaSnapshot, ...]
    problems: tuple[Finding, ...] = ()
    format_reason: str = ""
    phys_offset: int = 0

    def area(self, slot: int) -> AreaSnapshot | None:
        for a in self.areas:
            if a.slot == slot:
                return a
        return None

    @property
    def initialised(self) -> tuple[AreaSnapshot, ...]:
        return tuple(a for a in self.areas if a.initialised)

    def state(self) -> tuple[AreaState, ...]:
        return tuple(a.state() for a in self.areas if a.decoded)

    def virt(self, pfn: int) -> int:
        return (pfn << self.layout.page_shift) + self.phys_offset

    def pfn(self, addr: int) -> int:
        return (addr - self.phys_offset) >> self.layout.page_shift

    def area_of(self, addr: int) -> AreaSnapshot | None:
        """The decoded area whose usable pages hold this address."""
        p = self.pfn(addr)
        for a in self.areas:
            if a.decoded and a.base <= p < a.top:
                return a
        return None


@dataclass
class _Raw:
    slot: int
    desc_addr: int
    base: int
    top: int
    page_states: int
    max_order: int | None
    heads: list[tuple[int, int]]     # (prev, next) per order


def _parse_descriptors(blob: bytes, layout: Layout, areas_addr: int) -> list[_Raw]:
    s, e = layout.struct, "<" if layout.endian == "little" else ">"
    wide = struct.Struct(e + ("Q" if s.base_size == 8 else "I"))
    ptr = struct.Struct(e + ("Q" if s.ptr_size == 8 else "I"))
    pair = struct.Struct(e + ("QQ" if s.ptr_size == 8 else "II"))
    out = []
    for n in range(layout.max_areas):
        d = n * s.size
        heads = [pair.unpack_from(blob, d + s.freelists_off + k * s.list_head_size)
                 for k in range(s.nlists)]
        out.append(_Raw(n, areas_addr + d, wide.unpack_from(blob, d + s.base_off)[0],
                        wide.unpack_from(blob, d + s.top_off)[0],
                        ptr.unpack_from(blob, d + s.page_states_off)[0],
                        None if s.max_order_off is None else blob[d + s.max_order_off],
                        heads))
    return out


def _empty(raw: _Raw) -> bool:
    return raw.base == 0 and raw.top == 0 and raw.page_states == 0 and not raw.max_order \
        and all(h == (0, 0) for h in raw.heads)


def decode(memory: Memory, layout: Layout, areas_addr: int, mask_addr: int, *,
           format: str | None = None, phys_offset: int = 0, prefetch: bool = True) -> Snapshot:
    """Decode the allocator state. `format` None detects the byte encoding
    (the layout's format is only the hint); "2020"/"2021" forces it."""
    problems: list[Finding] = []
    try:
        blob = memory.read(areas_addr, layout.areas_size)
        mask = int.from_bytes(memory.read(mask_addr, 4), layout.endian)
    except MemoryReadError as e:
        problems.append(Finding("areas-unreadable", Severity.ERROR, None, e.addr,
                                f"cannot read the allocator's globals: {e}"))
        return Snapshot(layout, areas_addr, mask_addr, None, (), tuple(problems),
                        phys_offset=phys_offset)
    raws = _parse_descriptors(blob, layout, areas_addr)
    shift = layout.page_shift
    metas: dict[int, bytes] = {}
    for r in raws:
        if not mask >> r.slot & 1 or r.top <= r.base:
            continue
        size = r.top - r.base
        if size > MAX_METADATA:
            problems.append(Finding("area-implausible", Severity.ERROR, r.slot, r.desc_addr,
                                    f"area {r.slot} spans {size:#x} pages (base {r.base:#x}, "
                                    f"top {r.top:#x}): not reading that much metadata"))
            continue
        try:
            metas[r.slot] = memory.read(r.page_states, size)
        except MemoryReadError as e:
            problems.append(Finding("metadata-unreadable", Severity.ERROR, r.slot, r.page_states,
                                    f"area {r.slot}: {e}"))
    # Usable page ranges of the areas whose metadata we have: list nodes
    # must point into them.
    spans = [(r.base, r.top) for r in raws if r.slot in metas]
    heads = {areas_addr + r.slot * layout.struct.size + layout.struct.freelists_off
             + k * layout.struct.list_head_size: (r.slot, k)
             for r in raws if mask >> r.slot & 1 for k in range(layout.nlists)}

    page_mask = layout.page_size - 1

    def plausible(addr: int) -> bool:
        if (addr - phys_offset) & page_mask:
            return False
        p = (addr - phys_offset) >> shift
        for lo, hi in spans:
            if lo <= p < hi:
                return True
        return False

    node_cache: dict[int, tuple[int, int] | None] = {}
    pair = struct.Struct(("<" if layout.endian == "little" else ">")
                         + ("QQ" if layout.ptr_size == 8 else "II"))
    # Blocks in the hint's encoding: what the prefetch needs, what format
    # detection counts, and usually (same encoding) the final scan too.
    bases = {r.slot: r.base for r in raws}
    scanned = {slot: scan_blocks(meta, bases[slot], layout.encoding) for slot, meta in metas.items()}
    if prefetch and hasattr(memory, "read_many"):
        _prefetch_nodes(memory, scanned, layout, phys_offset, pair, node_cache)

    def read_node(addr: int) -> tuple[int, int] | None:
        if addr not in node_cache:
            try:
                node_cache[addr] = pair.unpack(memory.read(addr, pair.size))
            except MemoryReadError:
                node_cache[addr] = None
        return node_cache[addr]

    walks: dict[int, tuple[ListWalk, ...]] = {}
    for r in raws:
        if r.slot not in metas:
            continue
        limit = r.top - r.base
        ws = []
        for k, (hprev, hnext) in enumerate(r.heads):
            head = areas_addr + r.slot * layout.struct.size + layout.struct.freelists_off \
                + k * layout.struct.list_head_size
            ws.append(walk_list(head, hprev, hnext, read_node, plausible, limit, heads))
        walks[r.slot] = tuple(ws)

    if format is not None and format not in FORMATS:
        raise LayoutError(f"unknown format {format!r}: expected 2020, 2021 or auto")
    hint_encoding = layout.encoding
    fmt, reason = _choose_format(format, layout, metas, walks, bases, phys_offset,
                                 [scanned[slot].byte_pages for slot in metas])
    layout = layout.with_format(fmt) if fmt != layout.format else layout
    areas = []
    for r in raws:
        init = bool(mask >> r.slot & 1)
        if not init and _empty(r):
            continue
        slot = layout.slot(r.slot)
        meta = metas.get(r.slot)
        if meta is None:
            blocks = None
        elif layout.encoding is hint_encoding:
            blocks = scanned[r.slot]
        else:
            blocks = scan_blocks(meta, r.base, layout.encoding)
        areas.append(AreaSnapshot(r.slot, slot.name if slot else f"AREA{r.slot}", r.desc_addr,
                                  r.base, r.top, r.page_states, r.max_order, init, meta, blocks,
                                  walks.get(r.slot, ())))
    return Snapshot(layout, areas_addr, mask_addr, mask, tuple(areas), tuple(problems), reason,
                    phys_offset)


def _prefetch_nodes(memory, scanned: dict[int, BlockMap], layout, phys_offset, pair,
                    cache) -> None:
    """One batched read of the first bytes of every free block: the nodes
    the walks will visit, for sources where a batch is cheaper."""
    ranges = [((p << layout.page_shift) + phys_offset, pair.size)
              for blocks in scanned.values() for p in blocks.free]
    if ranges:
        for (addr, _), data in zip(ranges, read_many(memory, ranges)):
            cache[addr] = None if data is None else pair.unpack(data)


# A byte's status bits, as one class per byte for bytes.translate counting.
_CLASS = bytes(1 if b & 0xC0 == 0x40 else 2 if b & 0xC0 == 0xC0 else
               3 if b & 0xC0 == 0x80 and b & 0x3F else 0 for b in range(256))


def detect_format(layout: Layout, metas: dict[int, bytes], listed_bytes: list[int],
                  byte_pages: list[dict[int, int]] | None = None) -> tuple[str, str]:
    """Which byte encoding the state is in, and why. ALLOCATOR.md: the free
    lists settle it. 0x40 means FREE in 2021 (so its blocks are listed) and
    ALLOCATED in 2020 (so they are not): compare the 0x40 pages that listed
    blocks cover with all 0x40 pages. 0xc0 and 0x80|order bytes exist in
    2021 only. Without telling bytes, DWARF's max_order is the hint.
    `byte_pages` (pages per byte value, from the block scans) saves a pass
    over the metadata."""
    p40 = c_hi = 0
    if byte_pages is not None:
        for hist in byte_pages:
            for b, n in hist.items():
                cls = _CLASS[b]
                if cls == 1:
                    p40 += n
                elif cls:
                    c_hi += n
    else:
        for meta in metas.values():
            t = meta.translate(_CLASS)
            p40 += t.count(1)
            c_hi += t.count(2) + t.count(3)
    l40 = sum(1 << (b & 0x3F) for b in listed_bytes if b & 0xC0 == 0x40)
    if p40:
        if 2 * l40 >= p40:
            return "2021", f"listed blocks cover {l40} of {p40} pages carrying 0x40 (2021 FREE)"
        if c_hi > p40 - l40:
            return "2021", f"{c_hi} pages carry 2021-only bytes (0xc0, 0x80|order)"
        return "2020", f"{p40 - l40} pages carry 0x40 outside the free lists (2020 allocated)"
    if c_hi:
        return "2021", f"{c_hi} pages carry 2021-only bytes (0xc0 special or 0x80|order allocated)"
    hint = "2021" if layout.struct.max_order_off is not None else "2020"
    return hint, (f"no telling bytes yet; the struct layout "
                  f"({'with' if hint == '2021' else 'without'} max_order) says {hint}")


def _choose_format(forced, layout, metas, walks, bases, phys_offset,
                   byte_pages) -> tuple[str, str]:
    if forced is not None:
        return forced, "forced"
    listed = []
    shift = layout.page_shift
    for slot, ws in walks.items():
        meta, base = metas[slot], bases[slot]
        for w in ws:
            for addr in w.nodes:
                i = ((addr - phys_offset) >> shift) - base
                if 0 <= i < len(meta):        # nodes of other areas do not vote
                    listed.append(meta[i])
    return detect_format(layout, metas, listed, byte_pages)
