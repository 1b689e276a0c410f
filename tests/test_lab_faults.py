"""The lab's own faults never become verdicts: a mock, a witness, a proxy or the DNS sinkhole that
dies or stalls mid-run makes the scenarios it touched undetermined, with the reason (a harness
error, exit code 1, as for any lab failure: never satisfied, never violated); the lab starts the
program afresh and the suite goes on; what a lost recording host kept is gone, so the whole-life
claims are undetermined. A service that floods its log or fills its disk fills its own space,
and the run goes on as for any service."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from aislab.world.layout import LABS
from aislab.world.targets import LabError
from tests.suite_runs import DRIVERS, validate_report
from tests.test_gate import AISLAB, dispositions


def program(run: int, pattern: str) -> int:
    """The pid of the run's lab program whose command line matches `pattern` (the lab's programs
    are the run's children, whatever other labs this machine has)."""
    found = subprocess.run(["pgrep", "-P", str(run), "-f", pattern], capture_output=True, text=True).stdout.split()
    assert len(found) == 1, f"{len(found)} programs {pattern!r} of the run"
    return int(found[0])


def run_with_fault(tmp_path: Path, claims: str, after: int, pattern: str, sig: int, driver: Path | None = None) -> tuple[int, dict, str]:
    """A run of `claims` in which, once `after` scenarios are judged, the lab program matching
    `pattern` gets `sig` (SIGKILL: it dies; SIGSTOP: it stalls)."""
    args = ["--workers", "1", "--report-dir", str(tmp_path), "--claims", claims, *(["--driver", str(driver)] if driver else [])]
    proc = subprocess.Popen([str(AISLAB), "run", *args], preexec_fn=dispositions(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list((tmp_path / "evidence").glob("*"))) < after if (tmp_path / "evidence").exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the fault"
        time.sleep(0.05)  # another process's progress: look again
    os.kill(program(proc.pid, pattern), sig)
    output = proc.communicate(timeout=600)[0]
    report = json.loads((tmp_path / "conformance-report.json").read_text())
    validate_report(report)
    return proc.returncode, report, output


def outcomes(report: dict) -> list[tuple[str, str, str]]:
    return [(c["id"], s["outcome"], s["message"]) for c in report["claims"] for s in c["scenarios"]]


@pytest.mark.parametrize("name, claims, pattern, sig, records", [
    ("a mock dies", "authentication,AIS-RBAC-01", "aislab.world.hosts controlplane", signal.SIGKILL, True),
    ("the DNS sinkhole stalls", "telemetry", "aislab.world.hosts dns", signal.SIGSTOP, True),
    ("the witness dies", "air-gap", "aislab.world.hosts witness --listen [0-9.]+20:", signal.SIGKILL, True),
    ("a proxy dies", "AIS-PROXY-01,AIS-PROXY-04", "squid -N", signal.SIGKILL, False),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_a_lab_program_that_dies_or_stalls_is_never_a_verdict_and_the_suite_goes_on(tmp_path, name, claims, pattern, sig, records):
    code, report, output = run_with_fault(tmp_path, claims, 2, pattern, sig)
    results = outcomes(report)
    assert code == 1 and report["exitCode"] == 1, output[-3000:]  # a lab failure: no verdict of this run can be trusted as a whole
    assert not [r for r in results if r[1] == "violated"], results
    broken = [r for r in results if r[1] in ("error", "undetermined")]
    assert broken and any("died or stalls" in m or "the lab broke" in m or "not on record" in m for _, _, m in broken), results
    assert any("started afresh" in w for w in report["warnings"]), report["warnings"]
    # The suite went on: scenarios after the fault were judged on the healed lab.
    assert sum(1 for r in results if r[1] == "passed") >= 2, results
    for claim in report["claims"] if records else []:  # a recording host's loss: the whole life is not on record
        if any("whole" in s["name"] for s in claim["scenarios"]):
            assert claim["verdict"] != "satisfied", f"{claim['id']}: satisfied over a life the lab lost part of"


def test_a_lab_host_that_does_not_answer_is_named_with_where_it_was_asked_and_why():
    """Refused, unreachable or timed out tell a dead program from a lost address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"http://127.0.0.1:{port}/_lab/records")
    assert str(LabError.silent("witness", caught.value)) == (
        f"the lab's witness at 127.0.0.1:{port} did not answer (ConnectError: [Errno 111] Connection refused): it died or stalls")


def test_a_service_that_floods_its_log_and_fills_its_disk_fills_its_own_space(tmp_path):
    """Its log and its /tmp are spaces of set sizes: what it writes past them is refused to it,
    the lab and the report are untouched, and it is judged like any service."""
    flooding = tmp_path / "flooding.yaml"
    reference = yaml.safe_load((DRIVERS / "reference.yaml").read_text())
    flooding.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "name": "flooding-reference", "service": {
        "command": ["sh", "-c", "yes flooding-the-log | head -c 400000000 >&2; dd if=/dev/zero of=/tmp/fill bs=1M count=1024 2>/dev/null; "
                    "exec \"$0\" \"$@\"", *reference["service"]["command"]]}}))
    free_before = os.statvfs(LABS).f_bavail * os.statvfs(LABS).f_frsize
    proc = subprocess.run([str(AISLAB), "run", "--workers", "1", "--report-dir", str(tmp_path / "r"), "--driver", str(flooding),
                           "--claims", "AIS-AUTH-01,AIS-RO-01"], preexec_fn=dispositions(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "r" / "service.log").stat().st_size <= 4_100_000  # the report keeps the end of its log
    assert free_before - os.statvfs(LABS).f_bavail * os.statvfs(LABS).f_frsize < 100_000_000, "the service filled the machine's disk"


def test_a_lab_program_whose_restart_failed_is_started_again_at_the_next_heal():
    """Seen under a profiler that stops every process now and then: a stalled program's restart
    failed (not ready in time), and the next scenario's heal removed the old process a second
    time (`list.remove(x): x not in list`, a bare harness error). It now tries the start again."""
    from aislab.world.lab import Lab, LabProgram

    class Gone:
        def alive(self):
            return False

        def wait(self, timeout):
            return -9

        def signal(self, sig):
            pass

    starts = []

    def starter():
        starts.append(len(starts))
        if len(starts) == 1:
            raise LabError("the lab's dns did not say it was ready")
        return Gone()

    lab = object.__new__(Lab)  # only what heal() touches: the programs, the processes, the records
    old = Gone()
    lab.programs = {"dns": LabProgram("dns", starter, old)}
    lab.target = type("Target", (), {"processes": [old]})()
    lab.witnesses = type("Reader", (), {"forget": lambda self, name: None})()
    lab.losses, lab.warnings = [], []
    with pytest.raises(LabError, match="did not say it was ready"):
        lab.heal()
    assert lab.programs["dns"].process is None and lab.target.processes == []
    assert lab.heal() == [lab.warnings[-1]] and len(starts) == 2
