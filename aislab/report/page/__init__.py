"""The claims page: the first thing a security reviewer reads, rendered from
`conformance-report.json` alone into one self-contained HTML file (no script, no external
resource, a print stylesheet), linking each finding to the Allure drill-down beside it."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from aislab.report.page.view import EXIT_CODES, build

DRILL_DOWN = "allure/index.html"  # where scripts/html-report.sh puts Allure, relative to the page
ENV = Environment(loader=PackageLoader("aislab.report.page"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)


def render(report: dict, drill_down: str | None = None) -> str:
    """The page's HTML; `drill_down` is the Allure report's path relative to the page, if any."""
    return ENV.get_template("page.html.j2").render(page=build(report, drill_down), exit_codes=EXIT_CODES)


def write(report_file: Path, out_dir: Path) -> Path:
    """Writes out_dir/index.html, linking to the drill-down only if it is there."""
    drill_down = DRILL_DOWN if (out_dir / DRILL_DOWN).is_file() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(render(json.loads(report_file.read_text()), drill_down))
    return page
