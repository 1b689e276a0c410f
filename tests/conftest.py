"""Prints the kill matrix after `make test`."""

import json
from pathlib import Path

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
