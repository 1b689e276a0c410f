"""What the mock LLM answers, turn by turn, for one conversation.

A conversation is recognised by the tag `[conv:ID]` the harness puts in the user's prompt, so
concurrent chats each follow their own script. The turn is the number of assistant messages
already in the request: the service's tool loop drives the script forward, and the mock keeps
no per-conversation state that a retry could confuse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from aislab.world.mocks.llm.arguments import every_call, example

CONVERSATION_TAG = re.compile(r"\[conv:([A-Za-z0-9_-]+)\]")
STEP_KINDS = ("tool_calls", "call_every_advertised_tool", "call_one_advertised_tool", "answer", "echo_tool_results", "fail")


class ScriptError(ValueError):
    pass


def conversation_of(messages: list[dict]) -> str | None:
    for m in messages:
        if m.get("role") == "user":
            found = CONVERSATION_TAG.search(_text(m.get("content")))
            if found:
                return found.group(1)
    return None


def _text(content) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def validate(script: dict) -> dict:
    if not isinstance(script.get("match"), str):
        raise ScriptError("script needs a string 'match' (the conversation tag)")
    steps = script.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScriptError(f"script {script['match']}: 'steps' must be a non-empty list")
    for i, step in enumerate(steps):
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) != 1:
            raise ScriptError(f"script {script['match']} step {i}: exactly one of {STEP_KINDS}, got {sorted(step)}")
        for call in step.get("tool_calls", []):
            if "name" not in call:
                raise ScriptError(f"script {script['match']} step {i}: every tool call needs a 'name'")
            unknown = set(call) - set(CALL_KEYS)
            if unknown:
                raise ScriptError(f"script {script['match']} step {i}: unknown tool-call keys {sorted(unknown)}; known: {CALL_KEYS}")
            if "raw_arguments" in call and not isinstance(call["raw_arguments"], str):
                raise ScriptError(f"script {script['match']} step {i}: raw_arguments must be a string, sent as it is")
        hold = step.get("hold")
        if hold is not None and not (isinstance(hold, dict) and isinstance(hold.get("name"), str)):
            raise ScriptError(f"script {script['match']} step {i}: hold needs a name: {{name, timeout}}")
    return script


# A tool call of a script: `arguments` (an object, sent as JSON), or `raw_arguments` (a string
# sent exactly as it is: not JSON, truncated, anything); `pad: {FIELD: N}` makes that argument
# N characters longer ("x" repeated: huge arguments without a huge script); `times: N` sends
# the same call N times in the one reply (many calls at once).
CALL_KEYS = ("name", "arguments", "raw_arguments", "pad", "times")


def _wire_arguments(call: dict) -> str:
    if "raw_arguments" in call:
        return call["raw_arguments"]
    arguments = dict(call.get("arguments") or {})
    for field, size in (call.get("pad") or {}).items():
        arguments[field] = str(arguments.get(field, "")) + "x" * int(size)
    return json.dumps(arguments)


@dataclass
class Turn:
    """The mock's reply for one request: tool calls, text, or an injected failure."""

    tool_calls: list[dict]
    content: str | None
    fail_status: int | None = None
    barrier: dict | None = None
    hold: dict | None = None  # {name, timeout}: this reply waits until the harness releases it


def advertised_tools(body: dict) -> list[dict]:
    return [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]


def tool_results(messages: list[dict]) -> list[str]:
    return [_text(m.get("content")) for m in messages if m.get("role") == "tool"]


def structured(body: dict, text: str) -> str:
    """An answer in the shape the request asks for: JSON valid for its schema when it asks for
    structured output (strings carry the text), else the text itself."""
    wanted = body.get("response_format") or {}
    if wanted.get("type") == "json_schema":
        return json.dumps(example((wanted.get("json_schema") or {}).get("schema") or {}, text))
    if wanted.get("type") == "json_object":
        return json.dumps({"answer": text})
    return text


def plan_turn(script: dict | None, body: dict) -> Turn:
    messages = body.get("messages", [])
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    steps = script["steps"] if script else []
    if turn >= len(steps):
        # Past the script (or none matched): finish by repeating what the tools returned.
        return Turn([], structured(body, "\n".join(tool_results(messages)) or "No script for this conversation."))
    step = steps[turn]
    barrier, hold = step.get("barrier"), step.get("hold")
    if "fail" in step:
        return Turn([], None, fail_status=int(step["fail"]), barrier=barrier, hold=hold)
    if "answer" in step:
        return Turn([], structured(body, step["answer"]), barrier=barrier, hold=hold)
    if "echo_tool_results" in step:
        return Turn([], structured(body, "\n".join(tool_results(messages))), barrier=barrier, hold=hold)
    if "tool_calls" in step:
        calls = [c for c in step["tool_calls"] for _ in range(int(c.get("times", 1)))]
    elif "call_one_advertised_tool" in step:  # a chat that uses a tool, whatever the tools are
        calls = every_call(advertised_tools(body), step["call_one_advertised_tool"].get("arg_sets", []))[:1]
    else:
        calls = every_call(advertised_tools(body), step["call_every_advertised_tool"].get("arg_sets", []))
    return Turn(
        [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": _wire_arguments(c)},
            }
            for i, c in enumerate(calls)
        ],
        None,
        barrier=barrier,
        hold=hold,
    )
