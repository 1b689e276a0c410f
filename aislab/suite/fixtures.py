"""pytest fixtures of the lab: the session lab, per-scenario reset, and the evidence it leaves."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from aislab.judging.observe import Observer
from aislab.judging.verdict import Undetermined
from aislab.report.evidence import EvidenceSink
from aislab.suite.plugin import (EVIDENCE, NETWORK_FAMILIES, PROFILES, SESSION, Session, claim_ids, cluster_settings, is_lifetime,
                                 unresponsive)
from aislab.world.lab import Lab
from aislab.world.mocks.llm.scriptbook import ScriptBook
from aislab.world.targets import make_target


@pytest.fixture(scope="session")
def aislab_session(request) -> Session:
    return request.config.stash[SESSION]


@pytest.fixture(scope="session")
def lab(aislab_session) -> Lab:
    config = aislab_session.config
    target = make_target(config.getoption("--target"), cluster_settings(config))
    instance = Lab(target, aislab_session.driver)
    aislab_session.lab = instance
    spec = aislab_session.driver.service.env_from_chart
    if spec is not None:  # render, then run: a cluster target installs the chart itself
        from aislab.suite.configuration import DEPLOYMENT

        target.deploy_service_from_chart(config.stash[DEPLOYMENT], spec.container, spec.values, instance.values)
    try:
        instance.up()
    except BaseException:
        _keep_service_log(aislab_session, instance)
        instance.down()
        raise
    yield instance
    try:
        instance.stop_service()  # its log is complete only once it has exited
        _keep_service_log(aislab_session, instance)
    finally:
        instance.down()


def _keep_service_log(session: Session, lab: Lab) -> None:
    log = lab.dirs.logs / "service.log"  # every instance's output, in order
    if log.exists():
        dest = session.report_dir / "service.log"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(session.redactor().text(log.read_text(errors="replace")[-4_000_000:]))


@pytest.fixture(scope="session")
def observer(lab) -> Observer:
    return Observer(lab)


@pytest.fixture(scope="session")
def script_book(lab) -> ScriptBook:
    return ScriptBook(lab.fixtures / "llm" / "scripts.yaml", lab.seed)


@pytest.fixture(scope="session")
def profile(request) -> dict:
    return PROFILES[request.config.getoption("--profile")]


# Families judged without the lab (on the rendered chart): their scenarios never start it.
LAB_FREE_FAMILIES = {"configuration"}


@pytest.fixture
def evidence(request, aislab_session):
    """Per scenario: a dict the scenario fills, attached afterwards, redacted. A scenario judged
    on the lab first resets it, and its evidence adds what the witnesses saw."""
    families = {aislab_session.claims[c]["family"] for c in claim_ids(request.node)}
    lab = request.getfixturevalue("lab") if families - LAB_FREE_FAMILIES else None
    chats = 0
    if lab is not None:
        lab.notice_exit()
        why = unresponsive(aislab_session)
        if why:
            raise Undetermined(why)
        if not families & NETWORK_FAMILIES and not is_lifetime(request.node):
            lab.ensure_service({})  # a network scenario may have left the service reconfigured (or it died)
        lab.reset()
        chats = len(lab.chats)
    extra: dict[str, object] = {}
    yield extra
    if lab is not None and lab.chats[chats:]:  # did the service answer any chat of this scenario?
        aislab_session.unanswered = 0 if any(lab.chats[chats:]) else aislab_session.unanswered + 1
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::")[-1])[:120]
    sink = EvidenceSink(aislab_session.report_dir, f"evidence/{slug}", aislab_session.redactor())
    readers = {}
    if lab is not None:
        readers = {"controlplane-journal": lab.cp_journal, "llm-requests": lab.llm_requests, "audit-log": lab.audit_log,
                   "identity-provider": lambda: lab.records("idp")}
    if families & NETWORK_FAMILIES:
        readers.update({
            "egress-witness": lambda: lab.records("witness"),
            "dns-queries": lambda: lab.records("dns"),
            "outside-world": lambda: lab.records("outside"),
            "llm-provider-requests": lambda: lab.records("provider"),
            "proxy-log": lab.proxy_records,
        })
    with ThreadPoolExecutor(max(1, len(readers))) as pool:  # independent reads of independent hosts
        futures = {name: pool.submit(read) for name, read in readers.items()}
        payloads = {name: future.result() for name, future in futures.items()}
    payloads.update(extra)
    request.node.stash[EVIDENCE] = [sink.attach(name, payload) for name, payload in payloads.items()]


@pytest.fixture(autouse=True)
def _scenario_evidence(request):
    if claim_ids(request.node):
        request.getfixturevalue("evidence")
