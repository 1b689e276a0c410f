"""Verdict logic of the network claims, over what the network witnesses recorded: the egress
witness on the service's host, the DNS sinkhole, the outside world's collector, the LLM
provider, and the proxies' access logs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aislab.judging.observe import canaries
from aislab.judging.verdict import Undetermined, violation_if, undetermined_unless


@dataclass
class NetView:
    witness: list[dict]
    dns: list[dict]
    outside: list[dict]
    provider: list[dict]
    proxy: list[dict]

    @classmethod
    def of(cls, lab) -> "NetView":
        return cls(lab.records("witness"), lab.records("dns"), lab.records("outside"), lab.records("provider"), lab.proxy_records())

    def as_evidence(self) -> dict:
        return {k: getattr(self, k) for k in ("witness", "dns", "outside", "provider", "proxy")}


def _where(r: dict) -> str:
    return " ".join(str(r.get(k)) for k in ("proto", "dst", "sni", "host", "method", "path", "dns") if r.get(k))


def _names(r: dict) -> set[str]:
    return {n.split(":")[0] for n in (r.get("sni"), r.get("host"), r.get("dns")) if n}


# --- positive control --------------------------------------------------------------------
def witness_saw_probe(view: NetView, probe_ip: str, probe_name: str) -> None:
    tcp = [r for r in view.witness if r.get("proto") == "tcp" and r.get("dst", "").startswith(probe_ip + ":")]
    udp = [r for r in view.witness if r.get("proto") == "udp" and r.get("dns") == probe_name]
    dns = [q for q in view.dns if q["name"] == probe_name]
    undetermined_unless(tcp and any(r.get("sni") == probe_name for r in tcp),
                        f"positive control failed: the witness did not record the canary TCP/TLS attempt to {probe_ip} ({probe_name})")
    undetermined_unless(udp, "positive control failed: the witness did not record the canary UDP DNS query to a foreign server")
    undetermined_unless(dns, "positive control failed: the DNS sinkhole did not record the canary lookup")


# --- proxy ---------------------------------------------------------------------------------
def llm_through_proxy(view: NetView, proxy_ip: str, proxy_kind: str, scheme: str, host: str) -> None:
    undetermined_unless(view.provider, "no request reached the LLM provider, so the route cannot be judged")
    direct = [r for r in view.provider if r["client"] != proxy_ip]
    violation_if(direct, f"{len(direct)} LLM request(s) reached the provider from {sorted({r['client'] for r in direct})}, not through the {proxy_kind} proxy ({proxy_ip})")
    wanted = f"{host}:443" if scheme == "https" else f"http://{host}/"
    logged = [r for r in view.proxy if r["proxy"] == proxy_kind and r.get("url") and r["url"].startswith(wanted)]
    violation_if(not logged, f"the {proxy_kind} access log shows no request for {wanted}: {view.proxy[:5]}")


def no_direct_attempt(view: NetView, names: set[str], ips: set[str]) -> None:
    direct = [r for r in view.witness if _names(r) & names or (r.get("dst") or "").split(":")[0] in ips]
    violation_if(direct, f"direct connection attempt(s) bypassing the proxy: {[_where(r) for r in direct[:5]]}")


def reached_directly(cp_entries: list[dict], view: NetView, service_ip: str, cp_ip: str) -> None:
    undetermined_unless(cp_entries, "the chat made no control-plane request, so NO_PROXY cannot be judged")
    proxied = [e for e in cp_entries if e["client"] != service_ip]
    violation_if(proxied, f"{len(proxied)} control-plane request(s) came through a proxy although the control plane is in NO_PROXY")
    logged = [r for r in view.proxy if cp_ip in (r.get("url") or "")]
    violation_if(logged, f"the proxy logged control-plane traffic: {logged[:3]}")


def reached_through(cp_entries: list[dict], proxy_ip: str, proxy_kind: str) -> None:
    api = [e for e in cp_entries if not e["rawPath"].startswith("/storage/")]
    undetermined_unless(api, "the chat made no control-plane request, so its route cannot be judged")
    direct = [e for e in api if e["client"] != proxy_ip]
    violation_if(direct, f"{len(direct)} control-plane request(s) bypassed the {proxy_kind} proxy although NO_PROXY does not list the control plane")


def telemetry_through_proxy(view: NetView, proxy_ip: str, proxy_kind: str, llm_names: set[str], llm_ips: set[str]) -> list[dict]:
    """Telemetry is whatever goes to the outside world other than the model provider."""
    via_proxy = [r for r in view.outside if r["client"] == proxy_ip]
    direct = [r for r in view.witness if not (_names(r) & llm_names or (r.get("dst") or "").split(":")[0] in llm_ips)]
    violation_if(direct, f"telemetry went around the proxy: {[_where(r) for r in direct[:5]]}")
    if not via_proxy:
        raise Undetermined("the service sent no telemetry through the proxy or directly; nothing to judge")
    return via_proxy


def failed_closed(status: int, view: NetView) -> None:
    violation_if(status < 400, f"the chat succeeded (HTTP {status}) although the only allowed route was a broken proxy")
    violation_if(view.provider, f"{len(view.provider)} LLM request(s) reached the provider around the broken proxy")
    violation_if(view.witness, f"direct connection attempt(s) after the proxy failed: {[_where(r) for r in view.witness[:5]]}")


# --- telemetry and air gap ---------------------------------------------------------------------
def nothing_left(view: NetView, allowed_names: set[str]) -> None:
    lookups = sorted({q["name"] for q in view.dns} - allowed_names)
    violation_if(view.witness, f"{len(view.witness)} attempt(s) to leave the lab infrastructure: {[_where(r) for r in view.witness[:5]]}")
    violation_if(lookups, f"DNS lookups of names outside the allowlist: {lookups[:10]}")
    violation_if(view.outside or view.provider or view.proxy, "traffic reached the outside world or a proxy")


def telemetry_visible(view: NetView) -> list[dict]:
    return [r for r in view.witness + view.outside if _names(r)]


def content_only_to_llm(view: NetView, llm_requests: list[dict], nonce: str) -> set[str]:
    sent = canaries(json.dumps([r.get("body") for r in llm_requests]), nonce)
    undetermined_unless(sent, "positive control failed: no conversation canary reached the configured LLM")
    elsewhere = {
        "egress witness": canaries(json.dumps(view.witness), nonce),
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
