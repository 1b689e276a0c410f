"""The driver contract fits assistants other than the reference: the CLI assistant in
fixtures/assistants/ (one-shot command, INI config, no user auth) is driven only through its
driver file, and the verdicts make sense: identity claims not applicable, the rest judged."""

from __future__ import annotations

import pytest

from tests.suite_runs import DRIVERS, run_suite

IDENTITY = {"AIS-AUTH-01", "AIS-AUTH-02", "AIS-AUTH-03", "AIS-AUTH-04", "AIS-RBAC-01", "AIS-RBAC-02", "AIS-RBAC-03", "AIS-RBAC-04",
            "AIS-RBAC-05", "AIS-AUDIT-01", "AIS-AUDIT-02"}
CONFIGURATION = {f"AIS-CFG-0{i}" for i in range(1, 9)}  # it is not deployed by the Testkube chart


@pytest.mark.parametrize("target", ["local", "docker"])
def test_cli_assistant_is_judged_on_what_it_can_be_judged_on(tmp_path, target):
    run = run_suite("cli-assistant", tmp_path / "r", driver=DRIVERS / "cli-assistant.yaml", extra=["--target", target])
    assert run.with_verdict("not_applicable") == IDENTITY | CONFIGURATION, run.verdicts
    # Malformed tool calls are judged against what one user may read: with no users, undetermined.
    assert run.verdicts["AIS-RO-04"] == "undetermined", run.verdicts
    judged = set(run.verdicts) - IDENTITY - CONFIGURATION - {"AIS-RO-04"}
    assert judged and run.with_verdict("satisfied") == judged, run.verdicts
    assert (run.result, run.exit_code) == ("partial", 101)
