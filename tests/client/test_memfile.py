"""Shared RAM files (memory-backend-file): the x86 RAM split around the PCI
hole, checked against the model and against a real QEMU's placement."""

from __future__ import annotations

import os

import pytest

from allocview.dumpwrite import write_memfile
from allocview.errors import SourceError
from allocview.sources import open_source
from allocview.sources.memfile import MemfileSource, x86_below_4g
from allocview.sources.qmp import QmpSource
from allocview.model.errors import MemoryReadError
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode

from .helpers import one_line

GiB, MiB = 1 << 30, 1 << 20


@pytest.mark.parametrize("ram,machine,cap,below", [
    (16 * MiB, "pc", 0, 16 * MiB),
    (0xDFFFF000, "pc", 0, 0xDFFFF000),       # just under 3.5 GiB: no split
    (0xE0000000, "pc", 0, 3 * GiB),          # 3.5 GiB and up: split at 3 GiB
    (4 * GiB, "pc", 0, 3 * GiB),
    (4 * GiB, "pc", 2 * GiB, 2 * GiB),       # QEMU's own examples (pc_piix.c)
    (3968 * MiB, "pc", 4 * GiB, 3968 * MiB),
    (0xAFFFF000, "q35", 0, 0xAFFFF000),
    (0xB0000000, "q35", 0, 2 * GiB),
    (8 * GiB, "q35", 0, 2 * GiB),
    (8 * GiB, "q35", 1 * GiB, 1 * GiB),
])
def test_below_4g_follows_qemu(ram, machine, cap, below):
    assert x86_below_4g(ram, machine, cap) == below


def test_low_memory_state_in_a_64m_ram_file(tmp_path):
    al = scenario(layout_for("x86_64", "2021"))
    path = tmp_path / "ram"
    write_memfile(str(path), al.memory, 64 * MiB)
    with open_source(memfile=str(path)) as src:
        assert isinstance(src, MemfileSource) and src.below_4g == 64 * MiB
        assert decode(src, al.layout, al.areas_addr, al.mask_addr).state() == al.state()
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(64 * MiB - 2, 4)


@pytest.mark.parametrize("machine,below", [("pc", 3 * GiB), ("q35", 2 * GiB)])
def test_areas_on_both_sides_of_the_pci_hole(tmp_path, machine, below):
    ram = 0xE0000000 + 64 * MiB
    lay = layout_for("x86_64", "2021")
    al = Allocator(lay)
    al.init_area(3, 0x100, 0x1000)                           # LOWEST, below 16 MiB
    al.init_area(1, (4 * GiB) >> 12, (4 * GiB + 32 * MiB) >> 12)   # HIGH, above 4 GiB
    for order in (0, 2, 5, 0, 3):
        al.alloc_pages_flags(order)
    al.free_pages(al.alloc_pages_flags(1))
    path = tmp_path / "ram"
    write_memfile(str(path), al.memory, ram, machine=machine)
    assert os.stat(path).st_blocks * 512 < 16 * MiB
    with open_source(memfile=str(path), machine=machine) as src:
        assert src.below_4g == below
        assert decode(src, lay, al.areas_addr, al.mask_addr).state() == al.state()
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(below + 0x1000, 8)                      # the PCI hole
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(4 * GiB + ram - below, 1)               # past the top of RAM
    # the same file read with the other machine's split misses the high area
    other = "q35" if machine == "pc" else "pc"
    with open_source(memfile=str(path), machine=other) as src:
        assert decode(src, lay, al.areas_addr, al.mask_addr).state() != al.state()
    # an explicit split overrides the machine's rule
    with open_source(memfile=str(path), machine=other, machine_ram_below_4g=below) as src:
        assert decode(src, lay, al.areas_addr, al.mask_addr).state() == al.state()


@pytest.mark.parametrize("machine,below", [("pc", 3 * GiB), ("q35", 2 * GiB)])
def test_real_qemu_places_ram_file_bytes_where_we_read_them(tmp_path, qemu, machine, below):
    """-m 4G backed by a file: bytes loaded at 1 MiB and at 4 GiB + 8 KiB
    read back through the file (our split) and through QMP (QEMU's)."""
    ram_path = tmp_path / "guest-ram"
    low, high = os.urandom(4096), os.urandom(4096)
    q = qemu(machine=machine, memory="4G", blobs=[(0x100000, low), (4 * GiB + 0x2000, high)],
             extra=("-object", f"memory-backend-file,id=ram,size=4G,mem-path={ram_path},"
                    "share=on", "-machine", "memory-backend=ram"))
    with open_source(memfile=str(ram_path), machine=machine) as src:
        assert src.below_4g == below
        assert src.read(0x100000, 4096) == low
        assert src.read(4 * GiB + 0x2000, 4096) == high
        with open(ram_path, "rb") as f:                    # the split, spelled out
            f.seek(below + 0x2000)
            assert f.read(4096) == high
    with QmpSource(str(q.qmp_path)) as src:
        # QEMU's flat view (info mtree -f) agrees with our split: RAM up to
        # `below` (less the ROM/VGA overlays under 1 MiB), the rest at 4 GiB
        assert src._in_ram(0x100000, below - 0x100000)
        assert src._in_ram(4 * GiB, 4 * GiB - below)
        assert not src._in_ram(below, 4096) and not src._in_ram(8 * GiB - below, 4096)
        assert src.read(0x100000, 4096) == low
        assert src.read(4 * GiB + 0x2000, 4096) == high
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(below + 0x1000, 16)


@pytest.mark.parametrize("machine,memory", [("q35", "4G"), ("none", "64M")])
def test_qmp_beside_a_memfile_lets_qemu_place_it(tmp_path, qemu, machine, memory):
    """With --qmp, QEMU's flat view places the file (any machine): on q35
    it agrees with our pc/q35 rule, on `none` (RAM at 0, no rule) it reads
    where QEMU loaded the bytes. A --machine that lies does not matter."""
    ram_path = tmp_path / "guest-ram"
    blob = os.urandom(4096)
    at = 4 * GiB + 0x5000 if memory == "4G" else 0x300000
    q = qemu(machine=machine, memory=memory, blobs=[(at, blob)],
             extra=("-object", f"memory-backend-file,id=mem0,size={memory},mem-path={ram_path},"
                    "share=on", "-machine", "memory-backend=mem0"))
    with open_source(memfile=str(ram_path), qmp=str(q.qmp_path), machine="pc") as src:
        assert src.placed_by == "QEMU's flat view"
        assert src.read(at, 4096) == blob
        if machine == "q35":
            rule = MemfileSource(str(ram_path), machine="q35")
            try:
                for addr in (0x100000, 2 * GiB - 4096, 4 * GiB, 6 * GiB - 4096):
                    assert src.read(addr, 4096) == rule.read(addr, 4096)
            finally:
                rule.close()
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(8 * GiB if memory == "4G" else 64 * MiB, 8)


@pytest.mark.parametrize("paused", [False, True])
def test_qmp_beside_a_memfile_pauses_only_while_open(tmp_path, qemu, paused):
    ram_path = tmp_path / "guest-ram"
    q = qemu(memory="32M", paused=paused, blobs=[(0x200000, b"allocview" * 100)],
             extra=("-object", f"memory-backend-file,id=ram,size=32M,mem-path={ram_path},"
                    "share=on", "-machine", "memory-backend=ram"))
    before = q.status()
    assert before == ("prelaunch" if paused else "running")
    src = open_source(memfile=str(ram_path), qmp=str(q.qmp_path))
    try:
        assert src.pauser.was_running is not paused
        assert src.read(0x200000, 9) == b"allocview"
    finally:
        src.close()
    assert q.status() == before


def test_bad_memfiles(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ram = tmp_path / "ram"
    ram.write_bytes(bytes(4096))
    for kwargs, pattern, name in (
            ({"memfile": str(tmp_path / "missing")}, "no such file", "missing"),
            ({"memfile": str(empty)}, "empty file", str(empty)),
            ({"memfile": str(ram), "machine": "virt"}, "known for pc and q35 only", "virt"),
            ({"memfile": str(ram), "machine_ram_below_4g": 5 * GiB}, "not in", "0x")):
        with pytest.raises(SourceError, match=pattern) as e:
            open_source(**kwargs)
        one_line(e.value, name)
