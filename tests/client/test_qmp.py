"""QMP: reads through pmemsave from a real QEMU, batching, run-state
restored on close, and sockets that are missing, stale or not QMP."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest

from allocview.dumpwrite import image_segments
from allocview.errors import SourceError
from allocview.sources import open_source
from allocview.sources.qmp import MERGE_GAP, QmpPauser, QmpSource, query_running
from allocview.model.errors import MemoryReadError
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.snapshot import decode

from .helpers import free_port, one_line

BLOB = bytes(range(256)) * 64          # 16 KiB of known bytes


def test_pmemsave_reads_loaded_bytes(qemu):
    q = qemu(blobs=[(0x100000, BLOB)])
    with open_source(qmp=str(q.qmp_path)) as src:
        assert isinstance(src, QmpSource)
        assert src.read(0x100000, len(BLOB)) == BLOB
        assert src.read(0x100ffe, 4) == BLOB[0xffe:0x1002]
        assert src.read(0x300000, 8) == bytes(8)           # RAM never written
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(16 << 20, 8)                          # -m 16M ends there
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read((16 << 20) - 4, 8)


def test_read_many_merges_nearby_ranges_into_one_round_trip(qemu):
    q = qemu(blobs=[(0x100000, BLOB)])
    with QmpSource(str(q.qmp_path), host_memory=False) as src:
        ranges = [(0x100000 + i * 0x400, 16) for i in range(16)][::-1]
        before = src.stats["round_trips"]
        got = src.read_many(ranges + [(64 << 20, 4)])
        assert src.stats["round_trips"] == before + 1      # one pmemsave; 64 MiB is no RAM
        assert got[:-1] == [BLOB[a - 0x100000:a - 0x100000 + 16] for a, _ in ranges]
        assert got[-1] is None
        # far apart: one pmemsave each, pipelined in one round trip
        before = dict(src.stats)
        assert src.read_many([(0x100000, 4), (0xA00000, 4)]) == [BLOB[:4], bytes(4)]
        assert src.stats["round_trips"] == before["round_trips"] + 1
        assert src.stats["commands"] == before["commands"] + 2


def test_snapshot_from_qemus_memory_costs_no_qmp_command(qemu):
    """QEMU runs here as us: after the one round trip of opening, every
    read is a pread of /proc/PID/mem."""
    al = scenario(layout_for("x86_64", "2021"))
    q = qemu(memory="32M", blobs=image_segments(al.memory))
    with QmpSource(str(q.qmp_path)) as src:
        assert src.host is not None and src.host.pid == q.proc.pid, src.via
        assert src.via == f"reading /proc/{q.proc.pid}/mem"
        assert (src.stats["round_trips"], src.stats["commands"]) == (1, 3)
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        assert snap.state() == al.state()
        assert (src.stats["round_trips"], src.stats["commands"]) == (1, 3)
        assert src.stats["host_reads"] == src.stats["reads"] > 3


def test_snapshot_of_a_loaded_model_state_in_a_handful_of_round_trips(qemu):
    """The reference allocator's image loaded into a paused VM's RAM,
    through pmemsave."""
    al = scenario(layout_for("x86_64", "2021"))
    q = qemu(memory="32M", blobs=image_segments(al.memory))
    with QmpSource(str(q.qmp_path), host_memory=False) as src:
        opened, opened_commands = src.stats["round_trips"], src.stats["commands"]
        snap = decode(src, al.layout, al.areas_addr, al.mask_addr)
        assert snap.state() == al.state()
        trips = src.stats["round_trips"] - opened
        commands = src.stats["commands"] - opened_commands
        # globals 2, metadata 1 per area, then the free-list nodes (prefetched
        # in one read_many): one pmemsave per run closer than MERGE_GAP, all
        # pipelined in one round trip
        nodes = sorted(x for a in al.state() for fl in a.freelists for x in fl)
        runs = 1 + sum(b - a > MERGE_GAP for a, b in zip(nodes, nodes[1:]))
        assert len(nodes) > 2 * runs
        assert trips == 2 + len(snap.areas) + 1
        assert commands == 2 + len(snap.areas) + runs


def test_works_inside_a_running_event_loop_and_over_tcp(qemu):
    """The caller's own asyncio loop is left alone (qemu.qmp runs on ours)."""
    import asyncio

    port = free_port()
    q = qemu(blobs=[(0x100000, BLOB)], extra=("-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"))

    async def main():
        with open_source(qmp=str(q.qmp_path)) as src:
            first = src.read(0x100000, 64)
        await asyncio.sleep(0)
        with open_source(qmp=f"127.0.0.1:{port}") as src:
            # no SO_PEERCRED over TCP: pmemsave, and it says why
            assert src.host is None and src.via == \
                "pmemsave (QEMU's process is not visible from here)", src.via
            return first, src.read(0x100000, 64)

    assert asyncio.run(main()) == (BLOB[:64], BLOB[:64])


@pytest.mark.parametrize("host", [True, False])
def test_any_machine_gets_its_ram_map_from_qemus_flat_view(qemu, host):
    """machine none puts -m 16M at 0: QEMU's `info mtree -f` says so,
    where the old pc/q35 rule knew nothing."""
    q = qemu(machine="none")
    with QmpSource(str(q.qmp_path), host_memory=host) as src:
        assert [(e.phys, e.size) for e in src.ram] == [(0, 16 << 20)]
        assert (src.host is not None) == host
        assert src.read(0x1000, 8) == bytes(8)
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            src.read(16 << 20, 8)


def test_a_paused_guest_stays_paused(qemu):
    q = qemu(paused=True)
    with QmpSource(str(q.qmp_path)) as src:
        assert src.pauser.status == "prelaunch" and not src.pauser.was_running
    assert q.status() == "prelaunch"


def test_a_running_guest_is_paused_while_open_and_runs_after(qemu):
    q = qemu(paused=False)
    assert q.status() == "running"
    assert query_running(str(q.qmp_path)) is True
    with QmpSource(str(q.qmp_path)) as src:
        assert src.pauser.was_running
        assert src.client.cmd("query-status")["status"] == "paused"
        src.read(0, 16)
    assert q.status() == "running"
    with QmpPauser(str(q.qmp_path)) as p:             # the pauser alone
        assert p.was_running and p.client.cmd("query-status")["status"] == "paused"
    assert q.status() == "running"


def test_temp_files_are_private_and_removed(qemu):
    q = qemu()
    src = QmpSource(str(q.qmp_path), host_memory=False)
    try:
        assert src._dir is None                     # made on the first pmemsave
        src.read(0, 4096)
        assert stat.S_IMODE(os.stat(src._dir).st_mode) == 0o700
        assert os.listdir(src._dir) == []
    finally:
        src.close()
    assert not os.path.exists(src._dir)


def test_missing_socket(tmp_path):
    path = str(tmp_path / "nope.sock")
    t = time.monotonic()
    with pytest.raises(SourceError, match="no such socket") as e:
        open_source(qmp=path)
    one_line(e.value, path)
    assert time.monotonic() - t < 1


def test_stale_socket_is_refused(tmp_path):
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()                                          # bound, never listening
    with pytest.raises(SourceError, match="connection refused") as e:
        QmpSource(path)
    one_line(e.value, path)


def _serve(path: str, greeting: bytes | None) -> threading.Event:
    """A unix socket server that sends `greeting` (None: nothing) and then
    keeps the connection open until the returned event is set."""
    done = threading.Event()
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        if greeting is not None:
            conn.sendall(greeting)
        done.wait(30)
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return done


@pytest.mark.parametrize("greeting,pattern", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not a QMP server"),
    (b'{"hello": "world"}\r\n', "not a QMP server"),
    (None, "no QMP greeting within 1 s"),
])
def test_a_socket_that_is_not_qmp_fails_within_seconds(greeting, pattern):
    d = tempfile.mkdtemp(prefix="avq-")             # short: a socket path has <= 107 bytes
    path = os.path.join(d, "fake.sock")
    done = _serve(path, greeting)
    t = time.monotonic()
    try:
        with pytest.raises(SourceError, match=pattern) as e:
            QmpSource(path, timeout=1.0)
        one_line(e.value, path)
    finally:
        done.set()
        shutil.rmtree(d, ignore_errors=True)
    assert time.monotonic() - t < 5


def test_qemu_exiting_under_a_source_is_one_line(qemu):
    q = qemu()
    src = QmpSource(str(q.qmp_path))
    try:
        q.kill()
        with pytest.raises((SourceError, MemoryReadError)) as e:
            src.read(0, 16)
        one_line(e.value)
    finally:
        src.close()                                     # no hang, no error
