"""How the suite reports what it could not judge: a family the driver does not declare is
not_applicable (never passed), a broken lab is undetermined (never violated), and a broken
driver file stops the run with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.suite_runs import DRIVERS, run_suite


def write_driver(tmp_path: Path, **override) -> Path:
    doc = {"extends": str(DRIVERS / "reference.yaml"), **override}
    path = tmp_path / "driver.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_undeclared_families_are_not_applicable(tmp_path):
    driver = write_driver(tmp_path, families=["authentication"])
    run = run_suite("auth-only", tmp_path / "report", driver=driver, extra=["-m", "authentication or audit"])
    assert run.verdicts == {"AIS-AUTH-01": "satisfied", "AIS-AUTH-02": "satisfied", "AIS-AUTH-03": "satisfied",
                            "AIS-AUTH-04": "satisfied",
                            # the scale scenario is tagged AIS-AUDIT-02 and AIS-RBAC-03 alike
                            "AIS-RBAC-03": "not_applicable", "AIS-AUDIT-01": "not_applicable", "AIS-AUDIT-02": "not_applicable"}, run.output
    assert run.result == "partial"


def test_a_service_that_never_starts_is_undetermined_not_violated(tmp_path):
    driver = write_driver(tmp_path, service={"command": ["{python}", "-c", "raise SystemExit('cannot start: bad config')"]})
    run = run_suite("dead-service", tmp_path / "report", driver=driver, extra=["-m", "authentication"])
    assert set(run.verdicts.values()) == {"undetermined"}, run.verdicts
    # Its log is the reason, in the report and its claims table (the output's tail is pytest's
    # summary, whose lines carry the message only where it detects CI: not a thing to test on).
    assert all("cannot start: bad config" in c["reason"] for c in run.report["claims"] if c["verdict"] == "undetermined")
    assert run.exit_code != 0


def test_a_broken_driver_file_names_the_field(tmp_path):
    driver = write_driver(tmp_path, service={"port": "ninety"})
    run = run_suite("broken-driver", tmp_path / "report", driver=driver, expect_no_report=True)
    assert run.exit_code != 0
    assert "service.port: expected int" in run.output


def test_the_scale_scenarios_are_not_applicable_outside_the_certification_profile_never_passed(tmp_path):
    run = run_suite("scale-quick", tmp_path / "report", extra=["--claims", "AIS-AUDIT-02,AIS-RBAC-03", "-k", "fifty"])
    scenarios = [s for c in run.report["claims"] for s in c["scenarios"]]
    assert len(scenarios) == 2 and all(s["outcome"] == "not_applicable" and "runs only with --profile certification" in s["message"]
                                       for s in scenarios), scenarios
    assert run.verdicts == {"AIS-AUDIT-02": "not_applicable", "AIS-RBAC-03": "not_applicable"} and run.exit_code == 101, run.output
