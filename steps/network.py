"""Steps shared by the network features (proxy, telemetry, air gap): the witness's positive
control, the service's network configurations, the idle window and the service's whole life."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from pytest_bdd import given, parsers, then, when

from aislab.judging import lifetime, network_checks
from aislab.judging.network_checks import NetView, infrastructure_ips, is_probe
from aislab.judging.verdict import NOT_APPLICABLE, undetermined_unless, violation_if
from aislab.world.netconfig import PROXY_DOWN_PORT, network_env, proxy_setting
from aislab.world.targets.base import OUTSIDE_NAMES, OUTSIDE_V6, PROBE_DOMAIN, PROBE_PROTOCOL, PROBE_V4, PROBE_V6

# Names the service may look up: the lab's infrastructure and its own host.
INFRASTRUCTURE_NAMES = {f"{h}.lab" for h in ("idp", "controlplane", "llm", "dns")} | {"service", "service.lab"}


@pytest.fixture
def provider_names(lab) -> set[str]:
    """The provider's public names and addresses: any of them in an attempt means "the provider"."""
    return ({name for name, host in OUTSIDE_NAMES.items() if host == "provider"}
            | {lab.target.address("provider"), OUTSIDE_V6["provider"]})


@given("the egress witness is shown to record an attempt to leave the service's host")
def witness_positive_control(lab, evidence):
    """Canary TLS connections over IPv4 and IPv6, DNS queries to a foreign server over both, a
    lookup through the lab resolver (A and AAAA), ICMP echoes over both and a raw IP packet, sent
    from inside the service's host (by the witness process, which shares its network stack), must
    all be recorded; otherwise silence later proves nothing and the scenario is undetermined."""
    name = f"canary-{secrets.token_hex(4)}.{PROBE_DOMAIN}"
    lab.witness_probe(name)
    view = NetView.of(lab)  # once everything begun is recorded
    evidence["witness-positive-control"] = {"probe": name, **view.as_evidence()}
    network_checks.witness_saw_probe(view, {"tcp over IPv4": PROBE_V4, "tcp over IPv6": PROBE_V6}, name,
                                     {"icmp": PROBE_V4, "icmpv6": PROBE_V6, f"ip-{PROBE_PROTOCOL}": PROBE_V4})
    lab.reset_witnesses()


SPELLING = r", the variables in (?P<spelling>upper case|lower case|both cases)$"


@given(parsers.re(r"the service uses a third-party LLM over (?P<scheme>https?) through (?P<proxy>tinyproxy|squid)"
                  r"(?P<without>, with no NO_PROXY)?" + SPELLING))
def via_proxy(lab, scheme, proxy, without, spelling):
    """Each spelling alone: upper case as the vendor documents it, lower case as curl reads it."""
    lab.ensure_service(network_env(lab, llm=scheme, proxy=proxy, no_proxy=not without, spelling=spelling))
    lab.reset_witnesses()


@given(parsers.re(r"the service uses a third-party LLM through a proxy that is (?P<state>down|tinyproxy refusing|squid refusing)" + SPELLING))
def via_broken_proxy(lab, state, spelling):
    proxy, refusing = ("down", False) if state == "down" else (state.split()[0], True)
    lab.ensure_service(network_env(lab, llm="https", proxy=proxy, refusing=refusing, spelling=spelling))
    lab.reset_witnesses()


def just_started(lab, scope, overrides: dict[str, str]) -> None:
    """A fresh instance, whose start-up the scenario observes (and so must see happen)."""
    lab.ensure_service(overrides, fresh=True)
    scope.provoke("instances-started", 1)


@given(parsers.re(r"the service has just started with telemetry on, a third-party LLM and (?P<proxy>tinyproxy|squid)" + SPELLING))
def telemetry_on_via_proxy(lab, proxy, spelling, exercise_scope):
    just_started(lab, exercise_scope, network_env(lab, llm="https", proxy=proxy, telemetry="on", spelling=spelling))


@given(parsers.re(r"the service has just started with (?P<opt_out>DO_NOT_TRACK=\S+|its own telemetry switch|telemetry left on)$"))
def started_with_opt_out(lab, opt_out, exercise_scope):
    """DO_NOT_TRACK=VALUE alone, or the service's own switch alone (a separate row of the
    telemetry claim: each opt-out must work by itself)."""
    if opt_out == "its own telemetry switch":
        if not lab.driver.network.telemetry_off_env:
            pytest.skip(f"{NOT_APPLICABLE} driver {lab.driver.name} declares no telemetry switch of its own (network.telemetry_off_env)")
        just_started(lab, exercise_scope, network_env(lab, telemetry="own"))
    elif opt_out == "telemetry left on":
        just_started(lab, exercise_scope, network_env(lab, telemetry="on"))
    else:
        just_started(lab, exercise_scope, network_env(lab, telemetry="dnt:" + opt_out.removeprefix("DO_NOT_TRACK=")))


@given("the service has just started air-gapped")
def started_air_gapped(lab, exercise_scope):
    """As an air-gapped install is configured: the LLM inside the lab, no proxy, DO_NOT_TRACK=true."""
    just_started(lab, exercise_scope, network_env(lab))


@given("the service runs air-gapped")
def runs_air_gapped(lab):
    lab.ensure_service(network_env(lab))
    lab.reset_witnesses()


@when("the service idles for the profile's idle window")
def idle(lab, profile, exercise_scope):
    lab.idle(profile["idle_seconds"])
    exercise_scope.provoke("idle-seconds", profile["idle_seconds"])


@then("nothing left the service's host except to the lab infrastructure")
def nothing_left(lab):
    network_checks.nothing_left(NetView.of(lab), INFRASTRUCTURE_NAMES)


@then("nothing non-essential left the service, and the LLM host was asked for nothing but its API")
def nothing_non_essential(lab, observer):
    network_checks.nothing_left(NetView.of(lab), INFRASTRUCTURE_NAMES)
    network_checks.llm_api_only(lab.records("llm"), lab.target.address("service"), lab.values()["lab.llm.url"])


# --- the whole life ------------------------------------------------------------------------------
@when("the service's life ends: it is stopped and its last words are recorded", target_fixture="periods")
def life_ends(lab, evidence) -> list[lifetime.Period]:
    lab.end_life()
    periods = lifetime.attribute(lab.life, lab.life_records(), is_probe)
    evidence["service-life"] = [p.instance.as_evidence() for p in periods]
    return periods


def essential(lab, provider_names) -> lifetime.Essential:
    infrastructure = INFRASTRUCTURE_NAMES | {lab.target.address(h) for h in ("idp", "controlplane", "llm")}
    return lifetime.Essential(frozenset(infrastructure), frozenset(provider_names), lab.driver.network.llm_url_env,
                              frozenset(infrastructure_ips(lab)), lab.values()["lab.llm.url"])


def periods_configured(periods: list[lifetime.Period], configured, how: str, evidence, scope) -> list[lifetime.Period]:
    """The periods whose configuration a claim is about (none in this run: not applicable); the
    exercise control then asks what the service was seen doing in them."""
    judged = [p for p in periods if configured(p.config)]
    if not judged:
        pytest.skip(f"{NOT_APPLICABLE} no service instance ran {how} in this run")
    evidence["judged-periods"] = [p.as_evidence() for p in judged]
    scope.periods = judged
    return judged


@then("nothing non-essential left in any period with a telemetry opt-out configured")
def opt_out_life(lab, periods, provider_names, evidence, exercise_scope):
    judged = periods_configured(periods, lambda c: lifetime.opt_out(c, lab.driver.network.telemetry_off_env),
                                "with a telemetry opt-out", evidence, exercise_scope)
    lifetime.nothing_non_essential(judged, essential(lab, provider_names), "non-essential traffic while a telemetry opt-out was configured",
                                   llm_api_only=True)


@then("nothing left the infrastructure in any period with the air-gapped configuration")
def air_gap_life(lab, periods, provider_names, evidence, exercise_scope):
    judged = periods_configured(periods, lambda c: lifetime.air_gapped(c, lab.driver.network.llm_url_env, lab.values()["lab.llm.url"]),
                                "air-gapped", evidence, exercise_scope)
    lifetime.nothing_non_essential(judged, essential(lab, provider_names), "traffic left the infrastructure while the service was air-gapped")


@then("no conversation's content reached anything but the LLM configured at the time")
def content_life(lab, periods, provider_names, evidence, exercise_scope):
    exercise_scope.periods = periods
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
def broken_proxy_life(lab, periods, provider_names, evidence, exercise_scope):
    broken = {f"http://{lab.target.address('squid')}:{PROXY_DOWN_PORT}", lab.proxy_url("squid", True), lab.proxy_url("tinyproxy", True)}
    judged = periods_configured(periods, lambda c: proxy_setting(c) in broken, "with a broken proxy", evidence, exercise_scope)
    found = {p.label: hits for p in judged if (hits := lifetime.provider_reached(p, essential(lab, provider_names)))}
    violation_if(found, "the LLM provider was reached, or tried, while the only route was a broken proxy: "
                        + "; ".join(f"{label}: {hits[:3]}" for label, hits in list(found.items())[:3]))
