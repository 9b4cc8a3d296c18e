"""What the browser tests share: where things are, the request watch, screenshots.

The browser is Debian's ``chromium`` (or ``BIONER_CHROMIUM``), driven by Playwright from PyPI (the
``browser`` extra); Playwright's own browser download is never used. Screenshots go to
``runs/browser/`` (or ``BIONER_BROWSER_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
JNLPBA_BUNDLE = ROOT / "models" / "bioner-minilm-jnlpba"
ARTIFACTS = Path(os.environ.get("BIONER_BROWSER_ARTIFACTS", ROOT / "runs" / "browser"))
API_KEY = "viewer-test-key-7f3a"
CHROMIUM = os.environ.get("BIONER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SAVED: list[Path] = []


@dataclass
class Watch:
    """What a page tried beyond the service: requests (aborted), CSP violations, script errors."""

    origin: str
    outside: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def request(self, request: Any) -> None:
        self.requests.append(request)

    def console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.problems.append(message.text)


def save_screenshot(page: Any, name: str, **options: Any) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), **options)
    SAVED.append(path)
    return path
