"""The harness proves itself: the reference passes every claim, and every known-bad variant is
caught violating exactly the claims it is declared to break (no fewer: a blind check; no more:
an over-broad one). On the docker target too: the reference (as its shipped image) and one
mutant per claim family, so that no family's checks go blind on another backend. And the
configuration family's values files (fixtures/values/catalogue.yaml): each violates exactly its
declared claims, the clean ones none."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.suite_runs import DRIVERS, PROJECT, SuiteRun, run_suite

CATALOGUE = yaml.safe_load((PROJECT / "mutants" / "catalogue.yaml").read_text())
FAMILY_OF = {c["id"]: c["family"] for c in yaml.safe_load((PROJECT / "claims.yaml").read_text())["claims"]}
MATRIX_FILE = PROJECT / "reports" / "mutation-matrix.json"
PARALLEL = 4  # each run has its own lab slot; four keep two cores busy through idle windows and starts
VALUES_CATALOGUE = yaml.safe_load((PROJECT / "fixtures" / "values" / "catalogue.yaml").read_text())
CHART = PROJECT / "fixtures" / "charts" / "testkube-ai-service"
# The reference is judged on a deployment to which every configuration claim applies.
WITH_CHART = ["--chart", str(CHART), "--values", str(PROJECT / "fixtures" / "values" / "good" / "everything.yaml")]
CONFIGURATION = {c for c, f in FAMILY_OF.items() if f == "configuration"}


def test_catalogue_matches_the_variants_and_the_claims():
    from mutants.variants import VARIANTS

    claims = FAMILY_OF
    assert set(CATALOGUE) == set(VARIANTS)
    for name, entry in CATALOGUE.items():
        assert entry["breaks"] and entry["claims"] and set(entry["claims"]) <= set(claims), name
    per_family: dict[str, int] = {}
    for entry in CATALOGUE.values():
        for family in {claims[c] for c in entry["claims"]}:
            per_family[family] = per_family.get(family, 0) + 1
    assert set(per_family) == set(claims.values()) - {"configuration"} and min(per_family.values()) >= 2, per_family


def test_values_catalogue_breaks_every_configuration_claim():
    for name, entry in VALUES_CATALOGUE.items():
        assert set(entry["claims"]) <= CONFIGURATION and all((PROJECT / "fixtures" / f).exists() for f in entry["values"]), name
    assert set().union(*(e["claims"] for e in VALUES_CATALOGUE.values())) == CONFIGURATION


def values_job(name: str, root) -> tuple:
    """A configuration-only run on one catalogue entry (no lab): its chart, values, intent."""
    entry = VALUES_CATALOGUE[name]
    chart = CHART
    if "chart_edit" in entry:  # a chart that reads another key: the stand-in with the key renamed
        old, new = entry["chart_edit"]
        chart = shutil.copytree(CHART, root / f"chart-{name}")
        for path in (p for p in chart.rglob("*") if p.is_file()):
            path.write_text(path.read_text().replace(old, new))
    extra = ["--claims", "configuration", "--chart", str(chart)]
    extra += [a for f in entry["values"] for a in ("--values", str(PROJECT / "fixtures" / f))]
    extra += ["--deployment", entry["deployment"]] if "deployment" in entry else []
    return (f"values:{name}", None, extra, None)


def one_per_family() -> list[str]:
    """Fewest mutants that between them break a claim of every family (greedy cover)."""
    families = {m: {FAMILY_OF[c] for c in e["claims"]} for m, e in CATALOGUE.items()}
    left, chosen = set(FAMILY_OF.values()) - {"configuration"}, []
    while left:
        best = max(sorted(families), key=lambda m: len(families[m] & left))
        chosen.append(best)
        left -= families[best]
    return sorted(chosen)


DOCKER_MUTANTS = one_per_family()
DOCKER = ["--target", "docker"]


@pytest.fixture(scope="session")
def matrix(tmp_path_factory) -> dict[str, SuiteRun]:
    root = tmp_path_factory.mktemp("matrix")
    jobs = [("reference", None, WITH_CHART, DRIVERS / "reference.yaml")] + [(m, m, [], None) for m in sorted(CATALOGUE)]
    jobs += [("docker:reference", None, DOCKER + WITH_CHART, DRIVERS / "reference-image.yaml")]
    jobs += [values_job(name, root) for name in sorted(VALUES_CATALOGUE)]
    jobs += [(f"docker:{m}", m, DOCKER, None) for m in DOCKER_MUTANTS]
    # The slow docker runs first, so that they do not finish last on their own.
    jobs.sort(key=lambda job: not job[0].startswith("docker:"))

    def run(job):
        name, mutant, extra, driver = job
        return run_suite(name, root / name.replace(":", "-"), mutant, extra, **({"driver": driver} if driver else {}))

    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(pool.map(run, jobs))
    by_name = {r.name: r for r in runs}
    rows = []
    for name, run_ in by_name.items():
        target, _, service = name.rpartition(":")
        declared = set((VALUES_CATALOGUE if target == "values" else CATALOGUE).get(service, {}).get("claims", []))
        violated = run_.with_verdict("violated")
        rows.append({
            "service": service,
            "target": target or "local",
            "declared": sorted(declared),
            "violated": sorted(violated),
            "undetermined": sorted(run_.with_verdict("undetermined")),
            "killed": bool(declared) and declared <= violated,
            "over_broad": sorted(violated - declared),
            "seconds": round(run_.seconds, 1),
        })
    MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_FILE.write_text(json.dumps({"mutants": rows}, indent=2) + "\n")
    return by_name


@pytest.mark.parametrize("name", ["reference", "docker:reference"])
def test_reference_is_conformant(matrix, name):
    run = matrix[name]
    assert run.result == "conformant", f"{name} verdicts: {run.verdicts}\n{run.output}"


@pytest.mark.parametrize("name", sorted(CATALOGUE) + [f"docker:{m}" for m in DOCKER_MUTANTS])
def test_mutant_is_killed_by_exactly_its_claims(matrix, name):
    run = matrix[name]
    mutant = name.rpartition(":")[2]
    declared = set(CATALOGUE[mutant]["claims"])
    violated = run.with_verdict("violated")
    assert declared <= violated, f"{name} ({CATALOGUE[mutant]['breaks']}) survived {sorted(declared - violated)}: {run.verdicts}\n{run.output}"
    assert violated <= declared, f"{name} also violated undeclared {sorted(violated - declared)} (over-broad check?)\n{run.output}"


def test_docker_subset_covers_every_family():
    covered = {FAMILY_OF[c] for m in DOCKER_MUTANTS for c in CATALOGUE[m]["claims"]}
    assert covered == set(FAMILY_OF.values()) - {"configuration"}  # judged on the chart, the same on any target


@pytest.mark.parametrize("name", sorted(VALUES_CATALOGUE))
def test_values_are_judged_exactly(matrix, name):
    run = matrix[f"values:{name}"]
    declared = set(VALUES_CATALOGUE[name]["claims"])
    assert run.with_verdict("violated") == declared, f"{name} ({VALUES_CATALOGUE[name].get('breaks', 'clean')}): {run.verdicts}\n{run.output}"
    assert not run.with_verdict("undetermined"), f"{name}: {run.verdicts}\n{run.output}"


def test_every_configuration_claim_is_satisfied_on_good_values(matrix):
    clean = [n for n, e in VALUES_CATALOGUE.items() if not e["claims"]]
    assert set().union(*(matrix[f"values:{n}"].with_verdict("satisfied") for n in clean)) == CONFIGURATION
