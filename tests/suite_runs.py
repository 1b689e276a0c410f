"""Runs the whole conformance suite against a service in a subprocess and reads its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker

PROJECT = Path(__file__).resolve().parent.parent
DRIVERS = PROJECT / "fixtures" / "drivers"


SCHEMA = json.loads((PROJECT / "aislab" / "report" / "conformance-report.schema.json").read_text())


def validate_report(report: dict) -> None:
    """Every report a test reads must satisfy the published schema."""
    errors = sorted(Draft202012Validator(SCHEMA, format_checker=FormatChecker()).iter_errors(report), key=str)
    assert not errors, "conformance report breaks its schema: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@dataclass
class SuiteRun:
    name: str
    verdicts: dict[str, str]
    result: str
    seconds: float
    output: str
    exit_code: int
    report: dict | None = None

    def with_verdict(self, verdict: str) -> set[str]:
        return {cid for cid, v in self.verdicts.items() if v == verdict}


def run_suite(name: str, report_dir: Path, mutant: str | None = None, extra: list[str] | None = None,
              driver: Path | None = None, expect_no_report: bool = False, env_extra: dict[str, str] | None = None) -> SuiteRun:
    """The suite in a subprocess. `mutant`: the variant a defect driver selects through
    AIS_MUTANT (the reference's mutants unless another defect driver is given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if mutant:
        env["AIS_MUTANT"] = mutant
    env.update(env_extra or {})
    driver = driver or DRIVERS / ("mutant.yaml" if mutant else "reference.yaml")
    cmd = [sys.executable, "-m", "pytest", "steps", "-q", "--driver", str(driver), "--report-dir", str(report_dir), *(extra or [])]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    report_file = report_dir / "conformance-report.json"
    if not report_file.exists():
        if expect_no_report:
            return SuiteRun(name, {}, "none", seconds, proc.stdout + proc.stderr, proc.returncode)
        raise AssertionError(f"suite run {name} wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads(report_file.read_text())
    validate_report(report)
    return SuiteRun(name, {c["id"]: c["verdict"] for c in report["claims"]}, report["result"], seconds, proc.stdout[-4000:],
                    proc.returncode, report)
