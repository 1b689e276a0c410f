"""`make bench`: one full suite run against the reference on the local target, measured.

Prints lab set-up seconds, scenario count, suite wall seconds, and the service's own share
(start-up and CPU seconds), all from the same run, and writes them to reports/bench.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    report_dir = PROJECT / "reports" / "bench"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "steps", "-q", "--report-dir", str(report_dir), *argv],
        cwd=PROJECT, capture_output=True, text=True,
    )
    wall = time.monotonic() - started
    report_file = report_dir / "conformance-report.json"
    if not report_file.exists():
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        print("bench: the suite wrote no report", file=sys.stderr)
        return 1
    report = json.loads(report_file.read_text())
    t = report["timings"]
    by_family: dict[str, float] = {}
    for claim in report["claims"]:
        by_family[claim["family"]] = by_family.get(claim["family"], 0.0) + sum(sc["seconds"] for sc in claim["scenarios"])
    network = sum(v for k, v in by_family.items() if k in ("proxy", "telemetry", "air-gap"))
    numbers = {
        "lab_setup_seconds": t.get("lab_up"),
        "network_seconds": t.get("network"),
        "mocks_seconds": t.get("mocks"),
        "scenarios": sum(len(c["scenarios"]) for c in report["claims"]),
        "suite_wall_seconds": round(wall, 2),
        "network_scenarios_seconds": round(network, 2),
        "other_scenarios_seconds": round(sum(by_family.values()) - network, 2),
        "profile": report.get("profile"),
        "service_start_seconds": t.get("service_start"),
        "service_cpu_seconds": round(t.get("service_cpu", 0) + t.get("service_cpu_before_restarts", 0), 2),
        "service_restarts": t.get("service_restarts", 0),
        "chat_round_trip_seconds": t.get("chat_wall"),
        "result": report["result"],
    }
    (PROJECT / "reports" / "bench.json").write_text(json.dumps(numbers, indent=2) + "\n")
    width = max(map(len, numbers))
    for key, value in numbers.items():
        print(f"{key:<{width}}  {value}")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
