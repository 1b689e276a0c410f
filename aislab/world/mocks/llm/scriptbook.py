"""Builds mock-LLM scripts for a conversation from the named scripts in fixtures/llm/."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def seed_arg_sets(seed: dict, env: str) -> list[dict]:
    """Every resource of one environment as tool arguments."""
    workflows = {w["name"] for w in seed["workflows"] if w["environment"] == env}
    sets = [{"workflowName": w} for w in sorted(workflows)]
    for e in seed["executions"]:
        if e["workflow"] in workflows:
            sets.append({"executionId": e["id"], "executionName": f"{e['workflow']}-{e['number']}", "workflowName": e["workflow"]})
            sets += [{"executionId": e["id"], "fileName": f} for f in e["artifacts"]]
    return sets


class ScriptBook:
    def __init__(self, path: Path, seed: dict):
        self.scripts = yaml.safe_load(path.read_text())
        self.seed = seed

    def __repr__(self) -> str:
        return f"ScriptBook({len(self.scripts)} scripts)"

    def script(self, name: str, conversation: str, env: str) -> dict:
        if name not in self.scripts:
            raise KeyError(f"no LLM script named {name!r} in fixtures/llm/scripts.yaml")
        steps = copy.deepcopy(self.scripts[name]["steps"])
        for step in steps:
            advertised = step.get("call_every_advertised_tool") or step.get("call_one_advertised_tool")
            if advertised and advertised.get("arg_sets") == "seed":
                advertised["arg_sets"] = seed_arg_sets(self.seed, env)
        return {"match": conversation, "steps": steps}
