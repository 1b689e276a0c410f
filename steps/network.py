"""Steps shared by the network features (proxy, telemetry, air gap): the witness's positive
control, the service's network configurations, and the idle window."""

from __future__ import annotations

import secrets

import pytest
from pytest_bdd import given, parsers, then, when

from aislab.judging import network_checks
from aislab.judging.network_checks import NetView
from aislab.world.targets.base import OUTSIDE_NAMES

PROBE_IP = "198.51.100.77"  # documentation range: the witness answers it, no packet can leave
PROVIDER_URLS = {"https": "https://api.openai.com/v1", "http": "http://llm.provider.example/v1"}
PROXY_DOWN_PORT = 3999  # nothing listens there


def network_env(lab, *, llm: str = "lab", proxy: str | None = None, refusing: bool = False,
                no_proxy: bool = True, telemetry: str = "off") -> dict[str, str]:
    """Service env overrides for one network configuration, in the names the driver declares.

    telemetry: "on" (no switch set), "off" (DO_NOT_TRACK=true and the service's own switches),
    or "dnt:VALUE" (DO_NOT_TRACK=VALUE alone: what the telemetry claim tests)."""
    net = lab.driver.network
    env = {net.ca_file_env: str(lab.state_dir / "ca.pem")}  # the fake outside world speaks TLS under the lab CA
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
    else:
        env["DO_NOT_TRACK"] = telemetry.removeprefix("dnt:") if telemetry.startswith("dnt:") else ""
    return env


@pytest.fixture
def provider_names() -> set[str]:
    return {name for name, host in OUTSIDE_NAMES.items() if host == "provider"}


@given("the egress witness is shown to record an attempt to leave the service's host")
def witness_positive_control(lab, evidence):
    """A canary TLS connection, a DNS query to a foreign server and a lookup through the lab
    resolver, made from inside the service's host, must all be recorded; otherwise silence later
    proves nothing and the scenario is undetermined."""
    name = f"canary-{secrets.token_hex(4)}.witness.example"
    probe = (
        "import socket, ssl\n"
        f"s = socket.create_connection(('{PROBE_IP}', 443), timeout=3)\n"
        "ctx = ssl.create_default_context()\n"
        f"try:\n    ctx.wrap_socket(s, server_hostname='{name}')\nexcept (ssl.SSLError, OSError):\n    pass\n"
        "from dnslib import DNSRecord\n"
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(DNSRecord.question('{name}').pack(), ('{PROBE_IP}', 53))\n"
        f"try:\n    socket.getaddrinfo('{name}', 443)\nexcept OSError:\n    pass\n"
    )
    result = lab.target.run_in("service", [lab.values()["python"], "-c", probe])
    lab.await_records("witness", lambda r: r.get("dns") == name, timeout=3)
    view = NetView.of(lab)
    evidence["witness-positive-control"] = {"probe_exit": result.returncode, "stderr": result.stderr[-500:], **view.as_evidence()}
    network_checks.witness_saw_probe(view, PROBE_IP, name)
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


@given(parsers.parse("the service has just started with DO_NOT_TRACK={value}"))
def started_with_dnt(lab, value):
    lab.ensure_service(network_env(lab, telemetry=f"dnt:{value}"), fresh=True)


@given("the service has just started with telemetry left on")
def started_with_telemetry(lab):
    lab.ensure_service(network_env(lab, telemetry="on"), fresh=True)


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


INFRASTRUCTURE_NAMES = {f"{h}.lab" for h in ("idp", "controlplane", "llm", "dns")}


@then("nothing left the service's host except to the lab infrastructure")
def nothing_left(lab):
    network_checks.nothing_left(NetView.of(lab), INFRASTRUCTURE_NAMES)
