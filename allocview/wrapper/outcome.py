"""What happened to one test under allocview-qemu."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Outcome"]


@dataclass
class Outcome:
    """What happened to one test. `ended`: "exit(N)", "abort" or
    "no check: <reason>"; `report`: model.report.report's document when the
    allocator was checked."""
    name: str
    kernel: str | None = None
    elf: str | None = None
    qemu: str | None = None
    qemu_status: int | None = None       # Popen.returncode: negative is a signal
    ended: str = "no check: not run"
    report: dict | None = None
    signals: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    wall_time: float | None = None
    check_time: float | None = None
    notes: list[str] = field(default_factory=list)
    read_via: str | None = None          # where the check's bytes came from
    # with error or warning findings: the state's bytes (arch, [(addr, bytes)])
    # for a small dump, and the HTML report, written beside the JSON
    state: tuple[str, list] | None = None
    page: str | None = None

    @property
    def checked(self) -> bool:
        return self.report is not None

    def no_check(self, reason: str) -> None:
        if self.report is None and not self.ended.startswith("no check"):
            self.notes.append(f"ended {self.ended}")
        self.report = None
        self.ended = f"no check: {reason}"
