"""What allocview remembers inside gdb, in one object: created on first
use, its parts dropped on the events that make them stale.

- the decoded snapshot of this stop (dropped when the guest runs, stops,
  or gdb writes memory);
- the program: layout, symbols, placement (dropped with gdb's objfiles);
- the QEMU process behind the stub (per connection);
- saved snapshots, the tracer, check-each (until the program changes);
- the settings (`set alloc ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Session", "HostState", "session", "drop"]


@dataclass
class HostState:
    mode: str = "auto"             # "auto": the QEMU process when possible; "stub"
    key: tuple | None = None       # the connection it was found for
    memory: object | None = None   # allocview.sources.hostmem.HostMemory
    why_not: str = "not tried yet"


@dataclass
class Session:
    # settings
    format: str | None = None      # forced byte encoding; None: detect
    color: str = "auto"            # on, off, auto (gdb's `set style enabled`)
    # this stop
    snapshot: object | None = None
    unchecked: object | None = None
    # the program and where the guest has it
    program: object | None = None
    placed: tuple | None = None    # (key, Program, Placement told, offset from gdb's symbols)
    told: set[str] = field(default_factory=set)     # programs whose relocation was advised
    # the connection
    host: HostState = field(default_factory=HostState)
    # kept across stops
    saved: dict[str, object] = field(default_factory=dict)
    counter: int = 0
    tracer: object | None = None
    last_trace: str | None = None      # the file the last `alloc trace` wrote (owner, live)
    checkeach: object | None = None

    def invalidate(self, *_event) -> None:
        """The guest ran, stopped, or its memory changed."""
        self.snapshot = None
        self.unchecked = None

    def forget_program(self, *_event) -> None:
        """gdb loaded or dropped objfiles."""
        self.program = None
        self.placed = None
        self.invalidate()

    def forget_host(self) -> None:
        if self.host.memory is not None:
            self.host.memory.close()
        self.host.memory, self.host.key, self.host.why_not = None, None, "not tried yet"


_current: Session | None = None


def session() -> Session:
    global _current
    if _current is None:
        _current = Session()
    return _current


def drop() -> None:
    """Forget everything (gdb cleared its objfiles: another program)."""
    global _current
    s = _current
    if s is None:
        return
    for watcher in (s.tracer, s.checkeach):
        if watcher is not None:
            try:
                watcher.remove()
            except Exception:  # noqa: BLE001 - breakpoints of a program that is gone
                pass
    s.forget_host()
    keep = (s.format, s.color, s.host.mode)
    _current = Session(format=keep[0], color=keep[1])
    _current.host.mode = keep[2]
