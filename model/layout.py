"""Where things are: arch parameters, `struct mem_area` offsets, byte encodings
and area slots for each (arch, format).

Two things vary independently (ALLOCATOR.md, "On-memory formats"): the struct
layout (2020: pointer-sized base/top, no max_order; 2021: 64-bit pfns and a
max_order byte) and the metadata byte encoding. A `Layout` carries both; the
built-in tables pair them, `Layout.from_offsets` lets DWARF decide the struct
and the caller decide the encoding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from .arch import ARCHES, Arch, arch as _arch
from .arch.base import Endian
from .errors import LayoutError

__all__ = [
    "ARCHES", "FORMATS", "Arch", "AreaStruct", "Encoding", "Layout", "Slot",
    "Status", "area_struct_for", "c_struct_offsets", "encoding_for",
    "layout_for", "slots_for",
]

FORMATS = ("2020", "2021")


class Status(enum.IntEnum):
    """What a metadata byte says a page is. INVALID: no valid encoding."""
    FRESH = 0
    FREE = 1
    ALLOCATED = 2
    SPECIAL = 3
    INVALID = 4

    @property
    def is_free(self) -> bool:
        return self in (Status.FRESH, Status.FREE)


@dataclass(frozen=True)
class Encoding:
    """The metadata byte encoding of one format.

    `table[b]` is (status, order) for every byte value b; order is the low six
    bits even when the byte is invalid, so a finding can quote it.
    """
    format: str
    nlists: int
    table: tuple = field(repr=False, compare=False, default=())
    free: tuple = field(repr=False, compare=False, default=())    # free[b]: b is a free block's

    @staticmethod
    def build(format: str, nlists: int) -> "Encoding":
        table = tuple(_classify(format, nlists, b) for b in range(256))
        return Encoding(format, nlists, table, tuple(st.is_free for st, _ in table))

    def byte(self, status: Status, order: int) -> int:
        """The byte a page of this status and order carries."""
        if self.format == "2021":
            return {Status.FRESH: 0x00, Status.FREE: 0x40, Status.ALLOCATED: 0x80,
                    Status.SPECIAL: 0xC0}[status] | order
        if status.is_free:
            return order
        if status is Status.ALLOCATED:
            return 0x40 | order
        if status is Status.SPECIAL:
            return 0x80 | order
        raise LayoutError(f"no byte for {status.name}")


def _classify(format: str, nlists: int, b: int) -> tuple[Status, int]:
    order = b & 0x3F
    bits = b & 0xC0
    if format == "2021":
        status = (Status.FRESH, Status.FREE, Status.ALLOCATED, Status.SPECIAL)[bits >> 6]
    else:
        status = {0x00: Status.FREE, 0x40: Status.ALLOCATED, 0x80: Status.SPECIAL,
                  0xC0: Status.INVALID}[bits]
    if order >= nlists:
        status = Status.INVALID
    return status, order


@dataclass(frozen=True)
class Slot:
    """An area slot: its number, name and the pfn range it stands for
    (`pfn_end` None: no upper bound)."""
    number: int
    name: str
    pfn_start: int
    pfn_end: int | None

    def contains(self, base: int, top: int) -> bool:
        return base >= self.pfn_start and (self.pfn_end is None or top <= self.pfn_end)


@dataclass(frozen=True)
class AreaStruct:
    """Offsets and sizes of `struct mem_area` and `struct linked_list`."""
    size: int
    base_off: int
    base_size: int           # base and top share a type
    top_off: int
    page_states_off: int
    max_order_off: int | None
    freelists_off: int
    nlists: int
    ptr_size: int

    @property
    def list_head_size(self) -> int:
        return 2 * self.ptr_size


@dataclass(frozen=True)
class Layout:
    arch: Arch
    format: str              # the byte encoding: "2020" or "2021"
    struct: AreaStruct
    slots: tuple[Slot, ...]
    max_areas: int
    encoding: Encoding = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.encoding is None:
            object.__setattr__(self, "encoding", encoding_for(self.format, self.arch.nlists))

    @property
    def page_size(self) -> int:
        return self.arch.page_size

    @property
    def page_shift(self) -> int:
        return self.arch.page_shift

    @property
    def ptr_size(self) -> int:
        return self.arch.ptr_size

    @property
    def endian(self) -> "Endian":
        return self.arch.endian

    @property
    def nlists(self) -> int:
        return self.struct.nlists

    @property
    def areas_size(self) -> int:
        return self.struct.size * self.max_areas

    def slot(self, n: int) -> Slot | None:
        for s in self.slots:
            if s.number == n:
                return s
        return None

    def area_bits(self, names: list[str]) -> int:
        """Flag bits for areas given by name (LOW, lowest) or slot number."""
        bits = 0
        for n in names:
            slot = next((s for s in self.slots if s.name.lower() == str(n).lower()), None)
            if slot is not None:
                bits |= 1 << slot.number
            elif str(n).isdigit() and int(n) < self.max_areas:
                bits |= 1 << int(n)
            else:
                raise LayoutError(f"no area {n!r} (areas: "
                                  f"{', '.join(s.name for s in self.slots)}, or a slot number)")
        return bits

    def with_format(self, format: str) -> "Layout":
        """The same struct and slots with another byte encoding (a bisect can
        land between the layout commit and the encoding commit)."""
        if format not in FORMATS:
            raise LayoutError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
        return replace(self, format=format, encoding=encoding_for(format, self.arch.nlists))

    @staticmethod
    def from_offsets(arch: str, format: str, *, size: int, base_off: int, base_size: int,
                     top_off: int, page_states_off: int, max_order_off: int | None,
                     freelists_off: int, nlists: int, max_areas: int) -> "Layout":
        """A layout from offsets someone read (gdb types, ELF DWARF)."""
        a = _arch(arch)
        shift = a.page_shift_for_nlists(nlists)
        if shift is None:
            raise LayoutError(f"freelists has {nlists} entries: no {arch} page size gives "
                              f"NLISTS {nlists} (BITS_PER_LONG {a.bits} - PAGE_SHIFT)")
        a = a.with_page_shift(shift)
        struct = AreaStruct(size, base_off, base_size, top_off, page_states_off,
                            max_order_off, freelists_off, nlists, a.ptr_size)
        tree = "2021" if max_order_off is not None else "2020"
        slots = slots_for(a, tree if max_areas != 6 else "2020")
        return Layout(a, _format(format), struct, slots, max_areas)


def _format(format: str) -> str:
    if format not in FORMATS:
        raise LayoutError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    return format


_ENCODINGS: dict[tuple[str, int], Encoding] = {}


def encoding_for(format: str, nlists: int) -> Encoding:
    key = (_format(format), nlists)
    if key not in _ENCODINGS:
        _ENCODINGS[key] = Encoding.build(format, nlists)
    return _ENCODINGS[key]


def c_struct_offsets(members: list[tuple[str, int, int]]) -> tuple[dict[str, int], int]:
    """Offsets and sizeof of a C struct by the natural alignment rules:
    members is [(name, size, alignment)]; arrays give their total size and
    their element's alignment."""
    offsets, off, align_max = {}, 0, 1
    for name, size, align in members:
        off = (off + align - 1) // align * align
        offsets[name] = off
        off += size
        align_max = max(align_max, align)
    return offsets, (off + align_max - 1) // align_max * align_max


def area_struct_for(arch: Arch, tree: str) -> AreaStruct:
    """`struct mem_area` of a tree computed from C rules (what DWARF would say)."""
    p = arch.ptr_size
    if tree == "2021":
        pfn = (8, arch.u64_align)
        members = [("base", *pfn), ("top", *pfn), ("page_states", p, p), ("max_order", 1, 1)]
    else:
        members = [("base", p, p), ("top", p, p), ("page_states", p, p)]
    members.append(("freelists", 2 * p * arch.nlists, p))
    offs, size = c_struct_offsets(members)
    return AreaStruct(size, offs["base"], 8 if tree == "2021" else p, offs["top"],
                      offs["page_states"], offs.get("max_order"), offs["freelists"],
                      arch.nlists, p)


# The struct tables as numbers, written out by hand so a test can hold the
# C-rule computation above to them (and DWARF to both).
BUILTIN_STRUCTS: dict[tuple[str, str], tuple[int, ...]] = {
    # (arch, tree): (size, base, top, page_states, max_order or -1, freelists)
    ("x86_64", "2021"): (864, 0, 8, 16, 24, 32),
    ("x86_64", "2020"): (856, 0, 8, 16, -1, 24),
    ("i386", "2021"): (184, 0, 8, 16, 20, 24),
    ("i386", "2020"): (172, 0, 4, 8, -1, 12),
    ("s390x", "2021"): (864, 0, 8, 16, 24, 32),
    ("s390x", "2020"): (856, 0, 8, 16, -1, 24),
    ("aarch64", "2021"): (864, 0, 8, 16, 24, 32),
    ("aarch64", "2020"): (856, 0, 8, 16, -1, 24),
    ("arm", "2021"): (184, 0, 8, 16, 20, 24),
    ("arm", "2020"): (172, 0, 4, 8, -1, 12),
    ("riscv64", "2021"): (864, 0, 8, 16, 24, 32),
    ("riscv64", "2020"): (856, 0, 8, 16, -1, 24),
    ("ppc64", "2021"): (800, 0, 8, 16, 24, 32),
    ("ppc64", "2020"): (792, 0, 8, 16, -1, 24),
}


def _builtin_struct(arch: Arch, tree: str) -> AreaStruct:
    if arch.page_shift != _arch(arch.name).page_shift:
        return area_struct_for(arch, tree)       # another page size: other NLISTS
    size, base, top, ps, mo, fl = BUILTIN_STRUCTS[(arch.name, tree)]
    return AreaStruct(size, base, 8 if tree == "2021" else arch.ptr_size, top, ps,
                      None if mo < 0 else mo, fl, arch.nlists, arch.ptr_size)


def slots_for(arch: "Arch | str", tree: str) -> tuple[Slot, ...]:
    """Area slots of a tree in pfns of the arch's page size."""
    a = _arch(arch) if isinstance(arch, str) else arch
    shift = a.page_shift
    return tuple(Slot(r.number, r.name, r.start >> shift,
                      None if r.end is None else r.end >> shift) for r in a.slots[tree])


def max_areas_for(arch: "Arch | str", tree: str) -> int:
    a = _arch(arch) if isinstance(arch, str) else arch
    return a.max_areas[tree]


def layout_for(arch: str, format: str, page_shift: int | None = None) -> Layout:
    """The built-in layout of a tree of that format for that arch (built
    with `page_shift`, default the arch's usual page size)."""
    a, f = _arch(arch), _format(format)
    if page_shift is not None:
        if page_shift not in a.page_shifts:
            sizes = ", ".join(f"{1 << s >> 10} KiB" for s in a.page_shifts)
            raise LayoutError(f"{arch} builds use {sizes} pages, not {1 << page_shift} bytes")
        a = a.with_page_shift(page_shift)
    return Layout(a, f, _builtin_struct(a, f), slots_for(a, f), max_areas_for(a, f))
