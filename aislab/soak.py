"""`make soak`: the suite against the reference N times in a row (default 20), on a chosen target,
optionally with background load that keeps every core busy, to find the harness's own flakes:
a scenario whose outcome is not the same in every run.

Writes reports/soak.json (per scenario: passes, violations, undetermined, harness errors, not
applicable, the slowest time, and whether it is flaky) and prints the table; exits 1 when any
scenario is flaky or any run failed.

    python -m aislab.soak [--runs N] [--target local|docker|kubernetes] [--load] [-- aislab run options]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from aislab import PROJECT

OUTCOMES = ("passed", "violated", "undetermined", "error", "not_applicable")
BUSY = "while True: pass"
WORKER = re.compile(r" \(worker \d+\)$")  # a whole-life scenario as each worker of a parallel run names it


def background_load() -> list[subprocess.Popen]:
    """One busy process per core: the machine as a shared CI runner leaves it."""
    return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 1)]


def one_run(index: int, target: str, extra: list[str]) -> tuple[dict, float, int]:
    report_dir = PROJECT / "reports" / "soak" / f"run-{index:02d}"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "aislab.cli", "run", "--target", target, "--report-dir", str(report_dir), *extra],
                          cwd=PROJECT, capture_output=True, text=True, env={**os.environ, "AISLAB_NO_HTML": "1"})
    wall = time.monotonic() - started
    report_file = report_dir / "conformance-report.json"
    if not report_file.exists():
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return {}, wall, proc.returncode
    return json.loads(report_file.read_text()), wall, proc.returncode


def _one_outcome(outcomes: list[str]) -> str:
    """A whole-life scenario's outcome over a parallel run's workers: the worst any worker saw.
    Which worker met, say, a broken-proxy instance depends on the sharding, so one worker's
    not_applicable beside another's pass is the run's pass, not a flake."""
    worst = [o for o in outcomes if o not in ("passed", "not_applicable")]
    return worst[0] if worst else "passed" if "passed" in outcomes else "not_applicable"


def tally(reports: list[dict]) -> dict[str, dict]:
    """Per scenario, what each run said (a parallel run's whole-life scenarios, one per worker,
    taken together); a scenario tagged with several claims is counted once per run."""
    table: dict[str, dict] = {}
    for report in reports:
        seen: set[str] = set()
        per_worker: dict[str, tuple[str, list[dict]]] = {}  # scenario: its first claim, each worker's result
        for claim in report.get("claims", []):
            for sc in (sc for sc in claim["scenarios"] if sc["name"] not in seen):
                seen.add(sc["name"])
                per_worker.setdefault(WORKER.sub("", sc["name"]), (claim["id"], []))[1].append(sc)
        for name, (claim_id, scs) in per_worker.items():
            outcome = _one_outcome([sc["outcome"] for sc in scs])
            row = table.setdefault(name, {"claim": claim_id, **dict.fromkeys(OUTCOMES, 0), "slowest_seconds": 0.0, "messages": []})
            row[outcome] += 1
            row["slowest_seconds"] = max([row["slowest_seconds"], *(sc["seconds"] for sc in scs)])
            for sc in scs:
                if sc["outcome"] not in ("passed", "not_applicable") and sc["message"][:300] not in row["messages"]:
                    row["messages"].append(sc["message"][:300])
    for row in table.values():
        row["flaky"] = sum(1 for o in OUTCOMES if row[o]) > 1
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--target", default="local")
    parser.add_argument("--load", action="store_true", help="keep every core busy in the background")
    args, extra = parser.parse_known_args(argv)
    load = background_load() if args.load else []
    reports, runs = [], []
    try:
        for i in range(1, args.runs + 1):
            report, wall, code = one_run(i, args.target, [a for a in extra if a != "--"])
            reports.append(report)
            runs.append({"run": i, "wall_seconds": round(wall, 1), "exit_code": code, "result": report.get("result", "no report")})
            print(f"soak run {i}/{args.runs}: {runs[-1]['result']} (exit {code}) in {wall:.1f} s", flush=True)
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    table = tally(reports)
    flaky = sorted(name for name, row in table.items() if row["flaky"])
    out = {"target": args.target, "runs": runs, "background_load": args.load, "scenarios": table, "flaky": flaky}
    (PROJECT / "reports").mkdir(exist_ok=True)
    (PROJECT / "reports" / "soak.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{'scenario':<90} {'pass':>5} {'viol':>5} {'undet':>5} {'err':>5} {'n/a':>5} {'slowest':>8}")
    for name, row in sorted(table.items()):
        mark = "  FLAKY" if row["flaky"] else ""
        print(f"{name[:90]:<90} {row['passed']:>5} {row['violated']:>5} {row['undetermined']:>5} {row['error']:>5} "
              f"{row['not_applicable']:>5} {row['slowest_seconds']:>8.2f}{mark}")
    print(f"\n{len(runs)} runs on {args.target}{' under background load' if args.load else ''}: "
          f"{len(flaky)} flaky scenario(s) of {len(table)}; walls {min(r['wall_seconds'] for r in runs)}-{max(r['wall_seconds'] for r in runs)} s")
    return 1 if flaky or any(r["exit_code"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
