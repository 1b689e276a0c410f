"""Crash safety: a run killed outright (SIGKILL to all of it) while its lab starts, in the middle
of a scenario, or while it tears down, leaves things behind; the next run removes every one of
them, whatever slot they were in: namespaces, veths, firewall rules, containers, networks,
processes, state directories. Shown by listing them before and after, also for a run started
from a process that ignores SIGINT and SIGHUP (nohup, a CI runner's background step)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from aislab.world.layout import LABS
from aislab.world.targets.docker import firewall
from aislab.world.targets.docker.target import LABEL, labelled
from tests.test_gate import AISLAB, dispositions

CLAIMS = "AIS-AUTH-01,AIS-RO-01,AIS-AUTH-03"


def leftovers() -> dict[str, set[str]]:
    """Everything any lab of this machine owns."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.split()
    found = {"namespaces": {n for n in netns if n.startswith("ais")},
             "veths": {n.rstrip(":").split("@")[0] for n in links if n.startswith(("ais", "aisd"))},
             "firewall rules": firewall.tags("aislab-"),
             "state directories": {p.name for p in LABS.glob("*")} if LABS.exists() else set(),
             "processes": set(subprocess.run(["pgrep", "-f", "aislab.world.hosts|/var/lib/aislab/labs/"], capture_output=True,
                                             text=True).stdout.split())}
    try:
        client = docker.from_env()
        found["containers"] = {c.attrs["Names"][0].lstrip("/") for c in labelled(client, LABEL)}
        found["networks"] = {n.name for n in client.networks.list(filters={"label": LABEL})}
    except docker.errors.DockerException:
        pass
    return found


def await_point(report_dir: Path, point: str, proc: subprocess.Popen, before: dict, timeout: float = 180) -> None:
    """Until the run is where it should be killed."""
    def reached() -> bool:
        if point == "lab starting":  # its first hosts are there
            fresh = new_since(before)
            return bool(fresh.get("namespaces") or fresh.get("containers"))
        scenarios = len(list((report_dir / "evidence").glob("*"))) if (report_dir / "evidence").exists() else 0
        return scenarios >= (1 if point == "mid-scenario" else len(CLAIMS.split(",")) + 1)

    deadline = time.monotonic() + timeout
    while not reached():
        assert proc.poll() is None, f"the run ended before it reached {point}"
        assert time.monotonic() < deadline, f"the run did not reach {point} in time"
        time.sleep(0.05)  # another process's progress: look again


@pytest.mark.parametrize("target", ["local", "docker"])
@pytest.mark.parametrize("point", ["lab starting", "mid-scenario", "teardown"])
def test_the_next_run_removes_everything_a_killed_run_left(tmp_path, target, point):
    before = leftovers()
    ignored = (signal.SIGINT, signal.SIGHUP) if point == "mid-scenario" else ()  # started as nohup would
    proc = subprocess.Popen([str(AISLAB), "run", "--workers", "1", "--target", target, "--report-dir", str(tmp_path / "killed"),
                             "--claims", CLAIMS], preexec_fn=dispositions(ignored), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await_point(tmp_path / "killed", point, proc, before)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, at once: nothing of it tears anything down
    proc.wait(30)
    # Other labs may come and go on this machine meanwhile: only the killed run's own are judged.
    (lab,) = {d for d in new_since(before).get("state directories", set()) if d.startswith(target)}
    left = owned_by(lab, new_since(before))
    assert left.get("namespaces") or left.get("containers"), f"the killed run left nothing to clean: {left}"
    nxt = subprocess.run([str(AISLAB), "run", "--workers", "1", "--target", target, "--report-dir", str(tmp_path / "next"),
                          "--claims", "AIS-AUTH-01"], preexec_fn=dispositions(), capture_output=True, text=True, timeout=600)
    assert nxt.returncode == 0, nxt.stdout[-3000:]
    now = owned_by(lab, leftovers())
    still = {kind: things & now.get(kind, set()) for kind, things in left.items() if things & now.get(kind, set())}
    assert not still, f"the next run left these of the killed run's behind: {still}"


def owned_by(lab: str, found: dict[str, set[str]]) -> dict[str, set[str]]:
    """What of `found` belongs to the lab of that state directory (`local-3`, `docker-0`)."""
    slot = lab.rsplit("-", 1)[1]
    prefixes = (f"ais{slot}-", f"aisd{slot}") if lab.startswith("local") else (f"aislab-d{slot}", f"aisd{slot}")
    mine = {kind: {t for t in things if t.startswith(prefixes) or t == lab} for kind, things in found.items() if kind != "processes"}
    mine["processes"] = {pid for pid in found.get("processes", set()) if f"/labs/{lab}/" in cmdline(pid)}
    return {kind: things for kind, things in mine.items() if things}


def cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def new_since(before: dict[str, set[str]]) -> dict[str, set[str]]:
    return {kind: things - before.get(kind, set()) for kind, things in leftovers().items() if things - before.get(kind, set())}
