"""pytest plugin: options, claim selection, scenario outcomes, verdicts, report and exit code."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timezone
from pathlib import Path

import allure_commons
import pytest

from aislab.driver import DriverError, load_driver
from aislab import PROJECT
from aislab.world.lab import FIXTURES, Lab
from aislab.report.bundle import redact_in_place, write_bundle
from aislab.report.evidence import Redactor
from aislab.suite.redaction import redactor_for
from aislab.report.conformance import ScenarioResult, build_report, exit_code, load_claims, write_report
from aislab.report.waivers import WaiverError, load_waivers
from aislab.judging.verdict import NOT_APPLICABLE, Undetermined, Violation
from aislab.suite.drilldown import DrillDown, label_marks, short_trace
from pytest_bdd.scenario import scenario_wrapper_template_registry

CLAIMS_FILE = PROJECT / "claims.yaml"
CLAIM_ID = re.compile(r"^AIS-[A-Z]+-\d+$")
# Seconds the witnesses keep listening while the service idles, per profile.
PROFILES = {"quick": {"idle_seconds": 1.0}, "certification": {"idle_seconds": 30.0}}
NETWORK_FAMILIES = {"proxy", "telemetry", "air-gap"}
LIFETIME = "lifetime"
SESSION = pytest.StashKey["Session"]()
EVIDENCE = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("aislab", "ai-service conformance")
    group.addoption("--driver", default=str(FIXTURES / "drivers" / "reference.yaml"), help="driver file of the service under test")
    group.addoption("--target", default="local", choices=("local", "docker", "kind"), help="lab backend")
    group.addoption("--report-dir", default=str(PROJECT / "reports" / "latest"), help="where the report and evidence go")
    group.addoption("--profile", default="quick", choices=sorted(PROFILES),
                    help="quick: short idle windows; certification: long ones (as in Sonobuoy's modes)")
    group.addoption("--claims", default="", help="comma-separated claim IDs, globs (AIS-RBAC-*) or families to run")
    group.addoption("--waivers", default=None, help="YAML file of waivers: claim, justification, owner, expires")


class Session:
    def __init__(self, config):
        self.config = config
        self.catalogue = load_claims(CLAIMS_FILE)
        self.claims = {c["id"]: c for c in self.catalogue["claims"]}
        self.driver = load_driver(config.getoption("--driver"))
        self.report_dir = Path(config.getoption("--report-dir"))
        self.results: dict[str, ScenarioResult] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.lab: Lab | None = None
        self.report: dict | None = None
        self.waivers, self.warnings = {}, []
        if config.getoption("--waivers"):
            active, self.warnings = load_waivers(Path(config.getoption("--waivers")), set(self.claims))
            self.waivers = {w.claim: w for w in active}

    def family(self, claim_id: str) -> str:
        return self.claims[claim_id]["family"]


def pytest_configure(config):
    catalogue = load_claims(CLAIMS_FILE)
    for claim in catalogue["claims"]:
        config.addinivalue_line("markers", f"{claim['id']}: {claim['must'][:80]}")
    for family, text in catalogue["families"].items():
        config.addinivalue_line("markers", f"{family}: claim family - {text}")
    config.addinivalue_line("markers", f"{LIFETIME}: judged over the service's whole life; runs after every other scenario")
    try:
        config.stash[SESSION] = Session(config)
    except (DriverError, WaiverError) as err:
        pytest.exit(f"cannot start: {err}", returncode=1)
    if config.getoption("--alluredir", None):
        drill_down = DrillDown(config.stash[SESSION].results)
        allure_commons.plugin_manager.register(drill_down)
        config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(drill_down))


def pytest_bdd_apply_tag(tag, function):
    # Claim IDs and families are registered markers; carrying them lets -m select by claim.
    getattr(pytest.mark, tag)(function)
    return True


def is_lifetime(item) -> bool:
    return item.get_closest_marker(LIFETIME) is not None


def claim_ids(item) -> list[str]:
    return [m.name for m in item.iter_markers() if CLAIM_ID.match(m.name)]


def _selected(s: Session, cids: list[str], patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(c, p) or s.family(c) == p for c in cids for p in patterns)


def pytest_collection_modifyitems(config, items):
    s = config.stash[SESSION]
    patterns = [p.strip() for p in config.getoption("--claims").split(",") if p.strip()]
    keep, drop = [], []
    for item in items:
        cids = claim_ids(item)
        unknown = [c for c in cids if c not in s.claims]
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: tags {unknown} are not in claims.yaml")
        (keep if _selected(s, cids, patterns) else drop).append(item)
        for mark in label_marks(item.nodeid, {cid: s.family(cid) for cid in cids}):  # Allure
            item.add_marker(mark)
        for cid in cids:
            item.user_properties.append(("claim", cid))  # JUnit <property name="claim">
            for framework, refs in s.claims[cid].get("tags", {}).items():
                item.user_properties += [(framework, ref) for ref in refs]
            if not s.driver.applies(s.family(cid)):
                item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE} {s.driver.why_not(s.family(cid))}"))
    if drop:
        config.hook.pytest_deselected(items=drop)
    # Scenarios that reconfigure the service run last, so the default service starts once, and
    # those that configure it alike run side by side, so it restarts no more than it must.
    # Lifetime scenarios end the service's life, so they come after everything else.
    keep.sort(key=lambda item: (is_lifetime(item), bool({s.family(c) for c in claim_ids(item)} & NETWORK_FAMILIES),
                                service_setup(item)))
    items[:] = keep


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


# --- outcomes ------------------------------------------------------------------------------
def _outcome(report, call) -> str | None:
    if report.skipped and NOT_APPLICABLE in str(report.longrepr):
        return "not_applicable"
    if report.failed:
        if call.excinfo is not None and report.when == "call":
            if call.excinfo.errisinstance(Violation):
                return "violated"
            if call.excinfo.errisinstance(Undetermined):
                return "undetermined"
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
                message=str(call.excinfo.value) if call.excinfo else "",
                trace=short_trace(call.excinfo.value) if outcome == "error" else "",
            )
    if report.when == "teardown" and item.nodeid in s.results:
        s.results[item.nodeid].evidence = item.stash.get(EVIDENCE, [])
    return report


def scenario_name(item) -> str:
    """pytest-bdd documents each scenario function as "Feature: Scenario"; outlines add their example."""
    name = (getattr(item, "obj", None).__doc__ or item.name).split(": ", 1)[-1]
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name


# --- the report ----------------------------------------------------------------------------
def pytest_sessionfinish(session, exitstatus):
    s = session.config.stash.get(SESSION, None)
    if s is None or not s.results:
        return
    lab = s.lab
    meta = {
        "driver": {"name": s.driver.name, "version": s.driver.version, "file": str(s.driver.path),
                   "command": list(s.driver.service.command or []), "image": s.driver.service.image},
        "target": session.config.getoption("--target"),
        "profile": session.config.getoption("--profile"),
        "selection": session.config.getoption("--claims") or "all",
        "started": s.started,
        "timings": {k: round(v, 3) for k, v in (lab.timings.items() if lab else [])},
        "warnings": s.warnings,
    }
    selected = {c for r in s.results.values() for c in r.claims}
    s.report = build_report(CLAIMS_FILE, list(s.results.values()), meta, selected, s.waivers)
    harness_failed = any(r.outcome == "error" for r in s.results.values())
    s.report["exitCode"] = exit_code(s.report, harness_failed)
    write_report(s.report_dir / "conformance-report.json", s.report)
    session.exitstatus = s.report["exitCode"]


def pytest_unconfigure(config):
    # After every sessionfinish hook, so JUnit and Allure results are complete on disk.
    s = config.stash.get(SESSION, None)
    if s is not None and s.report is not None:
        redactor = redactor_for(s.lab) if s.lab else Redactor()
        alluredir = config.getoption("--alluredir", None)
        redact_in_place([s.report_dir] + ([Path(alluredir)] if alluredir else []), redactor)
        write_bundle(s.report_dir, s.report, redactor)


def pytest_terminal_summary(terminalreporter):
    s = terminalreporter.config.stash.get(SESSION, None)
    if s is None or not s.report:
        return
    tr = terminalreporter
    tr.section("claims")
    for warning in s.warnings:
        tr.write_line(f"warning: {warning}", yellow=True)
    colours = {"satisfied": "green", "violated": "red", "undetermined": "yellow", "waived": "cyan", "not_applicable": "white"}
    for c in s.report["claims"]:
        counts: dict[str, int] = {}
        for sc in c["scenarios"]:
            counts[sc["outcome"]] = counts.get(sc["outcome"], 0) + 1
        detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        if c["verdict"] == "waived":
            detail += f" (observed {c['observed']}; waived until {c['waiver']['expires']}: {c['waiver']['justification']})"
        tr.write_line(f"{c['id']:<13} {c['verdict']:<15} {detail}", **{colours[c["verdict"]]: True})
    tr.write_line(f"result: {s.report['result']}  exit code {s.report['exitCode']}  (report: {s.report_dir / 'conformance-report.json'})")
