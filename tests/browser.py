"""Debian's Chromium, headless and offline, as the project's tests open HTML reports."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of a page: the DOM dump then carries what a reader sees (innerText leaves
# out what CSS hides, such as a closed <details>).
VISIBLE_TEXT_PROBE = "<script>document.documentElement.dataset.visibleText = document.body.innerText;</script>"


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is needed (make test installs it: scripts/setup.sh .venv --browser)")
    return path


def dump_dom(url: str, profile: Path, budget_ms: int = 15000) -> str:
    """The DOM once the page's scripts have run for `budget_ms` of virtual time."""
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    ).stdout


def visible_text(page: Path, scratch: Path) -> str:
    """The text of `page` as Chromium lays it out for a reader, whitespace collapsed."""
    probe = scratch / f"visible-{page.name}"
    probe.write_text(page.read_text().replace("</body>", VISIBLE_TEXT_PROBE + "</body>"))
    dom = dump_dom(probe.as_uri(), scratch / "profile", budget_ms=2000)
    found = re.search(r'data-visible-text="([^"]*)"', dom)
    assert found, f"Chromium did not lay out {page.name}:\n{dom[:2000]}"
    return " ".join(html.unescape(found.group(1)).split())
