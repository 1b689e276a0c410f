"""A parallel run's plan: each worker's share is balanced on what the scenarios took in the last
run of the same profile (a certification run's idle windows are 30 s, the quick profile's 1 s: a
plan made on the other profile's seconds leaves one worker with every long window)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from aislab.suite import sharding

IDLE = [f"steps/test_air_gap.py::idle_{n}" for n in range(4)]
CHATS = [f"steps/test_authorization.py::chat_{n}" for n in range(8)]


def shares(profile: str) -> list[float]:
    items = [SimpleNamespace(nodeid=n) for n in IDLE + CHATS]
    plan = sharding.plan(items, 2, lambda i: i.nodeid, lambda i: False, lambda i: i.nodeid in IDLE, profile)
    seconds = sharding.expected_seconds(profile)
    return sorted(sum(seconds[i.nodeid] for i in mine) for mine in plan)


def test_each_profile_plans_on_its_own_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "DURATIONS", tmp_path / "scenario-seconds.json")
    sharding.remember_seconds({**dict.fromkeys(IDLE, 1.2), **dict.fromkeys(CHATS, 2.0)}, "quick")
    sharding.remember_seconds({**dict.fromkeys(IDLE, 30.5), **dict.fromkeys(CHATS, 2.5)}, "certification")
    sharding.remember_seconds({IDLE[0]: 1.1}, "quick")  # a later quick run updates its own seconds only
    assert sharding.expected_seconds("quick")[IDLE[0]] == 1.1 and sharding.expected_seconds("certification")[IDLE[0]] == 30.5
    assert shares("certification") == [71.0, 71.0]  # two long windows each, not four on one worker
    quick = shares("quick")
    assert quick[1] - quick[0] <= 2.0


def test_a_flat_table_of_an_older_harness_is_no_guide(tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "DURATIONS", tmp_path / "scenario-seconds.json")
    (tmp_path / "scenario-seconds.json").write_text(json.dumps({IDLE[0]: 30.2, CHATS[0]: 0.4}))
    assert sharding.expected_seconds("quick") == {}
    sharding.remember_seconds({CHATS[0]: 0.5}, "quick")
    assert json.loads((tmp_path / "scenario-seconds.json").read_text()) == {"quick": {CHATS[0]: 0.5}}
