"""A snapshot's reads, shown while they last: a Memory wrapper that counts
reads and bytes and, once a snapshot has taken longer than `after`
seconds, keeps one transient line on stderr (rich) saying how far it got.

Only on a terminal and only with rich: pipes, logs and CI see nothing. A
quick snapshot (a dump, QEMU's memory) never shows it at all.
"""

from __future__ import annotations

import time

__all__ = ["ReadProgress"]

AFTER_S = 0.5


class ReadProgress:
    def __init__(self, inner, label: str, *, console=None, after: float = AFTER_S):
        """console: a rich Console to draw on (None: no display)."""
        self.inner = inner
        self.label = label
        self.console = console
        self.after = after
        self.reads = 0
        self.bytes = 0
        self._start = time.monotonic()
        self._bar = None
        self._task = None

    @classmethod
    def on_stderr(cls, inner, label: str) -> "ReadProgress":
        """Drawing on stderr when it is a terminal and rich is there."""
        import sys
        console = None
        if sys.stderr.isatty():
            try:
                from rich.console import Console
                console = Console(stderr=True)
            except ImportError:
                pass
        return cls(inner, label, console=console)

    def read(self, addr: int, size: int) -> bytes:
        self._tick()
        data = self.inner.read(addr, size)
        self._count(1, len(data))
        return data

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        from allocview.model.memory import read_many
        self._tick()
        out = read_many(self.inner, ranges)
        self._count(len(ranges), sum(len(d) for d in out if d is not None))
        return out

    def ram_ranges(self):
        from allocview.model.memory import ram_ranges
        return ram_ranges(self.inner)

    def view(self, addr: int, size: int):
        from allocview.model.memory import view
        return view(self.inner, addr, size)

    def _count(self, reads: int, nbytes: int) -> None:
        self.reads += reads
        self.bytes += nbytes
        self._tick()

    def _tick(self) -> None:
        if self.console is None or time.monotonic() - self._start < self.after:
            return
        if self._bar is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TextColumn("{task.fields[reads]} reads, {task.fields[mib]:.1f} MiB"),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"reading {self.label}", total=None, reads=0, mib=0.0)
        self._bar.update(self._task, reads=self.reads, mib=self.bytes / 2**20)

    def close(self) -> None:
        """Take the line away (idempotent)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
