"""Fixtures for the client tests. Every QEMU started here is killed when
its test ends, pass or fail."""

from __future__ import annotations

import pytest

from .helpers import Qemu


@pytest.fixture
def qemu(tmp_path):
    """qemu(**Qemu kwargs) -> a started Qemu, killed after the test."""
    started: list[Qemu] = []

    def start(**kwargs) -> Qemu:
        q = Qemu(tmp_path, **kwargs)
        started.append(q)
        return q

    yield start
    for q in started:
        q.kill()
