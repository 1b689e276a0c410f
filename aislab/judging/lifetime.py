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

from aislab.judging.network_checks import _where, bound_for, llm_api_paths, on_the_llm_api
from aislab.judging.verdict import violation_if

TRUTHY = ("1", "true", "yes", "on")
HOSTS = ("witness", "packets", "dns", "outside", "provider", "proxy", "llm")


@dataclass
class Period:
    """One service instance and everything attributed to it."""

    instance: object  # aislab.world.lab.ServiceInstance
    witness: list[dict] = field(default_factory=list)
    packets: list[dict] = field(default_factory=list)
    dns: list[dict] = field(default_factory=list)
    outside: list[dict] = field(default_factory=list)
    provider: list[dict] = field(default_factory=list)
    proxy: list[dict] = field(default_factory=list)
    llm: list[dict] = field(default_factory=list)

    @property
    def config(self) -> dict[str, str]:
        return self.instance.config

    @property
    def label(self) -> str:
        where = "" if self.instance.host == "service" else f" on {self.instance.host}"
        return f"instance {self.instance.number}{where} ({', '.join(f'{k}={v}' for k, v in self.config.items()) or 'driver defaults'})"

    def as_evidence(self) -> dict:
        return {"period": self.label, **self.instance.as_evidence(), "records": {h: getattr(self, h) for h in HOSTS}}


def attribute(life: list, records: dict[str, dict[str, list[dict]]], is_probe: Callable[[dict], bool]) -> list[Period]:
    """Each service host's records to its instance whose start is the latest before them; the
    harness's own probes and anything before a host's first start are left out.
    records: service host -> recording host -> records (what that service host did)."""
    periods = [Period(i) for i in life]
    for host, kinds in records.items():
        mine = [p for p in periods if p.instance.host == host]
        starts = [p.instance.started for p in mine]
        for kind, items in kinds.items():
            for r in items:
                at = bisect_right(starts, r.get("t", 0)) - 1
                if at >= 0 and not is_probe(r):
                    getattr(mine[at], kind).append(r)
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
    infrastructure_ips: frozenset[str] = frozenset()  # every lab host the service may reach (proxies, DNS too)
    default_llm_url: str = ""  # the lab's own LLM, where a period's configuration names none

    def llm(self, period: Period) -> frozenset[str]:
        host = urlsplit(period.config.get(self.llm_url_env, "")).hostname or ""
        return self.provider_names if host in self.provider_names else frozenset({host})

    def llm_api(self, period: Period) -> tuple[str, ...]:
        return llm_api_paths(period.config.get(self.llm_url_env) or self.default_llm_url)


def leaving(period: Period, essential: Essential) -> list[dict]:
    """Its packets of other protocols than TCP and UDP bound outside the infrastructure."""
    return [r for r in period.packets if r.get("proto") != "tcp-syn" and r.get("dst") not in essential.infrastructure_ips]


def off_the_llm_api(period: Period, essential: Essential) -> list[str]:
    """What it asked of an LLM host other than the LLM API (usage, metrics, billing ...)."""
    api = essential.llm_api(period)
    return [f"asked the LLM host for {r.get('method')} {r.get('path')}" for r in period.llm + period.provider
            if not on_the_llm_api(r.get("path", ""), api)]


def non_essential(period: Period, essential: Essential, llm_api_only: bool = False) -> list[str]:
    """What this period sent that was neither for the lab's infrastructure nor for its own
    configured LLM (directly, or through the proxy it was told to use); with llm_api_only, also
    whatever it asked of an LLM host beyond the LLM API."""
    llm = essential.llm(period)
    found = [f"attempt: {_where(r)}" for r in period.witness + leaving(period, essential) if not bound_for(r, set(llm), set(llm))]
    found += [f"DNS lookup: {q['name']} ({q['type']})" for q in period.dns if q["name"] not in essential.allowed_names | llm]
    found += [f"reached the outside world: {_where(r)}" for r in period.outside]
    found += [f"asked a proxy for {p.get('method')} {p.get('url')}" for p in period.proxy
              if not any(n in (p.get("url") or "") for n in llm | essential.allowed_names)]
    if llm != essential.provider_names:
        found += [f"reached the LLM provider: {r['method']} {r['path']}" for r in period.provider]
    if llm_api_only:
        found += off_the_llm_api(period, essential)
    return found


def content_elsewhere(period: Period, essential: Essential, find: Callable[[str], set[str]]) -> list[str]:
    """Conversation content (what `find` recognises) in anything this period sent that was not
    for its own configured LLM: an attempt, the outside world, a lookup, a proxy request."""
    llm = essential.llm(period)
    places = {
        "an attempt to leave": [r for r in period.witness + leaving(period, essential) if not bound_for(r, set(llm), set(llm))],
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
    return ([f"attempt: {_where(r)}" for r in period.witness + leaving(period, essential) if bound_for(r, names, names)]
            + [f"reached the provider from {r['client']}: {r['method']} {r['path']}" for r in period.provider])


def nothing_non_essential(judged: list[Period], essential: Essential, claim: str, llm_api_only: bool = False) -> None:
    """The claim over every period it applies to."""
    problems = {p.label: found for p in judged if (found := non_essential(p, essential, llm_api_only))}
    violation_if(problems, f"{claim}: " + "; ".join(f"{label}: {found[:3]}" for label, found in list(problems.items())[:3]))
