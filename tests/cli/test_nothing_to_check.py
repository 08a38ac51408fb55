"""A "no findings" means healthy: nothing checked is its own outcome (exit
2, one line saying which and why), and inputs that would hang or lie are
refused in a bounded time."""

import json
import os
import socket
import threading
import time

import pytest

from .helpers import ROOT, av, one_line_error

X86 = ROOT / "tests/guest/build/x86_64-2021/guest.elf"
OTHER = ROOT / "tests/guest/build/x86_64-2021-nomerge/guest.elf"
I386 = ROOT / "tests/guest/build/i386-2021/guest.elf"
S390X = ROOT / "tests/guest/build/s390x-2021/guest.elf"


@pytest.fixture
def sieve_like(guest_with_sources):
    """A live fixture guest at checkpoint 2 (its own QMP socket free)."""
    g, sock = guest_with_sources("x86_64-2021", 2)
    g.gdb.disconnect()
    return g, sock


def test_another_programs_elf_against_a_live_guest_is_refused(sieve_like):
    g, sock = sieve_like
    assert av("--qmp", sock, "--elf", X86, "check", check_code=0).stdout
    r = av("--qmp", sock, "--elf", OTHER, "check")
    line = one_line_error(r)
    assert line.startswith("allocview: nothing checked: guest.elf: its code is not at its "
                           "link addresses in guest memory"), line
    doc = json.loads(av("--qmp", sock, "--elf", OTHER, "report", "--json").stdout)
    assert doc["unchecked"]["kind"] == "program-mismatch" and "findings" not in doc
    assert doc["program"]["found"] is False


def test_a_guest_stopped_before_init_is_not_clean(make_guest):
    """At the first instruction (-S): nothing to check, in every command."""
    g = make_guest("x86_64-2021")          # paused before the first instruction
    gdb = g.gdb
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    for cmd in ("check", "stats", "map", "why 0", "areas", "report"):
        with pytest.raises(Exception, match=r"allocview: nothing checked: the allocator is not "
                                            r"initialised: areas_mask is 0 and every area slot "
                                            r"is empty \(stopped before page_alloc_init_area\?\)"):
            gdb.cli(f"alloc {cmd}")
    gdb.cli("alloc snapshot boot")           # a start for diff is fine
    gdb.run_to_checkpoint(1)
    assert "area 2 appeared" in gdb.cli("alloc diff boot")
    gdb.disconnect()
    r = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "--no-resume", "check")
    assert r.returncode == 0                 # initialised by now


def test_the_dump_of_another_machine_is_refused(make_guest, tmp_path):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(1)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    for elf, words in ((I386, "is i386"), (S390X, "is s390x")):
        if not elf.exists():
            pytest.fail(f"{elf} is not built")
        line = one_line_error(av("--dump", dump, "--elf", elf, "check"))
        assert "the guest image is a 64-bit little-endian EM_X86_64 one" in line and \
            words in line, line
    assert av("--dump", dump, "--elf", g.elf, "check", check_code=0)


@pytest.mark.parametrize("option", ["--dump", "--elf", "--memfile"])
def test_a_fifo_is_refused_before_it_can_block(tmp_path, option):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = {"--dump": ["--dump", fifo, "--elf", X86],
            "--elf": ["--dump", X86, "--elf", fifo],
            "--memfile": ["--memfile", fifo, "--elf", X86]}[option]
    t = time.monotonic()
    line = one_line_error(av(*args, "check"))
    assert f"{option} {fifo}: a FIFO, not a file" in line and time.monotonic() - t < 20


def test_a_silent_qmp_peer_is_given_up_on_in_seconds(tmp_path):
    """A monitor that greets and then never answers."""
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)
    greeting = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                b'"package": ""}, "capabilities": []}}\r\n')

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
                conn.sendall(greeting)
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    try:
        for timeout, bound in ((None, 12), ("1", 6)):
            t = time.monotonic()
            r = av("--qmp", path, "--elf", X86, *(["--timeout", timeout] if timeout else []),
                   "check")
            took = time.monotonic() - t
            line = one_line_error(r)
            assert "got no reply in" in line and took < bound, (line, took)
    finally:
        srv.close()


def test_replay_without_an_end_state_says_what_it_did_not_compare(tmp_path):
    from allocview.model.constants import AREA_ANY_NUMBER
    from allocview.model.layout import layout_for
    from allocview.model.reference import Allocator
    from allocview.model.trace import TraceWriter
    al = Allocator(layout_for("x86_64", "2021"))
    w = TraceWriter(str(tmp_path / "t.jsonl"), {"arch": "x86_64", "format": "2021"})
    w.call("page_alloc_init_area", (AREA_ANY_NUMBER, 0x1000, 0x2000), None)
    p = al.init_area(AREA_ANY_NUMBER, 0x1000, 0x2000)
    p = al.alloc_pages_flags(0, 0)
    w.call("alloc_pages_flags", (0, 0), p)
    w.close()
    r = av("--arch", "x86_64", "--areas", hex(al.areas_addr), "--mask", hex(al.mask_addr),
           "replay", tmp_path / "t.jsonl", "--no-color", check_code=0)
    assert "0 state comparison(s)" in r.stdout
    assert "no state was compared" in r.stdout and "follows the design" not in r.stdout
    doc = json.loads(av("--arch", "x86_64", "--areas", hex(al.areas_addr), "--mask",
                        hex(al.mask_addr), "replay", tmp_path / "t.jsonl", "--json").stdout)
    assert doc["compared"] == 0 and doc["end_state_checked"] is False
