"""Prints the kill matrix after `make test`; the local Kubernetes cluster for the tests that need one."""

import json
from pathlib import Path

import pytest

MATRIX_FILE = Path(__file__).resolve().parent.parent / "reports" / "mutation-matrix.json"


def pytest_terminal_summary(terminalreporter, config):
    if not MATRIX_FILE.exists() or MATRIX_FILE.stat().st_mtime < config._aislab_tests_started:
        return
    tr = terminalreporter
    tr.section("kill matrix")
    for row in json.loads(MATRIX_FILE.read_text())["rows"]:
        if not row["declared"]:  # conforming: nothing violated or undetermined (not applicable is the driver's say)
            status = "clean" if not row["violated"] and not row["undetermined"] else "NOT CLEAN"
        elif not row["killed"]:
            status = "SURVIVED"
        else:
            status = "OVER-BROAD" if row["over_broad"] else f"KILLED ({row['killed_in']})"
        tr.write_line(f"{row['service']:<40} {row['target']:<7} {status:<22} violated={','.join(row['violated']) or '-'}  ({row['seconds']}s)")


def pytest_configure(config):
    import time

    config._aislab_tests_started = time.time()


@pytest.fixture(scope="session")
def local_cluster():
    """The local single-node Kubernetes, built (or reused from the machine's cache) and started
    once for the session; KUBECONFIG points at it. Left as it was found: stopped again at the end
    unless it was running before."""
    import os

    from aislab.world.targets.kubernetes import local

    was_running = local.running()
    kubeconfig = local.ensure_started()
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    yield kubeconfig
    if before is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = before
    if not was_running:
        local.stop()
