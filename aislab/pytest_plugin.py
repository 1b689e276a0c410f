"""pytest plugin: options, the session lab, per-scenario reset and evidence, claim verdicts."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aislab.driver import DriverError, load_driver
from aislab.evidence import EvidenceSink, Redactor
from aislab.lab import FIXTURES, PROJECT, Lab
from aislab.observe import Observer
from aislab.report.conformance import ScenarioResult, build_report, load_claims, write_report
from aislab.scripts import ScriptBook
from aislab.targets import make_target
from aislab.verdict import NOT_APPLICABLE, Violation

CLAIMS_FILE = PROJECT / "claims.yaml"
CLAIM_ID = re.compile(r"^AIS-[A-Z]+-\d+$")


def pytest_addoption(parser):
    group = parser.getgroup("aislab", "ai-service conformance")
    group.addoption("--driver", default=str(FIXTURES / "drivers" / "reference.yaml"), help="driver file of the service under test")
    group.addoption("--target", default="local", choices=("local", "docker", "kind"), help="lab backend")
    group.addoption("--report-dir", default=str(PROJECT / "reports" / "latest"), help="where the report and evidence go")
    group.addoption("--profile", default="quick", choices=sorted(PROFILES),
                    help="quick: short idle windows; certification: long ones (as in Sonobuoy's modes)")


# Seconds the witnesses keep listening while the service idles, per profile.
PROFILES = {"quick": {"idle_seconds": 1.0}, "certification": {"idle_seconds": 30.0}}
NETWORK_FAMILIES = {"proxy", "telemetry", "air-gap"}


class Session:
    def __init__(self, config):
        self.config = config
        self.catalogue = load_claims(CLAIMS_FILE)
        self.claims = {c["id"]: c for c in self.catalogue["claims"]}
        try:
            self.driver = load_driver(config.getoption("--driver"))
        except DriverError as err:
            raise pytest.UsageError(f"broken driver file: {err}") from None
        self.report_dir = Path(config.getoption("--report-dir"))
        self.results: dict[str, ScenarioResult] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.lab: Lab | None = None


def pytest_configure(config):
    catalogue = load_claims(CLAIMS_FILE)
    for claim in catalogue["claims"]:
        config.addinivalue_line("markers", f"{claim['id']}: {claim['must'][:80]}")
    for family, text in catalogue["families"].items():
        config.addinivalue_line("markers", f"{family}: claim family - {text}")
    config.stash[SESSION] = Session(config)


SESSION = pytest.StashKey[Session]()


def pytest_bdd_apply_tag(tag, function):
    # Claim IDs and families are registered markers; carrying them lets -m select by claim.
    getattr(pytest.mark, tag)(function)
    return True


def claim_ids(item) -> list[str]:
    return [m.name for m in item.iter_markers() if CLAIM_ID.match(m.name)]


def pytest_collection_modifyitems(config, items):
    s = config.stash[SESSION]
    # Scenarios that reconfigure the service run last, so the default service starts once.
    families = lambda item: {s.claims[c]["family"] for c in claim_ids(item) if c in s.claims}  # noqa: E731
    items.sort(key=lambda item: bool(families(item) & NETWORK_FAMILIES))
    for item in items:
        for cid in claim_ids(item):
            if cid not in s.claims:
                raise pytest.UsageError(f"{item.nodeid}: tag @{cid} is not in claims.yaml")
            family = s.claims[cid]["family"]
            if not s.driver.applies(family):
                item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE} driver {s.driver.name} does not declare family {family}"))


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def aislab_session(request) -> Session:
    return request.config.stash[SESSION]


@pytest.fixture(scope="session")
def lab(aislab_session) -> Lab:
    target = make_target(aislab_session.config.getoption("--target"), PROJECT)
    instance = Lab(target, aislab_session.driver)
    aislab_session.lab = instance
    try:
        instance.up()
    except BaseException:
        instance.down()
        raise
    yield instance
    instance.down()
    if instance.service:
        dest = aislab_session.report_dir / "service.log"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(redactor_for(instance).text(instance.service.tail(100000)))


def redactor_for(lab: Lab) -> Redactor:
    return Redactor({"llm-api-key": lab.llm_api_key, "lab-admin-secret": lab.admin_secret})


@pytest.fixture(scope="session")
def observer(lab) -> Observer:
    return Observer(lab)


@pytest.fixture(scope="session")
def script_book(lab) -> ScriptBook:
    return ScriptBook(lab.fixtures / "llm" / "scripts.yaml", lab.seed)


@pytest.fixture(scope="session")
def profile(request) -> dict:
    return PROFILES[request.config.getoption("--profile")]


@pytest.fixture
def evidence(request, lab, aislab_session):
    """Per scenario: reset the lab; afterwards attach what the witnesses saw, redacted."""
    families = {aislab_session.claims[c]["family"] for c in claim_ids(request.node)}
    if not families & NETWORK_FAMILIES:
        lab.ensure_service({})  # a network scenario may have left the service reconfigured
    lab.reset()
    extra: dict[str, object] = {}
    yield extra
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::")[-1])[:120]
    sink = EvidenceSink(aislab_session.report_dir / "evidence", redactor_for(lab))
    paths = [
        sink.attach(slug, "controlplane-journal", lab.cp_journal()),
        sink.attach(slug, "llm-requests", lab.llm_requests()),
        sink.attach(slug, "audit-log", lab.audit_log()),
    ]
    if families & NETWORK_FAMILIES:
        paths += [
            sink.attach(slug, "egress-witness", lab.records("witness")),
            sink.attach(slug, "dns-queries", lab.records("dns")),
            sink.attach(slug, "outside-world", lab.records("outside")),
            sink.attach(slug, "llm-provider-requests", lab.records("provider")),
            sink.attach(slug, "proxy-log", lab.proxy_records()),
        ]
    paths += [sink.attach(slug, name, payload) for name, payload in extra.items()]
    request.node.stash[EVIDENCE] = [str(p.relative_to(aislab_session.report_dir)) for p in paths]


EVIDENCE = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def _scenario_evidence(request):
    if claim_ids(request.node):
        request.getfixturevalue("evidence")


# --- outcomes and the report -------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    cids = claim_ids(item)
    if not cids:
        return report
    s = item.config.stash[SESSION]
    outcome = None
    if report.skipped and NOT_APPLICABLE in str(report.longrepr):
        outcome = "not_applicable"
    elif report.failed:
        outcome = "violated" if call.excinfo and call.excinfo.errisinstance(Violation) and report.when == "call" else "undetermined"
    elif report.passed and report.when == "call":
        outcome = "passed"
    if outcome:
        previous = s.results.get(item.nodeid)
        if previous is None or previous.outcome == "passed":
            s.results[item.nodeid] = ScenarioResult(
                nodeid=item.nodeid,
                name=scenario_name(item),
                claims=cids,
                outcome=outcome,
                seconds=(previous.seconds if previous else 0) + report.duration,
                message=str(call.excinfo.value) if call.excinfo else "",
            )
    if report.when == "teardown" and item.nodeid in s.results:
        s.results[item.nodeid].evidence = item.stash.get(EVIDENCE, [])
    return report


def scenario_name(item) -> str:
    """pytest-bdd documents each scenario function as "Feature: Scenario"; outlines add their example."""
    name = (getattr(item, "obj", None).__doc__ or item.name).split(": ", 1)[-1]
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name


def pytest_sessionfinish(session, exitstatus):
    s = session.config.stash.get(SESSION, None)
    if s is None or not s.results:
        return
    lab = s.lab
    meta = {
        "driver": {"name": s.driver.name, "version": s.driver.version, "file": str(s.driver.path)},
        "target": session.config.getoption("--target"),
        "profile": session.config.getoption("--profile"),
        "started": s.started,
        "timings": {k: round(v, 3) for k, v in (lab.timings.items() if lab else [])},
    }
    selected = {c for r in s.results.values() for c in r.claims}
    s.report = build_report(CLAIMS_FILE, list(s.results.values()), meta, selected)
    write_report(s.report_dir / "conformance-report.json", s.report)


def pytest_terminal_summary(terminalreporter):
    s = terminalreporter.config.stash.get(SESSION, None)
    report = getattr(s, "report", None)
    if not report:
        return
    tr = terminalreporter
    tr.section("claims")
    for c in report["claims"]:
        counts = {}
        for sc in c["scenarios"]:
            counts[sc["outcome"]] = counts.get(sc["outcome"], 0) + 1
        tr.write_line(f"{c['id']:<13} {c['verdict']:<15} {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}")
    tr.write_line(f"result: {report['result']}  (report: {s.report_dir / 'conformance-report.json'})")

