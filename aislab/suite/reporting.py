"""The report of a run: conformance-report.json (also for an interrupted run, which never reads
as conformant), the exit code, the redacted report directory and the bundle, and the claims
table on the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from aislab.report.bundle import redact_in_place, write_bundle
from aislab.report.conformance import build_report, exit_code, write_report
from aislab.report.environment import environment
from aislab.suite import sharding
from aislab.suite.configuration import DEPLOYMENT
from aislab.suite.plugin import CLAIMS_FILE, SESSION, claim_ids


def deployment_judged(config) -> dict:
    """The chart and values the configuration family judged (and a render-then-run driver ran with)."""
    deployment = config.stash[DEPLOYMENT]
    return {"chart": str(deployment.chart.path), "values": [str(f) for f in deployment.values.files],
            "intent": deployment.intent.kind}


def pytest_sessionstart(session):
    s = session.config.stash.get(SESSION, None)
    if s is not None:  # read before anything runs: the tools and packages this run is made with
        s.environment = environment(session.config.getoption("--target"))


def pytest_sessionfinish(session, exitstatus):
    s = session.config.stash.get(SESSION, None)
    if s is None or not s.selected:
        return
    # Everything the scenarios attached is written before the report names it with its hash.
    for nodeid, error in s.evidence.drain().items():
        if (result := s.results.get(nodeid)) is not None:
            result.outcome, result.message = "error", f"its evidence could not be written: {error}"
            result.evidence = [e for e in result.evidence if e["sha256"]]
    ran = set(s.results)
    if s.interrupted is None and any(item.nodeid not in ran for item in s.selected):
        s.interrupted = session.shouldstop or session.shouldfail or "stopped before every selected scenario ran"
    lab = s.lab
    meta = {
        "driver": {"name": s.driver.name, "version": s.driver.version, "file": str(s.driver.path),
                   "command": list(s.driver.service.command or []), "image": s.driver.service.image},
        "target": session.config.getoption("--target"),
        "profile": session.config.getoption("--profile"),
        "selection": s.selection(),
        "started": s.started,
        "timings": {k: round(v, 3) for k, v in (lab.timings.items() if lab else [])},
        "warnings": s.warnings + (lab.warnings if lab else []),
        "environment": getattr(s, "environment", {}),
        **({"deployment": deployment_judged(session.config)} if session.config.stash.get(DEPLOYMENT, None) else {}),
        **({"targetDetails": details} if lab and (details := lab.target.details()) else {}),
    }
    expected: dict[str, set[str]] = {}
    for item in s.selected:
        for cid in claim_ids(item):
            expected.setdefault(cid, set()).add(item.nodeid)
    report = build_report(CLAIMS_FILE, list(s.results.values()), meta, expected, s.waivers,
                          str(s.interrupted) if s.interrupted else None)
    harness_failed = any(r.outcome == "error" for r in s.results.values())
    report["exitCode"] = exit_code(report, harness_failed)
    s.report = report
    redactor = s.redactor()
    write_report(s.report_dir / "conformance-report.json", report, redactor)
    session.exitstatus = report["exitCode"]
    if not session.config.getoption("--shard"):  # a parallel run's parent remembers for all its workers
        sharding.remember(s.results, session.config.getoption("--profile"))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # After every sessionfinish hook, so JUnit is on disk: pytest writes it whole at the end, as
    # it is; everything else was redacted as it was written. Then the bundle (redacted once more).
    s = config.stash.get(SESSION, None)
    if s is not None and s.report is not None:
        redactor = s.redactor()
        if config.option.xmlpath:
            redact_in_place([Path(config.option.xmlpath)], redactor)
        if not config.getoption("--shard"):  # a worker's evidence goes into its parent's one bundle
            write_bundle(s.report_dir, s.report, redactor)


def pytest_terminal_summary(terminalreporter):
    s = terminalreporter.config.stash.get(SESSION, None)
    if s is None or not s.report:
        return
    tr = terminalreporter
    tr.section("claims")
    for warning in s.report["warnings"]:
        tr.write_line(f"warning: {warning}", yellow=True)
    colours = {"satisfied": "green", "violated": "red", "undetermined": "yellow", "waived": "cyan", "not_applicable": "white"}
    for c in s.report["claims"]:
        counts: dict[str, int] = {}
        for sc in c["scenarios"]:
            counts[sc["outcome"]] = counts.get(sc["outcome"], 0) + 1
        detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        if c["verdict"] == "waived":
            detail += f" (observed {c['observed']}; waived until {c['waiver']['expires']}: {c['waiver']['justification']})"
        elif c["verdict"] != "satisfied" and c.get("reason"):
            detail += f": {c['reason'][:160]}"
        tr.write_line(f"{c['id']:<13} {c['verdict']:<15} {detail}", **{colours[c["verdict"]]: True})
    if "interruption" in s.report:
        i = s.report["interruption"]
        tr.write_line(f"INTERRUPTED: {i['reason']}; not judged: {', '.join(i['notJudged']) or '-'}", red=True)
    tr.write_line(f"result: {s.report['result']}  exit code {s.report['exitCode']}  (report: {s.report_dir / 'conformance-report.json'})")
