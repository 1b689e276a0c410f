"""`aislab run --workers N`: N workers, each a run of the suite with a lab of its own judging its
share of the selection (aislab.suite.sharding), then one report, JUnit, Allure result set and
bundle for all of them (aislab.report.merge), with the same verdicts a single worker would give.

The parent holds the report directory; each worker writes under `workers/<i>/` (its report,
JUnit, evidence, service log) and into the one `allure-results/`. A signal to the parent (Ctrl-C,
SIGTERM) goes to every worker, and each stops as a single run does: interrupted, torn down."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from aislab import PROJECT
from aislab.report.bundle import BusyError, claim_directory, write_bundle
from aislab.report.conformance import EXIT_HARNESS_FAILED
from aislab.report.evidence import Redactor
from aislab.report.merge import merge, merge_junit, write
from aislab.suite.sharding import remember_seconds

PR_SET_PDEATHSIG = 1  # prctl(2)


def run(pytest_args: list[str], report_dir: Path, workers: int) -> int:
    try:
        lock = claim_directory(report_dir)
    except BusyError as err:
        print(f"cannot start: {err}", file=sys.stderr)
        return EXIT_HARNESS_FAILED
    try:
        return _run(pytest_args, report_dir, workers)
    finally:
        os.close(lock)


def _run(pytest_args: list[str], report_dir: Path, workers: int) -> int:
    dirs = [report_dir / "workers" / str(i) for i in range(1, workers + 1)]
    procs = []
    for i, directory in enumerate(dirs, 1):
        command = [sys.executable, "-m", "pytest", str(PROJECT / "steps"), "--rootdir", str(PROJECT), "-c", str(PROJECT / "pyproject.toml"),
                   "-q", *pytest_args, "--report-dir", str(directory), "--junitxml", str(directory / "junit.xml"),
                   "--alluredir", str(report_dir / "allure-results"), "--shard", f"{i}/{workers}"]
        directory.parent.mkdir(exist_ok=True)
        with output(directory).open("wb") as out:  # beside its directory, which the worker empties when it starts
            procs.append(subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=stop_with_parent))

    def forward(signum, _frame):  # every worker stops as a single run would, and says so
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    parts = [(d, json.loads((d / "conformance-report.json").read_text())) for d in dirs if (d / "conformance-report.json").exists()]
    failed = [i for i, (d, code) in enumerate(zip(dirs, codes), 1) if not (d / "conformance-report.json").exists() and code != 0]
    for i in failed:
        print(f"worker {i} failed without a report (exit {codes[i - 1]}); its output:\n"
              + output(dirs[i - 1]).read_text(errors="replace")[-3000:], file=sys.stderr)
    if not parts:
        return EXIT_HARNESS_FAILED
    report = merge(parts, report_dir)
    if failed:
        report["exitCode"] = EXIT_HARNESS_FAILED
        report["warnings"].append(f"worker(s) {failed} failed without a report: their share was not judged")
    write(report, report_dir)
    merge_junit([d / "junit.xml" for d in dirs], report_dir / "junit.xml")
    write_bundle(report_dir, report, Redactor())  # each worker redacted what it wrote with its lab's secrets
    remember_seconds({sc["nodeid"]: sc["seconds"] for c in report["claims"] for sc in c["scenarios"] if sc["outcome"] != "not_applicable"},
                     report["profile"])
    summary(report)
    return report["exitCode"]


def stop_with_parent() -> None:
    """A worker whose parent is killed outright gets SIGTERM: it stops as an interrupted run does,
    tearing its lab down, instead of judging on for no one."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def output(directory: Path) -> Path:
    return directory.with_name(f"{directory.name}.log")


def summary(report: dict) -> None:
    """The claims, one line each, as a single run prints them."""
    print("=" * 30 + f" claims ({len(report['workers'])} workers) " + "=" * 30)
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    for c in report["claims"]:
        counts: dict[str, int] = {}
        for sc in c["scenarios"]:
            counts[sc["outcome"]] = counts.get(sc["outcome"], 0) + 1
        detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        if c["verdict"] != "satisfied" and c.get("reason"):
            detail += f": {c['reason'][:160]}"
        print(f"{c['id']:<13} {c['verdict']:<15} {detail}")
    if "interruption" in report:
        print(f"INTERRUPTED: {report['interruption']['reason']}; not judged: {', '.join(report['interruption']['notJudged']) or '-'}")
    print(f"result: {report['result']}  exit code {report['exitCode']}")
