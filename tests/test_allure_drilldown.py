"""The Allure drill-down behind the claims page: each scenario once, under its family and claim;
its status and message in the verdict vocabulary (a violation shows its sentence, never a
Python traceback; violated, undetermined and a harness error differ); step arguments readable,
with no memory address, no path of the machine and no token; and the page links to it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile

import pytest
from allure_commons import model2 as allure_model  # its TestResult would look like a test class to pytest
from allure_commons.model2 import Label, Status, StatusDetails

from aislab.report.conformance import ScenarioResult
from aislab.suite.drilldown import HEADLINE, NODEID, OUTCOME, STATUS, DrillDown, short_trace
from tests.browser import dump_dom
from tests.suite_runs import PROJECT, run_suite

NODEID_VALUE = "steps/test_authentication.py::test_x[reader]"


def recorded(outcome: str, message: str, trace: str = "") -> tuple[allure_model.TestResult, ScenarioResult]:
    """A result as allure-pytest-bdd hands it over: pytest's status, the exception and its traceback."""
    pytest_trace = "fixturefunc = <function token_not_at_llm at 0x7fbcdea093a0>\n...\naislab/judging/verdict.py:19: Violation"
    failing = allure_model.TestStepResult(name="Then the token appears in no LLM request", status=Status.FAILED,
                             statusDetails=StatusDetails(message=f"Violation: {message}", trace=pytest_trace))
    result = allure_model.TestResult(uuid="0b6f7c1e-1d2a-4c55-9a43-2a1f0e9d8c7b", status=Status.FAILED,
                        statusDetails=StatusDetails(message=f"aislab.judging.verdict.Violation: {message}", trace=pytest_trace),
                        labels=[Label(name=NODEID, value=NODEID_VALUE)],
                        steps=[allure_model.TestStepResult(name="When the reader chats", status=Status.PASSED), failing])
    return result, ScenarioResult(NODEID_VALUE, "x", ["AIS-AUTH-03"], outcome, 0.2, message, trace=trace)


@pytest.mark.parametrize("outcome", ["violated", "undetermined", "error"])
def test_each_outcome_has_its_own_status_and_shows_its_sentence(outcome):
    result, scenario = recorded(outcome, "the user's JWT was sent to the LLM provider",
                                trace="Traceback (most recent call last):\n  File \"aislab/world/lab.py\"..." if outcome == "error" else "")
    DrillDown({NODEID_VALUE: scenario}).report_result(result)
    assert result.status == STATUS[outcome]
    assert result.statusDetails.message == f"{HEADLINE[outcome]}: the user's JWT was sent to the LLM provider"
    # Only a harness error keeps a traceback, its own short one.
    assert result.statusDetails.trace == (scenario.trace if outcome == "error" else None)
    assert result.steps[1].status == result.status and result.steps[1].statusDetails == result.statusDetails
    assert Label(name=OUTCOME, value=outcome) in result.labels and scenario.allure_id == result.uuid


def test_violated_undetermined_and_harness_error_are_told_apart():
    assert len({STATUS["violated"], STATUS["undetermined"], STATUS["error"], STATUS["passed"]}) == 4


def test_every_outcome_but_passed_has_its_allure_category():
    config = json.loads((PROJECT / "aislab" / "report" / "allurerc.json").read_text())
    matched = {re.fullmatch(r"\^(\w+)\$", c["matchers"]["labels"][OUTCOME]).group(1) for c in config["categories"]}
    assert matched == set(HEADLINE) == set(STATUS) - {"passed"}


def test_a_harness_errors_trace_is_the_projects_own_frames_with_relative_paths():
    def harness_step():
        json.loads("{")  # raises inside the standard library

    with pytest.raises(ValueError) as caught:
        harness_step()
    trace = short_trace(caught.value)
    assert "tests/test_allure_drilldown.py" in trace and "harness_step" in trace
    assert "json/decoder.py" not in trace and str(PROJECT) not in trace
    assert trace.rstrip().endswith("Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")


def test_a_run_records_each_scenario_once_readably_and_the_page_links_to_it(tmp_path):
    report_dir = tmp_path / "report"
    run_suite("drill-down", report_dir, mutant="token-in-prompt",
              extra=["--claims", "AIS-AUTH-01,AIS-AUTH-03", "--alluredir", str(report_dir / "allure-results")])
    report = json.loads((report_dir / "conformance-report.json").read_text())
    scenarios = {s["allureId"]: s for c in report["claims"] for s in c["scenarios"]}
    files = list((report_dir / "allure-results").glob("*-result.json"))
    results = {r["uuid"]: r for r in (json.loads(f.read_text()) for f in files)}
    assert len(files) == len(results) == len(scenarios) and set(results) == set(scenarios), "each scenario once, each linked"

    for uuid, result in results.items():
        outcome = scenarios[uuid]["outcome"]
        labels = {(label["name"], label["value"]) for label in result["labels"]}
        assert {("outcome", outcome), ("family", "authentication"), ("nodeid", scenarios[uuid]["nodeid"])} <= labels
        assert result["status"] == STATUS[outcome]
        if outcome == "violated":
            assert set(result["statusDetails"]) == {"message"}  # the verdict's sentence, no trace
            message = result["statusDetails"]["message"]  # per chat, or over the whole life
            assert message.startswith(("violated: the user's JWT was sent to the LLM provider: ", "violated: a user's token reached an LLM host: "))
    assert {s["outcome"] for s in scenarios.values()} == {"passed", "violated"}
    text = "\n".join(f.read_text() for f in files)
    assert '"trace"' not in text and "Traceback" not in text
    assert not re.search(r"0x[0-9a-f]{6,}", text), "an object's address reached the drill-down"
    for local in (str(PROJECT), tempfile.gettempdir() + "/aislab"):
        assert local not in text, f"{local} reached the drill-down"
    assert "Chat(reader (u-rita) in env-prod" in text and "eyJ" not in text and "redacted-jwt" not in text

    subprocess.run([str(PROJECT / "scripts" / "html-report.sh"), str(report_dir)], check=True, cwd=PROJECT)
    page = (report_dir / "html" / "index.html").read_text()
    violated = next(uuid for uuid, s in scenarios.items() if s["outcome"] == "violated")
    link = f"allure/index.html#/{hashlib.md5(violated.encode()).hexdigest()}"
    assert f'href="{link}"' in page
    dom = dump_dom((report_dir / "html").as_uri() + "/" + link, tmp_path / "profile")
    assert results[violated]["name"] in dom and "violated: the user's JWT was sent to the LLM provider" in dom
    assert "Violated: observed evidence contradicts the claim" in dom  # its category
