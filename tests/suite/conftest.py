"""Fixtures for allocview-qemu and `allocview suite` tests: a work
directory with the wrapper and gdb shims, and a check that no process of
the test outlives it."""

from __future__ import annotations

import pytest

from .helpers import Workdir, leftovers


@pytest.fixture
def work(tmp_path, guest_build):
    """A Workdir; fails the test when a process holding its marker (QEMU,
    the wrapper, gdb) is still alive at the end."""
    w = Workdir(tmp_path)
    yield w
    left = leftovers(w.marker)
    assert not left, f"processes left behind: {left}"
