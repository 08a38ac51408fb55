"""Dump files: dump-guest-memory ELF cores (64 and 32-bit, little and big
endian), raw pmemsave files, and every way a file can fail to be one."""

from __future__ import annotations

import os
import struct
import time

import pytest

from allocview.dumpwrite import Segment, image_segments, write_elf_dump, write_raw
from allocview.errors import SourceError
from allocview.sources import Source, open_source
from allocview.sources.dump import DumpSource
from allocview.sources.raw import RawSource
from allocview.model.errors import MemoryReadError
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.memory import Memory
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode

from .helpers import one_line

GiB = 1 << 30
COMBOS = [("x86_64", "2021"), ("x86_64", "2020"), ("i386", "2021"), ("i386", "2020")]


def _elf_header(path) -> tuple[int, int]:
    """(EI_CLASS, e_machine) read back with struct: the writer's own check."""
    head = open(path, "rb").read(20)
    return head[4], struct.unpack_from("<H", head, 18)[0]


@pytest.mark.parametrize("arch,fmt", COMBOS)
def test_dump_of_a_model_state_decodes_to_that_state(tmp_path, arch, fmt):
    al = scenario(layout_for(arch, fmt))
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), image_segments(al.memory), arch=arch)
    assert _elf_header(path) == ((2, 62) if arch == "x86_64" else (1, 3))
    with open_source(dump=str(path)) as src:
        assert isinstance(src, DumpSource) and isinstance(src, Memory)
        assert src.elfclass == (64 if arch == "x86_64" else 32)
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        assert snap.problems == ()
        assert snap.state() == al.state()
        assert src.stats["reads"] > 0 and src.stats["round_trips"] == 0
    assert src.closed


def test_big_endian_s390x_dump(tmp_path):
    al = scenario(layout_for("s390x", "2021"))
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), image_segments(al.memory), arch="s390x")
    with DumpSource(str(path)) as src:
        assert src.machine == "EM_S390"
        assert decode(src, al.layout, al.areas_addr, al.mask_addr).state() == al.state()


def test_phys_offset_maps_virtual_reads(tmp_path):
    """Segments at physical = virtual - 0x8000: reads by virtual address
    through phys_offset find the same state."""
    al = scenario(layout_for("x86_64", "2021"))
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), image_segments(al.memory, phys_offset=0x8000))
    with open_source(dump=str(path), phys_offset=0x8000) as src:
        assert src.read(al.mask_addr, 4) == al.memory.read(al.mask_addr, 4)
        assert decode(src, al.layout, al.areas_addr, al.mask_addr).state() == al.state()
        with pytest.raises(MemoryReadError) as e:
            src.read(0x7000, 4)
        assert e.value.addr == 0x7000


def test_reads_span_adjacent_segments_and_fail_in_gaps(tmp_path):
    path = tmp_path / "core.elf"
    a, b, c = bytes(range(256)) * 16, bytes(range(255, -1, -1)) * 16, b"\xaa" * 4096
    write_elf_dump(str(path), [(0x1000, a), (0x2000, b), (0x10000, c)], sparse=False)
    with DumpSource(str(path)) as src:
        assert [(s.phys, s.size) for s in src.segments] == [(0x1000, 4096), (0x2000, 4096),
                                                            (0x10000, 4096)]
        assert src.read(0x1ff0, 32) == a[-16:] + b[:16]
        assert src.read(0x10000, 4096) == c
        for addr, size in ((0x2ff0, 32), (0x3000, 1), (0xfff, 2), (0x10fff, 2), (0, 1)):
            with pytest.raises(MemoryReadError, match="not in the dump"):
                src.read(addr, size)
        assert src.read_many([(0x1000, 2), (0x3000, 2), (0x10000, 2)]) == [a[:2], None, c[:2]]
        assert src.read(0x5000, 0) == b""


def test_overlapping_segments_of_a_paging_dump(tmp_path):
    """paging=true lists a physical page under each virtual mapping."""
    path = tmp_path / "core.elf"
    data = bytes(range(256)) * 32
    write_elf_dump(str(path), [(0x4000, data), (0x5000, data[0x1000:]), (0x4000, data[:0x1000])])
    with DumpSource(str(path)) as src:
        assert [(s.phys, s.size) for s in src.segments] == [(0x4000, 0x2000)]
        assert src.read(0x4000, 0x2000) == data


def test_truncated_dump_opens_and_fails_only_past_the_cut(tmp_path):
    al = scenario(layout_for("x86_64", "2021"))
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), image_segments(al.memory))
    with DumpSource(str(path)) as src:
        last = src.segments[-1]
    cut = last.offset + 0x1000 + 123          # one page and a bit of the last segment
    os.truncate(path, cut)
    with DumpSource(str(path)) as src:
        assert [s.phys for s in src.truncated] == [last.phys]
        assert len(src.read(last.phys, 0x1000)) == 0x1000
        with pytest.raises(MemoryReadError, match="truncated dump"):
            src.read(last.phys + 0x1000, 0x1000)
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        # areas[] is intact; the cut metadata becomes a finding, not an exception
        assert snap.areas_mask == al.areas_mask
        assert any(p.code == "metadata-unreadable" for p in snap.problems)


def test_sparse_16gib_dump_costs_little_disk_and_reads_fast(tmp_path):
    """A 16 GiB area (4 Mi metadata bytes) in a 16 GiB dump."""
    lay = layout_for("x86_64", "2021")
    al = Allocator(lay)
    al.init_area(1, (4 * GiB) >> 12, (20 * GiB) >> 12)
    for order in (0, 3, 9, 0, 1):
        al.alloc_pages_flags(order)
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), image_segments(al.memory))
    st = os.stat(path)
    assert st.st_size > 16 * GiB and st.st_blocks * 512 < 64 << 20
    t = time.perf_counter()
    with open_source(dump=str(path)) as src:
        meta = src.read(4 * GiB, 4 << 20)
        elapsed = time.perf_counter() - t
        meta_bytes = bytes(al.area(1).meta)        # the metadata pages end at 4 GiB + 4 MiB
        assert meta == meta_bytes + bytes((4 << 20) - len(meta_bytes))
        assert decode(src, lay, al.areas_addr, al.mask_addr).state() == al.state()
    assert elapsed < 1.0, f"open + 4 MiB read took {elapsed:.3f} s"


# ------------------------------------------------------------------ raw
def test_raw_pmemsave_file_with_base(tmp_path):
    al = scenario(layout_for("x86_64", "2021"))
    top = max(s.phys + s.size for s in image_segments(al.memory))
    path = tmp_path / "ram.bin"
    write_raw(str(path), al.memory, 0, top)
    assert os.path.getsize(path) == top
    with open_source(dump=str(path), raw_base=0) as src:
        assert isinstance(src, RawSource)
        assert decode(src, al.layout, al.areas_addr, al.mask_addr).state() == al.state()
        with pytest.raises(MemoryReadError, match="outside the raw file"):
            src.read(top - 2, 4)


def test_raw_file_not_at_zero(tmp_path):
    al = scenario(layout_for("i386", "2020"))
    base = al.areas_addr
    top = max(s.phys + s.size for s in image_segments(al.memory))
    path = tmp_path / "ram.bin"
    write_raw(str(path), al.memory, base, top - base)
    with open_source(dump=str(path), raw_base=base) as src:
        assert src.read(base, 16) == al.memory.read(base, 16)
        assert decode(src, al.layout, al.areas_addr, al.mask_addr).state() == al.state()
        with pytest.raises(MemoryReadError):
            src.read(base - 1, 2)


# ------------------------------------------------------------ bad inputs
def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def _cut_elf(tmp_path, size: int) -> str:
    full = tmp_path / "full.elf"
    write_elf_dump(str(full), [(0x1000, b"\x11" * 4096), (0x8000, b"\x22" * 4096)])
    return _write(tmp_path / f"cut{size}.elf", full.read_bytes()[:size])


@pytest.mark.parametrize("case,pattern", [
    ("missing", "no such file"),
    ("directory", "a directory, not a file"),
    ("empty", "empty file"),
    ("text", "not an ELF dump; for a raw pmemsave file give --base ADDR"),
    ("elf12", r"not an ELF file \(truncated at byte 12"),
    ("elf_phdrs", "truncated ELF dump"),
    ("kdump", "kdump-compressed dumps are not supported yet"),
    ("flattened", "kdump-compressed dumps are not supported yet"),
    ("program", "not a memory dump"),
    ("no_load", "no PT_LOAD"),
])
def test_bad_dump_files_give_one_line_naming_the_file(tmp_path, case, pattern):
    path = {
        "missing": lambda: str(tmp_path / "nope.elf"),
        "directory": lambda: str(tmp_path),
        "empty": lambda: _write(tmp_path / "empty", b""),
        "text": lambda: _write(tmp_path / "notes.txt", b"hello, world\n" * 10),
        "elf12": lambda: _cut_elf(tmp_path, 12),
        "elf_phdrs": lambda: _cut_elf(tmp_path, 64 + 56 + 10),
        "kdump": lambda: _write(tmp_path / "vmcore", b"KDUMP   " + bytes(4088)),
        "flattened": lambda: _write(tmp_path / "vmcore.flat", b"makedumpfile" + bytes(4084)),
        "program": lambda: os.path.join(os.path.dirname(__file__), "..", "guest", "build",
                                        "x86_64-2021", "guest.elf"),
        "no_load": lambda: _no_load(tmp_path),
    }[case]()
    if case == "program" and not os.path.exists(path):
        pytest.fail("tests/guest is not built: run make -C tests/guest")
    with pytest.raises(SourceError, match=pattern) as e:
        open_source(dump=path)
    one_line(e.value, path)
    assert e.value.__cause__ is None


def _no_load(tmp_path) -> str:
    path = tmp_path / "noload.elf"
    write_elf_dump(str(path), [])
    return str(path)


def test_raw_base_does_not_rescue_kdump_or_empty_files(tmp_path):
    kd = _write(tmp_path / "vmcore", b"KDUMP   " + bytes(100))
    with pytest.raises(SourceError, match="kdump"):
        open_source(dump=kd, raw_base=0)
    empty = _write(tmp_path / "empty", b"")
    with pytest.raises(SourceError, match="empty file"):
        open_source(dump=empty, raw_base=0)


def test_open_source_rejects_contradictory_options(tmp_path):
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), [(0, 4096)])
    for kwargs, pattern in (({"dump": str(path), "memfile": str(path)}, "one memory source"),
                            ({"dump": str(path), "qmp": "/nope"}, "needs no guest"),
                            ({"raw_base": 0}, "--base applies"),
                            ({}, "no memory source")):
        with pytest.raises(SourceError, match=pattern) as e:
            open_source(**kwargs)
        one_line(e.value)


def test_closed_source_refuses_reads(tmp_path):
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), [(0, b"\x01" * 4096)])
    src = open_source(dump=str(path))
    assert isinstance(src, Source) and src.read(0, 1) == b"\x01"
    src.close()
    src.close()                                   # idempotent
    with pytest.raises(SourceError, match="read after close"):
        src.read(0, 1)


def test_writer_keeps_zero_regions_as_holes(tmp_path):
    path = tmp_path / "core.elf"
    write_elf_dump(str(path), [Segment(0, 8 * GiB, ((0x1234, b"hi"),))])
    assert os.stat(path).st_blocks * 512 < 1 << 20
    with DumpSource(str(path)) as src:
        assert src.read(0x1230, 8) == b"\0\0\0\0hi\0\0"
        assert src.read(8 * GiB - 4, 4) == bytes(4)


def test_many_small_segments_pack_and_pass_pn_xnum(tmp_path):
    """A saved state: tens of thousands of 16-byte list nodes, more program
    headers than e_phnum can count."""
    path = tmp_path / "nodes.elf"
    nodes = [(0x100000 + i * 0x1000, i.to_bytes(16, "little")) for i in range(70000)]
    write_elf_dump(str(path), nodes)
    assert os.path.getsize(path) < 70000 * (56 + 16) + 8192
    with DumpSource(str(path)) as src:
        assert len(src.segments) == 70000
        assert src.read(0x100000 + 69999 * 0x1000, 16) == (69999).to_bytes(16, "little")
        assert src.read_many([(0x100000 + 5 * 0x1000 + 8, 8), (0x100000 + 16, 1)]) == \
            [bytes(8), None]
