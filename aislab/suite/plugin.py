"""pytest plugin: options, the run's session (one per report directory), claim selection,
scenario outcomes, and the guards of a run CI can trust (interruption, deadline, a service
that stops answering). The report itself is made in aislab.suite.reporting."""

from __future__ import annotations

import fnmatch
import re
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import allure_commons
import pytest
from pytest_bdd.scenario import scenario_wrapper_template_registry

from aislab import PROJECT
from aislab.driver import DriverError, load_driver
from aislab.judging.verdict import NOT_APPLICABLE, Undetermined, Violation
from aislab.report.bundle import BusyError, claim_directory
from aislab.report.conformance import ScenarioResult, load_claims
from aislab.report.evidence import EvidenceWriter
from aislab.report.waivers import WaiverError, load_waivers
from aislab.suite import sharding
from aislab.suite.drilldown import DrillDown, label_marks, short_trace
from aislab.suite.redaction import RedactingFileLogger, SessionRedactor
from aislab.world.lab import FIXTURES, Lab
from aislab.world.targets.base import LabError, preflight

CLAIMS_FILE = PROJECT / "claims.yaml"
CLAIM_ID = re.compile(r"^AIS-[A-Z]+-\d+$")
# Seconds the witnesses keep listening while the service idles, per profile.
PROFILES = {"quick": {"idle_seconds": 1.0}, "certification": {"idle_seconds": 30.0}}
NETWORK_FAMILIES = {"proxy", "telemetry", "air-gap"}
LIFETIME = "lifetime"
# After this many scenarios in a row in which the service answered no chat at all, the rest
# are undetermined at once: a hanging service costs minutes, not the better part of an hour.
UNRESPONSIVE_SCENARIOS = 3
SESSION = pytest.StashKey["Session"]()
EVIDENCE = pytest.StashKey[list]()
EXERCISE = pytest.StashKey[dict]()  # what the service was seen doing in a scenario (aislab.suite.exercising)


def pytest_addoption(parser):
    group = parser.getgroup("aislab", "ai-service conformance")
    group.addoption("--driver", default=str(FIXTURES / "drivers" / "reference.yaml"), help="driver file of the service under test")
    group.addoption("--target", default="local", choices=("local", "docker", "kubernetes", "kind"), help="lab backend")
    group.addoption("--report-dir", default=str(PROJECT / "reports" / "latest"), help="where the report and evidence go")
    group.addoption("--profile", default="quick", choices=sorted(PROFILES),
                    help="quick: short idle windows; certification: long ones (as in Sonobuoy's modes)")
    group.addoption("--claims", default="", help="comma-separated claim IDs, globs (AIS-RBAC-*) or families to run")
    group.addoption("--waivers", default=None, help="YAML file of waivers: claim, justification, owner, expires")
    group.addoption("--deadline", default=None, type=float,
                    help="seconds the whole run may take; past it the run stops and its report says interrupted")
    group.addoption("--shard", default=None, help="I/N: judge only this worker's share of the selection (`aislab run --workers N` sets it)")
    cluster = parser.getgroup("aislab-cluster", "the cluster targets (--target kubernetes, --target kind)")
    cluster.addoption("--kubeconfig", default=None, help="kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config)")
    cluster.addoption("--context", default=None, help="context of the kubeconfig (default: its current one)")
    cluster.addoption("--image-registry", default=None,
                      help="registry the cluster pulls from: the lab's images are pushed there (any cluster but kind and the local one)")
    cluster.addoption("--kind-cluster", default=None, help="--target kind: reuse this kind cluster instead of creating one")
    cluster.addoption("--keep-cluster", action="store_true", help="--target kind: keep the cluster the run created")


def cluster_settings(config) -> dict:
    """The cluster targets' options, as make_target takes them."""
    return {key: config.getoption("--" + key.replace("_", "-"))
            for key in ("kubeconfig", "context", "image_registry", "kind_cluster", "keep_cluster")}


class Session:
    """One conformance run: what it judges, what it found, and what may stop it."""

    def __init__(self, config):
        self.config = config
        self.catalogue = load_claims(CLAIMS_FILE)
        self.claims = {c["id"]: c for c in self.catalogue["claims"]}
        self.families = set(self.catalogue["families"])
        self.patterns = self._patterns(config.getoption("--claims"))
        self.driver = load_driver(config.getoption("--driver"))
        self.report_dir = Path(config.getoption("--report-dir")).resolve()
        self._lock: int | None = None  # the report directory is claimed once scenarios are collected
        self.results: dict[str, ScenarioResult] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.clock = time.monotonic()
        self.lab: Lab | None = None
        self.report: dict | None = None
        self.selected: list = []  # the items this run set out to judge
        self.interrupted: str | None = None  # why the run stopped before judging all of them
        self.unanswered = 0  # scenarios in a row in which the service answered no chat
        self.redactor = SessionRedactor(self)
        self.evidence = EvidenceWriter()  # scenarios' evidence, redacted and written beside the run
        self.waivers, self.warnings = {}, []
        if config.getoption("--waivers"):
            active, self.warnings = load_waivers(Path(config.getoption("--waivers")), set(self.claims))
            self.waivers = {w.claim: w for w in active}

    def family(self, claim_id: str) -> str:
        return self.claims[claim_id]["family"]

    def _patterns(self, given: str) -> list[str]:
        """Every --claims item must name a claim, a glob of claims, or a family."""
        patterns = [p.strip() for p in given.split(",") if p.strip()]
        for p in patterns:
            if p not in self.families and not any(fnmatch.fnmatch(c, p) for c in self.claims):
                raise DriverError(f"--claims {p}: matches no claim and no family; claims: {', '.join(self.claims)}; "
                                  f"families: {', '.join(sorted(self.families))}")
        return patterns

    def claim_report_dir(self) -> int:
        """One run per report directory: a second one is refused, and the directory is emptied
        for this run (nothing of an earlier run can end up in this one's bundle)."""
        try:
            fd = claim_directory(self.report_dir)
        except BusyError as err:
            raise DriverError(str(err)) from None
        alluredir = self.config.getoption("--alluredir", None)
        if alluredir:  # made by Allure when it started, before this run had the directory
            Path(alluredir).mkdir(parents=True, exist_ok=True)
        return fd

    def selection(self) -> str:
        """What this run was asked to judge, every way it can be narrowed."""
        parts = [f"--claims {','.join(self.patterns)}"] if self.patterns else []
        parts += [f"-m {self.config.option.markexpr}"] if self.config.option.markexpr else []
        parts += [f"-k {self.config.option.keyword}"] if self.config.option.keyword else []
        return "; ".join(parts) or "all"


@pytest.hookimpl(tryfirst=True)  # before allure-pytest-bdd makes its file writer
def pytest_configure(config):
    catalogue = load_claims(CLAIMS_FILE)
    for claim in catalogue["claims"]:
        config.addinivalue_line("markers", f"{claim['id']}: {claim['must'][:80]}")
    for family, text in catalogue["families"].items():
        config.addinivalue_line("markers", f"{family}: claim family - {text}")
    config.addinivalue_line("markers", f"{LIFETIME}: judged over the service's whole life; runs after every other scenario")
    try:
        config.stash[SESSION] = s = Session(config)
        preflight(config.getoption("--target"), cluster_settings(config))
    except (DriverError, WaiverError, LabError) as err:
        pytest.exit(f"cannot start: {err}", returncode=1)
    # Allure's results are redacted as they are written: a run killed midway leaves no secret.
    RedactingFileLogger.install(s.redactor)
    if config.getoption("--alluredir", None):
        drill_down = DrillDown(s.results)
        allure_commons.plugin_manager.register(drill_down)
        config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(drill_down))
    # SIGTERM (timeout, CI cancel) ends a run like Ctrl-C: the lab torn down, the report redacted
    # and marked interrupted. Not a pass, and not a run left behind.
    def terminated(signum, _frame):
        s.interrupted = "terminated (SIGTERM)"
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    # Ctrl-C interrupts the run whatever the parent left behind: a CI runner's background step
    # or `nohup` starts it with SIGINT ignored, and an ignored SIGINT would let the run finish
    # and pass while it was being cancelled.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    config.add_cleanup(lambda: (signal.signal(signal.SIGTERM, previous), signal.signal(signal.SIGINT, previous_int)))


def pytest_keyboard_interrupt(excinfo):
    # pytest calls this without the config: the session that saw it is the one running.
    for s in _RUNNING:
        s.interrupted = s.interrupted or "interrupted (SIGINT)"


_RUNNING: list[Session] = []


def pytest_bdd_apply_tag(tag, function):
    # Claim IDs and families are registered markers; carrying them lets -m select by claim.
    getattr(pytest.mark, tag)(function)
    return True


def is_lifetime(item) -> bool:
    return item.get_closest_marker(LIFETIME) is not None


def claim_ids(item) -> list[str]:
    return [m.name for m in item.iter_markers() if CLAIM_ID.match(m.name)]


def _selected(s: Session, cids: list[str]) -> bool:
    return not s.patterns or any(fnmatch.fnmatch(c, p) or s.family(c) == p for c in cids for p in s.patterns)


def pytest_collection_modifyitems(config, items):
    s = config.stash[SESSION]
    s.scenarios_collected = any(claim_ids(item) for item in items)  # (before -m and -k narrow them)
    if s.scenarios_collected and s._lock is None and not config.option.collectonly:
        try:
            s._lock = s.claim_report_dir()
        except DriverError as err:
            pytest.exit(f"cannot start: {err}", returncode=1)
    keep, drop = [], []
    for item in items:
        cids = claim_ids(item)
        unknown = [c for c in cids if c not in s.claims]
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: tags {unknown} are not in claims.yaml")
        (keep if _selected(s, cids) else drop).append(item)
        for mark in label_marks(item.nodeid, {cid: s.family(cid) for cid in cids}):  # Allure
            item.add_marker(mark)
        for cid in cids:
            item.user_properties.append(("claim", cid))  # JUnit <property name="claim">
            for framework, refs in s.claims[cid].get("tags", {}).items():
                item.user_properties += [(framework, ref) for ref in refs]
            if not s.driver.applies(s.family(cid)):
                item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE} {s.driver.why_not(s.family(cid))}"))
    # Scenarios that reconfigure the service run last, so the default service starts once, and
    # those that configure it alike run side by side, so it restarts no more than it must.
    # Lifetime scenarios end the service's life, so they come after everything else.
    keep.sort(key=lambda item: (is_lifetime(item), is_network(s, item), service_setup(item)))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def is_network(s: Session, item) -> bool:
    return bool({s.family(c) for c in claim_ids(item)} & NETWORK_FAMILIES)


def pytest_collection_finish(session):
    """What -m and -k left is what this run judges; a selection that leaves nothing is an error."""
    s = session.config.stash.get(SESSION, None)
    if s is None:
        return
    s.selected = [item for item in session.items if claim_ids(item)]
    _RUNNING.append(s)
    if getattr(s, "scenarios_collected", False) and not s.selected and not session.config.option.collectonly:
        pytest.exit(f"the selection ({s.selection()}) matches no scenario: nothing would be judged; "
                    f"claims: {', '.join(s.claims)}; families: {', '.join(sorted(s.families))}", returncode=1)
    shard = sharding.parse(session.config.getoption("--shard"))
    if shard and s.selected:  # a worker of a parallel run: its share of what -m and -k left, every worker working it out alike
        # (The certification profile's scale scenarios judge one crowd's chats: one worker.)
        mine = sharding.plan(s.selected, shard[1], lambda i: service_setup(i) if is_network(s, i) else
                             "certification" if i.get_closest_marker("certification") else i.nodeid, is_lifetime,
                             lambda i: is_network(s, i), session.config.getoption("--profile"))[shard[0] - 1]
        session.config.hook.pytest_deselected(items=[item for item in s.selected if item not in mine])
        session.items[:] = s.selected = mine
        if not mine:
            pytest.exit("this worker's share of the selection is empty", returncode=0)  # more workers than groups of scenarios


def service_setup(item) -> str:
    """The Given steps that configure the service, as text: equal text, equal configuration."""
    template = scenario_wrapper_template_registry.get(getattr(item, "obj", None))
    if template is None:
        return ""
    callspec = getattr(item, "callspec", None)
    scenario = template.render(callspec.params.get("_pytest_bdd_example", {}) if callspec else {})
    givens = [step.name for step in scenario.steps if step.type == "given" and step.name.startswith("the service")]
    # "has just started X" and "runs X" configure the same X; only the first restarts regardless.
    return "|".join(re.sub(r"^the service (has just started|runs) ", "", g) for g in givens)


def pytest_runtest_logfinish(nodeid, location):
    """Past the run's deadline, stop after the scenario that is running."""
    for s in _RUNNING:
        deadline = s.config.getoption("--deadline")
        if deadline is not None and time.monotonic() - s.clock > deadline and s.selected:
            s.interrupted = s.interrupted or f"deadline of {deadline:.0f}s reached"
            s.selected[0].session.shouldstop = s.interrupted


# --- outcomes ------------------------------------------------------------------------------
def _outcome(report, call) -> str | None:
    if report.skipped and NOT_APPLICABLE in str(report.longrepr):
        return "not_applicable"
    if report.failed:
        if call.excinfo is not None and report.when == "call" and call.excinfo.errisinstance(Violation):
            return "violated"
        if call.excinfo is not None and call.excinfo.errisinstance(Undetermined):
            return "undetermined"  # also before the scenario ran: e.g. a service that stopped answering
        return "error"  # the harness or the lab failed: no verdict, and exit code 1
    if report.passed and report.when == "call":
        return "passed"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    cids = claim_ids(item)
    outcome = _outcome(report, call) if cids else None
    s = item.config.stash[SESSION]
    if outcome:
        previous = s.results.get(item.nodeid)
        if previous is None or previous.outcome == "passed":  # the first problem decides
            s.results[item.nodeid] = ScenarioResult(
                nodeid=item.nodeid,
                name=scenario_name(item),
                claims=cids,
                outcome=outcome,
                seconds=(previous.seconds if previous else 0) + report.duration,
                message=s.redactor().text(str(call.excinfo.value)) if call.excinfo else "",
                trace=short_trace(call.excinfo.value) if outcome == "error" else "",
            )
    if report.when == "teardown" and item.nodeid in s.results:
        s.results[item.nodeid].evidence = item.stash.get(EVIDENCE, [])
        s.results[item.nodeid].exercise = item.stash.get(EXERCISE, {})
    return report


def scenario_name(item) -> str:
    """pytest-bdd documents each scenario function as "Feature: Scenario"; outlines add their example."""
    name = (getattr(item, "obj", None).__doc__ or item.name).split(": ", 1)[-1]
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name


def unresponsive(s: Session) -> str | None:
    """Why the rest of the run cannot be judged on the service, if that is so."""
    if s.unanswered >= UNRESPONSIVE_SCENARIOS:
        return (f"the service answered no chat in the last {s.unanswered} scenarios (timeout {s.driver.chat.timeout:.0f}s "
                "each); the remaining scenarios are not run")
    if s.lab is not None and s.lab.deaths > 1:
        return "the service exited twice during the run (restarted once); the remaining scenarios are not run"
    return None

