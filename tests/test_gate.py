"""A gate CI can trust: `aislab run` returns the documented exit codes; an interrupted, killed or
mis-selected run never passes; inputs are strict; a hanging or dying service costs minutes; one
run per report directory; and the versions a run was made with are in its report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from aislab.world.layout import LABS
from tests.suite_runs import DRIVERS, PROJECT, validate_report

AISLAB = Path(sys.executable).parent / "aislab"
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


def gate(report_dir: Path, *args: str, env: dict | None = None, timeout: float = 600) -> tuple[int, str, dict | None]:
    proc = subprocess.run([str(AISLAB), "run", "--report-dir", str(report_dir), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    report = report_dir / "conformance-report.json"
    doc = json.loads(report.read_text()) if report.exists() else None
    if doc is not None:
        validate_report(doc)
    return proc.returncode, proc.stdout + proc.stderr, doc


def dispositions(ignored: tuple[int, ...] = ()):
    """A child's signal dispositions: the defaults, whatever this test process inherited (a
    run of `make test` from a background job has SIGINT ignored), then `ignored` ignored."""
    def apply():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    return apply


def start(report_dir: Path, *args: str, ignored: tuple[int, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen([str(AISLAB), "run", "--report-dir", str(report_dir), *args], preexec_fn=dispositions(ignored),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def await_evidence(report_dir: Path, scenarios: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has judged that many scenarios (their evidence is on disk)."""
    deadline = time.monotonic() + timeout
    while len(list(report_dir.glob("evidence/*")) + list(report_dir.glob("workers/*/evidence/*"))) < scenarios:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the run judged too few scenarios in time"
        time.sleep(0.2)  # another process fills the directory: look again


def no_secret_in(report_dir: Path, secrets: list[str]) -> None:
    for path in (p for p in report_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not JWT.search(data), f"a JWT in clear in {path}"
        assert b"sk-lab-" not in data, f"an LLM key in clear in {path}"
        for secret in secrets:
            assert secret.encode() not in data, f"a lab secret in clear in {path}"


def netns() -> set[str]:
    """The labs' network namespaces (a cluster's pods on this machine have their own, not ours)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
    return {line.split()[0] for line in listed if line.startswith("ais")}


def lab_dirs() -> set[Path]:
    return set(LABS.glob("*")) if LABS.exists() else set()


# --- 1. exit codes --------------------------------------------------------------------------
def test_the_gate_returns_the_documented_exit_codes(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "service": {"comand": ["x"]}}))
    runs = {
        0: ("--claims", "AIS-AUTH-01"),
        100: ("--claims", "AIS-AUTH-01", "--driver", str(DRIVERS / "mutant.yaml")),
        101: ("--claims", "AIS-AUTH-01,AIS-CFG-01"),  # the configuration claim is not applicable without --chart
        1: ("--driver", str(broken)),
    }
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(runs, pool.map(lambda code: gate(tmp_path / str(code), *runs[code], env={"AIS_MUTANT": "anonymous-chat-allowed"}), runs)))
    for code, (returned, output, report) in done.items():
        assert returned == code, output[-3000:]
        if report is not None:
            assert report["exitCode"] == code
    assert "service.comand: unknown key; did you mean 'command'?" in done[1][1]
    assert (tmp_path / "0" / "html" / "index.html").exists()  # the gate renders the HTML too
    environment = done[0][2]["environment"]
    assert environment["packages"]["pytest"] == metadata.version("pytest") and {"squid", "tinyproxy"} <= set(environment["tools"])


# --- 2. interrupted runs ---------------------------------------------------------------------
@pytest.mark.parametrize("sig, reason, ignored", [
    (signal.SIGINT, "SIGINT", ()), (signal.SIGTERM, "SIGTERM", ()),
    # Started as a background job or under nohup: it inherits SIGINT (and SIGHUP) ignored, and
    # must still stop on SIGINT.
    (signal.SIGINT, "SIGINT", (signal.SIGINT, signal.SIGHUP)),
], ids=["SIGINT", "SIGTERM", "SIGINT-inherited-ignored"])
def test_an_interrupted_run_is_never_conformant_and_leaves_nothing_behind(tmp_path, sig, reason, ignored):
    before_ns, before_dirs = netns(), lab_dirs()
    proc = start(tmp_path, "--claims", "authentication,authorization", ignored=ignored)
    await_evidence(tmp_path, 3, proc)
    os.kill(proc.pid, sig)
    output = proc.communicate(timeout=120)[0]
    report = json.loads((tmp_path / "conformance-report.json").read_text())
    validate_report(report)
    assert proc.returncode == 1 and report["exitCode"] == 1, output[-3000:]
    assert report["result"] == "interrupted" and reason in report["interruption"]["reason"]
    assert report["interruption"]["notJudged"] and report["selection"] == "--claims authentication,authorization"
    assert netns() == before_ns and lab_dirs() == before_dirs, "the lab was not torn down"
    no_secret_in(tmp_path, [])


def test_a_run_past_its_deadline_stops_and_says_so(tmp_path):
    returned, output, report = gate(tmp_path, "--claims", "authentication", "--deadline", "1")
    assert returned == 1 and report["result"] == "interrupted", output[-3000:]
    assert "deadline of 1s" in report["interruption"]["reason"] and report["interruption"]["notJudged"]


# --- 3. a killed run -------------------------------------------------------------------------
def test_a_killed_run_leaves_no_secret_in_clear_and_the_next_run_removes_its_lab(tmp_path):
    before = lab_dirs()
    proc = start(tmp_path / "killed", "--claims", "authentication,authorization", "--workers", "1")
    await_evidence(tmp_path / "killed", 4, proc)
    (orphan,) = lab_dirs() - before
    state = orphan / "state"
    lab = json.loads((state / "lab.json").read_text())
    os.kill(proc.pid, signal.SIGKILL)  # the harness only: its lab stays up, as after a crash
    proc.wait(30)
    # Its keys were its own: a 0700 directory, 0600 keys.
    assert state.stat().st_mode & 0o777 == 0o700
    assert all((state / f).stat().st_mode & 0o777 == 0o600 for f in ("ca.key", "idp-signing-key.pem", "lab.json"))
    no_secret_in(tmp_path / "killed", [lab["admin_secret"], lab["llm_api_key"]])
    returned, output, _ = gate(tmp_path / "next", "--claims", "AIS-AUTH-01")
    assert returned == 0, output[-3000:]
    assert not orphan.exists(), "the killed run's lab directory (its keys) is still there"


def test_a_service_that_cannot_run_in_its_sandbox_is_refused_before_any_scenario_in_seconds(tmp_path):
    """A driver whose command does not exist never gets a scenario, let alone a `satisfied`."""
    started = time.monotonic()
    returned, output, report = gate(tmp_path, "--driver", str(DRIVERS / "inert-missing-command.yaml"))
    assert returned == 1 and time.monotonic() - started < 10, output[-3000:]
    assert "the program /opt/testkube-ai-copilot/bin/testkube-ai-service does not exist" in output
    assert not (tmp_path / "evidence").exists(), "a scenario ran"
    assert report["result"] == "interrupted" and "cannot run inside the service's sandbox" in report["interruption"]["reason"]
    assert not [c for c in report["claims"] if c["verdict"] == "satisfied"]


# --- 4. selections ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (("--claims", "AIS-AUTH-01,AIS-NOPE-07"), "--claims AIS-NOPE-07: matches no claim and no family"),
    (("--claims", "authentcation"), "--claims authentcation: matches no claim and no family"),
    (("-k", "no_scenario_is_called_this"), "matches no scenario: nothing would be judged"),
])
def test_a_selection_that_matches_nothing_is_an_error_that_says_so(tmp_path, args, message):
    returned, output, report = gate(tmp_path, *args)
    assert returned == 1 and message in output and report is None, output[-2000:]


def test_what_m_and_k_selected_is_recorded(tmp_path):
    returned, output, report = gate(tmp_path, "-m", "AIS-AUTH-01 or AIS-AUTH-03", "-k", "reader or without")
    assert returned == 0, output[-3000:]
    assert report["selection"] == "-m AIS-AUTH-01 or AIS-AUTH-03; -k reader or without"
    assert {c["id"] for c in report["claims"]} == {"AIS-AUTH-01", "AIS-AUTH-03"}


# --- 5. strict driver files: an answer path that matches nothing --------------------------------
def test_an_answer_path_that_matches_nothing_stops_the_run_with_the_response(tmp_path):
    driver = tmp_path / "d.yaml"
    driver.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "chat": {"answer": "reply.text"}}))
    returned, output, report = gate(tmp_path / "r", "--driver", str(driver), "--claims", "AIS-AUTH-03")
    assert returned == 1 and report["exitCode"] == 1, output[-3000:]
    (scenario, *_) = report["claims"][0]["scenarios"]
    assert scenario["outcome"] == "error" and "'reply.text' matches nothing in the response" in scenario["message"]
    assert '"answer"' in scenario["message"]  # the response is shown


# --- 6. a hanging or dying service ----------------------------------------------------------------
SERVICE = """
import http.server, os, sys, threading, time
DIE = os.environ.get("DIE") == "1"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        if DIE:
            os._exit(7)
        time.sleep(3600)
http.server.ThreadingHTTPServer(("0.0.0.0", 9090), H).serve_forever()
"""


@pytest.fixture
def service_file():
    """A service's program outside /tmp: the service gets a /tmp of its own."""
    path = PROJECT / ".cache" / f"test-service-{os.getpid()}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(SERVICE)
    yield path
    path.unlink()


@pytest.mark.parametrize("die", [False, True], ids=["hangs", "dies"])
def test_a_service_that_stops_answering_costs_minutes_and_is_undetermined(tmp_path, die, service_file):
    driver = tmp_path / "d.yaml"
    driver.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "chat": {"timeout": 2},
                                      "service": {"command": ["{python}", str(service_file)], "env": {"DIE": "1" if die else "0"}}}))
    started = time.monotonic()
    returned, output, report = gate(tmp_path / "r", "--driver", str(driver), "--claims", "authentication,authorization,read-only")
    assert time.monotonic() - started < 120, output[-3000:]
    assert returned == 101 and {c["verdict"] for c in report["claims"]} == {"undetermined"}, output[-3000:]
    reasons = " ".join(c.get("reason", "") for c in report["claims"])
    assert ("exited twice" if die else "answered no chat in the last 3 scenarios") in reasons
    if die:
        assert any("exited with code 7" in w and "restarted" in w for w in report["warnings"])


# --- 7. one run per report directory ---------------------------------------------------------
def test_a_second_run_into_the_same_report_directory_is_refused(tmp_path):
    first = start(tmp_path, "--claims", "authentication")
    await_evidence(tmp_path, 1, first)
    returned, output, _ = gate(tmp_path, "--claims", "AIS-AUTH-01")
    assert returned == 1 and f"--report-dir {tmp_path}: in use by another run (pid {first.pid})" in output
    assert first.wait(300) == 0, first.stdout.read()[-3000:]


# --- 8. reproducible verdicts ----------------------------------------------------------------
def test_the_lock_file_pins_every_dependency_with_hashes_and_is_what_is_installed():
    lock = (PROJECT / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", lock, re.M))
    declared = {re.split(r"[<>=!~ ;\[]", d)[0] for d in tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]}
    normal = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    pinned = {normal(k): v for k, v in pinned.items()}
    assert {normal(d) for d in declared} <= set(pinned), "a dependency is not pinned with hashes"
    assert lock.count("==") == len(pinned), "an entry of the lock has no hash"
    for name, version in pinned.items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, locked {version}"
