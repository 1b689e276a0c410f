"""The human report: two self-contained HTML files that open offline in a browser and show every
claim of the run: the claims page (html/index.html) and the Allure 3 drill-down beside it
(html/allure/index.html, from npm); Debian's Chromium, headless."""

from __future__ import annotations

import subprocess

from tests.browser import dump_dom
from tests.suite_runs import PROJECT, run_suite


def test_single_file_html_shows_the_claims_offline(tmp_path):
    report_dir = tmp_path / "report"
    run = run_suite("html", report_dir, extra=["--claims", "AIS-RBAC-04,AIS-AUDIT-02", "--alluredir", str(report_dir / "allure-results")])
    assert run.exit_code == 0
    subprocess.run([str(PROJECT / "scripts" / "html-report.sh"), str(report_dir)], check=True, cwd=PROJECT)
    # The page lists every claim; the drill-down groups scenarios by family, then claim.
    shown = {"index.html": ("AIS-RBAC-04", "AIS-AUDIT-02"), "allure/index.html": ("authorization", "audit")}
    for name, expected in shown.items():
        html = report_dir / "html" / name
        assert [p.name for p in html.parent.iterdir() if p.suffix in (".js", ".css")] == []  # one file, nothing beside it
        dom = dump_dom(html.as_uri(), tmp_path / "profile")
        for text in expected:
            assert text in dom, f"html/{name} does not show {text}"
