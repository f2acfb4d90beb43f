"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) against the live test server.

Screenshots land in test-artifacts/screenshots/. Under CI=true a missing Chromium fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT, require

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Chromium must not phone home: the machine has no network, and tests must show the app needs none.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Playwright's sync API runs an event loop in this thread; the live server and ORM calls here are sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require(Path(CHROMIUM).exists() or shutil.which("chromium") is not None, f"Chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # Every browser test doubles as a Content-Security-Policy check: a refused script or style fails it.
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert refused == [], f"the page broke its Content-Security-Policy: {refused}"


def off_machine_requests(page: Page, live_server_url: str) -> list[str]:
    """Start recording every request the page makes to anywhere but the live server."""
    seen: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((live_server_url, "data:", "blob:")) else seen.append(r.url))
    return seen
