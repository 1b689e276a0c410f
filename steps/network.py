"""Steps shared by the network features (proxy, telemetry, air gap): the witness's positive
control, the service's network configurations, the idle window and the service's whole life."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from pytest_bdd import given, parsers, then, when

from aislab.judging import lifetime, network_checks
from aislab.judging.network_checks import NetView, dst_ip
from aislab.judging.verdict import NOT_APPLICABLE, undetermined_unless, violation_if
from aislab.world.targets.base import OUTSIDE_NAMES, OUTSIDE_V6, PROBE_DOMAIN, PROBE_V4, PROBE_V6

PROVIDER_URLS = {"https": "https://api.openai.com/v1", "http": "http://llm.provider.example/v1"}
PROXY_DOWN_PORT = 3999  # nothing listens there
# Names the service may look up: the lab's infrastructure and its own host.
INFRASTRUCTURE_NAMES = {f"{h}.lab" for h in ("idp", "controlplane", "llm", "dns")} | {"service", "service.lab"}


def network_env(lab, *, llm: str = "lab", proxy: str | None = None, refusing: bool = False,
                no_proxy: bool = True, telemetry: str = "off") -> dict[str, str]:
    """Service env overrides for one network configuration, in the names the driver declares.

    telemetry: "on" (no switch set), "off" (DO_NOT_TRACK=true and the service's own switches),
    "dnt:VALUE" (DO_NOT_TRACK=VALUE alone) or "own" (the service's own switches alone)."""
    net = lab.driver.network
    env = {net.ca_file_env: lab.values()["lab.ca_file"]}  # the fake outside world speaks TLS under the lab CA
    if llm != "lab":
        env[net.llm_url_env] = PROVIDER_URLS[llm]
    if proxy:
        url = f"http://{lab.target.address('squid')}:{PROXY_DOWN_PORT}" if proxy == "down" else lab.proxy_url(proxy, refusing)
        env.update(HTTPS_PROXY=url, HTTP_PROXY=url, https_proxy=url, http_proxy=url)
        if no_proxy:  # in-cluster services are reached directly, as a real install lists them
            in_cluster = ",".join(lab.target.address(h) for h in ("controlplane", "idp"))
            env.update(NO_PROXY=in_cluster, no_proxy=in_cluster)
    if telemetry == "off":
        env.update(DO_NOT_TRACK="true", **net.telemetry_off_env)
    elif telemetry == "own":
        env.update(DO_NOT_TRACK="", **net.telemetry_off_env)
    else:
        env["DO_NOT_TRACK"] = telemetry.removeprefix("dnt:") if telemetry.startswith("dnt:") else ""
    return env


@pytest.fixture
def provider_names(lab) -> set[str]:
    """The provider's public names and addresses: any of them in an attempt means "the provider"."""
    return ({name for name, host in OUTSIDE_NAMES.items() if host == "provider"}
            | {lab.target.address("provider"), OUTSIDE_V6["provider"]})


def is_probe(record: dict) -> bool:
    """The harness's own canary probes from the service's host, never the service's doing."""
    names = {record.get(k) or "" for k in ("sni", "host", "dns", "name")}
    return dst_ip(record) in (PROBE_V4, PROBE_V6) or any(n.split(":")[0].endswith(PROBE_DOMAIN) for n in names)


@given("the egress witness is shown to record an attempt to leave the service's host")
def witness_positive_control(lab, evidence):
    """Canary TLS connections over IPv4 and IPv6, DNS queries to a foreign server over both,
    and a lookup through the lab resolver (A and AAAA), made from inside the service's host,
    must all be recorded; otherwise silence later proves nothing and the scenario is undetermined."""
    name = f"canary-{secrets.token_hex(4)}.{PROBE_DOMAIN}"
    probe = (
        "import socket, ssl\n"
        "from dnslib import DNSRecord\n"
        "ctx = ssl.create_default_context()\n"
        f"for family, ip in ((socket.AF_INET, '{PROBE_V4}'), (socket.AF_INET6, '{PROBE_V6}')):\n"
        f"    s = socket.create_connection((ip, 443), timeout=3)\n"
        f"    try:\n        ctx.wrap_socket(s, server_hostname='{name}')\n    except (ssl.SSLError, OSError):\n        pass\n"
        f"    u = socket.socket(family, socket.SOCK_DGRAM); u.sendto(DNSRecord.question('{name}').pack(), (ip, 53))\n"
        f"try:\n    socket.getaddrinfo('{name}', 443, type=socket.SOCK_STREAM)\nexcept OSError:\n    pass\n"
    )
    result = lab.target.run_in("service", [lab.values()["python"], "-c", probe])
    lab.await_records("witness", lambda r: r.get("dns") == name and r.get("ip") == 6, timeout=3)
    view = NetView.of(lab)
    evidence["witness-positive-control"] = {"probe_exit": result.returncode, "stderr": result.stderr[-500:], **view.as_evidence()}
    network_checks.witness_saw_probe(view, {"tcp over IPv4": PROBE_V4, "tcp over IPv6": PROBE_V6}, name)
    lab.reset_witnesses()


@given(parsers.parse("the service uses a third-party LLM over {scheme} through {proxy}, with no NO_PROXY"))
def via_proxy_everything(lab, scheme, proxy):
    lab.ensure_service(network_env(lab, llm=scheme, proxy=proxy, no_proxy=False))
    lab.reset_witnesses()


@given(parsers.re(r"the service uses a third-party LLM over (?P<scheme>https?) through (?P<proxy>tinyproxy|squid)"))
def via_proxy(lab, scheme, proxy):
    lab.ensure_service(network_env(lab, llm=scheme, proxy=proxy))
    lab.reset_witnesses()


@given(parsers.parse("the service uses a third-party LLM through a proxy that is {state}"))
def via_broken_proxy(lab, state):
    proxy, refusing = ("down", False) if state == "down" else (state.split()[0], True)
    lab.ensure_service(network_env(lab, llm="https", proxy=proxy, refusing=refusing))
    lab.reset_witnesses()


@given(parsers.parse("the service has just started with telemetry on, a third-party LLM and {proxy}"))
def telemetry_on_via_proxy(lab, proxy):
    lab.ensure_service(network_env(lab, llm="https", proxy=proxy, telemetry="on"), fresh=True)


@given(parsers.re(r"the service has just started with (?P<opt_out>DO_NOT_TRACK=\S+|its own telemetry switch|telemetry left on)$"))
def started_with_opt_out(lab, opt_out):
    """DO_NOT_TRACK=VALUE alone, or the service's own switch alone (a separate row of the
    telemetry claim: each opt-out must work by itself)."""
    if opt_out == "its own telemetry switch":
        if not lab.driver.network.telemetry_off_env:
            pytest.skip(f"{NOT_APPLICABLE} driver {lab.driver.name} declares no telemetry switch of its own (network.telemetry_off_env)")
        lab.ensure_service(network_env(lab, telemetry="own"), fresh=True)
    elif opt_out == "telemetry left on":
        lab.ensure_service(network_env(lab, telemetry="on"), fresh=True)
    else:
        lab.ensure_service(network_env(lab, telemetry="dnt:" + opt_out.removeprefix("DO_NOT_TRACK=")), fresh=True)


@given("the service has just started air-gapped")
def started_air_gapped(lab):
    """As an air-gapped install is configured: the LLM inside the lab, no proxy, DO_NOT_TRACK=true."""
    lab.ensure_service(network_env(lab), fresh=True)


@given("the service runs air-gapped")
def runs_air_gapped(lab):
    lab.ensure_service(network_env(lab))
    lab.reset_witnesses()


@when("the service idles for the profile's idle window")
def idle(lab, profile):
    lab.idle(profile["idle_seconds"])


@then("nothing left the service's host except to the lab infrastructure")
def nothing_left(lab):
    network_checks.nothing_left(NetView.of(lab), INFRASTRUCTURE_NAMES)


# --- the whole life ------------------------------------------------------------------------------
@when("the service's life ends: it is stopped and its last words are recorded", target_fixture="periods")
def life_ends(lab, evidence) -> list[lifetime.Period]:
    lab.stop_service()
    records = {h: lab.witnesses.whole_life(h) for h in ("witness", "dns", "outside", "provider")}
    records["proxy"] = lab.proxy_records(whole_life=True)
    periods = lifetime.attribute(lab.life, records, is_probe)
    evidence["service-life"] = [p.instance.as_evidence() for p in periods]
    return periods


def essential(lab, provider_names) -> lifetime.Essential:
    infrastructure = INFRASTRUCTURE_NAMES | {lab.target.address(h) for h in ("idp", "controlplane", "llm")}
    return lifetime.Essential(frozenset(infrastructure), frozenset(provider_names), lab.driver.network.llm_url_env)


def periods_configured(periods: list[lifetime.Period], configured, how: str, evidence) -> list[lifetime.Period]:
    """The periods whose configuration a claim is about; none in this run: not applicable."""
    judged = [p for p in periods if configured(p.config)]
    if not judged:
        pytest.skip(f"{NOT_APPLICABLE} no service instance ran {how} in this run")
    evidence["judged-periods"] = [p.as_evidence() for p in judged]
    return judged


@then("nothing non-essential left in any period with a telemetry opt-out configured")
def opt_out_life(lab, periods, provider_names, evidence):
    judged = periods_configured(periods, lambda c: lifetime.opt_out(c, lab.driver.network.telemetry_off_env),
                                "with a telemetry opt-out", evidence)
    lifetime.nothing_non_essential(judged, essential(lab, provider_names), "non-essential traffic while a telemetry opt-out was configured")


@then("nothing left the infrastructure in any period with the air-gapped configuration")
def air_gap_life(lab, periods, provider_names, evidence):
    judged = periods_configured(periods, lambda c: lifetime.air_gapped(c, lab.driver.network.llm_url_env, lab.values()["lab.llm.url"]),
                                "air-gapped", evidence)
    lifetime.nothing_non_essential(judged, essential(lab, provider_names), "traffic left the infrastructure while the service was air-gapped")


@then("no conversation's content reached anything but the LLM configured at the time")
def content_life(lab, periods, provider_names, evidence):
    marker = re.compile(rf"CANARY_[a-z]+_[A-Za-z0-9.-]+_{lab.nonce}|\[conv:[A-Za-z0-9_-]+\]")
    find = lambda text: set(marker.findall(text))  # noqa: E731 - the content any chat carried: canaries, conversation tags
    # Positive control: the detector finds the content where it is allowed to be, at the LLMs.
    sent = find(json.dumps(lab.witnesses.whole_life("llm") + lab.witnesses.whole_life("provider")))
    undetermined_unless(sent, "positive control failed: no conversation content was found even at the configured LLMs")
    leaks = {p.label: found for p in periods if (found := lifetime.content_elsewhere(p, essential(lab, provider_names), find))}
    evidence["content-found-at-the-llms"] = len(sent)
    violation_if(leaks, "conversation content went somewhere other than the configured LLM: "
                        + "; ".join(f"{label}: {found[:2]}" for label, found in list(leaks.items())[:3]))


@then("nothing reached the LLM provider, or tried to, in any period with a broken proxy configured")
def broken_proxy_life(lab, periods, provider_names, evidence):
    broken = {f"http://{lab.target.address('squid')}:{PROXY_DOWN_PORT}", lab.proxy_url("squid", True), lab.proxy_url("tinyproxy", True)}
    judged = periods_configured(periods, lambda c: c.get("HTTPS_PROXY") in broken, "with a broken proxy", evidence)
    found = {p.label: hits for p in judged if (hits := lifetime.provider_reached(p, essential(lab, provider_names)))}
    violation_if(found, "the LLM provider was reached, or tried, while the only route was a broken proxy: "
                        + "; ".join(f"{label}: {hits[:3]}" for label, hits in list(found.items())[:3]))
