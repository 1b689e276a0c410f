"""The exercise control of every scenario: after its steps, what the service was seen doing
(aislab.judging.exercise, counted from the lab's records) is held against what its claims
require (`exercise:` in claims.yaml) and what its own steps provoked (a restart, an LLM error, an
idle window). A scenario that found no contradiction, or found its claim not applicable by what
it observed, but did not see the service do that work, is `undetermined`: its silence proves
nothing. A violation stands whatever the exercise: it is an observed contradiction.

Every scenario's exercise goes to the report (beside its outcome) and to its evidence."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from _pytest.outcomes import Skipped

from aislab.judging import exercise as ex
from aislab.judging.network_checks import infrastructure_ips, is_probe, leaving_packets
from aislab.judging.verdict import NOT_APPLICABLE_OBSERVED, Undetermined
from aislab.suite.configuration import DEPLOYMENT
from aislab.suite.plugin import EXERCISE, SESSION, claim_ids, is_lifetime
from aislab.world.targets.base import LabError

SCOPE = pytest.StashKey["Scope"]()
NETWORK_HOSTS = ("witness", "packets", "dns", "outside")


@dataclass
class Scope:
    """What one scenario's exercise is read from: where the lab stood when it began, what its
    steps provoked, and, for a whole-life scenario, the service periods it judged."""

    lab: object | None = None
    chats: int = 0
    life: int = 0
    started: float = 0.0
    idle: float = 0.0
    marks: dict[str, int] = field(default_factory=dict)
    provoked: dict[str, float] = field(default_factory=dict)  # counter -> the least the scenario's steps call for
    periods: list | None = None  # lifetime.Period, set by a whole-life check
    observed: dict[str, float] = field(default_factory=dict)  # counters a step read from the lab's records itself

    def provoke(self, counter: str, least: float) -> None:
        self.provoked[counter] = max(self.provoked.get(counter, 0), least)

    def observe(self, counter: str, count: float) -> None:
        """What a step counted in the lab's own records (the faults the service met, say)."""
        self.observed[counter] = self.observed.get(counter, 0) + count


@pytest.fixture
def exercise_scope() -> Scope:
    return Scope()


def begin(scope: Scope, lab, network: bool) -> None:
    """Where the lab stands as the scenario begins (after its reset)."""
    scope.lab, scope.chats, scope.life, scope.started, scope.idle = lab, len(lab.chat_records), len(lab.life), time.time(), lab.idle_seconds
    scope.marks = lab.witnesses.heads(NETWORK_HOSTS) if network else {}


def _proxy_ips(lab) -> set[str]:
    return {lab.target.address(h) for h in ("tinyproxy", "squid")}


def _syn_to(records: list[dict], ips: set[str]) -> int:
    return sum(1 for r in records if r.get("proto") == "tcp-syn" and r["dst"].rsplit(":", 1)[0] in ips)


def of_scenario(scope: Scope) -> ex.Exercise:
    lab = scope.lab
    cli = lab.driver.chat.mode == "cli"
    if scope.periods is not None:  # a whole-life check: every chat and instance of the periods it judged
        instances = [p.instance for p in scope.periods]
        numbers = {i.number for i in instances}
        chats = [c for c in lab.chat_records if c.instance in numbers]
        seen = {"egress attempts": sum(len(p.witness) for p in scope.periods),
                "other packets leaving": sum(len(leaving_packets(p.packets, infrastructure_ips(lab))) for p in scope.periods),
                "DNS lookups": sum(len(p.dns) for p in scope.periods)}
        proxy_attempts = sum(_syn_to(p.packets, _proxy_ips(lab)) for p in scope.periods)
        idle = sum((i.stopped or time.time()) - i.started for i in instances)
        return ex.tally(chats, judged_only=False, instances_started=sum(1 for i in instances if i.ready) + (sum(c.ran for c in chats) if cli else 0),
                        instances_stopped=sum(1 for i in instances if i.stopped), idle_seconds=idle, proxy_attempts=proxy_attempts,
                        seen=seen, instances=sorted(numbers))
    chats = lab.chat_records[scope.chats:]
    started = [i for i in lab.life[scope.life:] if i.host == "service"]
    current = lab.current()
    numbers = sorted({i.number for i in started} | ({current.number} if current else set()))
    seen, proxy_attempts = {}, 0
    if scope.marks:
        read = lab.witnesses.pool.map(lambda host: lab.witnesses.since(host, scope.marks[host]), scope.marks)
        records = {h: [r for r in found if not is_probe(r)] for h, found in zip(scope.marks, read)}
        service_ip = lab.target.address("service")
        seen = {"egress attempts": len(records["witness"]),
                "other packets leaving": len(leaving_packets(records["packets"], infrastructure_ips(lab))),
                "DNS lookups": sum(1 for q in records["dns"] if q.get("client") == service_ip),
                "reached the outside world": len(records["outside"])}
        proxy_attempts = _syn_to(records["packets"], _proxy_ips(lab))
    stopped = [i for i in started if i.stopped]  # a shutdown the scenario itself brought about (a restart)
    return ex.tally([c for c in chats if c.host == "service"], judged_only=True,
                    instances_started=sum(1 for i in started if i.ready) + (sum(c.ran for c in chats) if cli else 0),
                    instances_stopped=len(stopped), idle_seconds=lab.idle_seconds - scope.idle,
                    proxy_attempts=proxy_attempts, seen=seen, instances=numbers)


def of_deployment(deployment) -> ex.Exercise:
    """The configuration family works on the rendered chart: what was rendered is its exercise."""
    rendered = len(deployment.manifests)
    return ex.Exercise({"manifests-rendered": rendered}, {}, {}, [], ["rendering"] if rendered else [])


def requirement(item) -> dict[str, float]:
    s = item.config.stash[SESSION]
    return ex.merged(*(s.claims[c].get("exercise") or {} for c in claim_ids(item)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Judge the exercise after the steps: a scenario that passed, or found its claim not
    applicable by what it observed, becomes undetermined when the service was not seen working."""
    scope = item.stash.get(SCOPE, None)
    deployment = item.config.stash.get(DEPLOYMENT, None)
    if not claim_ids(item) or (scope is None or scope.lab is None) and deployment is None:
        return (yield)
    try:
        result = yield
        concluded = True
    except Skipped as skip:
        concluded = NOT_APPLICABLE_OBSERVED in str(skip.msg)
        if not concluded:
            raise
        result = skip
    except BaseException:
        _record(item, scope, deployment)
        raise
    exercise = _record(item, scope, deployment)
    lab = scope.lab if scope else None
    if lab is not None and (broken := lab.troubled()):  # the lab broke while the scenario ran: its silence proves nothing
        raise Undetermined("the lab broke during the scenario: " + "; ".join(broken))
    if lab is not None and is_lifetime(item) and lab.losses:
        raise Undetermined("the whole life is not on record: " + "; ".join(lab.losses) + " (what it had recorded before is lost)")
    missing = ex.unmet({**requirement(item), **(scope.provoked if scope else {})}, exercise) if exercise else []
    if missing:
        raise Undetermined("not exercised, so silence proves nothing: " + "; ".join(missing)
                           + f" (seen: {exercise.summary()})")
    if isinstance(result, Skipped):
        raise result
    return result


def _record(item, scope: Scope | None, deployment) -> ex.Exercise | None:
    try:
        exercise = of_scenario(scope) if scope is not None and scope.lab is not None else of_deployment(deployment)
    except LabError as err:  # the lab broke: the scenario's own outcome says so
        item.stash[EXERCISE] = {"error": str(err)}
        return None
    for counter, count in (scope.observed if scope is not None else {}).items():
        exercise.counts[counter] = exercise.counts.get(counter, 0) + count
    item.stash[EXERCISE] = exercise.as_dict()
    return exercise


def pytest_configure(config):
    """Every claim says what exercise its verdict needs (claims.yaml); a counter the harness does
    not keep is a broken catalogue, caught before anything runs."""
    s = config.stash.get(SESSION, None)
    if s is None:
        return
    for cid, claim in s.claims.items():
        unknown = set(claim.get("exercise") or {}) - set(ex.COUNTERS)
        if unknown or not claim.get("exercise"):
            raise pytest.UsageError(f"claims.yaml: {cid} needs an `exercise:` with counters of {sorted(ex.COUNTERS)} "
                                    f"(unknown: {sorted(unknown)})")
