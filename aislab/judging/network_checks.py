"""Verdict logic of the network claims, over what the network witnesses recorded: the egress
witness on the service's host, the DNS sinkhole, the outside world's collector, the LLM
provider, and the proxies' access logs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aislab.judging.observe import canaries
from aislab.judging.provocation import annotate
from aislab.judging.verdict import Undetermined, undetermined_unless, violation_if
from aislab.world.targets.base import IDLE_HOSTS, INFRASTRUCTURE, PROBE_DOMAIN, PROBE_V4, PROBE_V6


@dataclass
class NetView:
    witness: list[dict]
    dns: list[dict]
    outside: list[dict]
    provider: list[dict]
    proxy: list[dict]
    packets: list[dict] = field(default_factory=list)  # other IP protocols, not to the infrastructure

    @classmethod
    def of(cls, lab) -> "NetView":
        """What the witnesses saw in the current window, once everything begun is recorded."""
        lab.drain_witnesses()
        llm = lab.records("llm") + lab.records("provider")  # each attempt shown with the tool call it happened in
        idle = {lab.target.address(h) for h in IDLE_HOSTS}  # the idle instances' lookups are theirs, judged over their life
        dns = [q for q in lab.records("dns") if q.get("client") not in idle]
        return cls(annotate(lab.records("witness"), llm), annotate(dns, llm), lab.records("outside"),
                   lab.records("provider"), lab.proxy_records(), annotate(leaving_packets(lab.records("packets"), infrastructure_ips(lab)), llm))

    def as_evidence(self) -> dict:
        return {k: getattr(self, k) for k in ("witness", "dns", "outside", "provider", "proxy", "packets")}


def infrastructure_ips(lab) -> set[str]:
    return {lab.target.address(h) for h in INFRASTRUCTURE}


def leaving_packets(packets: list[dict], infrastructure: set[str]) -> list[dict]:
    """Packets of other protocols than TCP and UDP (ICMP, raw IP) bound outside the infrastructure."""
    return [r for r in packets if r.get("proto") != "tcp-syn" and r.get("dst") not in infrastructure]


def _where(r: dict) -> str:
    where = " ".join(str(r.get(k)) for k in ("proto", "dst", "sni", "host", "method", "path", "dns") if r.get(k))
    provoked = r.get("provokedBy")  # the tool call the model had just asked for, where one had
    return f"{where} (during the tool call {provoked})" if provoked else where


def _names(r: dict) -> set[str]:
    return {_host_of(n) for n in (r.get("sni"), r.get("host"), r.get("dns")) if n}


def _host_of(authority: str) -> str:
    """`name`, `name:port`, `[v6]:port` or `v6` -> the bare host."""
    if authority.startswith("["):
        return authority[1:].split("]")[0]
    return authority if authority.count(":") > 1 else authority.split(":")[0]


def dst_ip(r: dict) -> str:
    return _host_of(r.get("dst") or "")


def is_probe(record: dict) -> bool:
    """The harness's own canary probes from a service's host, never the service's doing."""
    names = {record.get(k) or "" for k in ("sni", "host", "dns", "name")}
    return dst_ip(record) in (PROBE_V4, PROBE_V6) or any(n.split(":")[0].endswith(PROBE_DOMAIN) for n in names)


def bound_for(r: dict, names: set[str], ips: set[str]) -> bool:
    """Whether a witness record is an attempt to reach one of these names or addresses."""
    return bool(_names(r) & names) or dst_ip(r) in ips


# --- positive control --------------------------------------------------------------------
def witness_saw_probe(view: NetView, probes: dict[str, str], probe_name: str, packets: dict[str, str]) -> None:
    """probes: what the canary probe sent, by kind (tcp4, tcp6: destination IPs); packets: the
    other protocols it sent (icmp, icmpv6, a raw IP protocol: destination IPs)."""
    for proto, ip in packets.items():
        seen = [r for r in view.packets if r.get("proto") == proto and r.get("dst") == ip]
        undetermined_unless(seen, f"positive control failed: the packet witness did not record the canary {proto} packet to {ip}")
    for kind, ip in probes.items():
        seen = [r for r in view.witness if r.get("proto") == "tcp" and dst_ip(r) == ip and r.get("sni") == probe_name]
        undetermined_unless(seen, f"positive control failed: the witness did not record the canary {kind} TLS attempt to {ip} ({probe_name})")
    for ip_version in (4, 6):
        udp = [r for r in view.witness if r.get("proto") == "udp" and r.get("dns") == probe_name and r.get("ip") == ip_version]
        undetermined_unless(udp, f"positive control failed: the witness did not record the canary UDP DNS query over IPv{ip_version}")
    for qtype in ("A", "AAAA"):
        dns = [q for q in view.dns if q["name"] == probe_name and q["type"] == qtype]
        undetermined_unless(dns, f"positive control failed: the DNS sinkhole did not record the canary {qtype} lookup")


# --- proxy ---------------------------------------------------------------------------------
def llm_through_proxy(view: NetView, proxy_ip: str, proxy_kind: str, scheme: str, host: str) -> None:
    undetermined_unless(view.provider, "no request reached the LLM provider, so the route cannot be judged")
    direct = [r for r in view.provider if r["client"] != proxy_ip]
    violation_if(direct, f"{len(direct)} LLM request(s) reached the provider from {sorted({r['client'] for r in direct})}, not through the {proxy_kind} proxy ({proxy_ip})")
    wanted = f"{host}:443" if scheme == "https" else f"http://{host}/"
    logged = [r for r in view.proxy if r["proxy"] == proxy_kind and r.get("url") and r["url"].startswith(wanted)]
    # The provider saw the proxy connect; a log that does not show it is the lab's problem.
    undetermined_unless(logged, f"the {proxy_kind} access log shows no request for {wanted}, although the provider saw the proxy: {view.proxy[:5]}")


def no_direct_attempt(view: NetView, names: set[str], ips: set[str]) -> None:
    direct = [r for r in view.witness + view.packets if bound_for(r, names, ips)]
    violation_if(direct, f"direct connection attempt(s) bypassing the proxy: {[_where(r) for r in direct[:5]]}")


def reached_directly(listed: dict[str, list[dict]], view: NetView, service_ip: str, listed_ips: set[str]) -> None:
    """Every destination NO_PROXY lists (the control plane, the identity provider: the service's
    requests to each, by name) was reached from the service's own address, and no proxy logged a
    request for one of their addresses."""
    undetermined_unless(any(listed.values()), f"the service reached none of {', '.join(listed)}, so NO_PROXY cannot be judged")
    for name, entries in listed.items():
        proxied = [e for e in entries if e["client"] != service_ip]
        violation_if(proxied, f"{len(proxied)} request(s) to {name} came through a proxy although NO_PROXY lists it")
    logged = [r for r in view.proxy if any(ip in (r.get("url") or "") for ip in listed_ips)]
    violation_if(logged, f"the proxy logged traffic for a destination NO_PROXY lists: {logged[:3]}")


def reached_through(unlisted: dict[str, list[dict]], proxy_ip: str, proxy_kind: str) -> None:
    """Every destination NO_PROXY does not list was reached from the proxy's address only."""
    undetermined_unless(any(unlisted.values()), f"the service reached none of {', '.join(unlisted)}, so its route cannot be judged")
    for name, entries in unlisted.items():
        direct = [e for e in entries if e["client"] != proxy_ip]
        violation_if(direct, f"{len(direct)} request(s) to {name} bypassed the {proxy_kind} proxy although NO_PROXY does not list it")


def telemetry_through_proxy(view: NetView, proxy_ip: str, proxy_kind: str, llm_names: set[str], llm_ips: set[str]) -> list[dict]:
    """Telemetry is whatever goes to the outside world other than the model provider."""
    via_proxy = [r for r in view.outside if r["client"] == proxy_ip]
    direct = [r for r in view.witness + view.packets if not bound_for(r, llm_names, llm_ips)]
    violation_if(direct, f"telemetry went around the proxy: {[_where(r) for r in direct[:5]]}")
    if not via_proxy:
        raise Undetermined("the service sent no telemetry through the proxy or directly; nothing to judge")
    return via_proxy


def failed_closed(view: NetView, provider_names: set[str], provider_ips: set[str]) -> None:
    """With the only route to the provider a broken proxy, nothing reaches the provider and no
    attempt to reach it goes around the proxy. Only traffic for the provider is judged here:
    anything else the service sends belongs to the claims about it (telemetry, air gap)."""
    violation_if(view.provider, f"{len(view.provider)} LLM request(s) reached the provider around the broken proxy: "
                                f"{[r['client'] + ' ' + r['method'] + ' ' + r['path'] for r in view.provider[:5]]}")
    around = [r for r in view.witness + view.packets if bound_for(r, provider_names, provider_ips)]
    violation_if(around, f"direct connection attempt(s) to the LLM provider after the proxy failed: {[_where(r) for r in around[:5]]}")


# --- telemetry and air gap ---------------------------------------------------------------------
def nothing_left(view: NetView, allowed_names: set[str]) -> None:
    lookups = sorted({f"{q['name']} ({q['type']})" for q in view.dns if q["name"] not in allowed_names})
    violation_if(view.witness, f"{len(view.witness)} attempt(s) to leave the lab infrastructure: {[_where(r) for r in view.witness[:5]]}")
    violation_if(view.packets, f"{len(view.packets)} packet(s) of other IP protocols left for outside the infrastructure: "
                               f"{[_where(r) for r in view.packets[:5]]}")
    violation_if(lookups, f"DNS lookups of names outside the allowlist: {lookups[:10]}")
    violation_if(view.outside or view.provider or view.proxy, "traffic reached the outside world or a proxy")


# The LLM API: anything else a service asks of an LLM host (usage, metrics, billing) is
# non-essential under a telemetry opt-out.
LLM_API = ("/chat/completions", "/completions", "/responses", "/embeddings", "/models")


def on_the_llm_api(path: str, api: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in api)


def llm_api_only(llm: list[dict], service_ip: str, llm_url: str) -> None:
    """Under a telemetry opt-out the LLM host is there for the LLM API alone: usage, metrics or
    billing endpoints asked of it are non-essential traffic like any other."""
    api = llm_api_paths(llm_url)
    other = [f"{r.get('method')} {r.get('path')}" for r in llm if r.get("client") == service_ip
             and not on_the_llm_api(r.get("path", ""), api)]
    violation_if(other, f"the LLM host was asked for more than the LLM API under a telemetry opt-out: {other[:5]}")


def llm_api_paths(llm_url: str) -> tuple[str, ...]:
    """The LLM API's paths under the configured base URL (`https://host/v1` -> `/v1/chat/completions` ...)."""
    base = urlsplit(llm_url).path.rstrip("/")
    return tuple(base + p for p in LLM_API)


def telemetry_visible(view: NetView) -> list[dict]:
    """With the LLM in the lab and no proxy, anything that tried to leave is the service's own."""
    return view.witness + view.packets + view.outside


def content_only_to_llm(view: NetView, llm_requests: list[dict], nonce: str) -> set[str]:
    sent = canaries(json.dumps([r.get("body") for r in llm_requests]), nonce)
    undetermined_unless(sent, "positive control failed: no conversation canary reached the configured LLM")
    elsewhere = {
        "egress witness": canaries(json.dumps(view.witness + view.packets), nonce),
        "outside world": canaries(json.dumps(view.outside), nonce),
        "LLM provider": canaries(json.dumps(view.provider), nonce),
        "DNS lookups": canaries(json.dumps(view.dns), nonce),
        "proxies": canaries(json.dumps(view.proxy), nonce),
    }
    leaked = {k: sorted(v)[:3] for k, v in elsewhere.items() if v}
    violation_if(leaked, f"conversation content left for somewhere other than the configured LLM: {leaked}")
    # An attempt whose payload the witness could not read (no TLS trust, no request) may carry
    # content: the evidence is incomplete, so the verdict must not be `satisfied`.
    unread = [_where(r) for r in view.witness if r.get("proto") == "tcp" and "body" not in r]
    undetermined_unless(not unread, f"attempts whose content the witness could not read: {unread[:5]}")
    return sent
