"""Guest bytes -> a decoded snapshot of the page allocator.

`decode(memory, layout, areas_addr, mask_addr)` reads `areas[]` and
`areas_mask` once, each initialised area's metadata in one read, and every
free-list node once; it never raises on garbage: what it cannot read, or
what is too implausible to follow, becomes a finding in `problems`.

Work is bounded by what the guest really has: an area is decoded only as
far as guest RAM goes (when the memory knows where RAM is), metadata that
cannot be where the design puts it is not read at all, and free order-0
pages, the bulk of a fragmented area, are handled as byte masks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import LayoutError, MemoryReadError
from .findings import Finding, Severity
from .format import choose_format
from .layout import FORMATS, Layout
from .list import FOREIGN, ListWalk, PageView, walk_list
from .memory import Memory, ram_ranges, read_many, view
from .pages import EMPTY_BLOCKS, BlockMap, scan_blocks
from .state import AreaState

__all__ = ["AreaSnapshot", "Snapshot", "decode", "MAX_METADATA"]

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
    metadata: bytes = field(default=b"", repr=False)      # b"" when not decoded
    blocks: BlockMap = field(default_factory=lambda: EMPTY_BLOCKS, repr=False)
    freelists: tuple[ListWalk, ...] = field(default=(), repr=False)
    # (head address, prev, next) of every list head, walked or not
    heads: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)
    decoded: bool = False     # metadata, blocks and freelists were read

    @property
    def pages(self) -> int:
        return max(self.top - self.base, 0)

    @property
    def decoded_top(self) -> int:
        """The first pfn past what was decoded: `top`, or the end of guest
        RAM for an area that claims more."""
        return self.base + len(self.metadata)

    def state(self) -> AreaState:
        """The comparable value the reference allocator's state() gives."""
        return AreaState(self.slot, self.base, self.top, self.page_states, self.max_order,
                         self.metadata, tuple(w.nodes for w in self.freelists))


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
            if a.decoded and a.base <= p < a.decoded_top:
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


def _empty_area(a: AreaSnapshot) -> bool:
    """An area slot holding nothing at all (all zeros)."""
    return a.base == 0 and a.top == 0 and a.page_states == 0 and not a.max_order \
        and all(p == 0 and n == 0 for _h, p, n in a.heads)


def _covering(ranges: list[tuple[int, int]] | None, addr: int) -> tuple[int, int] | None:
    """The RAM range holding addr (None: not RAM)."""
    for lo, hi in ranges or ():
        if lo <= addr < hi:
            return lo, hi
    return None


def _plan_area(r: _Raw, layout: Layout, phys_offset: int,
               ram: list[tuple[int, int]] | None) -> tuple[int, Finding | None]:
    """How many pages of area r to decode (0: none), and the finding that
    explains a shortfall. Nothing is read for metadata that cannot be where
    the design puts it (the checker reports that from the descriptor) or
    that lies outside RAM."""
    pages = r.top - r.base
    shift = layout.page_shift
    first = (r.base << shift) + phys_offset
    if pages > MAX_METADATA:
        return 0, Finding("area-implausible", Severity.ERROR, r.slot, r.desc_addr,
                          f"area {r.slot} spans {pages:#x} pages (base {r.base:#x}, "
                          f"top {r.top:#x}): not reading that much metadata")
    if r.page_states + pages > first or r.page_states + pages < r.page_states:
        return 0, None                                   # metadata-misplaced, from check
    if ram is None:
        return pages, None
    meta_ram = _covering(ram, r.page_states)
    if meta_ram is None or r.page_states + pages > meta_ram[1]:
        return 0, Finding("metadata-unreadable", Severity.ERROR, r.slot, r.page_states,
                          f"area {r.slot}: its {pages:#x} metadata bytes at {r.page_states:#x} "
                          f"are not in guest RAM ({_ram_text(ram)})")
    pages_ram = _covering(ram, first)
    top_addr = (r.top << shift) + phys_offset
    if pages_ram is None:
        return 0, Finding("area-beyond-ram", Severity.ERROR, r.slot, r.desc_addr,
                          f"area {r.slot}: its pages [{first:#x}, {top_addr:#x}) are not in "
                          f"guest RAM ({_ram_text(ram)}); not decoded")
    if top_addr > pages_ram[1]:
        fit = (pages_ram[1] - first) >> shift
        return fit, Finding("area-beyond-ram", Severity.ERROR, r.slot, r.desc_addr,
                            f"area {r.slot}: top {r.top:#x} (address {top_addr:#x}) is past the "
                            f"end of guest RAM at {pages_ram[1]:#x}; decoded its first {fit:#x} "
                            f"of {pages:#x} pages only", (("top", r.top), ("ram_end", pages_ram[1])))
    return pages, None


def _ram_text(ram: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"[{lo:#x}, {hi:#x})" for lo, hi in ram[:4])
    return shown + (f" and {len(ram) - 4} more" if len(ram) > 4 else "")


class _Nodes:
    """(prev, next) of list nodes: from a zero-copy view of an area's pages
    where the memory offers one, else from reads (prefetched in one batch
    where the memory batches), each read once."""

    def __init__(self, memory: Memory, layout: Layout, spans: list[tuple[int, int]]):
        self.memory = memory
        self.pair = struct.Struct(("<" if layout.endian == "little" else ">")
                                  + ("QQ" if layout.ptr_size == 8 else "II"))
        self.spans = spans                       # usable pages of decoded areas, addresses
        self.page_mask = layout.page_size - 1
        self.views: list[tuple[int, int, memoryview]] = []
        for lo, hi in spans:
            v = view(memory, lo, hi - lo)
            if v is not None:
                self.views.append((lo, hi, v))
        self.cache: dict[int, tuple[int, int] | None] = {}

    @property
    def viewed(self) -> bool:
        return len(self.views) == len(self.spans)

    def prefetch(self, addrs: list[int]) -> None:
        """One batched read of these nodes, for memories where a batch is
        cheaper than single reads."""
        size = self.pair.size
        todo = [a for a in addrs if a not in self.cache]
        if todo:
            for addr, data in zip(todo, read_many(self.memory, [(a, size) for a in todo])):
                self.cache[addr] = None if data is None else self.pair.unpack(data)

    def node_at(self, addr: int):
        if addr & self.page_mask:
            return FOREIGN
        for lo, hi, v in self.views:
            if lo <= addr < hi:
                return self.pair.unpack_from(v, addr - lo)
        for lo, hi in self.spans:
            if lo <= addr < hi:
                break
        else:
            return FOREIGN
        if addr not in self.cache:
            try:
                self.cache[addr] = self.pair.unpack(self.memory.read(addr, self.pair.size))
            except MemoryReadError:
                self.cache[addr] = None
        return self.cache[addr]

    def page_view(self, lo: int, heads) -> PageView | None:
        """The view of the span starting at lo, for the walk's own loop
        (none when a list head lies inside it)."""
        for vlo, vhi, v in self.views:
            if vlo == lo and not any(vlo <= h < vhi for h in heads):
                return PageView(vlo, v, self.page_mask, self.pair.unpack_from)
        return None


def decode(memory: Memory, layout: Layout, areas_addr: int, mask_addr: int, *,
           format: str | None = None, phys_offset: int = 0, prefetch: bool = True) -> Snapshot:
    """Decode the allocator state. `format` None detects the byte encoding
    (the layout's format is only the prior); "2020"/"2021" forces it."""
    if format is not None and format not in FORMATS:
        raise LayoutError(f"unknown format {format!r}: expected 2020, 2021 or auto")
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
    ram = ram_ranges(memory)
    metas: dict[int, bytes] = {}
    sizes: dict[int, int] = {}           # slot -> the area's pages, when only a part is read
    for r in raws:
        if not mask >> r.slot & 1 or r.top <= r.base:
            continue
        pages, why = _plan_area(r, layout, phys_offset, ram)
        if why is not None:
            problems.append(why)
        if not pages:
            continue
        try:
            metas[r.slot] = memory.read(r.page_states, pages)
        except MemoryReadError as e:
            problems.append(Finding("metadata-unreadable", Severity.ERROR, r.slot, r.page_states,
                                    f"area {r.slot}: {e}"))
            continue
        if pages < r.top - r.base:
            sizes[r.slot] = r.top - r.base
    by_slot = {r.slot: r for r in raws}
    # The decoded areas' usable pages, as addresses: list nodes must lie there.
    spans = [((by_slot[s].base << shift) + phys_offset,
              ((by_slot[s].base + len(m)) << shift) + phys_offset) for s, m in metas.items()]
    heads = {areas_addr + r.slot * layout.struct.size + layout.struct.freelists_off
             + k * layout.struct.list_head_size: (r.slot, k)
             for r in raws if mask >> r.slot & 1 for k in range(layout.nlists)}
    nodes = _Nodes(memory, layout, spans)

    def scan(enc_layout: Layout) -> dict[int, BlockMap]:
        return {slot: scan_blocks(meta, by_slot[slot].base, enc_layout.encoding, sizes.get(slot))
                for slot, meta in metas.items()}

    scanned = {layout.format: scan(layout)}
    if prefetch and not nodes.viewed and hasattr(memory, "read_many"):
        # the nodes the walks will visit (the free blocks in the prior's
        # encoding), in one batch
        nodes.prefetch([(p << shift) + phys_offset for bm in scanned[layout.format].values()
                        for p in bm.free])
    if format is None:
        other = "2021" if layout.format == "2020" else "2020"
        scanned[other] = scan(layout.with_format(other))
        fmt, reason, doubt = choose_format(layout, metas, by_slot, scanned, nodes, heads,
                                           phys_offset)
        if doubt is not None:
            problems.append(doubt)
    else:
        fmt, reason = format, "forced"
        if fmt not in scanned:
            scanned[fmt] = scan(layout.with_format(fmt))
    layout = layout.with_format(fmt) if fmt != layout.format else layout
    blocks = scanned[fmt]

    areas = []
    for r in raws:
        init = bool(mask >> r.slot & 1)
        if not init and _empty(r):
            continue
        slot = layout.slot(r.slot)
        meta = metas.get(r.slot)
        walks: tuple[ListWalk, ...] = ()
        if meta is not None:
            area_pages = nodes.page_view((r.base << shift) + phys_offset, heads)
            ws = []
            for k, (hprev, hnext) in enumerate(r.heads):
                head = r.desc_addr + layout.struct.freelists_off + k * layout.struct.list_head_size
                ws.append(walk_list(head, hprev, hnext, nodes.node_at, len(meta), heads,
                                    area_pages))
            walks = tuple(ws)
        head0 = r.desc_addr + layout.struct.freelists_off
        heads_raw = tuple((head0 + k * layout.struct.list_head_size, p, n)
                          for k, (p, n) in enumerate(r.heads))
        areas.append(AreaSnapshot(r.slot, slot.name if slot else f"AREA{r.slot}", r.desc_addr,
                                  r.base, r.top, r.page_states, r.max_order, init,
                                  meta or b"", blocks.get(r.slot, EMPTY_BLOCKS), walks, heads_raw,
                                  decoded=meta is not None))
    return Snapshot(layout, areas_addr, mask_addr, mask, tuple(areas), tuple(problems), reason,
                    phys_offset)
