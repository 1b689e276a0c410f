"""The harness proves itself: the conforming services pass every claim, and every known-bad
variant is caught violating exactly the claims it is declared to break (no fewer: a blind check;
no more: an over-broad one). Three catalogues:
- the reference's mutants (mutants/catalogue.yaml);
- the variants of minicopilot, an assistant written independently of the checks
  (fixtures/assistants/minicopilot/defects.yaml);
- values files (and one chart) for the configuration family (fixtures/values/catalogue.yaml);
- inert services, conformant-looking and doing nothing useful (fixtures/assistants/inert/catalogue.yaml),
  written without the checks: none may come out satisfied but where its evidence genuinely
  supports it, and one that cannot run at all is refused before any scenario.
Conformant variants (declared to break nothing) must stay clean. Each runs in the quick profile;
a variant that survives it runs again in the certification profile, so the matrix says which
profile kills it. On the docker target: the reference (as its shipped image), minicopilot, and
the fewest variants that cover every dynamic family."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import yaml

from aislab.driver import load_driver
from tests.suite_runs import DRIVERS, PROJECT, SuiteRun, run_suite

FAMILY_OF = {c["id"]: c["family"] for c in yaml.safe_load((PROJECT / "claims.yaml").read_text())["claims"]}
CONFIGURATION = {c for c, f in FAMILY_OF.items() if f == "configuration"}
DYNAMIC_FAMILIES = set(FAMILY_OF.values()) - {"configuration"}
MATRIX_FILE = PROJECT / "reports" / "mutation-matrix.json"
PARALLEL = 4  # each run has its own lab slot; four keep two cores busy through idle windows and starts
CHART = PROJECT / "fixtures" / "charts" / "testkube-ai-service"
# Conforming services are judged on a deployment to which every configuration claim applies.
WITH_CHART = ("--chart", str(CHART), "--values", str(PROJECT / "fixtures" / "values" / "good" / "everything.yaml"))


@dataclass(frozen=True)
class Subject:
    """One thing the matrix judges: a catalogue variant, or a conforming service (declared None)."""

    name: str
    catalogue: str
    driver: str
    variant: str | None
    declared: frozenset[str] | None
    breaks: str = ""
    extra: tuple[str, ...] = ()
    chart_edit: tuple[str, str] | None = field(default=None, compare=False)
    expected: dict | None = field(default=None, compare=False)  # an inert service's: refused, or exactly what may be satisfied

    def args(self, root) -> list[str]:
        """Its command-line options; a chart that reads another key is a copy with it renamed."""
        if not self.chart_edit:
            return list(self.extra)
        old, new = self.chart_edit
        chart = shutil.copytree(CHART, root / f"chart-{self.name.replace(':', '-')}", dirs_exist_ok=True)
        for path in (p for p in chart.rglob("*") if p.is_file()):
            path.write_text(path.read_text().replace(old, new))
        return [str(chart) if a == str(CHART) else a for a in self.extra]


def _variants(label: str, driver: str, entries: dict) -> list[Subject]:
    return [Subject(f"{label}:{name}", label, driver, name, frozenset(e["claims"]), e["breaks"]) for name, e in sorted(entries.items())]


def _values(entries: dict) -> list[Subject]:
    """Configuration-only runs (no lab): the stand-in chart, or a copy that reads another key."""
    subjects = []
    for name, entry in sorted(entries.items()):
        extra = ["--claims", "configuration", "--chart", str(CHART)]
        extra += [a for f in entry["values"] for a in ("--values", str(PROJECT / "fixtures" / f))]
        extra += ["--deployment", entry["deployment"]] if "deployment" in entry else []
        subjects.append(Subject(f"values:{name}", "values", "reference.yaml", None, frozenset(entry["claims"]),
                                entry.get("breaks", "clean values"), tuple(extra), tuple(entry["chart_edit"]) if "chart_edit" in entry else None))
    return subjects


def _inert(entries: dict) -> list[Subject]:
    return [Subject(f"inert:{name}", "inert", e["driver"], None, None, e["does"], expected=e["expected"]) for name, e in sorted(entries.items())]


REFERENCE_CATALOGUE = yaml.safe_load((PROJECT / "mutants" / "catalogue.yaml").read_text())
MINI_CATALOGUE = yaml.safe_load((PROJECT / "fixtures" / "assistants" / "minicopilot" / "defects.yaml").read_text())["variants"]
VALUES_CATALOGUE = yaml.safe_load((PROJECT / "fixtures" / "values" / "catalogue.yaml").read_text())
INERT_CATALOGUE = yaml.safe_load((PROJECT / "fixtures" / "assistants" / "inert" / "catalogue.yaml").read_text())["services"]
REFERENCE_BENIGN = sorted(n for n, e in REFERENCE_CATALOGUE.items() if not e["claims"])
CONFORMING = [Subject("reference", "reference", "reference.yaml", None, None, extra=WITH_CHART),
              Subject("minicopilot", "minicopilot", "minicopilot.yaml", None, None),
              # The reference's conformant variants all at once: they compose, and must stay clean together.
              Subject("reference:benign-all", "reference", "mutant.yaml", ",".join(REFERENCE_BENIGN), frozenset(),
                      "every conformant variant", WITH_CHART)]
VARIANTS = (_variants("reference", "mutant.yaml", {n: e for n, e in REFERENCE_CATALOGUE.items() if e["claims"]})
            + _variants("minicopilot", "minicopilot-defect.yaml", MINI_CATALOGUE))
VALUES = _values(VALUES_CATALOGUE)
INERT = _inert(INERT_CATALOGUE)
DEFECTS = [s for s in VARIANTS + VALUES if s.declared]
BY_NAME = {s.name: s for s in CONFORMING + VARIANTS + VALUES + INERT}


def fewest_covering_every_family() -> list[str]:
    """Fewest variants that between them break a claim of every dynamic family (greedy cover)."""
    families = {s.name: {FAMILY_OF[c] for c in s.declared} for s in VARIANTS if s.declared}
    left, chosen = set(DYNAMIC_FAMILIES), []
    while left:
        best = max(sorted(families), key=lambda m: len(families[m] & left))
        chosen.append(best)
        left -= families[best]
    return sorted(chosen)


DOCKER_VARIANTS = fewest_covering_every_family()
DOCKER_CONFORMING = {"reference": ("reference-image.yaml", WITH_CHART), "minicopilot": ("minicopilot.yaml", ())}


def test_catalogues_match_the_variants_and_the_claims():
    from mutants.variants import VARIANTS as REFERENCE_VARIANTS

    assert set(REFERENCE_CATALOGUE) == set(REFERENCE_VARIANTS)
    per_family: dict[str, int] = {}
    for subject in VARIANTS:
        assert subject.breaks and subject.declared <= set(FAMILY_OF) - CONFIGURATION, subject
        for family in {FAMILY_OF[c] for c in subject.declared}:
            per_family[family] = per_family.get(family, 0) + 1
    assert set(per_family) == DYNAMIC_FAMILIES and min(per_family.values()) >= 2, per_family
    # minicopilot's author judged independently; where the catalogue's owner differs, both stay on record.
    for name, entry in MINI_CATALOGUE.items():
        assert set(entry.get("author_claims", entry["claims"])) >= set(entry["claims"]), name


def test_values_catalogue_breaks_every_configuration_claim():
    for name, entry in VALUES_CATALOGUE.items():
        assert set(entry["claims"]) <= CONFIGURATION and all((PROJECT / "fixtures" / f).exists() for f in entry["values"]), name
    assert set().union(*(e["claims"] for e in VALUES_CATALOGUE.values())) == CONFIGURATION


def _run(job: tuple[str, str, list[str], str], root) -> SuiteRun:
    name, profile, extra, driver = job
    subject = BY_NAME[name.removeprefix("docker:")]
    return run_suite(name, root / f"{name.replace(':', '-')}-{profile}", subject.variant,
                     [*extra, "--profile", profile], driver=DRIVERS / driver, expect_no_report=subject.catalogue == "inert")


def _row(subject: Subject, target: str, run: SuiteRun, profile: str, quick: SuiteRun | None = None) -> dict:
    violated = run.with_verdict("violated")
    declared = subject.declared or frozenset()
    return {
        "service": subject.name, "catalogue": subject.catalogue, "target": target, "breaks": subject.breaks,
        "declared": sorted(declared), "violated": sorted(violated), "undetermined": sorted(run.with_verdict("undetermined")),
        "satisfied": sorted(run.with_verdict("satisfied")), "not_applicable": sorted(run.with_verdict("not_applicable")),
        "result": run.result,
        "killed": bool(declared) and declared <= violated,
        "killed_in": profile if bool(declared) and declared <= violated else None,
        "missed_in_quick": sorted(declared - quick.with_verdict("violated")) if quick else [],
        "over_broad": sorted(violated - declared),
        "seconds": round(run.seconds, 1),
        "exit_code": run.exit_code,
    }


def slowest_first():
    """The runs the last matrix found slowest first (a stuck variant, docker's), so that none is
    left running alone at the end; without a last matrix, docker's first."""
    try:
        last = {r["service"] if r["target"] == "local" else f"docker:{r['service']}": r["seconds"]
                for r in json.loads(MATRIX_FILE.read_text())["rows"]}
    except (OSError, ValueError, KeyError):
        last = {}
    return lambda job: (-last.get(job[0], 0.0), not job[0].startswith("docker:"))


@pytest.fixture(scope="session")
def matrix(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("matrix")
    jobs = [(s.name, "quick", s.args(root), s.driver) for s in CONFORMING + VARIANTS + VALUES + INERT]
    jobs += [(f"docker:{n}", "quick", ["--target", "docker", *extra], d) for n, (d, extra) in DOCKER_CONFORMING.items()]
    jobs += [(f"docker:{n}", "quick", ["--target", "docker"], BY_NAME[n].driver) for n in DOCKER_VARIANTS]
    jobs.sort(key=slowest_first())
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = dict(zip((j[0] for j in jobs), pool.map(lambda job: _run(job, root), jobs)))
    declared = {name: BY_NAME[name.removeprefix("docker:")].declared for name in runs}
    survivors = [j for j in jobs if declared[j[0]] and not declared[j[0]] <= runs[j[0]].with_verdict("violated")]
    with ThreadPoolExecutor(PARALLEL) as pool:  # what quick missed, the long idle windows may catch
        certified = dict(zip((j[0] for j in survivors), pool.map(lambda job: _run((job[0], "certification", job[2], job[3]), root), survivors)))
    rows = {}
    for name, run in runs.items():
        subject, target = BY_NAME[name.removeprefix("docker:")], "docker" if name.startswith("docker:") else "local"
        rows[name] = _row(subject, target, certified[name], "certification", run) if name in certified else _row(subject, target, run, "quick")
        rows[name]["output"] = (certified.get(name) or run).output
        rows[name]["report"] = (certified.get(name) or run).report
        rows[name]["quick_output"] = run.output
    MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_FILE.write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k not in ("output", "report", "quick_output")} for r in rows.values()]},
                                      indent=2) + "\n")
    return rows


CLEAN = [s.name for s in CONFORMING + VARIANTS if not s.declared]


@pytest.mark.parametrize("name", CLEAN + [f"docker:{n}" for n in DOCKER_CONFORMING])
def test_conforming_services_and_variants_are_conformant(matrix, name, monkeypatch):
    """Every claim satisfied, but those of families its driver does not declare (minicopilot is
    not deployed by the ai-service chart: the configuration family does not apply to it)."""
    row = matrix[name]
    monkeypatch.setenv("AIS_MUTANT", "any")  # a defect driver names its variant through it
    undeclared = {c for c, f in FAMILY_OF.items() if f not in load_driver(DRIVERS / BY_NAME[name.removeprefix("docker:")].driver).families}
    assert not row["violated"] and not row["undetermined"] and set(row["not_applicable"]) <= undeclared, \
        f"{name}: violated {row['violated']}, undetermined {row['undetermined']}, not applicable {row['not_applicable']}\n{row['output']}"
    # Every `satisfied` stands on exercise the report shows: at least what the catalogue requires.
    for claim in (c for c in row["report"]["claims"] if c["verdict"] == "satisfied"):
        seen = claim["exercise"]["counts"]
        assert claim["exercise"]["scenarios"] and all(seen.get(k, 0) >= v for k, v in claim["exerciseRequired"].items()), \
            f"{name}: {claim['id']} satisfied on {seen}, below {claim['exerciseRequired']}"


@pytest.mark.parametrize("name", [s.name for s in DEFECTS] + [f"docker:{n}" for n in DOCKER_VARIANTS])
def test_variant_is_killed_in_the_quick_profile_by_exactly_its_claims(matrix, name):
    row = matrix[name]
    missed = sorted(set(row["declared"]) - set(row["violated"]))
    assert not missed, f"{name} ({row['breaks']}) survived {missed}\n{row['output']}"
    assert row["killed_in"] == "quick", \
        f"{name} is killed only by the certification profile (quick missed {row['missed_in_quick']})\n{row['quick_output']}"
    assert not row["over_broad"], f"{name} also violated undeclared {row['over_broad']} (over-broad check?)\n{row['output']}"


@pytest.mark.parametrize("name", [s.name for s in VALUES if not s.declared])
def test_clean_values_violate_nothing_and_leave_nothing_undetermined(matrix, name):
    row = matrix[name]
    assert not row["violated"] and not row["undetermined"], f"{name}: {row}\n{row['output']}"


def test_every_configuration_claim_is_satisfied_on_good_values(matrix):
    clean = [s.name for s in VALUES if not s.declared]
    assert set().union(*(matrix[n]["satisfied"] for n in clean)) == CONFIGURATION


def test_docker_subset_covers_every_dynamic_family():
    covered = {FAMILY_OF[c] for n in DOCKER_VARIANTS for c in BY_NAME[n].declared}
    assert covered == DYNAMIC_FAMILIES  # the configuration family is judged on the chart, the same on any target


@pytest.mark.parametrize("name", [s.name for s in INERT])
def test_an_inert_service_is_never_judged_conformant(matrix, name):
    """A service that never did the work is never satisfied but where the evidence genuinely
    supports it (the catalogue says which, and why), and never violated: it keeps its promises by
    doing nothing. One that cannot run at all is refused before any scenario, in seconds."""
    row, expected = matrix[name], BY_NAME[name].expected
    if expected.get("refused"):
        assert row["exit_code"] == 1 and not row["satisfied"], f"{name}: {row}\n{row['output']}"
        assert "cannot run inside the service's sandbox" in row["output"], row["output"]
        return
    assert set(row["satisfied"]) == set(expected["satisfied"]) and not row["violated"], \
        f"{name}: satisfied {row['satisfied']} (expected exactly {expected['satisfied']}), violated {row['violated']}\n{row['output']}"
    assert row["result"] != "conformant" and row["exit_code"] == 101, f"{name}: {row['result']} (exit {row['exit_code']})"
