"""`aislab run [OPTIONS]`: the conformance suite as a command a CI gate can trust.

It runs the scenarios (the pytest plugin underneath, with every option of it: --driver,
--target, --report-dir, --profile, --claims, --waivers, --deadline, --chart, --values, ...,
and -m / -k), writes the report, JUnit, Allure results and the bundle under the report
directory, renders the HTML report, and returns the report's exit code:

    0    conformant: every claim judged is satisfied (or waived)
    100  non-conformant: a claim is violated
    101  partial: nothing violated, but something undetermined or not applicable
    1    the harness failed, the input was broken, or the run was interrupted (SIGINT,
         SIGTERM, --deadline): no verdict of this run can be trusted as a whole
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from aislab import PROJECT

EXIT_CODES = (0, 1, 100, 101)
DEFAULT_REPORT_DIR = PROJECT / "reports" / "latest"


def _report_dir(args: list[str]) -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--report-dir", default=str(DEFAULT_REPORT_DIR))
    known, _ = parser.parse_known_args(args)
    return Path(known.report_dir).resolve()


def _workers(args: list[str]) -> tuple[int, list[str]]:
    """--workers N (or auto: as many as the machine has cores, at most 2), and the other arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", default="auto")
    known, rest = parser.parse_known_args(args)
    if known.workers == "auto":
        return min(2, os.cpu_count() or 1), rest
    if not known.workers.isdigit() or int(known.workers) < 1:
        raise SystemExit(f"aislab: --workers {known.workers}: give a number of workers (1 or more) or auto")
    return int(known.workers), rest


def run(args: list[str]) -> int:
    import pytest

    workers, args = _workers(args)
    report_dir = _report_dir(args)
    if workers > 1:
        from aislab.suite import workers as parallel

        code = parallel.run([a for a in _without_report_dir(args)], report_dir, workers)
        if (report_dir / "conformance-report.json").exists():
            render_html(report_dir)
        return code
    pytest_args = [str(PROJECT / "steps"), "--rootdir", str(PROJECT), "-c", str(PROJECT / "pyproject.toml"), "-q",
                   "--report-dir", str(report_dir), "--junitxml", str(report_dir / "junit.xml"),
                   "--alluredir", str(report_dir / "allure-results"), *args]
    status = int(pytest.main(pytest_args))
    report = report_dir / "conformance-report.json"
    code = json.loads(report.read_text()).get("exitCode") if report.exists() and status in EXIT_CODES else None
    if report.exists():
        render_html(report_dir)
    # A report from this run says how it ended; without one the harness failed (pytest's own
    # codes, 2 to 5, are never passed on: a gate knows only 0, 1, 100 and 101).
    return code if code in EXIT_CODES and code == status else 1


def _without_report_dir(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--report-dir":
            skip = True
        elif not a.startswith("--report-dir="):
            out.append(a)
    return out


def render_html(report_dir: Path) -> None:
    """The claims page and the Allure drill-down; a missing renderer is said, never fatal.
    (`AISLAB_NO_HTML=1`: not at all, as the benchmark measures the suite alone.)"""
    if os.environ.get("AISLAB_NO_HTML"):
        return
    env = {**os.environ, "PY": sys.executable}
    subprocess.run([str(PROJECT / "scripts" / "html-report.sh"), str(report_dir)], env=env, cwd=PROJECT, check=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 1
    if argv[0] != "run":
        print(f"aislab: unknown command {argv[0]!r}; use `aislab run [OPTIONS]` (see `aislab --help`)", file=sys.stderr)
        return 1
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
