"""One report of a parallel run: the workers' reports merged (every scenario once, a whole-life
scenario once per worker, since each judged its own lab's life), verdicts worked out again from
all of them, JUnit merged, the evidence left where each worker wrote it and pointed at from the
merged report. The Allure results were written to one directory by every worker already."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

from aislab.judging.exercise import combined
from aislab.report.conformance import claim_verdict, exit_code, overall

OBSERVED_AS_OUTCOME = {"satisfied": "passed"}  # a worker's verdict, as one more outcome of the claim


def merge(parts: list[tuple[Path, dict]], report_dir: Path) -> dict:
    """parts: (a worker's report directory, its report)."""
    first = parts[0][1]
    claims: dict[str, dict] = {}
    for worker, (directory, report) in enumerate(parts, 1):
        where = directory.relative_to(report_dir)
        for c in report["claims"]:
            merged = claims.setdefault(c["id"], {**c, "scenarios": [], "_observed": [], "_exercise": [], "_reasons": []})
            merged["_observed"].append(c["observed"])
            merged["_exercise"].append(c["exercise"])
            merged["_reasons"] += [c["reason"]] if c.get("reason") else []
            for sc in c["scenarios"]:
                # A whole-life scenario ran in every worker, over each one's lab: named with its worker.
                name = f"{sc['name']} (worker {worker})" if everyones(sc["nodeid"], parts) else sc["name"]
                merged["scenarios"].append({**sc, "name": name, "worker": worker,
                                            "evidence": [{**e, "path": f"{where}/{e['path']}"} for e in sc["evidence"]]})
    for c in claims.values():
        c["observed"] = claim_verdict([OBSERVED_AS_OUTCOME.get(v, v) for v in c.pop("_observed")])
        c["verdict"] = "waived" if c.get("waiver") else c["observed"]
        c["exercise"] = combined_claims(c.pop("_exercise"))
        reasons = c.pop("_reasons")
        c.pop("reason", None)
        if c["observed"] not in ("satisfied", "not_applicable") and reasons:
            c["reason"] = reasons[0]
    interrupted = [r["interruption"] for _, r in parts if "interruption" in r]
    report = {
        **{k: v for k, v in first.items() if k not in ("claims", "interruption", "timings", "warnings")},
        "started": min(r["started"] for _, r in parts),
        "finished": max((r["finished"] for _, r in parts), key=datetime.fromisoformat),
        "workers": [{"report": str(d.relative_to(report_dir)), "timings": r.get("timings", {}), "result": r["result"]} for d, r in parts],
        "timings": {},
        "warnings": sorted({w for _, r in parts for w in r.get("warnings", [])}),
        "claims": [claims[cid] for cid in _order(parts) if cid in claims],
    }
    if interrupted:
        report["interruption"] = {"reason": "; ".join(sorted({i["reason"] for i in interrupted})),
                                  "judged": sorted({c for i in interrupted for c in i["judged"]} - {c for i in interrupted for c in i["notJudged"]}),
                                  "notJudged": sorted({c for i in interrupted for c in i["notJudged"]})}
    report["result"] = overall([c["verdict"] for c in report["claims"]], bool(interrupted))
    errors = any(sc["outcome"] == "error" for c in report["claims"] for sc in c["scenarios"])
    report["exitCode"] = exit_code(report, errors)
    return report


def everyones(nodeid: str, parts) -> bool:
    return sum(any(sc["nodeid"] == nodeid for c in r["claims"] for sc in c["scenarios"]) for _, r in parts) > 1


def combined_claims(exercises: list[dict]) -> dict:
    """A claim's exercise over the workers: each worker's already adds up its scenarios."""
    total = combined(exercises)
    total["scenarios"] = sum(e.get("scenarios", 0) for e in exercises)
    return total


def _order(parts) -> list[str]:
    seen: list[str] = []
    for _, report in parts:
        seen += [c["id"] for c in report["claims"] if c["id"] not in seen]
    return seen


def merge_junit(files: list[Path], target: Path) -> None:
    root = ElementTree.Element("testsuites")
    for f in files:
        if f.exists():
            tree = ElementTree.parse(f).getroot()
            root.extend(tree.findall("testsuite") if tree.tag == "testsuites" else [tree])
    ElementTree.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)


def write(report: dict, report_dir: Path) -> None:
    (report_dir / "conformance-report.json").write_text(json.dumps(report, indent=2) + "\n")
