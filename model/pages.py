"""Metadata bytes -> blocks (lib/alloc_page.c's `page_states`).

The scan walks runs of identical bytes, not pages: a healthy area is a few
runs per free block however large it is, so 4 M metadata bytes decode in
milliseconds. Anything that breaks the block structure is recorded as a
`BlockDefect` and the scan goes on after the broken block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate, repeat

from .layout import Encoding, Status

__all__ = ["BlockDefect", "BlockMap", "EMPTY_BLOCKS", "scan_blocks", "block_at", "positions"]



# Per byte value: a regex matching a run of it (sre scans a literal repeat
# in a tight C loop) and, built on first use, a 4 KiB block of it for runs
# long enough that memcmp (bytes.startswith) beats that loop.
_RUN_RE = [re.compile(re.escape(bytes([b])) + b"*") for b in range(256)]
_BLOCK = 4096
_blocks: dict[int, bytes] = {}


def run_end(meta: bytes, i: int) -> int:
    """The index after the run of identical bytes that starts at i.

    One regex match for a run under 4 KiB; longer runs go 4 KiB per
    memcmp. On a fragmented 4 MB area this is 3.5x faster than galloping
    with bytes.count, and 7x on a uniform one (scripts/bench.py decode).
    """
    b = meta[i]
    # `b*` always matches: no None check in the hottest loop
    end = _RUN_RE[b].match(meta, i, i + _BLOCK).end()  # type: ignore[union-attr]
    return end if end < i + _BLOCK else _long_run_end(meta, b, end)


def _long_run_end(meta: bytes, b: int, end: int) -> int:
    """The end of a run of byte b known to reach at least `end`."""
    block = _blocks.get(b)
    if block is None:
        block = _blocks[b] = bytes([b]) * _BLOCK
    starts = meta.startswith
    while starts(block, end):
        end += _BLOCK
    return _RUN_RE[b].match(meta, end).end()  # type: ignore[union-attr]


@dataclass(frozen=True)
class BlockDefect:
    kind: str          # a finding code: bad-byte, block-inconsistent, ...
    pfn: int           # first page of the broken block or run
    npages: int
    byte: int          # the byte that defines it (the first page's)
    other: tuple[int, int] | None = None   # (pfn, byte) of the first page that differs


@dataclass(frozen=True)
class BlockMap:
    """The blocks of one area.

    Free blocks of order 1 and above are listed in `free_high` (first pfn ->
    byte, ascending). Free order-0 blocks are not listed one by one: every
    page carrying a valid free order-0 byte is one (a fragmented 16 GiB area
    has millions), so `free_mask0()` gives them as a byte per page, and
    `free` builds the whole pfn -> byte map only for whoever asks.
    Allocated blocks are only counted.
    """
    pages: dict[Status, int]
    blocks: dict[Status, int]
    free_high: dict[int, int] = field(repr=False)
    special: tuple[int, ...] = field(repr=False)
    defects: tuple[BlockDefect, ...] = ()
    # pages per metadata byte value, whatever the encoding: format
    # detection reads this instead of passing over the bytes again
    byte_pages: dict[int, int] = field(default_factory=dict, repr=False)
    meta: bytes = field(default=b"", repr=False, compare=False)
    base: int = 0
    encoding: Encoding | None = field(default=None, repr=False, compare=False)

    def free_mask0(self) -> bytes:
        """One byte per page: 1 where a free order-0 block is, else 0."""
        got = self.__dict__.get("_mask0")
        if got is None:
            assert self.encoding is not None, "free_mask0 of a BlockMap built without bytes"
            got = self.meta.translate(_order0(self.encoding).free_table)
            swallowed = [d for d in self.defects if d.kind == "block-inconsistent"]
            if swallowed:             # pages inside a broken block are not blocks
                m = bytearray(got)
                for d in swallowed:
                    i = d.pfn - self.base
                    m[i:i + d.npages] = bytes(len(m[i:i + d.npages]))
                got = bytes(m)
            object.__setattr__(self, "_mask0", got)
        return got

    def free_at(self, pfn: int) -> int | None:
        """The byte of the free block that starts at pfn, or None."""
        i = pfn - self.base
        if 0 <= i < len(self.meta) and self.free_mask0()[i]:
            return self.meta[i]
        return self.free_high.get(pfn)

    @property
    def free0_count(self) -> int:
        return self.free_mask0().count(1)

    @property
    def free_count(self) -> int:
        return self.free0_count + len(self.free_high)

    @property
    def free(self) -> dict[int, int]:
        """Every free block: first pfn -> byte, ascending (built on demand)."""
        got = self.__dict__.get("_free")
        if got is None:
            zeros = positions(self.free_mask0(), 1, self.base)
            meta, base = self.meta, self.base
            low = dict(zip(zeros, map(meta.__getitem__, map((-base).__add__, zeros))))
            got = dict(sorted({**low, **self.free_high}.items())) if self.free_high else low
            object.__setattr__(self, "_free", got)
        return got

    def free_by_order(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        zeros = positions(self.free_mask0(), 1, self.base)
        if zeros:
            out[0] = zeros
        for pfn, byte in self.free_high.items():
            out.setdefault(byte & 0x3F, []).append(pfn)
        return out

    def free_counts(self) -> dict[int, int]:
        """Free blocks per order."""
        out: dict[int, int] = {}
        n0 = self.free0_count
        if n0:
            out[0] = n0
        for byte in self.free_high.values():
            out[byte & 0x3F] = out.get(byte & 0x3F, 0) + 1
        return out



EMPTY_BLOCKS = BlockMap({}, {}, {}, ())     # an area that was not decoded


def positions(mask: bytes, value: int, base: int = 0) -> list[int]:
    """base + i for every i where mask[i] == value, ascending, in C loops
    (split and accumulate: millions of positions in a fraction of a second)."""
    if value not in mask:
        return []
    pieces = mask.split(bytes([value]))
    pieces.pop()
    return list(map((base - 1).__add__, accumulate(map((1).__add__, map(len, pieces)))))


# Regions of order-0 pages shorter than this go through the run loop;
# longer ones are counted and located in bulk.
_BULK = 64


class _Order0:
    """Bulk handling of order-0 bytes in one encoding: every such page is a
    block by itself, so a region of them needs no run walk, only counts and
    the positions of free and special pages (a fragmented 16 GiB area is
    millions of one-page runs)."""

    def __init__(self, enc: Encoding):
        table = enc.table
        self.values = [b for b in range(256)
                       if table[b][1] == 0 and table[b][0] is not Status.INVALID]
        cls = b"".join(re.escape(bytes([b])) for b in self.values)
        self.other = re.compile(b"[^" + cls + b"]")        # where a region ends
        free = [b for b in self.values if enc.free[b]]
        special = [b for b in self.values if table[b][0] is Status.SPECIAL]
        self.special = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in special)
                                  + b"]") if special else None
        self.status = {b: table[b][0] for b in self.values}
        self.free_table = bytes(1 if b in free else 0 for b in range(256))


_ORDER0: dict[tuple[str, int], _Order0] = {}


def _order0(enc: Encoding) -> _Order0:
    key = (enc.format, enc.nlists)
    got = _ORDER0.get(key)
    if got is None:
        got = _ORDER0[key] = _Order0(enc)
    return got


def scan_blocks(meta: bytes, base: int, enc: Encoding, area_pages: int | None = None) -> BlockMap:
    """Decode `meta` (page_states[0 : top - base]) of an area whose first
    usable pfn is `base`. `area_pages`: the area's size when `meta` is only
    its first part (an area that runs past the end of RAM): a block cut by
    the end of `meta` but not by the area's end ends the scan, unjudged."""
    table = enc.table
    is_free = enc.free
    n = len(meta)
    zero = _order0(enc)
    is_order0 = [False] * 256
    for b in zero.values:
        is_order0[b] = True
    # counters as lists (by Status value, by byte): cheaper than dicts in
    # the loop, which runs once per run of equal bytes
    npages = [0] * len(Status)
    nblocks = [0] * len(Status)
    free: dict[int, int] = {}
    special: list[int] = []
    defects: list[BlockDefect] = []
    hist = [0] * 256
    runs = _RUN_RE
    i = 0
    while i < n:
        b = meta[i]
        if is_order0[b]:
            m = zero.other.search(meta, i)
            j = n if m is None else m.start()
            if j - i >= _BULK:
                _bulk_order0(meta, i, j, base, zero, npages, nblocks, hist, special)
                i = j
                continue
        end = runs[b].match(meta, i, i + _BLOCK).end()  # type: ignore[union-attr]  # run_end
        if end == i + _BLOCK:
            end = _long_run_end(meta, b, end)
        status, order = table[b]
        pfn = base + i
        if status is Status.INVALID:
            hist[b] += end - i
            j = end
            while j < n and table[meta[j]][0] is Status.INVALID:
                k = run_end(meta, j)
                hist[meta[j]] += k - j
                j = k
            defects.append(BlockDefect("bad-byte", pfn, j - i, b))
            npages[Status.INVALID] += j - i
            i = j
            continue
        if status is Status.SPECIAL:
            if order:
                defects.append(BlockDefect("special-order", pfn, end - i, b))
            special.extend(range(pfn, pfn + end - i))
            npages[status] += end - i
            nblocks[status] += end - i
            hist[b] += end - i
            i = end
            continue
        size = 1 << order
        if pfn & (size - 1):
            take = min(end - i, size)
            defects.append(BlockDefect("block-misaligned", pfn, take, b))
        elif i + size > n:
            take = end - i
            if area_pages is not None and i + size <= area_pages:
                hist[b] += take               # cut by the end of what was read
                break
            defects.append(BlockDefect("block-outside-area", pfn, take, b))
        elif (whole := (end - i) >> order):
            take = whole << order
            if is_free[b] and order:         # order 0: free_mask0() has them
                if whole == 1:
                    free[pfn] = b
                else:
                    free.update(zip(range(pfn, pfn + take, size), repeat(b, whole)))
            nblocks[status] += whole
        else:
            # The run stops inside the block: one finding for the whole block.
            defects.append(BlockDefect("block-inconsistent", pfn, size, b, (base + end, meta[end])))
            if status.is_free:
                free[pfn] = b
            nblocks[status] += 1
            npages[status] += size
            k = i
            while k < i + size:           # the other bytes inside count as what they are
                e = min(run_end(meta, k), i + size)
                hist[meta[k]] += e - k
                k = e
            i += size
            continue
        npages[status] += take
        hist[b] += take
        i += take
    pages = {st: npages[st] for st in Status}
    blocks = {st: nblocks[st] for st in Status}
    return BlockMap(pages, blocks, free, tuple(special), tuple(defects),
                    {b: c for b, c in enumerate(hist) if c}, meta, base, enc)


def _bulk_order0(meta: bytes, i: int, j: int, base: int, zero: _Order0, npages: list,
                 nblocks: list, hist: list, special: list) -> None:
    """Pages [i, j) all carry valid order-0 bytes: count them and list the
    special ones, in C loops (bytes.count, a regex scan); the free ones are
    free_mask0()'s."""
    for b in zero.values:
        c = meta.count(b, i, j)
        if c:
            hist[b] += c
            st = zero.status[b]
            npages[st] += c
            nblocks[st] += c
    if zero.special is not None:
        special.extend(map(base.__add__, map(_START, zero.special.finditer(meta, i, j))))


_START = re.Match.start


def block_at(meta: bytes, base: int, pfn: int, enc: Encoding) -> tuple[int, int] | None:
    """(first pfn, byte) of the healthy block that contains pfn, or None
    when no aligned block whose pages all carry one byte covers it."""
    i = pfn - base
    if not 0 <= i < len(meta):
        return None
    for order in range(enc.nlists):
        start = pfn & ~((1 << order) - 1)
        j = start - base
        if j < 0:
            break
        b = meta[j]
        status, o = enc.table[b]
        if status is not Status.INVALID and o == order and j + (1 << o) <= len(meta) \
                and meta.count(b, j, j + (1 << o)) == 1 << o:
            return start, b
    return None
