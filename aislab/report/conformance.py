"""Builds `conformance-report.json` from scenario outcomes and the claims catalogue."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

import aislab

SCHEMA_VERSION = "ais.conformance/v1alpha1"


@dataclass
class ScenarioResult:
    nodeid: str
    name: str
    claims: list[str]
    outcome: str  # passed | violated | undetermined | not_applicable
    seconds: float
    message: str = ""
    evidence: list[str] = field(default_factory=list)


def load_claims(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def claim_verdict(outcomes: list[str]) -> str:
    if not outcomes:
        return "undetermined"
    if "violated" in outcomes:
        return "violated"
    if "undetermined" in outcomes:
        return "undetermined"
    if all(o == "not_applicable" for o in outcomes):
        return "not_applicable"
    return "satisfied"


def overall(verdicts: list[str]) -> str:
    if "violated" in verdicts:
        return "non-conformant"
    if all(v in ("satisfied", "waived") for v in verdicts):
        return "conformant"
    return "partial"


def build_report(claims_file: Path, results: list[ScenarioResult], meta: dict, selected: set[str] | None = None) -> dict:
    catalogue = load_claims(claims_file)
    claims = []
    for claim in catalogue["claims"]:
        if selected is not None and claim["id"] not in selected:
            continue
        mine = [r for r in results if claim["id"] in r.claims]
        claims.append({
            "id": claim["id"],
            "family": claim["family"],
            "must": claim["must"],
            "tags": claim.get("tags", {}),
            "verdict": claim_verdict([r.outcome for r in mine]),
            "scenarios": [
                {"name": r.name, "nodeid": r.nodeid, "outcome": r.outcome, "seconds": round(r.seconds, 3),
                 "message": r.message[:2000], "evidence": r.evidence}
                for r in mine
            ],
        })
    return {
        "apiVersion": SCHEMA_VERSION,
        "harness": {"name": "ai-service-conformance", "version": aislab.__version__},
        "catalogue": {"file": claims_file.name, "sha256": hashlib.sha256(claims_file.read_bytes()).hexdigest()},
        **meta,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "result": overall([c["verdict"] for c in claims]),
        "claims": claims,
    }


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
