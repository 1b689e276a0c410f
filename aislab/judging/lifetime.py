"""Judging the service's whole life, not a scenario's window: every record the witnesses kept
is attributed to the service instance that was running (or had just been stopped) when it
happened, and each claim judges every period in which its configuration was in force: the
telemetry opt-out, the air gap. What a service does while idle, between scenarios or at
shutdown is judged like what it does during a chat."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aislab.judging.network_checks import _where, bound_for
from aislab.judging.verdict import violation_if

TRUTHY = ("1", "true", "yes", "on")
HOSTS = ("witness", "dns", "outside", "provider", "proxy")


@dataclass
class Period:
    """One service instance and everything attributed to it."""

    instance: object  # aislab.world.lab.ServiceInstance
    witness: list[dict] = field(default_factory=list)
    dns: list[dict] = field(default_factory=list)
    outside: list[dict] = field(default_factory=list)
    provider: list[dict] = field(default_factory=list)
    proxy: list[dict] = field(default_factory=list)

    @property
    def config(self) -> dict[str, str]:
        return self.instance.config

    @property
    def label(self) -> str:
        return f"instance {self.instance.number} ({', '.join(f'{k}={v}' for k, v in self.config.items()) or 'driver defaults'})"

    def as_evidence(self) -> dict:
        return {"period": self.label, **self.instance.as_evidence(), "records": {h: getattr(self, h) for h in HOSTS}}


def attribute(life: list, records: dict[str, list[dict]], is_probe: Callable[[dict], bool]) -> list[Period]:
    """Each record to the instance whose start is the latest before it; the harness's own
    probes and anything before the first start are left out."""
    periods = [Period(i) for i in life]
    starts = [i.started for i in life]
    for host, items in records.items():
        for r in items:
            at = bisect_right(starts, r.get("t", 0)) - 1
            if at >= 0 and not is_probe(r):
                getattr(periods[at], host).append(r)
    return periods


def opt_out(config: dict[str, str], own_switches: dict[str, str]) -> str | None:
    """Which telemetry opt-out this configuration sets, if any."""
    if config.get("DO_NOT_TRACK", "").strip().lower() in TRUTHY:
        return f"DO_NOT_TRACK={config['DO_NOT_TRACK']}"
    if own_switches and all(config.get(k) == v for k, v in own_switches.items()):
        return ", ".join(f"{k}={v}" for k, v in own_switches.items())
    return None


def air_gapped(config: dict[str, str], llm_url_env: str, in_cluster_llm: str) -> bool:
    """An air-gapped install: the LLM in the cluster, no proxy, DO_NOT_TRACK set."""
    proxied = any(config.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))
    return (not proxied and config.get(llm_url_env, in_cluster_llm) == in_cluster_llm
            and config.get("DO_NOT_TRACK", "").strip().lower() in TRUTHY)


@dataclass(frozen=True)
class Essential:
    """What a period may reach besides the lab's infrastructure: its own configured LLM."""

    allowed_names: frozenset[str]  # the infrastructure's names and addresses (and the host's own name)
    provider_names: frozenset[str]  # the third-party provider's names and addresses
    llm_url_env: str

    def llm(self, period: Period) -> frozenset[str]:
        host = urlsplit(period.config.get(self.llm_url_env, "")).hostname or ""
        return self.provider_names if host in self.provider_names else frozenset({host})


def non_essential(period: Period, essential: Essential) -> list[str]:
    """What this period sent that was neither for the lab's infrastructure nor for its own
    configured LLM (directly, or through the proxy it was told to use)."""
    llm = essential.llm(period)
    found = [f"attempt: {_where(r)}" for r in period.witness if not bound_for(r, set(llm), set(llm))]
    found += [f"DNS lookup: {q['name']} ({q['type']})" for q in period.dns if q["name"] not in essential.allowed_names | llm]
    found += [f"reached the outside world: {_where(r)}" for r in period.outside]
    found += [f"asked a proxy for {p.get('method')} {p.get('url')}" for p in period.proxy
              if not any(n in (p.get("url") or "") for n in llm | essential.allowed_names)]
    if llm != essential.provider_names:
        found += [f"reached the LLM provider: {r['method']} {r['path']}" for r in period.provider]
    return found


def content_elsewhere(period: Period, essential: Essential, find: Callable[[str], set[str]]) -> list[str]:
    """Conversation content (what `find` recognises) in anything this period sent that was not
    for its own configured LLM: an attempt, the outside world, a lookup, a proxy request."""
    llm = essential.llm(period)
    places = {
        "an attempt to leave": [r for r in period.witness if not bound_for(r, set(llm), set(llm))],
        "the outside world": period.outside,
        "a DNS lookup": period.dns,
        "a proxy request": [p for p in period.proxy if not any(n in (p.get("url") or "") for n in llm)],
        "the LLM provider": [] if llm == essential.provider_names else period.provider,
    }
    return [f"{sorted(found)[:3]} in {where}: {_where(r)}" for where, records in places.items()
            for r in records if (found := find(json.dumps(r)))]


def provider_reached(period: Period, essential: Essential) -> list[str]:
    """Whatever of this period reached the provider, or tried to, other than through its proxy."""
    names = set(essential.provider_names)
    return ([f"attempt: {_where(r)}" for r in period.witness if bound_for(r, names, names)]
            + [f"reached the provider from {r['client']}: {r['method']} {r['path']}" for r in period.provider])


def nothing_non_essential(judged: list[Period], essential: Essential, claim: str) -> None:
    """The claim over every period it applies to."""
    problems = {p.label: found for p in judged if (found := non_essential(p, essential))}
    violation_if(problems, f"{claim}: " + "; ".join(f"{label}: {found[:3]}" for label, found in list(problems.items())[:3]))
