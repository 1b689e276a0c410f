"""`make bench`: the docker target's image builds (cold, then cached), and full suite runs
against the reference, measured in the same run: on each target with one worker, and on the
local target with the default workers too.

Prints, per run, lab set-up seconds, scenario count, suite wall seconds, the run's FLOOR (what
cannot be avoided: the service's start-ups and graceful stops, the chats' round trips and the idle
windows, each as the service or the profile spends them) and wall / floor, the service's own share
(CPU seconds), and the configuration family's time on the six good values files (fixtures/values/good: render,
render again without each key, schemas, checks). Writes everything to reports/bench.json.
`--targets local` skips docker; `--no-cold` keeps the images (no cold build); `--no-parallel`
skips the run with the default workers; `--certification` adds the certification profile with
the default workers, and each scenario only it runs (the scale scenarios) with its seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from aislab import PROJECT

CHART = PROJECT / "fixtures" / "charts" / "testkube-ai-service"
GOOD_VALUES = sorted((PROJECT / "fixtures" / "values" / "good").glob("*.yaml"))
# The suite runs are judged on a deployment to which every configuration claim applies.
WITH_CHART = ["--chart", str(CHART), "--values", str(PROJECT / "fixtures" / "values" / "good" / "everything.yaml")]


def image_builds(cold: bool) -> dict:
    from aislab.world.targets.docker import images

    numbers = {}
    if cold:
        tags = [line for line in subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=aislab/*"],
            capture_output=True, text=True).stdout.split() if line]
        removed = subprocess.run(["docker", "rmi", *tags], capture_output=True, text=True) if tags else None
        if removed is not None and removed.returncode != 0:
            numbers["cold_build"] = f"not measured: {removed.stderr.strip()[:200]}"
        else:
            t0 = time.monotonic()
            images.ensure_images(log=lambda m: None)
            numbers["cold_build_seconds"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    tags = images.ensure_images(log=lambda m: None)
    numbers["cached_build_seconds"] = round(time.monotonic() - t0, 2)
    numbers["images"] = {k: tags[k] for k in ("base", "lab", "reference")}
    return numbers


def configuration(files: list) -> dict:
    """What the configuration family does for one values file, for each of `files` in turn."""
    from aislab.deployment.helm import Chart
    from aislab.deployment.rendering import Deployment
    from aislab.deployment.values import Values
    from aislab.judging.configuration import schema_valid

    chart = Chart.open(str(CHART), "testkube-ai-service", "testkube")
    per_file = {}
    started = time.monotonic()
    for path in files:
        t0 = time.monotonic()
        deployment = Deployment.render(chart, Values.read([path]))
        assert not isinstance(deployment.ignored, str), deployment.ignored
        schema_valid(deployment.manifests)
        per_file[path.name] = round(time.monotonic() - t0, 2)
    return {"values_files": len(files), "seconds": round(time.monotonic() - started, 2), "per_file": per_file}


def floor(timings: dict) -> float:
    """What a run cannot do without: the service's start-ups and stops, the chats' round trips, the idle windows."""
    return sum(timings.get(k, 0.0) for k in ("service_starts_total", "service_stops_total", "chat_wall", "idle_total"))


SCENARIOS = "_scenario_seconds"  # each scenario that ran, its seconds: for the profile comparison, never printed


def suite(target: str, extra: list[str], workers: int = 1, name: str | None = None) -> dict:
    report_dir = PROJECT / "reports" / f"bench-{name or target}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "aislab.cli", "run", "--target", target, "--report-dir", str(report_dir), "--workers", str(workers),
         *WITH_CHART, *extra],
        cwd=PROJECT, capture_output=True, text=True, env={**os.environ, "AISLAB_NO_HTML": "1"},
    )
    wall = time.monotonic() - started
    report_file = report_dir / "conformance-report.json"
    if not report_file.exists():
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"bench: the suite on {target} wrote no report")
    report = json.loads(report_file.read_text())
    parts = [json.loads((report_dir / w["report"] / "conformance-report.json").read_text())["timings"] for w in report.get("workers", [])]
    t = report["timings"] if not parts else {k: max(p.get(k, 0) for p in parts) for k in set().union(*parts)}
    # A parallel run's floor is its slowest worker's: the others' waits overlap it.
    floor_seconds = floor(report["timings"]) if not parts else max(floor(p) for p in parts)
    by_family: dict[str, float] = {}
    for claim in report["claims"]:
        by_family[claim["family"]] = by_family.get(claim["family"], 0.0) + sum(sc["seconds"] for sc in claim["scenarios"])
    network = sum(v for k, v in by_family.items() if k in ("proxy", "telemetry", "air-gap"))
    own = by_family.get("configuration", 0.0)
    return {
        "lab_setup_seconds": t.get("lab_up"),
        "hosts_seconds": t.get("network"),
        "mocks_seconds": t.get("mocks"),
        "scenarios": sum(len(c["scenarios"]) for c in report["claims"]),
        "workers": workers,
        "suite_wall_seconds": round(wall, 2),
        "floor_seconds": round(floor_seconds, 2),
        "wall_per_floor": round(wall / floor_seconds, 2) if floor_seconds else None,
        "network_scenarios_seconds": round(network, 2),
        "configuration_scenarios_seconds": round(own, 2),
        "other_scenarios_seconds": round(sum(by_family.values()) - network - own, 2),
        "service_start_seconds": t.get("service_start"),
        "service_cpu_seconds": round(t.get("service_cpu", 0), 2),
        "service_restarts": t.get("service_restarts", 0),
        "service_stops_seconds": round(t.get("service_stops_total", 0), 2),
        "chat_round_trip_seconds": t.get("chat_wall"),
        "result": report["result"],
        "exit_code": proc.returncode,
        SCENARIOS: {sc["nodeid"]: sc["seconds"] for c in report["claims"] for sc in c["scenarios"] if sc["outcome"] != "not_applicable"},
    }


def profile_only(profile: dict[str, float], quick: dict[str, float]) -> dict[str, float]:
    """The seconds of the scenarios a profile runs that the quick run does not run (there they
    are not applicable: the certification profile's scale scenarios, 50 users x 10 chats)."""
    return {nodeid: seconds for nodeid, seconds in profile.items() if nodeid not in quick}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="local,docker")
    parser.add_argument("--no-cold", action="store_true", help="do not remove and rebuild the images")
    parser.add_argument("--no-parallel", action="store_true", help="no run with the default workers")
    parser.add_argument("--certification", action="store_true", help="also the certification profile, with the default workers")
    args, extra = parser.parse_known_args(argv)
    targets = args.targets.split(",")
    numbers: dict = {}
    if "docker" in targets:
        numbers["docker_images"] = image_builds(cold=not args.no_cold)
    numbers["configuration"] = configuration(GOOD_VALUES)
    runs = list(targets)
    for target in targets:
        numbers[target] = suite(target, extra)
    default_workers = min(2, os.cpu_count() or 1)
    if "local" in targets and not args.no_parallel and default_workers > 1:
        runs.append("local-parallel")
        numbers["local-parallel"] = suite("local", extra, default_workers, "local-parallel")
        numbers["local-parallel"]["of_sequential_wall"] = round(numbers["local-parallel"]["suite_wall_seconds"]
                                                                / numbers["local"]["suite_wall_seconds"], 2)
    if args.certification:
        runs.append("certification-parallel")
        numbers["certification-parallel"] = suite("local", [*extra, "--profile", "certification"], default_workers, "certification")
    seconds = {run: numbers[run].pop(SCENARIOS) for run in runs}
    if args.certification and "local" in runs:
        only = profile_only(seconds["certification-parallel"], seconds["local"])
        numbers["certification-parallel"]["certification_only_seconds"] = round(sum(only.values()), 2)
        numbers["certification_only_scenarios"] = only
    targets = runs
    (PROJECT / "reports").mkdir(exist_ok=True)
    (PROJECT / "reports" / "bench.json").write_text(json.dumps(numbers, indent=2) + "\n")
    if "docker_images" in numbers:
        print("docker images:", {k: v for k, v in numbers["docker_images"].items() if k != "images"})
    for nodeid, took in numbers.get("certification_only_scenarios", {}).items():
        print(f"certification only: {nodeid.split('::')[-1]}: {took} s")
    c = numbers["configuration"]
    print(f"configuration family: {c['seconds']} s for {c['values_files']} values files {c['per_file']}")
    keys = list(dict.fromkeys(k for t in targets for k in numbers[t]))
    print(f"{'':<34}" + "".join(f"{t:>24}" for t in targets))
    for key in keys:
        print(f"{key:<34}" + "".join(f"{str(numbers[t].get(key, '-')):>24}" for t in targets))
    return 0 if all(numbers[t]["exit_code"] == 0 for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
