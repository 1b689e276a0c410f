"""Builds `conformance-report.json` from scenario outcomes and the claims catalogue."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

import aislab
from aislab.judging.exercise import combined

SCHEMA_VERSION = "ais.conformance/v1alpha2"


@dataclass
class ScenarioResult:
    nodeid: str
    name: str
    claims: list[str]
    outcome: str  # passed | violated | undetermined | error (the harness failed) | not_applicable
    seconds: float
    message: str = ""
    evidence: list[dict] = field(default_factory=list)  # {"path", "sha256"}
    allure_id: str = ""  # uuid of its Allure result, when Allure records the run: the page links to it
    trace: str = ""  # a harness error's short traceback, for the Allure drill-down only
    exercise: dict = field(default_factory=dict)  # what the service was seen doing (aislab.judging.exercise)


def load_claims(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def claim_verdict(outcomes: list[str]) -> str:
    if not outcomes:
        return "undetermined"
    if "violated" in outcomes:
        return "violated"
    if "undetermined" in outcomes or "error" in outcomes:
        return "undetermined"
    if all(o == "not_applicable" for o in outcomes):
        return "not_applicable"
    return "satisfied"


def overall(verdicts: list[str], interrupted: bool = False) -> str:
    if interrupted:  # never conformant, whatever the claims judged so far say
        return "interrupted"
    if "violated" in verdicts:
        return "non-conformant"
    if all(v in ("satisfied", "waived") for v in verdicts):
        return "conformant"
    return "partial"


def _reason(verdict: str, mine: list[ScenarioResult], unjudged: int, interruption: str | None) -> str | None:
    """One paragraph on why a claim is not satisfied: the first decisive scenario's message."""
    if unjudged and verdict != "violated":
        return f"not judged: {unjudged} of its scenarios did not run ({interruption})"
    decisive = next((r for r in mine if r.outcome == verdict or (verdict == "undetermined" and r.outcome == "error")), None)
    return decisive.message[:2000] if decisive is not None and verdict not in ("satisfied", "not_applicable") else None


def build_report(claims_file: Path, results: list[ScenarioResult], meta: dict, expected: dict[str, set[str]],
                 waivers: dict | None = None, interruption: str | None = None) -> dict:
    """`expected`: per selected claim, the scenarios (node ids) the run set out to judge it by.
    A claim some of whose scenarios never ran is undetermined unless what did run violated it."""
    catalogue = load_claims(claims_file)
    claims = []
    for claim in catalogue["claims"]:
        if claim["id"] not in expected:
            continue
        mine = [r for r in results if claim["id"] in r.claims]
        unjudged = len(expected[claim["id"]] - {r.nodeid for r in mine})
        observed = claim_verdict([r.outcome for r in mine] + ["undetermined"] * unjudged)
        waiver = (waivers or {}).get(claim["id"])
        reason = _reason(observed, mine, unjudged, interruption)
        claims.append({
            "id": claim["id"],
            "family": claim["family"],
            "must": claim["must"],
            "since": str(claim.get("since", "")),
            "tags": claim.get("tags", {}),
            "verdict": "waived" if waiver else observed,
            "observed": observed,
            **({"reason": reason} if reason else {}),
            **({"waiver": waiver.as_dict()} if waiver else {}),
            "exerciseRequired": claim.get("exercise") or {},
            "exercise": combined([r.exercise for r in mine if r.exercise and "counts" in r.exercise]),
            "scenarios": [
                {"name": r.name, "nodeid": r.nodeid, "outcome": r.outcome, "seconds": round(r.seconds, 3),
                 "message": r.message[:2000], "evidence": r.evidence, **({"exercise": r.exercise} if r.exercise else {}),
                 **({"allureId": r.allure_id} if r.allure_id else {})}
                for r in mine
            ],
        })
    return {
        "apiVersion": SCHEMA_VERSION,
        "harness": {"name": "ai-service-conformance", "version": aislab.__version__},
        "catalogue": {"file": claims_file.name, "sha256": hashlib.sha256(claims_file.read_bytes()).hexdigest()},
        **meta,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "result": overall([c["verdict"] for c in claims], interruption is not None),
        **({"interruption": {
            "reason": interruption,
            "judged": [c["id"] for c in claims if c["id"] not in _unjudged(claims, expected)],
            "notJudged": sorted(_unjudged(claims, expected)),
        }} if interruption is not None else {}),
        "claims": claims,
    }


def _unjudged(claims: list[dict], expected: dict[str, set[str]]) -> set[str]:
    return {c["id"] for c in claims if expected[c["id"]] - {s["nodeid"] for s in c["scenarios"]}}


EXIT_CONFORMANT, EXIT_HARNESS_FAILED, EXIT_VIOLATED, EXIT_INCOMPLETE = 0, 1, 100, 101


def exit_code(report: dict, harness_failed: bool) -> int:
    """0 conformant, 100 a claim violated, 101 nothing violated but not all satisfied, 1 the
    harness itself failed or the run was interrupted (then no verdict can be trusted as a whole)."""
    if harness_failed or report["result"] == "interrupted":
        return EXIT_HARNESS_FAILED
    return {"conformant": EXIT_CONFORMANT, "non-conformant": EXIT_VIOLATED}.get(report["result"], EXIT_INCOMPLETE)


def write_report(path: Path, report: dict, redactor) -> None:
    """Written redacted: messages quote what the witnesses saw."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redactor.text(json.dumps(report, indent=2)) + "\n")
