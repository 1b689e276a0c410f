"""The harness proves itself: the reference passes every claim, and every known-bad variant is
caught violating exactly the claims it is declared to break (no fewer: a blind check; no more:
an over-broad one)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.suite_runs import PROJECT, SuiteRun, run_suite

CATALOGUE = yaml.safe_load((PROJECT / "mutants" / "catalogue.yaml").read_text())
MATRIX_FILE = PROJECT / "reports" / "mutation-matrix.json"
PARALLEL = 4  # each run has its own lab slot; four keep two cores busy through idle windows and starts


def test_catalogue_matches_the_variants_and_the_claims():
    from mutants.variants import VARIANTS

    claims = {c["id"]: c["family"] for c in yaml.safe_load((PROJECT / "claims.yaml").read_text())["claims"]}
    assert set(CATALOGUE) == set(VARIANTS)
    for name, entry in CATALOGUE.items():
        assert entry["breaks"] and entry["claims"] and set(entry["claims"]) <= set(claims), name
    per_family: dict[str, int] = {}
    for entry in CATALOGUE.values():
        for family in {claims[c] for c in entry["claims"]}:
            per_family[family] = per_family.get(family, 0) + 1
    assert set(per_family) == set(claims.values()) and min(per_family.values()) >= 2, per_family


@pytest.fixture(scope="session")
def matrix(tmp_path_factory) -> dict[str, SuiteRun]:
    root = tmp_path_factory.mktemp("matrix")
    jobs = [("reference", None)] + [(m, m) for m in sorted(CATALOGUE)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(pool.map(lambda job: run_suite(job[0], root / job[0], job[1]), jobs))
    by_name = {r.name: r for r in runs}
    rows = []
    for name, run in by_name.items():
        declared = set(CATALOGUE.get(name, {}).get("claims", []))
        violated = run.with_verdict("violated")
        rows.append({
            "service": name,
            "declared": sorted(declared),
            "violated": sorted(violated),
            "undetermined": sorted(run.with_verdict("undetermined")),
            "killed": bool(declared) and declared <= violated,
            "over_broad": sorted(violated - declared),
            "seconds": round(run.seconds, 1),
        })
    MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_FILE.write_text(json.dumps({"mutants": rows}, indent=2) + "\n")
    return by_name


def test_reference_is_conformant(matrix):
    run = matrix["reference"]
    assert run.result == "conformant", f"reference verdicts: {run.verdicts}\n{run.output}"


@pytest.mark.parametrize("mutant", sorted(CATALOGUE))
def test_mutant_is_killed_by_exactly_its_claims(matrix, mutant):
    run = matrix[mutant]
    declared = set(CATALOGUE[mutant]["claims"])
    violated = run.with_verdict("violated")
    assert declared <= violated, f"{mutant} ({CATALOGUE[mutant]['breaks']}) survived {sorted(declared - violated)}: {run.verdicts}\n{run.output}"
    assert violated <= declared, f"{mutant} also violated undeclared {sorted(violated - declared)} (over-broad check?)\n{run.output}"
