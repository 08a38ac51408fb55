"""Guest RAM read out of the QEMU process: HMP output parsing, the address
arithmetic (against our own process's memory), and a real QEMU read both
ways."""

from __future__ import annotations

import ctypes
import os
import random
import socket

import pytest

from allocview.sources.hostmem import (HostFirst, HostMemory, HostMemoryUnavailable, RamRange,
                                       parse_gpa2hva, parse_mtree, tcp_port_owner, unix_peer_pid)
from allocview.model.memory import BytesMemory
from allocview.sources.qmp import QmpSource
from allocview.model.errors import MemoryReadError

from .helpers import free_port

# `info mtree -f` of `-M pc -m 6G` (QEMU 7.2), the I/O view cut short
PC_MTREE = """\
FlatView #0
 AS "i440FX", root: bus master container
 Root memory region: (none)
  No rendered FlatView

FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram KVM
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-00000000bfffffff (prio 0, ram): pc.ram @0000000000100000 KVM
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000017fffffff (prio 0, ram): pc.ram @00000000c0000000 KVM

FlatView #2
 AS "cpu-smm-0", root: memory
 Root memory region: memory
  0000000000000000-00000000000bffff (prio 0, ram): smram-shadow
  0000000000100000-00000000bfffffff (prio 0, ram): other.ram

FlatView #3
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
"""


def test_parse_mtree_takes_the_ram_of_the_memory_address_space_only():
    assert parse_mtree(PC_MTREE) == [
        RamRange(0, 0xc0000, "pc.ram", 0),
        RamRange(0x100000, 0xc0000000, "pc.ram", 0x100000),
        RamRange(1 << 32, 0x180000000, "pc.ram", 0xc0000000),
    ]
    assert parse_mtree("") == [] and parse_mtree("unknown command: 'info'") == []


def test_parse_gpa2hva():
    assert parse_gpa2hva("Host virtual address for 0x100000 (pc.ram) is 0x7f71fff00000\r\n") \
        == (0x100000, "pc.ram", 0x7f71fff00000)
    assert parse_gpa2hva("No memory is mapped at address 0xfffffffff\r\n") is None


class _FakeQemu:
    """'Guest RAM' in a buffer of this very process: pc.ram of 6 MiB at
    guest physical 0 (a hole at 0xc0000-0x100000) and its last 2 MiB at
    guest physical 4 GiB, the pc layout in miniature."""

    def __init__(self):
        self.ram = (ctypes.c_char * (6 << 20))()
        data = random.Random(1).randbytes(6 << 20)
        ctypes.memmove(self.ram, data, len(data))
        self.data = data
        self.base = ctypes.addressof(self.ram)
        self.mtree = f"""FlatView #1
 AS "memory", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
  00000000000c0000-00000000000fffff (prio 1, rom): pc.rom
  0000000000100000-00000000003fffff (prio 0, ram): pc.ram @0000000000100000
  0000000100000000-00000001001fffff (prio 0, ram): pc.ram @{4 << 20:016x}
"""
        self.asked: list[str] = []

    def monitor(self, lines: list[str]) -> list[str]:
        self.asked += lines
        out = []
        for line in lines:
            if line == "info mtree -f":
                out.append(self.mtree)
                continue
            gpa = int(line.split()[1], 16)
            ram_off = gpa if gpa < 1 << 32 else gpa - (1 << 32) + (4 << 20)
            out.append(f"Host virtual address for {gpa:#x} (pc.ram) is {self.base + ram_off:#x}\r\n")
        return out


def test_reads_land_where_the_monitor_says_one_gpa2hva_per_region():
    fake = _FakeQemu()
    host = HostMemory.open(os.getpid(), fake.monitor)
    try:
        assert fake.asked == ["info mtree -f", "gpa2hva 0x0"]      # pc.ram asked once
        assert host.read(0x1000, 64) == fake.data[0x1000:0x1040]
        assert host.read(0x3ffff0, 16) == fake.data[0x3ffff0:0x400000]
        assert host.read(1 << 32, 32) == fake.data[4 << 20:(4 << 20) + 32]
        assert host.read_many([(0x200000, 8), (0xc0000, 8), ((1 << 32) + 0x1ffff8, 8),
                               ((1 << 32) + 0x1ffffc, 8)]) == \
            [fake.data[0x200000:0x200008], None, fake.data[(6 << 20) - 8:], None]
        for bad in ((0xbfff8, 16), (0x400000, 1), (0x3ffffc, 8)):   # holes and ends
            assert not host.covers(*bad)
            with pytest.raises(MemoryReadError, match="not in one RAM range"):
                host.read(*bad)
    finally:
        host.close()


def test_answers_the_caller_pipelined_save_a_round_trip():
    fake = _FakeQemu()
    answers = fake.monitor(["gpa2hva 0x0"])
    fake.asked.clear()
    host = HostMemory.open(os.getpid(), fake.monitor, mtree=fake.mtree, answers=answers)
    host.close()
    assert fake.asked == []


def test_why_not_is_one_line():
    fake = _FakeQemu()
    with pytest.raises(HostMemoryUnavailable, match="not visible"):
        HostMemory.open(None, fake.monitor)
    with pytest.raises(HostMemoryUnavailable, match="no RAM"):
        HostMemory.open(os.getpid(), lambda lines: ["unknown command: 'info'"])
    with pytest.raises(HostMemoryUnavailable, match="gpa2hva 0x0"):
        HostMemory.open(os.getpid(), lambda lines: [fake.mtree] if lines[0].startswith("info")
                        else ["No memory is mapped at address 0x0"])


def test_real_qemu_reads_equal_pmemsave_reads(qemu):
    """A 5 GiB pc guest with bytes loaded below and above 4 GiB: the same
    bytes both ways, and the RAM holes refused both ways."""
    lo, hi = os.urandom(8192), os.urandom(8192)
    q = qemu(memory="5G", blobs=[(0x200000, lo), ((4 << 30) + 0x3000, hi)])
    ranges = [(0x200000, 8192), (0x201234, 77), ((4 << 30) + 0x3000, 8192),
              ((4 << 30) + 0x4ff0, 32), (0x9fff0, 16), (0xbffff000, 4096)]
    with QmpSource(str(q.qmp_path)) as fast:
        assert fast.host is not None, fast.via
        got_fast = fast.read_many(ranges)
        assert fast.stats["host_reads"] == len(ranges)
        for bad in ((0xc0000, 16), (3 << 30, 16), ((4 << 30) - 8, 16)):
            with pytest.raises(MemoryReadError, match="not guest RAM"):
                fast.read(*bad)
    with QmpSource(str(q.qmp_path), host_memory=False) as slow:
        assert slow.host is None and slow.via.startswith("pmemsave")
        got_slow = slow.read_many(ranges)
    assert got_fast == got_slow
    assert got_fast[0] == lo and got_fast[2] == hi


def test_the_gdb_stubs_port_leads_to_its_qemu(qemu):
    q = qemu(gdb=True)
    assert tcp_port_owner(q.gdb_port) == q.proc.pid
    assert tcp_port_owner(free_port()) is None


def test_unix_peer_pid():
    a, b = socket.socketpair(socket.AF_UNIX)
    try:
        assert unix_peer_pid(a) == os.getpid()
    finally:
        a.close()
        b.close()
    assert unix_peer_pid(object()) is None


def test_host_first_serves_ram_from_the_host_once_the_first_read_agrees():
    fake = _FakeQemu()
    host = HostMemory.open(os.getpid(), fake.monitor)
    stub = BytesMemory(fake.data[:0xc0000] + bytes(0x40000) + fake.data[0x100000:4 << 20])
    mem = HostFirst(host, stub)
    assert mem.read(0x2000, 16) == fake.data[0x2000:0x2010]       # both ways
    assert mem.stats == {"reads": 1, "host_reads": 1}
    assert mem.read_many([(0x3000, 8), (0xc0010, 8)]) == [fake.data[0x3000:0x3008], bytes(8)]
    assert mem.stats == {"reads": 2, "host_reads": 2}              # the hole from the stub
    host.close()


def test_host_first_refuses_a_host_that_disagrees_and_says_why():
    fake = _FakeQemu()
    host = HostMemory.open(os.getpid(), fake.monitor)
    stub = BytesMemory(bytes(4 << 20))                 # another guest altogether
    told = []
    mem = HostFirst(host, stub, told.append)
    assert mem.read(0x1000, 32) == bytes(32)
    assert mem.host is None and told == [mem.refused] and "reads differently" in mem.refused
    assert mem.read_many([(0x2000, 8)]) == [bytes(8)] and mem.stats["host_reads"] == 0
    host.close()


def test_a_host_address_the_process_does_not_map_is_refused_not_read():
    """A gpa2hva answer pointing outside every mapping of the process."""
    fake = _FakeQemu()

    def lying(lines):
        out = fake.monitor(lines)
        return [o.replace(f"{fake.base:#x}", f"{8:#x}") for o in out]
    with pytest.raises(HostMemoryUnavailable, match="maps nothing there"):
        HostMemory.open(os.getpid(), lying)


def test_qmp_sockets_come_from_the_qemu_command_line(tmp_path):
    """--gdb asks QMP whether the guest ran before attaching: the sockets
    are read from QEMU's own command line (both spellings), existing ones
    only, relative paths from its working directory."""
    import subprocess
    import sys

    from allocview.sources.hostmem import qmp_sockets

    for name in ("a.sock", "b.sock"):
        (tmp_path / name).write_text("")
    argv = [sys.executable, "-c", "import time; time.sleep(30)",
            "-qmp", "unix:a.sock,server=on,wait=off", "-qmp", "tcp:127.0.0.1:4444,server",
            "-chardev", f"socket,id=mon0,path={tmp_path}/b.sock,server=on,wait=off",
            "-mon", "chardev=mon0,mode=control", "-qmp", "unix:/nonexistent/x.sock,server"]
    p = subprocess.Popen(argv, cwd=tmp_path)
    try:
        import time
        time.sleep(0.2)
        assert qmp_sockets(p.pid) == [str(tmp_path / "a.sock"), str(tmp_path / "b.sock")]
    finally:
        p.kill()
        p.wait()
