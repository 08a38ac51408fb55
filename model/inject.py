"""Corruption injectors: each turns a healthy image made by the reference
allocator into one that breaks exactly one invariant, and says where.

Test helpers (they live in model/ so the gdb and client tests can plant the
same breaches through their own writers). An injector writes the image only;
the allocator object is not to be used for operations afterwards.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Callable

from .constants import AREA_ANY_NUMBER, FLAG_DONTZERO, FLAG_FRESH
from .layout import Layout, Status
from .reference import Allocator, _Area

__all__ = ["Injected", "INJECTORS", "scenario", "scenario_ranges"]


@dataclass(frozen=True)
class Injected:
    code: str            # the finding the checker must report
    address: int         # where
    slot: int | None


class _Recorder:
    """Passes reads and writes through, keeping (addr, old, new) of each
    write so the same breach can be planted in a live guest and undone."""

    def __init__(self, mem, log: list):
        self.mem, self.log = mem, log

    def read(self, addr: int, size: int) -> bytes:
        return self.mem.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.log.append((addr, self.mem.read(addr, len(data)), bytes(data)))
        self.mem.write(addr, data)


class _Image:
    """Byte-level access to an allocator's image for planting breaches."""

    def __init__(self, al: Allocator, log: list | None = None):
        self.al = al
        self.mem = al.memory if log is None else _Recorder(al.memory, log)  # syncs
        lay = al.layout
        e = "<" if lay.endian == "little" else ">"
        self.pair = struct.Struct(e + ("QQ" if lay.ptr_size == 8 else "II"))
        self.ptr = struct.Struct(e + ("Q" if lay.ptr_size == 8 else "I"))
        self.wide = struct.Struct(e + ("Q" if lay.struct.base_size == 8 else "I"))
        self.enc = lay.encoding

    def areas(self) -> list[_Area]:
        return [a for a in self.al.areas if a is not None]

    def node(self, addr: int) -> tuple[int, int]:
        return self.pair.unpack(self.mem.read(addr, self.pair.size))

    def set_prev(self, addr: int, prev: int) -> None:
        self.mem.write(addr, self.ptr.pack(prev))

    def set_next(self, addr: int, nxt: int) -> None:
        self.mem.write(addr + self.ptr.size, self.ptr.pack(nxt))

    def set_byte(self, a: _Area, pfn: int, byte: int, n: int = 1) -> None:
        self.mem.write(a.page_states + pfn - a.base, bytes((byte,)) * n)

    def unlink(self, x: int) -> None:
        p, n = self.node(x)
        self.set_next(p, n)
        self.set_prev(n, p)

    def link_front(self, head: int, x: int) -> None:
        _, first = self.node(head)
        self.set_prev(x, head)
        self.set_next(x, first)
        self.set_prev(first, x)
        self.set_next(head, x)

    def blocks(self, a: _Area):
        """(pfn, order, byte) of each block, by its first page's byte."""
        i, meta = 0, a.meta
        while i < len(meta):
            b = meta[i]
            order = b & 0x3F
            yield a.base + i, order, b
            i += 1 << order if self.enc.table[b][0] is not Status.SPECIAL else 1

    def find(self, status: set[Status], min_order: int = 0, max_order: int = 99):
        for a in self.areas():
            for pfn, order, b in self.blocks(a):
                if self.enc.table[b][0] in status and min_order <= order <= max_order:
                    yield a, pfn, order, b

    def desc(self, slot: int) -> int:
        return self.al.areas_addr + slot * self.al.layout.struct.size


ALLOCATED = {Status.ALLOCATED}
FREE = {Status.FREE, Status.FRESH}


def _first(gen):
    return next(gen, None)


def bad_byte(img: _Image) -> Injected | None:
    hit = _first(img.find(ALLOCATED, 0, 0))
    if hit is None:
        return None
    a, pfn, _, _ = hit
    img.set_byte(a, pfn, 0x3F)
    return Injected("bad-byte", img.al.virt(pfn), a.slot)


def block_inconsistent(img: _Image) -> Injected | None:
    hit = _first(img.find(ALLOCATED, 1))
    if hit is None:
        return None
    a, pfn, _, _ = hit
    img.set_byte(a, pfn + 1, img.enc.byte(Status.ALLOCATED, 0))
    return Injected("block-inconsistent", img.al.virt(pfn), a.slot)


def block_misaligned(img: _Image) -> Injected | None:
    alloc0 = img.enc.byte(Status.ALLOCATED, 0)
    for a in img.areas():
        for pfn in range(a.base | 1, a.top - 1, 2):
            if a.meta[pfn - a.base] == alloc0 and a.meta[pfn + 1 - a.base] == alloc0:
                img.set_byte(a, pfn, img.enc.byte(Status.ALLOCATED, 1), 2)
                return Injected("block-misaligned", img.al.virt(pfn), a.slot)
    return None


def block_outside_area(img: _Image) -> Injected | None:
    for a in img.areas():
        last = a.top - 1
        st = img.enc.table[a.meta[last - a.base]]
        if last % 2 == 0 and st[1] == 0 and st[0] in (Status.ALLOCATED, Status.SPECIAL):
            img.set_byte(a, last, img.enc.byte(Status.ALLOCATED, 1))
            return Injected("block-outside-area", img.al.virt(last), a.slot)
    return None


def special_order(img: _Image) -> Injected | None:
    hit = _first(img.find({Status.SPECIAL}))
    if hit is None:
        return None
    a, pfn, _, b = hit
    img.set_byte(a, pfn, b | 1)
    return Injected("special-order", img.al.virt(pfn), a.slot)


def _lists(img: _Image, min_len: int = 1):
    for a in img.areas():
        for k in range(img.al.layout.nlists):
            nodes = img.al.freelist(a.slot, k)
            if len(nodes) >= min_len:
                yield a, k, nodes


def list_broken_link(img: _Image) -> Injected | None:
    hit = _first(_lists(img, 2))
    if hit is None:
        return None
    a, k, nodes = hit
    img.set_prev(nodes[1], img.al.head(a.slot, k))
    return Injected("list-broken-link", nodes[1], a.slot)


def list_cycle(img: _Image) -> Injected | None:
    hit = _first(_lists(img, 2))
    if hit is None:
        return None
    a, k, nodes = hit
    img.set_next(nodes[-1], nodes[0])
    return Injected("list-cycle", nodes[-1], a.slot)


def list_foreign_pointer(img: _Image) -> Injected | None:
    hit = _first(_lists(img, 1))
    if hit is None:
        return None
    a, k, nodes = hit
    beyond = max(x.top for x in img.areas()) + 0x1000
    img.set_next(nodes[0], img.al.virt(beyond))
    return Injected("list-foreign-pointer", nodes[0], a.slot)


def list_crossed(img: _Image) -> Injected | None:
    hit = _first(_lists(img, 1))
    if hit is None:
        return None
    a, k, nodes = hit
    other = img.al.head(a.slot, (k + 1) % img.al.layout.nlists)
    img.set_next(nodes[-1], other)
    return Injected("list-crossed", nodes[-1], a.slot)


def list_node_not_free(img: _Image) -> Injected | None:
    hit = _first(img.find(ALLOCATED, 0, 0))
    if hit is None:
        return None
    a, pfn, _, _ = hit
    x = img.al.virt(pfn)
    img.link_front(img.al.head(a.slot, 0), x)
    return Injected("list-node-not-free", x, a.slot)


def list_node_not_block(img: _Image) -> Injected | None:
    hit = _first(img.find(FREE, 1))
    if hit is None:
        return None
    a, pfn, _, _ = hit
    x = img.al.virt(pfn + 1)
    img.link_front(img.al.head(a.slot, 0), x)
    return Injected("list-node-not-block", x, a.slot)


def list_node_wrong_order(img: _Image) -> Injected | None:
    hit = _first(img.find(FREE, 0, img.al.layout.nlists - 2))
    if hit is None:
        return None
    a, pfn, k, _ = hit
    x = img.al.virt(pfn)
    img.unlink(x)
    img.link_front(img.al.head(a.slot, k + 1), x)
    return Injected("list-node-wrong-order", x, a.slot)


def list_node_wrong_area(img: _Image) -> Injected | None:
    areas = img.areas()
    if len(areas) < 2:
        return None
    hit = _first(img.find(FREE))
    a, pfn, k, _ = hit
    other = next(b for b in areas if b is not a)
    x = img.al.virt(pfn)
    img.unlink(x)
    img.link_front(img.al.head(other.slot, k), x)
    return Injected("list-node-wrong-area", x, other.slot)


def free_not_listed(img: _Image) -> Injected | None:
    hit = _first(img.find(FREE))
    if hit is None:
        return None
    a, pfn, _, _ = hit
    img.unlink(img.al.virt(pfn))
    return Injected("free-not-listed", img.al.virt(pfn), a.slot)


def free_multiply_listed(img: _Image) -> Injected | None:
    for a, k, nodes in _lists(img, 1):
        empty = [j for j in range(img.al.layout.nlists)
                 if j != k and not img.al.freelist(a.slot, j)]
        if not empty:
            continue
        x, head = nodes[0], img.al.head(a.slot, empty[0])
        # x joins list j (its prev/next now point there); list k still
        # leads to x from its head.
        img.set_prev(x, head)
        img.set_next(x, head)
        img.set_next(head, x)
        img.set_prev(head, x)
        return Injected("free-multiply-listed", x, a.slot)
    return None


def unmerged_buddies(img: _Image) -> Injected | None:
    hit = _first(img.find(FREE, 1))
    if hit is None:
        return None
    a, pfn, k, b = hit
    x, second = img.al.virt(pfn), img.al.virt(pfn + (1 << (k - 1)))
    img.unlink(x)
    img.set_byte(a, pfn, (b & 0xC0) | (k - 1), 1 << k)
    head = img.al.head(a.slot, k - 1)
    img.link_front(head, x)
    img.link_front(head, second)
    return Injected("unmerged-buddies", x, a.slot)


def _set_max_order(img: _Image, a: _Area, value: int) -> None:
    off = img.al.layout.struct.max_order_off
    assert off is not None, "only 2021 descriptors have max_order"
    img.mem.write(img.desc(a.slot) + off, bytes((value,)))


def max_order_low(img: _Image) -> Injected | None:
    if img.al.layout.struct.max_order_off is None:
        return None
    for a in img.areas():
        top = max((k for k in range(img.al.layout.nlists) if img.al.freelist(a.slot, k)), default=0)
        if top >= 1:
            _set_max_order(img, a, top - 1)
            return Injected("max-order-low", img.desc(a.slot), a.slot)
    return None


def max_order_invalid(img: _Image) -> Injected | None:
    if img.al.layout.struct.max_order_off is None:
        return None
    a = img.areas()[0]
    _set_max_order(img, a, img.al.layout.nlists)
    return Injected("max-order-invalid", img.desc(a.slot), a.slot)


def _set_top(img: _Image, slot: int, top: int) -> None:
    s = img.al.layout.struct
    img.mem.write(img.desc(slot) + s.top_off, img.wide.pack(top))


def area_bounds(img: _Image) -> Injected | None:
    a = img.areas()[0]
    _set_top(img, a.slot, a.base)
    return Injected("area-bounds", img.desc(a.slot), a.slot)


def area_implausible(img: _Image) -> Injected | None:
    a = img.areas()[0]
    big = a.base + (1 << 31)
    if big >= 1 << (8 * img.al.layout.struct.base_size):
        return None
    _set_top(img, a.slot, big)
    return Injected("area-implausible", img.desc(a.slot), a.slot)


def metadata_misplaced(img: _Image) -> Injected | None:
    a = img.areas()[0]
    s = img.al.layout.struct
    img.mem.write(img.desc(a.slot) + s.page_states_off, img.ptr.pack(img.al.virt(a.base)))
    return Injected("metadata-misplaced", img.desc(a.slot), a.slot)


def mask_mismatch(img: _Image) -> Injected | None:
    a = img.areas()[-1]
    img.mem.write(img.al.mask_addr, (img.al.areas_mask & ~(1 << a.slot)).to_bytes(4, img.al.layout.endian))
    return Injected("mask-mismatch", img.al.mask_addr, a.slot)


def area_overlap(img: _Image) -> Injected | None:
    areas = img.areas()
    victim = max(areas, key=lambda a: a.slot)
    above = [a for a in areas if a is not victim and a.start >= victim.top]
    if above:
        nearest = min(above, key=lambda a: a.start)
        _set_top(img, victim.slot, nearest.start + 1)
        return Injected("area-overlap", img.desc(victim.slot), victim.slot)
    free_slots = [n for n in range(victim.slot + 1, img.al.layout.max_areas)
                  if img.al.areas[n] is None]
    if not free_slots:
        return None
    n = free_slots[0]
    size = img.al.layout.struct.size
    img.mem.write(img.desc(n), img.mem.read(img.desc(victim.slot), size))
    img.mem.write(img.al.mask_addr, (img.al.areas_mask | 1 << n).to_bytes(4, img.al.layout.endian))
    return Injected("area-overlap", img.desc(n), n)


INJECTORS: dict[str, Callable[[_Image], Injected | None]] = {
    "bad-byte": bad_byte,
    "block-inconsistent": block_inconsistent,
    "block-misaligned": block_misaligned,
    "block-outside-area": block_outside_area,
    "special-order": special_order,
    "list-broken-link": list_broken_link,
    "list-cycle": list_cycle,
    "list-foreign-pointer": list_foreign_pointer,
    "list-crossed": list_crossed,
    "list-node-not-free": list_node_not_free,
    "list-node-not-block": list_node_not_block,
    "list-node-wrong-order": list_node_wrong_order,
    "list-node-wrong-area": list_node_wrong_area,
    "free-not-listed": free_not_listed,
    "free-multiply-listed": free_multiply_listed,
    "unmerged-buddies": unmerged_buddies,
    "max-order-low": max_order_low,
    "max-order-invalid": max_order_invalid,
    "area-bounds": area_bounds,
    "area-implausible": area_implausible,
    "metadata-misplaced": metadata_misplaced,
    "mask-mismatch": mask_mismatch,
    "area-overlap": area_overlap,
}


def inject(al: Allocator, code: str, log: list | None = None) -> Injected | None:
    """Plant the breach `code` in al's image; None when this state has no
    place for it (e.g. a second area for list-node-wrong-area). With `log`,
    every write is appended to it as (address, old bytes, new bytes)."""
    return INJECTORS[code](_Image(al, log))


def scenario_ranges(layout: Layout) -> tuple[int, int]:
    """A pfn range that crosses a slot boundary where the tree has one, so
    the scenario has two areas; its top is odd so the last page is even."""
    bounds = sorted({s.pfn_start for s in layout.slots if s.pfn_start} |
                    {s.pfn_end for s in layout.slots if s.pfn_end})
    pivot = bounds[0] if bounds else 0x1000
    if layout.arch.name in ("x86_64", "i386") and layout.max_areas == 6:
        pivot = 1 << 20                 # 2020: LOW / PAE_HIGH at 4 GiB
    if (pivot + 0x201) << layout.page_shift >= 1 << (8 * layout.ptr_size):
        pivot = 0x1000                  # beyond a 32-bit guest: one area
    return max(pivot - 0x800, 0x100), pivot + 0x201


def scenario(layout: Layout, seed: int = 1, ops: int = 600) -> Allocator:
    """A healthy, fragmented state with what every injector needs: allocated
    blocks of order 0 and above, free blocks of several orders, reserved
    pages (the last page of the top area among them) and, in 2021, FRESH
    allocations."""
    al = Allocator(layout)
    start, top = scenario_ranges(layout)
    al.init_area(AREA_ANY_NUMBER, start, top)
    top_area = max((a for a in al.areas if a), key=lambda a: a.top)
    al.reserve_pages((top_area.top - 1) << layout.page_shift, 1)
    rnd = random.Random(seed)
    live: list[int] = []
    fresh_ok = layout.format == "2021"
    for _ in range(ops):
        r = rnd.random()
        if r < 0.55 or not live:
            flags = FLAG_DONTZERO | (FLAG_FRESH if fresh_ok and rnd.random() < 0.1 else 0)
            p = al.alloc_pages_flags(rnd.choice((0, 0, 0, 1, 2, 3)), flags)
            if p:
                live.append(p)
        elif r < 0.65:
            p = al.memalign_pages_flags(1 << (layout.page_shift + rnd.randrange(3)),
                                        rnd.randrange(1, 5 << layout.page_shift), FLAG_DONTZERO)
            if p:
                live.append(p)
        else:
            al.free_pages(live.pop(rnd.randrange(len(live))))
    for a in al.areas:
        if a is None:
            continue
        for pfn in range(a.base + 8, a.top - 8):
            if al.reserve_pages(pfn << layout.page_shift, 2) == 0:
                break
    return al
