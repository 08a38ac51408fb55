"""The map of an area: what every picture of the allocator is drawn from
(the terminal map, the SVG map, the HTML report).

    pic = picture(snap, area, findings, from_addr=..., to_addr=..., cols=64, max_cells=512)
    pic.cells[i].main, .minority, .tone, .findings;  describe(pic, cell)

The grid is laid on absolute page frame numbers: a cell stands for
`cell_pages` pages (a power of two) starting at a multiple of it, and a
row for `cols` cells (a power of two too). So every cell is exactly where
a naturally aligned block of order log2(cell_pages) would be, the scale is
a round size, and row labels are round addresses. Pages of the row span
outside the drawn range are "outside" cells.

What a cell shows, from most to least prominent:
- its main class, the class holding most of its pages (free, allocated,
  special, invalid; a tie goes to the more telling one);
- for free cells, the tone: the order of the largest free block with a
  page in the cell. A run of unmerged single pages is tone 0, one large
  free block tone 5, whatever the cell size;
- the minority: the most telling other class present (invalid, special,
  allocated, then free), however few its pages: one allocated page in a
  thousand free ones still shows;
- the findings whose breaches fall in it (a folded run of breaches is
  spread over the cells its members fall in).

Work is per cell, not per page: `bytes.translate` classifies all pages in
C, and each cell costs one `bytes.count` when uniform (most cells of a
large area are), a few counts and a `max` over its bytes otherwise.
Nothing here reads memory, judges health or formats for a device.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocview.model.findings import Finding, Severity
from allocview.model.layout import Encoding, Status
from allocview.model.snapshot import AreaSnapshot, Snapshot

__all__ = ["CLASSES", "TONES", "Cell", "Picture", "picture", "area_findings", "tone",
           "tone_label", "describe", "human_size", "geometry", "class_tables"]

# Map classes in the order of how telling they are (least first): a tie
# for the main class, and the choice of minority, go to the later one.
FREE, ALLOCATED, SPECIAL, INVALID = range(4)
CLASSES = ("free", "allocated", "special", "invalid")
_CLASS_OF_STATUS = {Status.FRESH: FREE, Status.FREE: FREE, Status.ALLOCATED: ALLOCATED,
                    Status.SPECIAL: SPECIAL, Status.INVALID: INVALID}

# Free tones by the order of the largest free block: (first, last) order
# of each, last None = and above.
TONES = ((0, 0), (1, 2), (3, 5), (6, 8), (9, 11), (12, None))


def tone(order: int) -> int:
    for k, (lo, hi) in enumerate(TONES):
        if hi is None or order <= hi:
            return k
    return len(TONES) - 1


def human_size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:g} {unit}" if unit == "B" else f"{nbytes:.4g} {unit}"
        nbytes /= 1024
    return str(nbytes)


def tone_label(k: int, page_size: int) -> str:
    """The block sizes tone k stands for: "4 KiB", "8-16 KiB", ">= 16 MiB"."""
    lo, hi = TONES[k]
    if hi is None:
        return f">= {human_size(page_size << lo)}"
    if lo == hi:
        return human_size(page_size << lo)
    a, b = human_size(page_size << lo), human_size(page_size << hi)
    if a.split()[1] == b.split()[1]:
        a = a.split()[0]                          # "8-16 KiB"
    return f"{a}-{b}"


@dataclass(frozen=True)
class Cell:
    pfn: int                      # first pfn of the cell's span (a multiple of cell_pages)
    pages: int                    # pages of the drawn range in it; 0: an outside cell
    counts: tuple[int, ...] = (0, 0, 0, 0, 0)   # pages by Status: fresh, free, allocated,
    #                                             special, invalid
    free_order: int | None = None    # the largest free block with a page here, and
    free_block: int | None = None    # its first pfn
    alloc_order: int | None = None   # the same for allocated blocks
    alloc_block: int | None = None
    findings: tuple[tuple[int, int], ...] = ()   # (index in Picture.findings, breaches here)

    @property
    def class_pages(self) -> tuple[int, int, int, int]:
        c = self.counts
        return (c[0] + c[1], c[2], c[3], c[4])

    @property
    def main(self) -> int | None:
        """The class with the most pages (None: outside)."""
        if not self.pages:
            return None
        cp = self.class_pages
        return max(range(4), key=lambda k: (cp[k], k))

    @property
    def minority(self) -> int | None:
        """The most telling class present besides the main one."""
        cp, main = self.class_pages, self.main
        for k in (INVALID, SPECIAL, ALLOCATED, FREE):
            if k != main and cp[k]:
                return k
        return None

    @property
    def minority_pages(self) -> int:
        m = self.minority
        return 0 if m is None else self.class_pages[m]

    @property
    def tone(self) -> int | None:
        """The free tone of a cell whose main class is free."""
        return tone(self.free_order) if self.main == FREE and self.free_order is not None \
            else None


@dataclass(frozen=True)
class Picture:
    slot: int
    name: str
    page_shift: int
    phys_offset: int
    first: int                    # pfns drawn: [first, end)
    end: int
    cell_pages: int
    cols: int
    rows: int
    origin: int                   # first pfn of row 0 (a multiple of cols * cell_pages)
    cells: tuple[Cell, ...]       # rows * cols, row after row
    findings: tuple[Finding, ...]  # the area's findings with breaches in [first, end)

    def addr(self, pfn: int) -> int:
        return (pfn << self.page_shift) + self.phys_offset

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def row_pages(self) -> int:
        return self.cols * self.cell_pages

    def row_addr(self, r: int) -> int:
        return self.addr(self.origin + r * self.row_pages)

    def cell_index(self, pfn: int) -> int:
        return (pfn - self.origin) // self.cell_pages

    def scale(self) -> str:
        """"one cell = 256 KiB (64 pages), one row = 16 MiB"."""
        n = self.cell_pages
        return (f"one cell = {human_size(n * self.page_size)} ({n} page{'s' if n > 1 else ''}), "
                f"one row = {human_size(self.row_pages * self.page_size)}")


def geometry(first: int, end: int, cols: int, max_cells: int) -> tuple[int, int, int]:
    """(cell_pages, origin, rows): the smallest power-of-two cell that puts
    [first, end) in at most max_cells cells of rows aligned on their size."""
    n = 1
    while True:
        row = n * cols
        origin = first - first % row
        rows = max(1, -(-(end - origin) // row))
        if rows * cols <= max(max_cells, cols) or row >= 1 << 62:
            return n, origin, rows
        n *= 2


_TABLES: dict[tuple[str, int], tuple[bytes, bytes, bytes]] = {}


def class_tables(enc: Encoding) -> tuple[bytes, bytes, bytes]:
    """translate() tables per byte value: its Status; order + 1 when it is
    a free page's (0 otherwise); order + 1 when an allocated page's."""
    key = (enc.format, enc.nlists)
    got = _TABLES.get(key)
    if got is None:
        status = bytes(int(st) for st, _ in enc.table)
        free = bytes(o + 1 if enc.free[b] else 0 for b, (_, o) in enumerate(enc.table))
        alloc = bytes(o + 1 if st is Status.ALLOCATED else 0 for st, o in enc.table)
        got = _TABLES[key] = (status, free, alloc)
    return got


def area_findings(snap: Snapshot, area: AreaSnapshot, findings) -> tuple[list, list]:
    """(on the pages, elsewhere): the area's findings whose address is one
    of its decoded pages, and those whose address is not (its descriptor,
    a list head, none)."""
    on, off = [], []
    lo, hi = area.base, area.decoded_top
    for f in findings:
        if f.slot != area.slot:
            continue
        if f.address is not None and lo <= snap.pfn(f.address) < hi:
            on.append(f)
        else:
            off.append(f)
    return on, off


def _span(snap: Snapshot, f: Finding) -> tuple[int, int, int]:
    """(first pfn, last pfn, breaches) of a finding, a folded run too."""
    p = snap.pfn(f.address)
    if f.count > 1 and f.last is not None:
        return p, max(p, snap.pfn(f.last)), f.count
    return p, p, 1


def breaches_in(first: int, last: int, count: int, lo: int, hi: int) -> int:
    """How many of `count` breaches spread evenly over pfns [first, last]
    fall in [lo, hi)."""
    if count == 1 or last == first:
        return count if lo <= first < hi else 0
    span, gaps = last - first, count - 1
    k_lo = max(0, -(-(lo - first) * gaps // span))         # ceil
    k_hi = min(count, -(-(hi - first) * gaps // span))
    return max(0, k_hi - k_lo)


def picture(snap: Snapshot, area: AreaSnapshot, findings=(), *, from_addr: int | None = None,
            to_addr: int | None = None, cols: int = 128, max_cells: int = 8192) -> Picture | None:
    """The map of [from_addr, to_addr) of a decoded area (its whole pages
    by default), in at most max_cells cells of `cols` a row (cols is
    rounded down to a power of two); None when the range holds none of its
    pages. `findings`: check()'s, of any area (this area's are picked)."""
    cols = 1 << max(0, cols.bit_length() - 1)
    first, end = area.base, area.decoded_top
    if from_addr is not None:
        first = max(first, snap.pfn(from_addr))
    if to_addr is not None:
        end = min(end, snap.pfn(to_addr - 1) + 1)     # every page [from, to) touches
    if end <= first or not area.decoded:
        return None
    n, origin, rows = geometry(first, end, cols, max_cells)
    on, _ = area_findings(snap, area, findings)
    spans = [(f, _span(snap, f)) for f in on]
    spans = [(f, s) for f, s in spans if s[0] < end and s[1] >= first]
    marks = _finding_cells([s for _, s in spans], origin, n, first, end, rows * cols)
    cells = _cells(area, snap.layout.encoding, first, end, n, origin, rows * cols, marks)
    return Picture(area.slot, area.name, snap.layout.page_shift, snap.phys_offset, first, end,
                   n, cols, rows, origin, tuple(cells), tuple(f for f, _ in spans))


def _finding_cells(spans, origin: int, n: int, first: int, end: int,
                   ncells: int) -> dict[int, list[tuple[int, int]]]:
    """cell index -> [(finding index, breaches in the cell)]."""
    marks: dict[int, list[tuple[int, int]]] = {}
    for i, (p0, p1, count) in enumerate(spans):
        c0 = (max(p0, first) - origin) // n
        c1 = (min(p1, end - 1) - origin) // n
        for c in range(max(c0, 0), min(c1, ncells - 1) + 1):
            lo = origin + c * n
            k = breaches_in(p0, p1, count, max(lo, first), min(lo + n, end))
            if k:
                marks.setdefault(c, []).append((i, k))
    return marks


def _cells(area: AreaSnapshot, enc: Encoding, first: int, end: int, n: int, origin: int,
           ncells: int, marks: dict) -> list[Cell]:
    status_t, free_t, alloc_t = class_tables(enc)
    raw = area.metadata[first - area.base:end - area.base]
    st = raw.translate(status_t)
    fo = raw.translate(free_t)
    ao = raw.translate(alloc_t)
    count, find = st.count, fo.find
    out = []
    for c in range(ncells):
        lo_pfn = origin + c * n
        lo, hi = max(lo_pfn, first) - first, min(lo_pfn + n, end) - first
        if hi <= lo:
            out.append(Cell(lo_pfn, 0))
            continue
        size = hi - lo
        s0 = st[lo]
        if count(s0, lo, hi) == size:              # uniform: one status, the common case
            counts = [0, 0, 0, 0, 0]
            counts[s0] = size
            f_ord = fo[lo] if fo[lo] and fo.count(fo[lo], lo, hi) == size else None
            a_ord = ao[lo] if ao[lo] and ao.count(ao[lo], lo, hi) == size else None
        else:
            counts = [count(s, lo, hi) for s in range(5)]
            f_ord = a_ord = None
        if f_ord is None and (counts[0] or counts[1]):
            f_ord = max(fo[lo:hi])
        if a_ord is None and counts[2]:
            a_ord = max(ao[lo:hi])
        fb = ab = None
        if f_ord:
            fb = _block_start(first + find(f_ord, lo, hi), f_ord - 1)
        if a_ord:
            ab = _block_start(first + ao.find(a_ord, lo, hi), a_ord - 1)
        out.append(Cell(lo_pfn, size, tuple(counts), f_ord - 1 if f_ord else None, fb,
                        a_ord - 1 if a_ord else None, ab, tuple(marks.get(c, ()))))
    return out


def _block_start(pfn: int, order: int) -> int:
    return pfn & ~((1 << order) - 1)


def worst(pic: Picture, cell: Cell) -> Severity | None:
    """The most severe finding in the cell."""
    return max((pic.findings[i].severity for i, _ in cell.findings), default=None)


def describe(pic: Picture, cell: Cell) -> str:
    """Hover text: the address range, the page mix, the largest block and
    its order, the findings."""
    ps = pic.page_size
    lo = max(cell.pfn, pic.first)
    lines = [f"[{pic.addr(lo):#x}, {pic.addr(lo + cell.pages):#x}) {cell.pages} "
             f"page{'s' if cell.pages != 1 else ''}, {human_size(cell.pages * ps)}"]
    c = cell.counts
    mix = [f"{name} {c[k]}" for k, name in ((0, "fresh"), (1, "free"), (2, "allocated"),
                                            (3, "special"), (4, "invalid")) if c[k]]
    lines.append(", ".join(mix))
    if cell.free_order is not None:
        lines.append(f"largest free block {pic.addr(cell.free_block):#x} order {cell.free_order}"
                     f" ({human_size(ps << cell.free_order)})")
    if cell.alloc_order is not None and (cell.free_order is None or cell.pages == 1):
        lines.append(f"largest allocated block {pic.addr(cell.alloc_block):#x} order "
                     f"{cell.alloc_order} ({human_size(ps << cell.alloc_order)})")
    for i, k in cell.findings:
        f = pic.findings[i]
        lines.append(f"{f.severity} {f.code}" + (f" x{k}" if k > 1 else "")
                     + (f": {f.message}" if f.count == 1 else ""))
    return "\n".join(lines)
