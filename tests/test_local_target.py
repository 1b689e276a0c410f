"""The local target: bring-up, clear errors for a service that never becomes ready or for
missing privileges, and cleanup of labs left behind by a killed run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from aislab.driver import load_driver
from aislab.lab import Lab
from aislab.targets import LabError, make_target
from aislab.targets import local

DRIVERS = Path(__file__).resolve().parent.parent / "fixtures" / "drivers"


def driver_with(tmp_path, command, timeout=20):
    doc = yaml.safe_load((DRIVERS / "reference.yaml").read_text())
    doc["service"]["command"] = command
    doc["service"]["ready"]["timeout"] = timeout
    path = tmp_path / "driver.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_driver(path)


def lab_with(tmp_path, command, timeout=20) -> Lab:
    return Lab(make_target("local", tmp_path), driver_with(tmp_path, command, timeout))


def test_service_that_exits_is_reported_with_its_log(tmp_path):
    lab = lab_with(tmp_path, ["{python}", "-c", "import sys; print('config broken: no LLM_API_KEY', flush=True); sys.exit(3)"])
    try:
        with pytest.raises(LabError, match=r"(?s)exited with code 3.*config broken: no LLM_API_KEY"):
            lab.up()
    finally:
        lab.down()


def test_service_that_never_answers_times_out_with_its_log(tmp_path):
    lab = lab_with(tmp_path, ["{python}", "-c", "import time; print('stuck in init', flush=True); time.sleep(30)"], timeout=1)
    try:
        with pytest.raises(LabError, match=r"(?s)not ready within 1s.*stuck in init"):
            lab.up()
    finally:
        lab.down()


def test_every_attempt_to_leave_the_service_host_is_caught_by_the_witness(tmp_path):
    lab = Lab(make_target("local", tmp_path), load_driver(DRIVERS / "reference.yaml")).up()
    try:
        ns = lab.target.netns("service")
        routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
        assert "default dev dead0" in routes  # the only way out is a dead end
        lab.reset()
        probe = ("import socket\n"
                 "s = socket.create_connection(('198.51.100.7', 80), timeout=2)\n"
                 "s.sendall(b'GET /probe HTTP/1.1\\r\\nHost: probe.example\\r\\n\\r\\n'); print(s.recv(100)[:12])\n"
                 "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('198.51.100.8', 9999))\n"
                 "try:\n    socket.create_connection(('2001:db8::1', 80), timeout=2)\nexcept OSError as e:\n    print('v6', e.errno)\n")
        out = lab.target.run_in("service", ["python3", "-c", probe]).stdout
        assert "HTTP/1.1 502" in out and "v6" in out  # answered by the witness; IPv6 refused at once
        records = lab.records("witness")
        tcp = next(r for r in records if r["proto"] == "tcp")
        assert (tcp["dst"], tcp["host"], tcp["path"]) == ("198.51.100.7:80", "probe.example", "/probe")
        assert any(r["proto"] == "udp" and r["dst"] == "198.51.100.8:9999" for r in records)
        assert lab.timings["lab_up"] < 5
    finally:
        lab.down()


def test_leftovers_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    first = make_target("local", tmp_path)
    slot = first.slot
    first.create()
    first.release()  # the owner "dies" without destroying anything
    assert any(line.startswith(f"ais{slot}-") for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())
    second = make_target("local", tmp_path)
    try:
        assert second.slot == slot
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(line.startswith(f"ais{slot}-") for line in listed.splitlines())
    finally:
        second.destroy()


def test_missing_privileges_give_a_clear_message(monkeypatch):
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        local.preflight()


def test_missing_ip_tool_gives_a_clear_message(monkeypatch):
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="iproute2"):
        local.preflight()


def test_unbuilt_targets_say_so(tmp_path):
    with pytest.raises(LabError, match="not built yet"):
        make_target("docker", tmp_path)
