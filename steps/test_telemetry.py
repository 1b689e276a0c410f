"""Scenarios of features/telemetry.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import scenarios, then

from aislab.judging import network_checks
from aislab.judging.network_checks import NetView
from aislab.judging.verdict import not_applicable_as_observed

scenarios("telemetry.feature")

@then("the egress witness saw the service's telemetry")
def telemetry_seen(lab, profile, evidence):
    lab.await_records("witness", lambda r: True, timeout=profile["idle_seconds"] + 2)
    seen = network_checks.telemetry_visible(NetView.of(lab))
    evidence["telemetry"] = seen
    if not seen:  # a service that sends none has nothing to switch off: say so, never fail it
        not_applicable_as_observed("the service sent no telemetry the witness could see")
