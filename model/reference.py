"""The reference allocator: ALLOCATOR.md's "Operations", executed exactly.

It keeps the allocator's state the way the guest does (one metadata byte per
page, circular lists embedded in free pages, `struct mem_area` descriptors in
an `areas[]` array) and renders it into a byte memory for any layout, so its
images decode like a guest's. Lists live in Python dicts while it runs and
are written to memory on `sync()` (every read of `.memory` syncs): the bytes
are the same as writing each pointer at once, at a fraction of the cost.
"""

from __future__ import annotations

import struct

from .constants import AREA_ANY_NUMBER, AREA_MASK, FLAG_DONTZERO, FLAG_FRESH
from .errors import ModelError
from .layout import Layout
from .memory import SparseMemory
from .state import AreaState

__all__ = ["Allocator", "AreaState", "get_order", "DEFAULT_AREAS_ADDR"]

DEFAULT_AREAS_ADDR = 0x8000      # where a model-only image puts `areas[]` (below RAM areas)

_FRESH, _FREE, _ALLOCATED, _SPECIAL = 0x00, 0x40, 0x80, 0xC0


def get_order(n: int) -> int:
    """ceil(log2 n); 0 for n = 0."""
    return (n - 1).bit_length() if n > 1 else 0


class _Area:
    __slots__ = ("slot", "start", "base", "top", "page_states", "max_order", "meta", "heads")

    def __init__(self, slot, start, base, top, page_states, meta, heads):
        self.slot, self.start, self.base, self.top = slot, start, base, top
        self.page_states, self.meta, self.heads = page_states, meta, heads
        self.max_order = 0


class Allocator:
    """The page allocator of one guest, per the specification.

    Addresses in and out are guest virtual addresses (physical +
    `phys_offset`); pfns are physical.
    """

    def __init__(self, layout: Layout, memory: SparseMemory | None = None, *,
                 areas_addr: int = DEFAULT_AREAS_ADDR, mask_addr: int | None = None,
                 phys_offset: int = 0):
        self.layout = layout
        self.areas_addr = areas_addr
        self.mask_addr = mask_addr if mask_addr is not None else areas_addr + layout.areas_size
        self.phys_offset = phys_offset
        self._memory = memory if memory is not None else SparseMemory()
        for addr, size in ((areas_addr, layout.areas_size), (self.mask_addr, 4)):
            if not self._memory.is_mapped(addr, size):
                self._memory.map(addr, size)
        self.areas: list[_Area | None] = [None] * layout.max_areas
        self.areas_mask = 0
        self._next: dict[int, int] = {}
        self._prev: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._dirty_desc = True
        self._touched: dict[int, list[tuple[int, int]]] | None = None   # drive's bookkeeping
        e = "<" if layout.endian == "little" else ">"
        p = "Q" if layout.ptr_size == 8 else "I"
        self._node = struct.Struct(e + p + p)
        self._ptr = struct.Struct(e + p)
        self._u64 = struct.Struct(e + "Q")
        self._u32 = struct.Struct(e + "I")
        self._fmt2021 = layout.format == "2021"
        self._shift = layout.page_shift
        self._nlists = layout.nlists
        # 2020 has no FRESH: a free byte is the bare order there
        self._free_status = _FREE if self._fmt2021 else 0
        self._alloc_status = _ALLOCATED if self._fmt2021 else 0x40
        self._special = _SPECIAL if self._fmt2021 else 0x80

    # ---------------------------------------------------------------- memory
    @property
    def memory(self) -> SparseMemory:
        """The guest image, with every pending write applied."""
        self.sync()
        return self._memory

    def sync(self) -> None:
        mem, node, nxt, prv = self._memory, self._node, self._next, self._prev
        for addr in self._dirty:
            mem.write(addr, node.pack(prv[addr], nxt[addr]))
        self._dirty.clear()
        if self._dirty_desc:
            self._write_descriptors()
            self._dirty_desc = False

    def peek(self, addr: int, size: int) -> bytes:
        """The bytes memory would hold at [addr, addr + size) after sync(),
        answered from the model's own structures where it can (a list node,
        metadata), so replay comparing every call's footprint does not write
        every changed node into the image (what made it 2.3x slower)."""
        node = self._node
        if size == node.size and addr in self._next:
            return node.pack(self._prev[addr], self._next[addr])
        for a in self.areas:
            if a is not None and a.page_states <= addr and \
                    addr + size <= a.page_states + len(a.meta):
                i = addr - a.page_states
                return bytes(a.meta[i:i + size])
        lay, st = self.layout, self.layout.struct
        first, end = self.areas_addr, self.areas_addr + lay.areas_size
        if not (first <= addr and addr + size <= end):
            self.sync()
            return self._memory.read(addr, size)
        # inside areas[]: write the list heads it covers and the fields
        mem, nxt, prv, dirty = self._memory, self._next, self._prev, self._dirty
        step = st.list_head_size
        for slot in range((addr - first) // st.size, (addr + size - 1 - first) // st.size + 1):
            h0 = self.head(slot, 0)
            k0 = max(0, (addr - node.size - h0) // step + 1)
            k1 = min(lay.nlists - 1, (addr + size - 1 - h0) // step)
            for h in range(h0 + k0 * step, h0 + k1 * step + 1, step):
                if h in dirty:
                    mem.write(h, node.pack(prv[h], nxt[h]))
                    dirty.discard(h)
        if self._dirty_desc:
            self._write_descriptors()
            self._dirty_desc = False
        return self._memory.read(addr, size)

    def _write_descriptors(self) -> None:
        s, mem = self.layout.struct, self._memory
        wide = self._u64 if s.base_size == 8 else self._ptr
        for a in self.areas:
            if a is None:
                continue
            d = self.areas_addr + a.slot * s.size
            mem.write(d + s.base_off, wide.pack(a.base))
            mem.write(d + s.top_off, wide.pack(a.top))
            mem.write(d + s.page_states_off, self._ptr.pack(a.page_states))
            if s.max_order_off is not None:
                mem.write(d + s.max_order_off, bytes((a.max_order,)))
        mem.write(self.mask_addr, self._u32.pack(self.areas_mask))

    def virt(self, pfn: int) -> int:
        return (pfn << self._shift) + self.phys_offset

    def pfn(self, addr: int) -> int:
        return (addr - self.phys_offset) >> self._shift

    def head(self, slot: int, order: int) -> int:
        s = self.layout.struct
        return self.areas_addr + slot * s.size + s.freelists_off + order * s.list_head_size

    # ----------------------------------------------------------------- lists
    def _push_front(self, head: int, x: int) -> None:
        nxt, prv = self._next, self._prev
        n = nxt[head]
        nxt[x] = n
        prv[x] = head
        prv[n] = x
        nxt[head] = x
        self._dirty.update((head, x, n))

    def _push_back(self, head: int, x: int) -> None:
        nxt, prv = self._next, self._prev
        p = prv[head]
        prv[x] = p
        nxt[x] = head
        nxt[p] = x
        prv[head] = x
        self._dirty.update((head, x, p))

    def _remove(self, x: int) -> None:
        nxt, prv = self._next, self._prev
        p, n = prv[x], nxt[x]
        nxt[p] = n
        prv[n] = p
        nxt[x] = prv[x] = 0
        self._dirty.update((p, n, x))

    def freelist(self, slot: int, order: int) -> list[int]:
        """Node addresses of one list, from head.next."""
        head = self.head(slot, order)
        out, x = [], self._next[head]
        while x != head:
            out.append(x)
            x = self._next[x]
        return out

    # ------------------------------------------------------------- metadata
    def _fill(self, a: _Area, pfn: int, order: int, byte: int) -> None:
        i = pfn - a.base
        n = 1 << order
        a.meta[i:i + n] = bytes((byte,)) * n
        if self._touched is not None:
            self._touched.setdefault(a.slot, []).append((i, i + n))

    def _set_byte(self, a: _Area, pfn: int, byte: int) -> None:
        a.meta[pfn - a.base] = byte
        if self._touched is not None:
            i = pfn - a.base
            self._touched.setdefault(a.slot, []).append((i, i + 1))

    # ------------------------------------------------------ drive bookkeeping
    def track_touched(self, on: bool = True) -> None:
        """Remember which metadata bytes each operation writes (drive
        compares only those with the guest)."""
        self._touched = {} if on else None

    def pop_touched_meta(self, slot: int | None) -> list[tuple[int, int]]:
        """Merged [lo, hi) metadata index ranges of `slot` written since
        the last call (None: forget all)."""
        if self._touched is None:
            return []
        if slot is None:
            self._touched.clear()
            return []
        spans = sorted(self._touched.pop(slot, []))
        out: list[tuple[int, int]] = []
        for lo, hi in spans:
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

    def pending_nodes(self) -> set[int]:
        """List nodes and heads written since the last sync."""
        return set(self._dirty)

    def _area_of(self, pfn: int) -> _Area | None:
        for a in self.areas:
            if a is not None and a.base <= pfn < a.top:
                return a
        return None

    def _is_free(self, byte: int) -> bool:
        return (byte & 0xC0) in (_FRESH, _FREE) if self._fmt2021 else (byte & 0xC0) == 0

    # ------------------------------------------------------------------ init
    def init_area(self, n: int, start: int, top: int) -> None:
        """page_alloc_init_area(n, base_pfn, top_pfn)."""
        if n == AREA_ANY_NUMBER:
            for slot in sorted(self.layout.slots, key=lambda s: s.number):
                lo = max(start, slot.pfn_start)
                hi = top if slot.pfn_end is None else min(top, slot.pfn_end)
                if lo < hi and self.areas[slot.number] is None and self._fits(lo, hi):
                    self._init_one(slot.number, lo, hi)
            return
        if not 0 <= n < self.layout.max_areas:
            raise ModelError(f"area number {n} is not below MAX_AREAS {self.layout.max_areas}")
        if self.areas[n] is not None:
            raise ModelError(f"area {n} is already initialised")
        if not self._fits(start, top):
            raise ModelError(f"pfns [{start:#x}, {top:#x}) leave no usable page after the metadata")
        self._init_one(n, start, top)

    def _metadata_pages(self, start: int, top: int) -> int:
        ps = self.layout.page_size
        return (top - start + ps) // (ps + 1)

    def _fits(self, start: int, top: int) -> bool:
        return start < top and start + self._metadata_pages(start, top) < top

    def _init_one(self, n: int, start: int, top: int) -> None:
        if self.virt(top) - 1 >> (8 * self.layout.ptr_size):
            raise ModelError(f"pfns up to {top:#x} lie beyond a {8 * self.layout.ptr_size}-bit "
                             f"guest's address space")
        lo, hi = self.virt(start), self.virt(top)
        if lo < self.mask_addr + 4 and self.areas_addr < hi:
            raise ModelError(f"pfns [{start:#x}, {top:#x}) would overlap areas[] at "
                             f"{self.areas_addr:#x}")
        base = start + self._metadata_pages(start, top)
        meta = bytearray(top - base)
        page_states = self.virt(start)
        self._memory.map(page_states, (top - start) << self._shift)
        self._memory.attach(page_states, meta)
        heads = [self.head(n, k) for k in range(self._nlists)]
        for h in heads:
            self._next[h] = self._prev[h] = h
            self._dirty.add(h)
        a = _Area(n, start, base, top, page_states, meta, heads)
        self.areas[n] = a
        fresh = 0x00 if self._fmt2021 else 0
        i = base
        while i < top:
            k = min((i & -i).bit_length() - 1 if i else self._nlists - 1,
                    (top - i).bit_length() - 1, self._nlists - 1)
            self._fill(a, i, k, fresh | k)
            self._push_front(heads[k], self.virt(i))
            a.max_order = max(a.max_order, k)
            i += 1 << k
        self.areas_mask |= 1 << n
        self._dirty_desc = True

    # ----------------------------------------------------------------- split
    def _split(self, a: _Area, pfn: int, k: int) -> None:
        node = self.virt(pfn)
        self._remove(node)
        status = a.meta[pfn - a.base] & 0xC0
        self._fill(a, pfn, k, status | (k - 1))
        if self._fmt2021 and a.max_order == k and self._next[a.heads[k]] == a.heads[k]:
            a.max_order -= 1
            self._dirty_desc = True
        second = self.virt(pfn + (1 << (k - 1)))
        head = a.heads[k - 1]
        if self._fmt2021 and status == _FRESH:
            self._push_back(head, node)
            self._push_back(head, second)
        else:
            self._push_front(head, node)
            self._push_front(head, second)

    # ----------------------------------------------------------------- alloc
    def _alloc_in(self, a: _Area, al: int, sz: int, fresh: bool) -> int:
        if fresh and al > sz:
            raise ModelError("FLAG_FRESH with alignment above size is unsupported by the design")
        o = max(al, sz) + fresh
        upper = a.max_order if self._fmt2021 else self._nlists - 1
        nxt, prv = self._next, self._prev
        for k in range(o, upper + 1):
            head = a.heads[k]
            if fresh:
                node = prv[head]
                if node == head or a.meta[self.pfn(node) - a.base] & 0xC0 != _FRESH:
                    continue
            else:
                node = nxt[head]
                if node == head:
                    continue
            break
        else:
            return 0
        pfn = self.pfn(node)
        target = sz + fresh
        while k > target:
            self._split(a, pfn, k)
            k -= 1
        self._remove(node)
        if fresh:
            self._fill(a, pfn, sz, _FRESH | sz)
            self._push_back(a.heads[sz], node)
            pfn += 1 << sz
        self._fill(a, pfn, sz, self._alloc_status | sz)
        return self.virt(pfn)

    def _alloc(self, al: int, sz: int, flags: int) -> int:
        fresh = bool(flags & FLAG_FRESH)
        if fresh and not self._fmt2021:
            raise ModelError("FLAG_FRESH does not exist in format 2020")
        if max(al, sz) + fresh >= self._nlists:
            return 0
        wanted = flags & AREA_MASK & self.areas_mask
        if not flags & AREA_MASK:
            wanted = self.areas_mask
        for a in self.areas:
            if a is None or not wanted >> a.slot & 1:
                continue
            addr = self._alloc_in(a, al, sz, fresh)
            if addr:
                if not flags & FLAG_DONTZERO:
                    self._memory.zero(addr, 1 << (sz + self._shift))
                return addr
        return 0

    def alloc_pages_flags(self, order: int, flags: int = 0) -> int:
        return self._alloc(order, order, flags)

    def memalign_pages_flags(self, alignment: int, size: int, flags: int = 0) -> int:
        if alignment <= 0 or alignment & (alignment - 1):
            raise ModelError(f"alignment {alignment:#x} is not a power of two")
        ps = self.layout.page_size
        return self._alloc(get_order(-(-alignment // ps)), get_order(-(-size // ps)), flags)

    # ------------------------------------------------------------------ free
    def free_pages(self, addr: int) -> None:
        if not addr:
            return
        pfn = self.pfn(addr)
        a = self._area_of(pfn)
        if a is None or (addr - self.phys_offset) & (self.layout.page_size - 1):
            raise ModelError(f"free_pages({addr:#x}): not a page of any area")
        byte = a.meta[pfn - a.base]
        k = byte & 0x3F
        if byte & 0xC0 != self._alloc_status or pfn & ((1 << k) - 1):
            raise ModelError(f"free_pages({addr:#x}): not the first page of an allocated block "
                             f"(metadata byte {byte:#04x})")
        self._free_block(a, pfn, k)

    def _free_block(self, a: _Area, pfn: int, k: int) -> None:
        free = self._free_status
        self._fill(a, pfn, k, free | k)
        self._push_front(a.heads[k], self.virt(pfn))
        meta, base = a.meta, a.base
        while k + 1 < self._nlists:
            size = 1 << k
            if pfn & (2 * size - 1):
                lo, buddy = pfn - size, pfn - size
            else:
                lo, buddy = pfn, pfn + size
            if lo < base or lo + 2 * size > a.top:
                break
            b = meta[buddy - base]
            if b & 0x3F != k or not self._is_free(b):
                break
            self._remove(self.virt(lo + size))
            self._remove(self.virt(lo))
            k += 1
            self._fill(a, lo, k, free | k)
            self._push_front(a.heads[k], self.virt(lo))
            if self._fmt2021 and k > a.max_order:
                a.max_order = k
                self._dirty_desc = True
            pfn = lo

    # --------------------------------------------------------------- reserve
    def reserve_pages(self, addr: int, n: int) -> int:
        """0 when all n pages from physical addr were free and are now
        SPECIAL; -1 (and nothing taken) otherwise."""
        first = addr >> self._shift
        for j in range(n):
            pfn = first + j
            a = self._area_of(pfn)
            if a is None or not self._is_free(a.meta[pfn - a.base]):
                for done in range(j):
                    self._unreserve_one(first + done)
                return -1
            k = a.meta[pfn - a.base] & 0x3F
            while k > 0:
                self._split(a, pfn & ~((1 << k) - 1), k)
                k -= 1
            self._remove(self.virt(pfn))
            self._set_byte(a, pfn, self._special)
        return 0

    def unreserve_pages(self, addr: int, n: int) -> None:
        first = addr >> self._shift
        for j in range(n):
            self._unreserve_one(first + j)

    def _unreserve_one(self, pfn: int) -> None:
        a = self._area_of(pfn)
        if a is None or a.meta[pfn - a.base] != self._special:
            raise ModelError(f"unreserve_pages: pfn {pfn:#x} is not a special page")
        self._set_byte(a, pfn, self._alloc_status)
        self._free_block(a, pfn, 0)

    # ------------------------------------------------------ 2020 entry points
    def alloc_pages_area(self, areas: int, order: int) -> int:
        return self.alloc_pages_flags(order, areas & AREA_MASK)

    def alloc_pages(self, order: int) -> int:
        return self.alloc_pages_flags(order, 0)

    def alloc_page(self) -> int:
        return self.alloc_pages_flags(0, 0)

    def memalign_pages_area(self, areas: int, alignment: int, size: int) -> int:
        return self.memalign_pages_flags(alignment, size, areas & AREA_MASK)

    def memalign_pages(self, alignment: int, size: int) -> int:
        return self.memalign_pages_flags(alignment, size, 0)

    def alloc_pages_special(self, addr: int, n: int) -> int:
        return 0 if self.reserve_pages(addr, n) else self.virt(addr >> self._shift)

    def free_pages_special(self, addr: int, n: int) -> None:
        self.unreserve_pages(addr, n)

    page_alloc_init_area = init_area

    # ----------------------------------------------------------------- views
    def state(self) -> tuple[AreaState, ...]:
        """Every initialised area as a comparable value."""
        out = []
        for a in self.areas:
            if a is None:
                continue
            out.append(AreaState(a.slot, a.base, a.top, a.page_states,
                                 a.max_order if self._fmt2021 else None, bytes(a.meta),
                                 tuple(tuple(self.freelist(a.slot, k)) for k in range(self._nlists))))
        return tuple(out)

    def area(self, slot: int) -> _Area | None:
        return self.areas[slot]

    @classmethod
    def from_state(cls, layout: Layout, areas: list[AreaState], areas_mask: int, *,
                   memory: SparseMemory | None = None, areas_addr: int = DEFAULT_AREAS_ADDR,
                   mask_addr: int | None = None, phys_offset: int = 0) -> "Allocator":
        """An allocator that continues from a decoded state (replay, drive)."""
        al = cls(layout, memory, areas_addr=areas_addr, mask_addr=mask_addr,
                 phys_offset=phys_offset)
        for s in areas:
            start = al.pfn(s.page_states)
            meta = bytearray(s.metadata)
            if not al._memory.is_mapped(s.page_states, (s.top - start) << al._shift):
                al._memory.map(s.page_states, (s.top - start) << al._shift)
            al._memory.attach(s.page_states, meta)
            heads = [al.head(s.slot, k) for k in range(al._nlists)]
            a = _Area(s.slot, start, s.base, s.top, s.page_states, meta, heads)
            a.max_order = s.max_order or 0
            al.areas[s.slot] = a
            for h, nodes in zip(heads, s.freelists):
                al._next[h] = al._prev[h] = h
                al._dirty.add(h)
                for x in nodes:
                    al._push_back(h, x)
        al.areas_mask = areas_mask
        return al
