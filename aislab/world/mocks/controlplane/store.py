"""Seeded Testkube resources, rendered in the shapes of the control-plane OpenAPI spec."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

EPOCH = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def canary(kind: str, ident: str, nonce: str) -> str:
    return f"CANARY_{kind}_{ident}_{nonce}"


def _ts(minutes: int) -> str:
    return (EPOCH + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """In-memory resources; `reset()` restores the seed so every scenario starts equal."""

    def __init__(self, seed: dict, nonce: str):
        self.seed = seed
        self.nonce = nonce
        self.org = seed["organization"]
        self.environments = {e["id"]: e for e in seed["environments"]}
        self.reset()

    @classmethod
    def load(cls, path: Path, nonce: str) -> "Store":
        return cls(yaml.safe_load(path.read_text()), nonce)

    def reset(self) -> None:
        n = self.nonce
        self.groups = {
            g["id"]: {**g, "description": canary("group", g["id"], n)} for g in self.seed["groups"]
        }
        self.agents = {
            a["id"]: {**a, "labels": {"canary": canary("agent", a["id"], n)}}
            for a in self.seed["agents"]
        }
        self.workflows = {}
        for w in self.seed["workflows"]:
            key = (w["environment"], w["name"])
            self.workflows[key] = {
                **copy.deepcopy(w),
                "description": f"Seeded workflow {canary('workflow', w['name'], n)}",
            }
        self.templates = {
            (t["environment"], t["name"]): {**t, "description": canary("template", t["name"], n)}
            for t in self.seed["templates"]
        }
        self.executions = {}
        for i, e in enumerate(self.seed["executions"]):
            wf = self._workflow_by_name(e["workflow"])
            self.executions[e["id"]] = {
                **copy.deepcopy(e),
                "environment": wf["environment"],
                "group": wf["group"],
                "name": f"{e['workflow']}-{e['number']}",
                "scheduledAt": _ts(i * 10),
                "tags": {"canary": canary("execution", e["id"], n)},
                "actor": {"type": "user", "name": "seed", "email": "seed@lab.example"},
                "logs": [
                    f"{_ts(i * 10)} step 1: checkout",
                    f"{_ts(i * 10 + 1)} log {canary('log', e['id'], n)}",
                    f"{_ts(i * 10 + 2)} result: {e['status']}",
                ],
                "files": {a: canary("artifact", f"{e['id']}-{a}", n) for a in e["artifacts"]},
            }

    def _workflow_by_name(self, name: str) -> dict:
        for (_env, wf_name), w in self.workflows.items():
            if wf_name == name:
                return w
        raise KeyError(name)

    def all_canaries(self) -> set[str]:
        return set(re.findall(rf"CANARY_[a-z]+_[A-Za-z0-9.-]+_{self.nonce}", json.dumps(self.dump())))

    def dump(self) -> dict:
        def keyed(d):
            return {"/".join(k) if isinstance(k, tuple) else k: v for k, v in d.items()}

        return {
            name: keyed(getattr(self, name))
            for name in ("groups", "agents", "workflows", "templates", "executions")
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.dump(), sort_keys=True).encode()).hexdigest()

    # --- renderers in the spec's shapes -------------------------------------------------
    def workflow_doc(self, w: dict) -> dict:
        return {
            "name": w["name"],
            "namespace": "testkube",
            "description": w["description"],
            "labels": {**w.get("labels", {}), **({"group": w["group"]} if w["group"] else {})},
            "created": _ts(0),
            "updated": _ts(0),
            "spec": {"steps": [{"name": "run", "shell": "make test"}]},
            "readOnly": False,
        }

    def execution_summary(self, e: dict) -> dict:
        return {
            "id": e["id"],
            "name": e["name"],
            "number": e["number"],
            "scheduledAt": e["scheduledAt"],
            "statusAt": e["scheduledAt"],
            "result": {
                "status": e["status"],
                "predictedStatus": e["status"],
                "durationMs": 1200,
                "totalDurationMs": 1200,
                "pausedMs": 0,
            },
            "workflow": {"name": e["workflow"], "labels": {}},
            "tags": e["tags"],
            "runningContext": {
                "interface": {"type": "api"},
                "actor": {k: v for k, v in e["actor"].items() if v},
            },
        }

    def execution_doc(self, e: dict) -> dict:
        doc = self.execution_summary(e)
        doc["namespace"] = "testkube"
        doc["workflow"] = self.workflow_doc(self._workflow_by_name(e["workflow"]))
        return doc

    def executions_result(self, executions: list[dict]) -> dict:
        def totals(items):
            count = {s: sum(1 for e in items if e["status"] == s) for s in ("passed", "failed")}
            return {"results": len(items), **count, "queued": 0, "running": 0, "paused": 0}

        return {
            "totals": totals(executions),
            "filtered": totals(executions),
            "results": [self.execution_summary(e) for e in executions],
        }

    def latest_execution(self, w: dict) -> dict | None:
        runs = [e for e in self.executions.values() if e["workflow"] == w["name"]]
        return max(runs, key=lambda e: e["number"]) if runs else None

    def template_doc(self, t: dict) -> dict:
        return {
            "name": t["name"],
            "namespace": "testkube",
            "description": t["description"],
            "labels": {"group": t["group"]} if t["group"] else {},
            "spec": {"steps": [{"name": "template-step", "shell": "echo template"}]},
        }

    def metrics_doc(self, w: dict) -> dict:
        runs = [e for e in self.executions.values() if e["workflow"] == w["name"]]
        failed = sum(1 for e in runs if e["status"] == "failed")
        return {
            "passFailRatio": (len(runs) - failed) / len(runs) * 100 if runs else 0,
            "executionDurationP50ms": 1200,
            "totalExecutions": len(runs),
            "failedExecutions": failed,
            "executions": [
                {"executionId": e["id"], "name": e["name"], "status": e["status"], "durationMs": 1200}
                for e in runs
            ],
        }
