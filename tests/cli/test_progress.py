"""The transient reading line: drawn on a terminal once reads take long,
never for a quick snapshot, and counting what the source served."""

import io
import re
import time

from rich.console import Console

from allocview.progress import ReadProgress
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.memory import CachedMemory
from allocview.model.snapshot import decode


class Slow:
    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay

    def read(self, addr, size):
        time.sleep(self.delay)
        return self.inner.read(addr, size)


def _decode_with(console, delay, after):
    al = scenario(layout_for("x86_64", "2021"))
    shown = ReadProgress(Slow(al.memory, delay), "qmp test.sock", console=console, after=after)
    try:
        snap = decode(CachedMemory(shown), al.layout, al.areas_addr, al.mask_addr)
    finally:
        shown.close()
    assert snap.state() == al.state()
    return shown


def test_a_slow_snapshot_shows_what_it_has_read_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    shown = _decode_with(console, delay=0.02, after=0.05)
    text = out.getvalue()
    counts = [int(n) for n in re.findall(r"(\d+) reads", text)]
    assert "reading qmp test.sock" in text and counts and max(counts) <= shown.reads
    assert shown.reads > 3 and shown.bytes > 0


def test_a_quick_snapshot_or_no_terminal_shows_nothing():
    out = io.StringIO()
    _decode_with(Console(file=out, force_terminal=True), delay=0, after=5)
    assert out.getvalue() == ""
    assert _decode_with(None, delay=0.01, after=0).reads > 3      # counting without a display
