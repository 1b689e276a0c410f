"""The human report: one self-contained HTML file that opens offline in a browser and shows
every claim of the run (Allure 3 from npm; Debian's Chromium, headless)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.suite_runs import PROJECT, run_suite

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_single_file_html_shows_the_claims_offline(tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is needed (make test installs it: scripts/setup.sh .venv --browser)")
    report_dir = tmp_path / "report"
    run = run_suite("html", report_dir, extra=["--claims", "AIS-RBAC-04,AIS-AUDIT-02", "--alluredir", str(report_dir / "allure-results")])
    assert run.exit_code == 0
    subprocess.run([str(PROJECT / "scripts" / "html-report.sh"), str(report_dir)], check=True, cwd=PROJECT)
    html = report_dir / "html" / "index.html"
    assert [p.name for p in html.parent.iterdir() if p.suffix in (".js", ".css")] == []  # one file, nothing beside it
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
         "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    for claim in ("AIS-RBAC-04", "AIS-AUDIT-02"):
        assert claim in dom, f"the rendered report does not show {claim}"
