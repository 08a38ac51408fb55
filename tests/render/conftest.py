"""Fixtures for the pictures: states of the fixture guest read from its
memory (a dump-guest-memory core, decoded the way `allocview --dump` does),
and a real headless Chromium driven by Playwright.

Chromium is Debian's /usr/bin/chromium (scripts/setup installs it); never
`playwright install`, which downloads a browser. A missing browser or
Playwright fails the tests that need them, with the fix in the message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class GuestState:
    variant: str
    snapshot: object            # model.snapshot.Snapshot
    placement: object           # model.placement.Placement
    findings: list

    def whys(self) -> dict:
        from model.stats import why
        return {k: why(self.snapshot, k, None, 0) for k in range(self.snapshot.layout.nlists)}


def guest_state(guest, workdir: Path) -> GuestState:
    """The guest's allocator as allocview reads a dump of it (the dump is
    deleted once decoded)."""
    from allocview.inspect import inspect
    from allocview.sources import open_source
    from allocview.symbols import load_program
    from model.check import check

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


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Debian's), closed at the end of the session."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the HTML tests need Chromium at {CHROMIUM}: apt-get install chromium "
                    "(scripts/setup does it as root); never `playwright install`", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the HTML tests need Playwright's Python package: "
                    ".venv/bin/pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Loaded:
    """A page opened from a file, with what went wrong while it ran: console
    errors, uncaught exceptions, and any request that left the file."""

    def __init__(self, browser, path: Path, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _route(self, route):
        url = route.request.url
        if url.startswith("file:"):
            return route.continue_()
        self.requests.append(url)
        return route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def load(browser):
    """load(path, **context options) -> Loaded; closed after the test."""
    pages: list[Loaded] = []

    def open_(path: Path, **context) -> Loaded:
        pages.append(Loaded(browser, path, **context))
        return pages[-1]

    yield open_
    for p in pages:
        p.close()
