"""gdb over MI against QEMU's gdb stub: reads, batching, the run state
left behind, unreachable stubs, and no gdb outliving its source."""

from __future__ import annotations

import os
import time

import pytest

from allocview.dumpwrite import image_segments
from allocview.errors import SourceError
from allocview.sources import open_source
from allocview.sources.gdbmi import BATCH, CHUNK, GdbMiSource
from allocview.model.errors import MemoryReadError
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.snapshot import decode

from .helpers import children, free_port, need, one_line

BLOB = os.urandom(200 << 10)          # spans several 64 KiB MI reads


@pytest.fixture(autouse=True)
def no_new_gdb():
    """Fails the test if it leaves a gdb child behind; gdbs that other
    tests' session-wide guests own are not ours to count."""
    need("gdb")
    before = set(children("gdb"))
    yield lambda: set(children("gdb")) - before
    assert set(children("gdb")) - before == set()


def test_reads_loaded_bytes_and_leaves_no_gdb(qemu, no_new_gdb):
    q = qemu(gdb=True, blobs=[(0x100000, BLOB)])
    src = open_source(gdb=f"127.0.0.1:{q.gdb_port}", host_memory=False)
    try:
        assert isinstance(src, GdbMiSource) and src.host is None
        assert no_new_gdb() == {src.pid}
        assert src.read(0x100000, len(BLOB)) == BLOB
        assert src.read(0x100000 + 70000, 5) == BLOB[70000:70005]
        with pytest.raises(MemoryReadError) as e:
            src.read(64 << 20, 16)                     # past -m 16M
        assert e.value.addr == 64 << 20
        before = src.stats["round_trips"]
        got = src.read_many([(0x100000 + i * 0x800, 8) for i in range(BATCH)] + [(64 << 20, 8)])
        assert src.stats["round_trips"] == before + 2  # BATCH + 1 commands: two writes
        assert got[:-1] == [BLOB[i * 0x800:i * 0x800 + 8] for i in range(BATCH)]
        assert got[-1] is None
    finally:
        src.close()
    assert src.closed and no_new_gdb() == set()


def test_a_local_stubs_qemu_serves_guest_ram_from_its_memory(qemu, no_new_gdb):
    """The stub's port leads to the QEMU process; its memory serves the
    snapshot (the stub only checks the first read), with the same state."""
    al = scenario(layout_for("x86_64", "2021"))
    q = qemu(memory="32M", gdb=True, blobs=image_segments(al.memory))
    with GdbMiSource(f"127.0.0.1:{q.gdb_port}", arch="x86_64") as src:
        assert src.via == f"QEMU process memory (/proc/{q.proc.pid}/mem)", src.via
        trips = src.stats["round_trips"]
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        assert snap.state() == al.state()
        assert src.stats["round_trips"] == trips + 1           # the first read's check
        with pytest.raises(MemoryReadError):
            src.read(64 << 20, 16)                               # past -m 32M, both ways
    assert no_new_gdb() == set()


def test_snapshot_of_a_loaded_model_state(qemu):
    al = scenario(layout_for("x86_64", "2021"))
    q = qemu(memory="32M", gdb=True, blobs=image_segments(al.memory))
    with GdbMiSource(f"127.0.0.1:{q.gdb_port}", arch="x86_64", host_memory=False) as src:
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        assert snap.state() == al.state()
        meta = sum(len(a.metadata) for a in al.state())
        # one write per BATCH commands of at most CHUNK bytes, plus setup
        assert src.stats["round_trips"] < 10 + meta // CHUNK


@pytest.mark.parametrize("resume", [False, True])
def test_disconnect_leaves_the_guest_paused_detach_resumes(qemu, resume, no_new_gdb):
    q = qemu(gdb=True, paused=False)
    assert q.status() == "running"
    with GdbMiSource(f"127.0.0.1:{q.gdb_port}", resume=resume) as src:
        src.read(0, 4)
    deadline = time.monotonic() + 5
    while q.status() != ("running" if resume else "paused") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q.status() == ("running" if resume else "paused")
    assert no_new_gdb() == set()


def test_qmp_beside_gdb_restores_a_running_guest(qemu):
    q = qemu(gdb=True, paused=False)
    src = open_source(gdb=f"127.0.0.1:{q.gdb_port}", qmp=str(q.qmp_path))
    try:
        assert src.resume is True
        src.read(0, 4)
    finally:
        src.close()
    assert q.status() == "running"


def test_qmp_beside_gdb_keeps_a_paused_guest_paused(qemu):
    q = qemu(gdb=True, paused=True)
    with open_source(gdb=str(q.gdb_port), qmp=str(q.qmp_path)) as src:   # a bare port
        assert src.resume is False
        src.read(0, 4)
    assert q.status() != "running"


def test_unreachable_stub_is_one_line_and_leaves_no_gdb(no_new_gdb):
    port = free_port()
    t = time.monotonic()
    with pytest.raises(SourceError, match="cannot attach") as e:
        open_source(gdb=f"127.0.0.1:{port}")
    one_line(e.value, str(port))
    assert time.monotonic() - t < 5
    assert no_new_gdb() == set()


def test_bad_arch_and_missing_gdb(no_new_gdb):
    with pytest.raises(SourceError, match="unknown") as e:
        GdbMiSource("127.0.0.1:1", arch="vax")
    one_line(e.value, "vax")
    with pytest.raises(SourceError, match="cannot start gdb") as e:
        GdbMiSource("127.0.0.1:1", gdb="/nonexistent/gdb")
    one_line(e.value)
    assert no_new_gdb() == set()


def test_elf_paths_with_spaces_and_missing_elves(qemu, tmp_path, no_new_gdb):
    """The program goes to gdb as an MI C string."""
    src_elf = os.path.join(os.path.dirname(__file__), "..", "guest", "build", "x86_64-2021",
                           "guest.elf")
    if not os.path.exists(src_elf):
        pytest.fail("tests/guest is not built: run make -C tests/guest")
    d = tmp_path / 'dir with "quotes" and spaces'
    d.mkdir()
    elf = d / "guest.elf"
    elf.write_bytes(open(src_elf, "rb").read())
    q = qemu(gdb=True, blobs=[(0x100000, BLOB[:64])])
    with GdbMiSource(f"127.0.0.1:{q.gdb_port}", elf=str(elf)) as src:
        assert src.read(0x100000, 64) == BLOB[:64]
    with pytest.raises(SourceError, match="file-exec-and-symbols") as e:
        GdbMiSource(f"127.0.0.1:{q.gdb_port}", elf=str(tmp_path / "missing.elf"))
    one_line(e.value)
    assert no_new_gdb() == set()
