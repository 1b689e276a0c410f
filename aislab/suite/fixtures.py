"""pytest fixtures of the lab: the session lab, per-scenario reset, and the evidence it leaves."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from aislab.judging.observe import Observer
from aislab.judging.verdict import Undetermined
from aislab.report.evidence import EvidenceSink
from aislab.judging.provocation import annotate
from aislab.suite.exercising import SCOPE, begin
from aislab.suite.plugin import (EVIDENCE, EXERCISE, NETWORK_FAMILIES, PROFILES, SESSION, Session, claim_ids, cluster_settings,
                                 is_lifetime, unresponsive)
from aislab.world.idle import IdleInstances
from aislab.world.lab import Lab, PreflightError
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
        if wants_idle_instances(aislab_session):
            instance.idle_instances = IdleInstances(instance, ScriptBook(instance.fixtures / "llm" / "scripts.yaml", instance.seed)).start()
    except PreflightError as err:  # a broken driver: exit 1 at once, before any scenario, saying what to fix
        instance.down()
        aislab_session.interrupted = f"cannot start: {err}"
        pytest.exit(aislab_session.interrupted, returncode=1)
    except BaseException:
        _keep_service_log(aislab_session, instance)
        instance.down()
        raise
    yield instance
    try:
        instance.end_life()  # its log is complete only once it has exited
        _keep_service_log(aislab_session, instance)
    finally:
        instance.down()


def wants_idle_instances(session: Session) -> bool:
    """An instance kept idle beside the scenarios serves the whole-life checks of the network
    families; a one-shot assistant has nothing that lives."""
    return session.driver.chat.mode == "http" and any(
        is_lifetime(item) and {session.family(c) for c in claim_ids(item)} & NETWORK_FAMILIES for item in session.selected)


def _keep_service_log(session: Session, lab: Lab) -> None:
    log = lab.dirs.service_logs / "service.log"  # every instance's output, in order
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
def evidence(request, aislab_session, exercise_scope):
    """Per scenario: a dict the scenario fills, attached afterwards, redacted. A scenario judged
    on the lab first resets it, and its evidence adds what the witnesses saw and what the
    service was seen doing (its exercise)."""
    families = {aislab_session.claims[c]["family"] for c in claim_ids(request.node)}
    lab = request.getfixturevalue("lab") if families - LAB_FREE_FAMILIES else None
    request.node.stash[SCOPE] = exercise_scope
    if lab is not None:
        lab.heal()  # a lab program that died or stalls since is started afresh (and the loss said)
        lab.notice_exit()
        why = unresponsive(aislab_session)
        if why:
            raise Undetermined(why)
        if not families & NETWORK_FAMILIES and not is_lifetime(request.node):
            lab.ensure_service({})  # a network scenario may have left the service reconfigured (or it died)
        lab.reset()
        begin(exercise_scope, lab, network=bool(families & NETWORK_FAMILIES))
    extra: dict[str, object] = {}
    yield extra
    if lab is not None:
        mine = [c for c in lab.chat_records[exercise_scope.chats:] if c.host == "service"]
        if mine:  # did the service answer any chat of this scenario?
            aislab_session.unanswered = 0 if any(c.status for c in mine) else aislab_session.unanswered + 1
    slug = evidence_slug(request.node.nodeid)
    sink = EvidenceSink(aislab_session.report_dir, f"evidence/{slug}", aislab_session.redactor(), aislab_session.evidence,
                        request.node.nodeid)
    readers = {}
    if lab is not None:
        readers = {"controlplane-journal": lab.cp_journal, "llm-requests": lab.llm_requests, "audit-log": lab.audit_log,
                   "identity-provider": lambda: lab.records("idp")}
    if families & NETWORK_FAMILIES:
        readers.update({
            "egress-witness": lambda: lab.records("witness"),
            "packet-witness": lambda: lab.records("packets"),
            "dns-queries": lambda: lab.records("dns"),
            "outside-world": lambda: lab.records("outside"),
            "llm-provider-requests": lambda: lab.records("provider"),
            "proxy-log": lab.proxy_records,
        })
    with ThreadPoolExecutor(max(1, len(readers))) as pool:  # independent reads of independent hosts
        futures = {name: pool.submit(read) for name, read in readers.items()}
        payloads = {name: future.result() for name, future in futures.items()}
    if families & NETWORK_FAMILIES:  # each attempt with the tool call it happened in
        llm = payloads["llm-requests"] + payloads["llm-provider-requests"]
        payloads.update({name: annotate(payloads[name], llm) for name in ("egress-witness", "packet-witness", "dns-queries")})
    payloads.update(extra)
    if EXERCISE in request.node.stash:
        payloads["exercise"] = request.node.stash[EXERCISE]
    request.node.stash[EVIDENCE] = [sink.attach(name, payload) for name, payload in payloads.items()]


def evidence_slug(nodeid: str) -> str:
    """A scenario's evidence directory: its name, shortened where long, never losing which example
    of an outline it is (or two examples would share, and overwrite, one directory)."""
    name, _, example = nodeid.split("::")[-1].partition("[")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    example = re.sub(r"[^A-Za-z0-9_.-]+", "_", example.rstrip("]"))
    if len(slug) + len(example) > 120:
        slug = slug[:100 - min(len(example), 60)] + "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    return f"{slug}_{example[:60]}_" if example else slug


@pytest.fixture(autouse=True)
def _scenario_evidence(request):
    if claim_ids(request.node):
        request.getfixturevalue("evidence")
