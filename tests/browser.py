"""Headless Debian Chromium for the browser tests, driven by Playwright through its executable path (its own
browser download does not work here). Skips the test when Chromium or Playwright is missing (`.ci/run`
installs Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium; .ci/run does it)")


@contextmanager
def page(profile: Path) -> Iterator[tuple[Any, list[str]]]:
    """A new page in a fresh headless Chromium profile, and the console errors and page errors it logs."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            p = browser.new_page()
            p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            p.on("pageerror", lambda e: errors.append(str(e)))
            yield p, errors
        finally:
            browser.close()
