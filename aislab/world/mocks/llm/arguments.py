"""Arguments for any tool a service advertises, built from the tool's own JSON schema: the lab's
seed data where a property names a Testkube resource (exactly as the MCP tools do, or close to
it), a schema-valid value everywhere else. So the "every tool on every resource" script fits
any assistant's tools, not only Testkube's, and calls them the way a model would: validly.

Also instances of a JSON schema, for answers a service asks to get as structured output.
"""

from __future__ import annotations

import itertools
import json
import re

# Seed keys (see aislab.world.mocks.llm.scriptbook.seed_arg_sets) and how properties name them.
SEED_KEYS = ("workflowName", "executionId", "executionName", "fileName")
_RUN = r"(execution|run)"


def seed_key(tool_name: str, prop: str) -> str | None:
    """Which seed value a property asks for, if any."""
    if prop in SEED_KEYS:
        return prop
    p = prop.lower().replace("-", "_")
    if re.search(_RUN + r"_?(id|identifier)$", p) or (p == "id" and re.search(_RUN, tool_name)):
        return "executionId"
    if re.search(_RUN + r"_?name$", p):
        return "executionName"
    if re.search(r"(file|artifact)", p):
        return "fileName"
    if re.search(r"(workflow|test)", p) or (p == "name" and re.search(r"(workflow|test)", tool_name)):
        return "workflowName"
    return None


# Where a tool argument names a destination (a host, a URL), the mock names one outside the lab,
# so that an attempt a tool makes reads as what it is: a request to the outside world.
DESTINATION = re.compile(r"host|url|uri|endpoint|address|domain|server|site|target", re.I)
OUTSIDE_HOST = "reachability-check.example.net"


def destination(prop: str, schema: dict) -> str | None:
    if not DESTINATION.search(prop) or schema.get("type", "string") != "string" or "enum" in schema:
        return None
    return f"https://{OUTSIDE_HOST}/" if re.search(r"url|uri|endpoint|site", prop, re.I) or schema.get("format") == "uri" else OUTSIDE_HOST


def example(schema: dict, text: str = "", prop: str = ""):
    """A value valid for `schema` (the subset tool and answer schemas use); strings carry `text`,
    or an outside host where the property names a destination."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf", "allOf"):
        if schema.get(combined):
            return example(schema[combined][0], text, prop)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        value = text or destination(prop, schema) or "lab"
        return value + "x" * max(0, schema.get("minLength", 0) - len(value))
    if kind in ("integer", "number"):
        # The most a model may ask for where there is a bound (a limit, a number of lines):
        # as much data as the tool gives, so a filter cannot hide what the check looks for.
        if "maximum" in schema:
            return schema["maximum"]
        return schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [example(schema.get("items") or {}, text) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "object":
        props = schema.get("properties") or {}
        wanted = schema.get("required") or list(props)
        return {k: example(props.get(k) or {}, text, k) for k in wanted}
    return None


def argument_sets(tool: dict, seed_sets: list[dict]) -> list[dict]:
    """Every argument set worth calling `tool` with: one per seed resource its required
    properties can name (each used once), else one schema-valid set."""
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    required = list(params.get("required") or [])
    keys = {p: seed_key(tool["name"], p) for p in required}
    filled = {p: example(props.get(p) or {}, prop=p) for p, key in keys.items() if key is None}
    seeded = {p: key for p, key in keys.items() if key}
    if not seeded:
        return [filled]
    # Optional properties naming a resource go along when the seed has them (as a model would).
    optional = {p: key for p in props if p not in keys and (key := seed_key(tool["name"], p))}
    sets, seen = [], set()
    for seed in seed_sets:
        if all(key in seed for key in seeded.values()):
            args = {**filled, **{p: seed[key] for p, key in {**seeded, **optional}.items() if key in seed}}
            marker = json.dumps(args, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                sets.append(args)
    return sets


def every_call(tools: list[dict], seed_sets: list[dict]) -> list[dict]:
    """Each advertised tool with each of its argument sets."""
    return list(itertools.chain.from_iterable(
        [{"name": tool["name"], "arguments": args} for args in argument_sets(tool, seed_sets)] for tool in tools))
