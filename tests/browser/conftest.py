"""Headless Chromium against a real server process, with every request outside the service blocked.

Without chromium (``apt-get install chromium``) or playwright (``pip install -e ".[browser]"``)
the browser tests skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser_support import API_KEY, CHROMIUM, JNLPBA_BUNDLE, SAVED, Watch
from live_server import start_server, stop_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: while Playwright's sync API is alive it marks its event loop as running in
    this thread, so the suite's asyncio tests can only run once it has stopped."""
    if not CHROMIUM:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set BIONER_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[browser]')")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu", "--no-first-run"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(browser: Any) -> Iterator[str]:
    proc, url = start_server(JNLPBA_BUNDLE)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def keyed_server(browser: Any) -> Iterator[str]:
    proc, url = start_server(JNLPBA_BUNDLE, "--api-keys", API_KEY)
    yield url
    stop_server(proc)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., tuple[Any, Watch]]]:
    """``open_page(url)`` -> (page, watch); on teardown, nothing outside the service was attempted."""
    contexts: list[tuple[Any, Watch]] = []

    def open_(url: str, path: str = "/") -> tuple[Any, Watch]:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        context.set_default_timeout(30_000)
        watch = Watch(origin=url)
        context.route("**/*", watch.route)
        page = context.new_page()
        page.on("console", watch.console)
        page.on("pageerror", lambda exc: watch.problems.append(f"page error: {exc}"))
        page.on("request", watch.request)
        contexts.append((context, watch))
        page.goto(url + path)
        return page, watch

    yield open_
    for context, watch in contexts:
        context.close()
        assert watch.outside == [], f"requests outside the service: {watch.outside}"
        assert watch.problems == [], watch.problems


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SAVED:
        terminalreporter.write_line("browser screenshots: " + ", ".join(str(p) for p in SAVED))
