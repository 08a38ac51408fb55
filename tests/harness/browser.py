"""A real headless Chromium for the HTML tests, driven by Playwright.

Chromium is Debian's /usr/bin/chromium (scripts/setup installs it): never
`playwright install`, which downloads a browser. A missing browser or
Playwright fails the test that needs it, with the fix in the message.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium", "Loaded", "pages"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium():
    """A launched browser, closed on exit. Keep it short-lived: while it is
    open Playwright's sync API holds an asyncio loop running in this thread,
    so QMP (qemu.qmp's sync wrapper) and a second chromium() fail."""
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
        try:
            yield b
        finally:
            b.close()


class Loaded:
    """A page opened from a file, with what went wrong while it ran: console
    errors, uncaught exceptions, and any request that left the file system."""

    def __init__(self, browser, path: Path, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _route(self, route):
        url = route.request.url
        if url.startswith("file:"):
            return route.continue_()
        self.requests.append(url)
        return route.abort()

    def close(self) -> None:
        self.context.close()


@contextmanager
def pages(browser):
    """open(path, **context options) -> Loaded, every page closed on exit."""
    opened: list[Loaded] = []

    def open_(path: Path, **context) -> Loaded:
        opened.append(Loaded(browser, path, **context))
        return opened[-1]

    try:
        yield open_
    finally:
        for p in opened:
            p.close()
