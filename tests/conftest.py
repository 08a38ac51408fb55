"""Fixtures that boot the fixture guest (tests/guest) under QEMU with gdb.

Tests that need QEMU or gdb fail (never skip) when those cannot start.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Guest, build  # noqa: E402

TOOLS = ("qemu-system-x86_64", "qemu-system-i386", "qemu-system-s390x", "qemu-system-aarch64",
         "qemu-system-ppc64", "qemu-system-riscv64", "gdb", "gdb-multiarch", "make", "gcc",
         "objcopy", "i686-linux-gnu-gcc", "s390x-linux-gnu-gcc", "aarch64-linux-gnu-gcc",
         "powerpc64-linux-gnu-gcc", "riscv64-linux-gnu-gcc")
PACKAGES = ("qemu-system-x86 qemu-system-misc qemu-system-arm qemu-system-ppc gdb gdb-multiarch "
            "make gcc binutils gcc-i686-linux-gnu gcc-s390x-linux-gnu gcc-aarch64-linux-gnu "
            "gcc-powerpc64-linux-gnu gcc-riscv64-linux-gnu (never gcc-multilib); "
            "or run scripts/setup as root")


@pytest.fixture(scope="session")
def guest_build() -> None:
    """Every guest variant built (make; a no-op when fresh). Fails when a
    tool is missing or the build breaks."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"guest tests need {', '.join(missing)} (apt: {PACKAGES})", pytrace=False)
    build()


@pytest.fixture
def make_guest(guest_build):
    """make_guest(variant="x86_64-2021", **Guest kwargs) -> a started Guest
    (any arch: "s390x-2021", "ppc64-2020-nomerge"...),
    closed (QEMU and gdb killed) when the test ends, pass or fail."""
    guests: list[Guest] = []

    def make(variant: str = "x86_64-2021", **kwargs) -> Guest:
        g = Guest(variant, **kwargs)
        guests.append(g)
        return g.start()

    yield make
    for g in guests:
        g.close()


class GuestPool:
    """Guests shared by the session, each moved forward to the checkpoint a
    test asks for (a new guest when it is already past). Treat them as read
    only: a test that changes guest state makes its own with make_guest."""

    def __init__(self) -> None:
        self._guests: dict[tuple, Guest] = {}

    def at(self, variant: str, checkpoint: int, **kwargs) -> Guest:
        key = (str(variant), tuple(sorted(kwargs.items())))
        g = self._guests.get(key)
        if g is not None and g.stopped_at != checkpoint and (
                not g.running or any(k >= checkpoint for k in g.checkpoints)
                or (g.stopped_at or 0) > checkpoint):
            g.close()
            g = None
        if g is None:
            g = self._guests[key] = Guest(variant, **kwargs).start()
        g.stop_at_checkpoint(checkpoint)
        return g

    def close(self) -> None:
        for g in self._guests.values():
            g.close()
        self._guests.clear()


@pytest.fixture(scope="session")
def guest_pool(guest_build):
    pool = GuestPool()
    yield pool
    pool.close()


@pytest.fixture
def guest_at(guest_pool):
    """guest_at(variant, n, **Guest kwargs) -> a session-shared Guest
    stopped by gdb at exactly checkpoint n (read only)."""
    return guest_pool.at
