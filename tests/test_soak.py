"""The soak's table: a scenario whose outcome differs between runs is flaky; one judged the same
way every time is not, whatever the outcome; a scenario of several claims counts once a run."""

from __future__ import annotations

from aislab.soak import tally


def report(*scenarios: tuple[str, str, str, float]) -> dict:
    claims: dict[str, list] = {}
    for claim, name, outcome, seconds in scenarios:
        claims.setdefault(claim, []).append({"name": name, "outcome": outcome, "seconds": seconds, "message": f"{outcome} here"})
    return {"claims": [{"id": c, "scenarios": s} for c, s in claims.items()]}


def test_a_scenario_is_flaky_when_its_outcome_changes_between_runs():
    runs = [report(("AIS-A", "steady", "passed", 1.0), ("AIS-B", "wobbly", "passed", 0.5), ("AIS-C", "always undetermined", "undetermined", 0.1)),
            report(("AIS-A", "steady", "passed", 2.0), ("AIS-B", "wobbly", "undetermined", 0.7), ("AIS-C", "always undetermined", "undetermined", 0.1))]
    table = tally(runs)
    assert not table["steady"]["flaky"] and table["steady"]["passed"] == 2 and table["steady"]["slowest_seconds"] == 2.0
    assert table["wobbly"]["flaky"] and table["wobbly"]["messages"] == ["undetermined here"]
    assert not table["always undetermined"]["flaky"]


def test_a_scenario_of_two_claims_counts_once_a_run():
    table = tally([report(("AIS-A", "shared", "passed", 1.0), ("AIS-B", "shared", "passed", 1.0))])
    assert table["shared"]["passed"] == 1


def test_a_whole_life_scenario_is_judged_over_all_workers_of_a_run():
    """Which worker meets a scenario's instances depends on the sharding: one worker's
    not_applicable beside another's pass is a pass; a worker's undetermined is the run's."""
    name = "whole life"
    runs = [report(("AIS-P", f"{name} (worker 1)", "passed", 0.2), ("AIS-P", f"{name} (worker 2)", "not_applicable", 0.1)),
            report(("AIS-P", f"{name} (worker 1)", "passed", 0.3), ("AIS-P", f"{name} (worker 2)", "passed", 0.4))]
    table = tally(runs)
    assert not table[name]["flaky"] and table[name]["passed"] == 2 and table[name]["slowest_seconds"] == 0.4
    runs.append(report(("AIS-P", f"{name} (worker 1)", "undetermined", 0.2), ("AIS-P", f"{name} (worker 2)", "passed", 0.1)))
    table = tally(runs)
    assert table[name]["flaky"] and table[name]["undetermined"] == 1 and table[name]["messages"] == ["undetermined here"]
