"""Fixtures for the pictures: states of the fixture guest read from its
memory (a dump-guest-memory core, decoded the way `allocview --dump` does),
and a real headless Chromium (harness.browser).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.browser import chromium, pages


@dataclass
class GuestState:
    variant: str
    snapshot: object            # model.snapshot.Snapshot
    placement: object           # model.placement.Placement
    findings: list

    def whys(self) -> dict:
        from allocview.model.stats import why
        return {k: why(self.snapshot, k, None, 0) for k in range(self.snapshot.layout.nlists)}


def guest_state(guest, workdir: Path) -> GuestState:
    """The guest's allocator as allocview reads a dump of it (the dump is
    deleted once decoded)."""
    from allocview.inspect import inspect
    from allocview.sources import open_source
    from allocview.symbols import load_program
    from allocview.model.check import check

    core = guest.dump_guest_memory(workdir / f"{guest.variant}.core")
    try:
        with open_source(dump=str(core)) as src:
            found = inspect(src, load_program(str(guest.elf)), guest_machine=src.guest_machine())
    finally:
        core.unlink()
    return GuestState(str(guest.variant), found.snapshot, found.placement, check(found.snapshot))


@pytest.fixture(scope="session")
def states_at_2(guest_pool, tmp_path_factory):
    """{variant: GuestState} of the fixture guest stopped at checkpoint 2
    (fragmented), healthy and the no-merge defect build."""
    work = tmp_path_factory.mktemp("states")
    return {v: guest_state(guest_pool.at(v, 2), work)
            for v in ("x86_64-2021", "x86_64-2021-nomerge")}


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (fails the test when it is missing). Per
    module, not per session: Playwright's sync API runs an asyncio loop
    while it lives, and QMP (the guests) cannot run its own beside it."""
    with chromium() as b:
        yield b


@pytest.fixture
def load(browser):
    """load(path, **context options) -> harness.browser.Loaded; closed
    after the test."""
    with pages(browser) as open_:
        yield open_
