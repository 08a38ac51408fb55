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

from .errors import LayoutError

__all__ = [
    "ARCHES", "FORMATS", "Arch", "AreaStruct", "Encoding", "Layout", "Slot",
    "Status", "area_struct_for", "c_struct_offsets", "encoding_for",
    "layout_for", "slots_for",
]

FORMATS = ("2020", "2021")
GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Arch:
    name: str
    ptr_size: int            # bytes in a pointer / unsigned long
    endian: str              # "little" or "big"
    u64_align: int           # alignment of a 64-bit member inside a struct
    page_shift: int = 12
    gdb_arch: str = ""       # gdb's `set architecture` name
    elf_machine: str = ""    # pyelftools e_machine

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def nlists(self) -> int:
        """NLISTS = BITS_PER_LONG - PAGE_SHIFT."""
        return self.ptr_size * 8 - self.page_shift


ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("x86_64", 8, "little", 8, gdb_arch="i386:x86-64", elf_machine="EM_X86_64"),
        Arch("i386", 4, "little", 4, gdb_arch="i386", elf_machine="EM_386"),
        Arch("s390x", 8, "big", 8, gdb_arch="s390:64-bit", elf_machine="EM_S390"),
        Arch("aarch64", 8, "little", 8, gdb_arch="aarch64", elf_machine="EM_AARCH64"),
        Arch("arm", 4, "little", 8, gdb_arch="arm", elf_machine="EM_ARM"),
        Arch("riscv64", 8, "little", 8, gdb_arch="riscv:rv64", elf_machine="EM_RISCV"),
        Arch("ppc64", 8, "big", 8, page_shift=16, gdb_arch="powerpc:common64",
             elf_machine="EM_PPC64"),
    )
}


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

    def free_byte(self, order: int) -> int:
        return self.byte(Status.FREE, order)

    def fresh_byte(self, order: int) -> int:
        return self.byte(Status.FRESH if self.format == "2021" else Status.FREE, order)


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
    def endian(self) -> str:
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
        if nlists != a.nlists:
            raise LayoutError(f"freelists has {nlists} entries; {arch} with "
                              f"{a.page_size}-byte pages has {a.nlists}")
        struct = AreaStruct(size, base_off, base_size, top_off, page_states_off,
                            max_order_off, freelists_off, nlists, a.ptr_size)
        tree = "2021" if max_order_off is not None else "2020"
        slots = slots_for(arch, tree if max_areas != 6 else "2020")
        return Layout(a, _format(format), struct, slots, max_areas)


def _arch(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise LayoutError(f"unknown arch {name!r}: expected one of {', '.join(ARCHES)}") from None


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
    size, base, top, ps, mo, fl = BUILTIN_STRUCTS[(arch.name, tree)]
    return AreaStruct(size, base, 8 if tree == "2021" else arch.ptr_size, top, ps,
                      None if mo < 0 else mo, fl, arch.nlists, arch.ptr_size)


def _pfn(addr: int, arch: Arch) -> int:
    return addr >> arch.page_shift


def slots_for(arch_name: str, tree: str) -> tuple[Slot, ...]:
    """Area slots per arch and tree (lib/<arch>/asm/memory_areas.h)."""
    arch = _arch(arch_name)
    p = lambda addr: _pfn(addr, arch)  # noqa: E731
    if arch.name in ("x86_64", "i386"):
        if tree == "2021":
            return (Slot(0, "NORMAL", p(64 * GiB), None), Slot(1, "HIGH", p(4 * GiB), p(64 * GiB)),
                    Slot(2, "LOW", p(16 * MiB), p(4 * GiB)), Slot(3, "LOWEST", 0, p(16 * MiB)))
        return (Slot(0, "NORMAL", p(64 * GiB), None), Slot(1, "PAE_HIGH", p(4 * GiB), p(64 * GiB)),
                Slot(2, "LOW", 0, p(4 * GiB)))
    if arch.name == "s390x":
        return (Slot(0, "NORMAL", p(2 * GiB), None), Slot(1, "LOW", 0, p(2 * GiB)))
    return (Slot(0, "NORMAL", 0, None),)


def max_areas_for(arch_name: str, tree: str) -> int:
    if tree == "2020":
        return 6
    return {"x86_64": 4, "i386": 4, "s390x": 2}.get(arch_name, 1)


def layout_for(arch: str, format: str) -> Layout:
    """The built-in layout of a tree of that format for that arch."""
    a, f = _arch(arch), _format(format)
    return Layout(a, f, _builtin_struct(a, f), slots_for(arch, f), max_areas_for(arch, f))
