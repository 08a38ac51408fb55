"""Write guest images as the files the sources read, for tests and benches:
QEMU-style ELF cores (`write_elf_dump`), raw pmemsave files (`write_raw`)
and shared RAM files (`write_memfile`).

Files are sparse: only nonzero data is written and the rest is a hole, so a
16 GiB guest's dump costs what its touched pages cost. Writing ELF with
struct is fine; reading it is pyelftools' job (allocview.sources.dump).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Union

from elftools.elf.enums import ENUM_E_MACHINE

from allocview.model.arch import ARCHES
from allocview.model.memory import SparseMemory

from .sources.memfile import ram_extents, x86_below_4g

__all__ = ["Segment", "image_pieces", "image_segments", "write_elf_dump", "write_raw",
           "write_memfile", "E_MACHINE"]

# e_machine numbers by arch, from the arch table's pyelftools names
E_MACHINE = {a.name: ENUM_E_MACHINE[a.elf_machine] for a in ARCHES.values()}
PT_LOAD, PT_NOTE, ET_CORE, PN_XNUM = 1, 4, 4, 0xFFFF


@dataclass(frozen=True)
class Segment:
    """Guest physical [phys, phys + size); `pieces` are (offset in the
    segment, bytes), everything else is zero."""
    phys: int
    size: int
    pieces: tuple[tuple[int, bytes], ...] = ()


SegmentLike = Union[Segment, tuple[int, Union[bytes, bytearray, int]]]


def _segment(s: SegmentLike) -> Segment:
    if isinstance(s, Segment):
        return s
    phys, data = s
    if isinstance(data, int):
        return Segment(phys, data)
    return Segment(phys, len(data), ((0, bytes(data)),))


def image_pieces(memory: SparseMemory, lo: int, hi: int) -> Iterator[tuple[int, bytes]]:
    """(address, bytes) of the data a SparseMemory holds in [lo, hi): its
    touched chunks, then its attached buffers (which win where both are),
    all-zero pieces left out."""
    step = SparseMemory.CHUNK
    for key in sorted(memory._chunks):
        a = key * step
        s, e = max(a, lo), min(a + step, hi)
        if s < e:
            data = bytes(memory._chunks[key][s - a:e - a])
            if data.count(0) != len(data):
                yield s, data
    for base, buf in memory._attached:
        s, e = max(base, lo), min(base + len(buf), hi)
        for p in range(s, e, step):
            data = bytes(buf[p - base:min(p + step, e) - base])
            if data.count(0) != len(data):
                yield p, data


def image_segments(memory: SparseMemory, phys_offset: int = 0) -> list[Segment]:
    """The mapped ranges of a reference allocator's image (`al.memory`) as
    physical segments: one per run of adjacent or overlapping ranges."""
    merged: list[list[int]] = []
    for lo, hi in sorted(memory._ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        pieces = tuple((a - lo, d) for a, d in image_pieces(memory, lo, hi))
        out.append(Segment(lo - phys_offset, hi - lo, pieces))
    return out


# The note a partial image carries (allocview's saved states): its
# segments are the bytes allocview read, not guest RAM.
PARTIAL_NOTE = "ALLOCVIEW"
PARTIAL_TYPE = 0x4156


def write_elf_dump(path: str, segments: list[SegmentLike], *, arch: str = "x86_64",
                   sparse: bool = True, elfclass: int | None = None,
                   align: int = 4096, partial: bool = False) -> None:
    """An ELF core like dump-guest-memory's (paging=false): a PT_NOTE, then
    one PT_LOAD per segment with p_paddr = guest physical address.

    segments: Segment, (phys, bytes) or (phys, size) for zeros. elfclass 32
    or 64 (default: 32 for 32-bit arches). sparse=False writes the zeros.
    partial: the segments are pieces of guest memory, not all of its RAM
    (a saved state): an ALLOCVIEW note says so."""
    segs = [_segment(s) for s in segments]
    a = ARCHES[arch]
    elfclass = elfclass or (64 if a.ptr_size == 8 else 32)
    e = "<" if a.endian == "little" else ">"
    if elfclass == 64:
        ehdr, phdr = struct.Struct(e + "16sHHIQQQIHHHHHH"), struct.Struct(e + "IIQQQQQQ")
        shdr = struct.Struct(e + "IIQQQQIIQQ")
    else:
        ehdr, phdr = struct.Struct(e + "16sHHIIIIIHHHHHH"), struct.Struct(e + "IIIIIIII")
        shdr = struct.Struct(e + "IIIIIIIIII")
    nph = 1 + len(segs)
    # More than 0xfffe program headers (a saved state of many list nodes):
    # e_phnum = PN_XNUM and the count goes in section header 0's sh_info.
    xnum = nph >= PN_XNUM
    shoff = ehdr.size + nph * phdr.size if xnum else 0
    ident = b"\x7fELF" + bytes((elfclass // 32, 1 if e == "<" else 2, 1)) + bytes(9)
    header = ehdr.pack(ident, ET_CORE, E_MACHINE[arch], 1, 0, ehdr.size, shoff, 0, ehdr.size,
                       phdr.size, PN_XNUM if xnum else nph, shdr.size if xnum else 0,
                       1 if xnum else 0, 0)
    tables = ehdr.size + nph * phdr.size + (shdr.size if xnum else 0)
    note = _note(e, PARTIAL_NOTE, PARTIAL_TYPE, b"partial\0") if partial else b"\0"
    off = (tables + len(note) + align - 1) // align * align
    phdrs = [_phdr(phdr, elfclass, PT_NOTE, 0, tables, 0, 0, len(note))]
    offsets = []
    for s in segs:
        # page-align big segments (mmap-friendly, like QEMU); pack small ones
        step = align if s.size >= align else 8
        off = (off + step - 1) // step * step
        offsets.append(off)
        phdrs.append(_phdr(phdr, elfclass, PT_LOAD, 7, off, 0, s.phys, s.size))
        off += s.size
    with open(path, "wb") as f:
        f.write(header + b"".join(phdrs))
        if xnum:
            f.write(shdr.pack(0, 0, 0, 0, 0, 0, 0, nph, 0, 0))
        f.write(note)
        for s, base in zip(segs, offsets):
            if not sparse:
                _write_zeros(f, base, s.size)
            for p, data in s.pieces:
                f.seek(base + p)
                f.write(data)
        f.truncate(off)


def _note(e: str, name: str, kind: int, desc: bytes) -> bytes:
    raw = name.encode() + b"\0"
    pad = (lambda b: b + bytes(-len(b) % 4))
    return struct.pack(e + "III", len(raw), len(desc), kind) + pad(raw) + pad(desc)


def _phdr(phdr: struct.Struct, elfclass: int, p_type: int, flags: int, offset: int,
          vaddr: int, paddr: int, size: int) -> bytes:
    if elfclass == 64:
        return phdr.pack(p_type, flags, offset, vaddr, paddr, size, size, 0)
    return phdr.pack(p_type, offset, vaddr, paddr, size, size, flags, 0)


def _write_zeros(f, offset: int, size: int) -> None:
    block = bytes(1 << 20)
    f.seek(offset)
    while size > 0:
        n = min(size, len(block))
        f.write(block[:n])
        size -= n


def write_raw(path: str, memory: SparseMemory, base: int, size: int) -> None:
    """A raw file like `pmemsave base size`: byte i is address base + i."""
    with open(path, "wb") as f:
        for a, data in image_pieces(memory, base, base + size):
            f.seek(a - base)
            f.write(data)
        f.truncate(size)


def write_memfile(path: str, memory: SparseMemory, ram_size: int, *, machine: str = "pc",
                  below_4g: int | None = None) -> None:
    """A memory-backend-file RAM file of `ram_size` bytes holding `memory`
    placed as QEMU's x86 machine places RAM (see sources.memfile)."""
    if below_4g is None:
        below_4g = x86_below_4g(ram_size, machine)
    with open(path, "wb") as f:
        for ext in ram_extents(ram_size, below_4g):
            for a, data in image_pieces(memory, ext.phys, ext.end):
                f.seek(ext.offset + a - ext.phys)
                f.write(data)
        f.truncate(ram_size)
