"""Parallel labs: which scenarios each worker judges, worked out by every worker alike from the
same selection (`--shard I/N`), so that no one has to hand out a plan.

Scenarios that configure the service alike stay together (a worker restarts its service no more
than it must); groups go to the least loaded worker, the longest first (expected seconds from the
last run of the same profile, where there is one: a certification run's idle windows are 30 s where
the quick profile's are 1 s). Each worker has a lab of its own, so nothing one does can be seen
by another's witnesses: a concurrency barrier or an idle window needs no more than that. A
whole-life scenario judges the life of a lab: every worker runs it, over its own lab.
"""

from __future__ import annotations

import json
import re

import pytest

from aislab import PROJECT

# Where each run leaves what its scenarios took, per profile, for the next run's plan.
DURATIONS = PROJECT / ".cache" / "scenario-seconds.json"
# Expected seconds where there is no history: a network scenario restarts the service.
DEFAULT_SECONDS = {"network": 1.3, "other": 0.35}


def parse(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    found = re.fullmatch(r"(\d+)/(\d+)", value)
    if not found or not 1 <= int(found[1]) <= int(found[2]):
        raise pytest.UsageError(f"--shard {value}: give I/N with 1 <= I <= N")
    return int(found[1]), int(found[2])


def _known() -> dict[str, dict[str, float]]:
    try:
        known = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    # Seconds by profile, then node id (an older file, one flat table of all profiles, is no guide).
    return {k: v for k, v in known.items() if isinstance(v, dict)} if isinstance(known, dict) else {}


def expected_seconds(profile: str) -> dict[str, float]:
    return _known().get(profile, {})


def plan(items: list, workers: int, group_of, is_everyones, is_network, profile: str) -> list[list]:
    """The items of each worker, in the order given. `group_of(item)`: items with equal groups go
    to one worker; `is_everyones(item)`: every worker runs it."""
    seconds = expected_seconds(profile)
    groups: dict[str, list] = {}
    for item in items:
        if not is_everyones(item):
            groups.setdefault(group_of(item), []).append(item)
    cost = {g: sum(seconds.get(i.nodeid, DEFAULT_SECONDS["network" if is_network(i) else "other"]) for i in members)
            for g, members in groups.items()}
    loads, assigned = [0.0] * workers, {}
    for group in sorted(groups, key=lambda g: (-cost[g], g)):  # longest first, ties by name: every worker alike
        worker = loads.index(min(loads))
        assigned[group], loads[worker] = worker, loads[worker] + cost[group]
    return [[i for i in items if is_everyones(i) or assigned[group_of(i)] == w] for w in range(workers)]


def remember(results: dict, profile: str) -> None:
    """What this run's scenarios took (ScenarioResults by node id), for the next run's plan."""
    remember_seconds({nodeid: r.seconds for nodeid, r in results.items() if r.outcome != "not_applicable"}, profile)


def remember_seconds(seconds: dict[str, float], profile: str) -> None:
    known = _known()
    known.setdefault(profile, {}).update({nodeid: round(value, 3) for nodeid, value in seconds.items()})
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(json.dumps(known, indent=0, sort_keys=True) + "\n")
