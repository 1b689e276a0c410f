"""Scenarios of features/proxy.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then

from aislab.judging import network_checks
from aislab.judging.network_checks import NetView
from steps.common import Chat
from aislab.world.netconfig import PROVIDER_URLS

scenarios("proxy.feature")


@then(parsers.parse("every LLM request reached the provider through {proxy}, as a {scheme} request"))
def llm_via_proxy(lab, proxy, scheme):
    host = PROVIDER_URLS[scheme].split("/")[2]
    network_checks.llm_through_proxy(NetView.of(lab), lab.target.address(proxy), proxy, scheme, host)


@then("the service made no direct attempt to reach the LLM provider")
def no_direct(lab, provider_names):
    network_checks.no_direct_attempt(NetView.of(lab), provider_names, provider_names)


def in_cluster(lab) -> dict[str, list[dict]]:
    """The service's requests to the in-cluster destinations, directly or through a proxy (the
    harness's own and an idle instance's are not the service's here). Storage downloads carry no
    identity and take whatever route the presigned URL gives."""
    sources = {lab.target.address(h) for h in ("service", "tinyproxy", "squid")}
    return {"the control plane": [e for e in lab.cp_journal() if e["client"] in sources and not e["rawPath"].startswith("/storage/")],
            "the identity provider": [r for r in lab.records("idp") if r.get("client") in sources]}


@then("the control plane and the identity provider were reached directly, never through a proxy")
def cp_direct(lab, chat: Chat):
    view = NetView.of(lab)
    network_checks.reached_directly(in_cluster(lab), view, lab.target.address("service"),
                                    {lab.target.address(h) for h in ("controlplane", "idp")})


@then(parsers.parse("the control plane and the identity provider were reached through {proxy} only"))
def cp_via_proxy(lab, proxy):
    NetView.of(lab)  # everything begun is recorded
    network_checks.reached_through(in_cluster(lab), lab.target.address(proxy), proxy)


@then(parsers.parse("the service's telemetry reached the outside world through {proxy}, never directly"))
def telemetry_via_proxy(lab, proxy, evidence, provider_names):
    proxy_ip = lab.target.address(proxy)
    # Telemetry is sent in the background: wait until it shows up, through the proxy or around it.
    lab.await_condition(lambda: any(r["client"] == proxy_ip for r in lab.records("outside")) or lab.records("witness"), timeout=5)
    evidence["telemetry"] = network_checks.telemetry_through_proxy(NetView.of(lab), proxy_ip, proxy, provider_names, provider_names)


@then("nothing reached the LLM provider and no attempt to reach it went around the proxy")
def fails_closed(lab, chat_log: list[Chat], provider_names, evidence):
    # What the user was told is shown, not judged: the wire says whether it failed closed.
    evidence["chats"] = [{"status": c.exchange.status, "body": c.exchange.body, "error": c.exchange.error} for c in chat_log]
    network_checks.failed_closed(NetView.of(lab), provider_names, provider_names)
