"""Every source against the fixture guest (tests/guest) under QEMU: the
state each one decodes is the reference model's replay of the workload,
and the guest runs on after each."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from allocview.sources import open_source
from allocview.sources.dump import DumpSource
from allocview.symbols import load_program
from harness import replay
from allocview.model.snapshot import decode


@pytest.fixture
def sockdir():
    d = Path(tempfile.mkdtemp(prefix="avq-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("variant", ["x86_64-2021", "i386-2020"])
def test_every_source_decodes_the_guest_state(make_guest, tmp_path, sockdir, variant):
    qmp = sockdir / "qmp.sock"            # ours: the harness holds its own socket
    g = make_guest(variant, memory="64M", shared_memory=True, paused=False,
                   qemu_args=("-qmp", f"unix:{qmp},server=on,wait=off"))
    g.wait_checkpoint(5)                  # then it idles, its allocator untouched
    prog = load_program(str(g.elf))
    want = replay(g, 5).allocator.state()
    assert want

    def state(src):
        snap = decode(src, prog.layout, prog.symbols["areas"], prog.symbols["areas_mask"])
        assert snap.problems == ()
        return snap.state()

    with open_source(memfile=str(g.mem_path), qmp=str(qmp)) as src:
        assert src.pauser.was_running
        assert state(src) == want
    assert g.query_status() == "running"

    with open_source(qmp=str(qmp)) as src:
        opened = src.stats["round_trips"]
        assert state(src) == want
        assert src.stats["round_trips"] - opened < 30
    assert g.query_status() == "running"

    core = g.dump_guest_memory(tmp_path / "core.elf")
    with open_source(dump=str(core)) as src:
        assert isinstance(src, DumpSource)
        assert state(src) == want

    with open_source(gdb=f"127.0.0.1:{g.gdb_port}", elf=str(g.elf), qmp=str(qmp)) as src:
        assert src.resume is True         # QMP said it was running: detach on close
        assert state(src) == want
    assert g.query_status() == "running"
