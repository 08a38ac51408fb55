"""Seeded corruption of allocator images, for the fuzz test and its bench
figure: a healthy image (the reference allocator's, or a guest dump's)
with a few bytes changed where they matter most, as an overlay that never
copies the image.

Mutation kinds: metadata (bytes and runs of the page states), lists
(a node's prev or next: self, another node, a head, garbage, NULL),
cycles (a next leading back into its own list), descriptors (base, top,
page_states, max_order, a head), masks (areas_mask). `fuzz_one` decodes,
checks and reports one image and says what it cost.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field

from .assess import assess
from .check import check, errors
from .errors import MemoryReadError
from .layout import Layout
from .memory import Memory, ram_ranges
from .report import report
from .snapshot import Snapshot, decode
from .stats import stats

__all__ = ["Patched", "Image", "mutate", "fuzz_one", "FuzzResult", "KINDS"]

KINDS = ("metadata", "lists", "cycles", "descriptors", "masks")


class Patched:
    """`inner` with some bytes replaced; counts reads and bytes (the work a
    decode does, bounded by what the guest has)."""

    def __init__(self, inner: Memory, patches: dict[int, bytes]):
        self.inner = inner
        self.patches = sorted(patches.items())
        self.reads = 0
        self.bytes = 0

    def read(self, addr: int, size: int) -> bytes:
        self.reads += 1
        self.bytes += max(size, 0)
        data = self.inner.read(addr, size)
        for p, new in self.patches:
            lo, hi = max(p, addr), min(p + len(new), addr + size)
            if lo < hi:
                buf = bytearray(data)
                buf[lo - addr:hi - addr] = new[lo - p:hi - p]
                data = bytes(buf)
        return data

    def ram_ranges(self):
        return ram_ranges(self.inner)


@dataclass
class Image:
    """A healthy image and what its decode says is where."""
    name: str
    memory: Memory
    layout: Layout
    areas_addr: int
    mask_addr: int
    format: str                        # the true format
    snapshot: Snapshot = field(init=False)

    def __post_init__(self):
        self.snapshot = decode(self.memory, self.layout, self.areas_addr, self.mask_addr)


def _word(lay: Layout) -> struct.Struct:
    e = "<" if lay.endian == "little" else ">"
    return struct.Struct(e + ("Q" if lay.ptr_size == 8 else "I"))


def mutate(img: Image, rnd: random.Random, kind: str) -> tuple[dict[int, bytes], str]:
    """Patches for one corruption of `kind`, and a word on what it is."""
    lay, snap = img.layout, img.snapshot
    w = _word(lay)
    areas = [a for a in snap.areas if a.decoded]
    a = rnd.choice(areas)
    ps = lay.page_size

    def garbage() -> int:
        return rnd.choice((0, rnd.getrandbits(8 * lay.ptr_size), rnd.getrandbits(16) * ps,
                           snap.virt(a.top) + rnd.randrange(1, 1 << 12) * ps, 0xFFFF_FFFF))

    if kind == "metadata":
        i = rnd.randrange(len(a.metadata))
        n = rnd.choice((1, 1, 1, 2, 4, 64, 4096))
        b = rnd.choice((rnd.randrange(256), 0x00, 0x40, 0x80, 0xC0, a.metadata[i] ^ 0x40,
                        a.metadata[i] ^ 0x01))
        return {a.page_states + i: bytes([b]) * min(n, len(a.metadata) - i)}, f"meta {b:#04x}x{n}"
    nodes = [(k, n) for k, wk in enumerate(a.freelists) for n in wk.nodes]
    if kind in ("lists", "cycles") and nodes:
        k, node = rnd.choice(nodes)
        same = a.freelists[k].nodes
        if kind == "cycles":
            target = rnd.choice(same[:same.index(node) + 1])
            return {node + lay.ptr_size: w.pack(target)}, "cycle"
        field_off = rnd.choice((0, lay.ptr_size))
        head = a.freelists[k].head
        other = rnd.choice(nodes)[1]
        value = rnd.choice((node, other, head, head + lay.struct.list_head_size, garbage(),
                            node + rnd.choice((1, 8, ps))))
        return {node + field_off: w.pack(value & ((1 << 8 * lay.ptr_size) - 1))}, "node"
    if kind == "masks":
        value = rnd.choice((0, rnd.getrandbits(32), (snap.areas_mask or 0) ^ (1 << rnd.randrange(8)),
                            1 << rnd.randrange(32)))
        return {img.mask_addr: value.to_bytes(4, lay.endian)}, f"mask {value:#x}"
    s = lay.struct
    d = a.desc_addr
    choice = rnd.randrange(5)
    wide = struct.Struct(("<" if lay.endian == "little" else ">")
                         + ("Q" if s.base_size == 8 else "I"))
    big = 1 << (8 * s.base_size)
    if choice == 0:
        v = rnd.choice((a.top + rnd.randrange(1, 1 << 20), a.top << rnd.randrange(1, 8),
                        a.top - rnd.randrange(1, 64), rnd.getrandbits(8 * s.base_size),
                        a.top ^ (1 << rnd.randrange(8 * s.base_size))))
        return {d + s.top_off: wide.pack(v % big)}, f"top {v % big:#x}"
    if choice == 1:
        v = rnd.choice((a.base + rnd.randrange(-8, 64), 0, rnd.getrandbits(8 * s.base_size)))
        return {d + s.base_off: wide.pack(v % big)}, f"base {v % big:#x}"
    if choice == 2:
        v = rnd.choice((a.page_states + rnd.randrange(-8192, 8192), garbage()))
        return {d + s.page_states_off: w.pack(v % (1 << 8 * lay.ptr_size))}, "page_states"
    if choice == 3 and s.max_order_off is not None:
        return {d + s.max_order_off: bytes([rnd.randrange(256)])}, "max_order"
    k = rnd.randrange(lay.nlists)
    head = d + s.freelists_off + k * s.list_head_size
    return {head + rnd.choice((0, lay.ptr_size)): w.pack(garbage() % (1 << 8 * lay.ptr_size))}, \
        "head"


@dataclass(frozen=True)
class FuzzResult:
    what: str
    seconds: float
    reads: int
    bytes: int
    errors: int
    unchecked: str | None
    format: str | None
    changed: bool                  # the decoded state differs from the healthy one


def fuzz_one(img: Image, patches: dict[int, bytes], what: str) -> FuzzResult:
    """Decode, assess, check, stats and report of one corrupted image;
    exceptions propagate (the test fails on any)."""
    mem = Patched(img.memory, patches)
    t = time.perf_counter()
    snap = decode(mem, img.layout, img.areas_addr, img.mask_addr)
    unchecked = assess(snap)
    found = check(snap)
    stats(snap)
    report(snap, found)
    took = time.perf_counter() - t
    changed = snap.areas_mask != img.snapshot.areas_mask or snap.state() != img.snapshot.state()
    return FuzzResult(what, took, mem.reads, mem.bytes, len(errors(found)),
                      None if unchecked is None else unchecked.kind,
                      snap.layout.format if snap.areas_mask is not None else None, changed)


def healthy_cost(img: Image) -> tuple[float, int, int]:
    """(seconds, reads, bytes) of the healthy image, the bound's base."""
    mem = Patched(img.memory, {})
    t = time.perf_counter()
    snap = decode(mem, img.layout, img.areas_addr, img.mask_addr)
    found = check(snap)
    stats(snap)
    report(snap, found)
    return time.perf_counter() - t, mem.reads, mem.bytes


def readable_pages(img: Image) -> int:
    """Pages of guest RAM the image has (what any decode may read)."""
    ram = ram_ranges(img.memory)
    if not ram:
        raise MemoryReadError(0, 0, "the image does not say where RAM is")
    return sum(hi - lo for lo, hi in ram) >> img.layout.page_shift
