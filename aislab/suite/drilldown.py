"""Allure as the drill-down behind the claims page, in the report's own vocabulary.

allure-pytest-bdd records what pytest saw: a Violation is an AssertionError, so `failed` with
its Python traceback, and a harness error looks much the same. Each result is rewritten just
before it is written: its status says the scenario's outcome (violated, undetermined and a
harness error differ at a glance), its message is the verdict's own sentence with no traceback,
and labels place it once, under its family and claim (`scripts/html-report.sh` groups by them;
`aislab/report/allurerc.json` names a category per outcome label).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import allure_commons
import pytest
from allure_commons.model2 import Label, Status, StatusDetails, TestResult
from allure_pytest_bdd.utils import ALLURE_LABEL_MARK

from aislab import PROJECT
from aislab.report.conformance import ScenarioResult

NODEID, FAMILY, CLAIM, OUTCOME = "nodeid", "family", "claim", "outcome"
STATUS = {
    "passed": Status.PASSED,
    "violated": Status.FAILED,
    "undetermined": Status.UNKNOWN,
    "error": Status.BROKEN,
    "not_applicable": Status.SKIPPED,
}
HEADLINE = {
    "violated": "violated",
    "undetermined": "undetermined (the evidence does not decide)",
    "error": "harness error: no verdict",
    "not_applicable": "not applicable",
}


def label_marks(nodeid: str, families: dict[str, str]) -> list[pytest.MarkDecorator]:
    """The labels a scenario carries from its start: the claims it judges (claim ID: family),
    and its node id, by which its result finds the scenario's outcome."""
    mark = getattr(pytest.mark, ALLURE_LABEL_MARK)
    return [mark(nodeid, label_type=NODEID),
            *(mark(family, label_type=FAMILY) for family in sorted(set(families.values()))),
            *(mark(claim, label_type=CLAIM) for claim in families)]


def short_trace(error: BaseException) -> str:
    """Where a harness error happened in the project's own code (pytest's and the libraries'
    frames left out, no arguments), with paths relative to the project."""
    summary = traceback.TracebackException.from_exception(error)
    ours = []
    for frame in summary.stack:
        path = Path(frame.filename)
        if path.is_relative_to(PROJECT) and "site-packages" not in path.parts:
            frame.filename = str(path.relative_to(PROJECT))
            ours.append(frame)
    summary.stack = traceback.StackSummary.from_list(ours)
    return "".join(summary.format(chain=False))


class DrillDown:
    """An allure-commons plugin; `results` are the session's scenario outcomes by node id."""

    def __init__(self, results: dict[str, ScenarioResult]):
        self.results = results

    @allure_commons.hookimpl(tryfirst=True)  # before the file writer
    def report_result(self, result: TestResult) -> None:
        nodeid = next((label.value for label in result.labels if label.name == NODEID), None)
        scenario = self.results.get(nodeid)
        if scenario is None:
            return
        scenario.allure_id = result.uuid
        result.labels.append(Label(name=OUTCOME, value=scenario.outcome))
        result.status = STATUS[scenario.outcome]
        details = None
        if scenario.outcome in HEADLINE:
            # A verdict is its sentence; only a harness error keeps a (short) traceback.
            details = StatusDetails(message=f"{HEADLINE[scenario.outcome]}: {scenario.message}", trace=scenario.trace or None)
        result.statusDetails = details
        for step in _steps(result.steps):
            if step.statusDetails is not None and step.status in (Status.FAILED, Status.BROKEN):
                step.status, step.statusDetails = result.status, details


def _steps(steps: list):
    for step in steps:
        yield step
        yield from _steps(step.steps)
