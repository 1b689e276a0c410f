"""Exercise controls: what the service was seen doing, counted from the lab's own records (the
mock LLM's account of what it asked and answered, the control plane's journal, the witnesses,
the life of each service instance), never from what the service says; and whether that is
enough for a verdict to mean anything.

A positive control proves a witness would have seen a violation; an exercise control proves the
service was there to commit one. Silence counts only where the service did the work a claim is
about, in the configuration the claim is about: a service that never ran, never reached the
LLM or never ran a tool is `undetermined`, never `satisfied`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aislab.judging.observe import tool_exchanges
from aislab.world.lab import ChatRecord

# Everything the harness counts, and what it means (the words of reasons and of the report).
COUNTERS = {
    "instances-started": "service instances started (readiness reached; for a one-shot assistant, runs of its command)",
    "good-token-accepted": "chats with a valid token that reached the LLM",
    "chats-reaching-llm": "judged chats that reached the LLM",
    "llm-requests": "LLM requests the service made",
    "llm-errors": "LLM error responses (5xx) the service received: the error path",
    "tool-calls": "tool calls the model sent the service",
    "tool-results": "tool results the service returned to the model",
    "cp-requests": "control-plane requests the service made",
    "idle-seconds": "seconds the service idled under observation",
    "proxy-attempts": "connection attempts from the service to a proxy",
    "instances-stopped": "service instances stopped with their last words recorded",
    "manifests-rendered": "manifests the chart rendered from the values",
    "faults-met": ("requests of the service that met a failure the lab brought about (a refused connection, a 5xx, "
                   "an answer held past its patience, a token that expired under it), counted from the lab's records"),
}
# Counted over the chats a scenario judges; the rest over the whole scenario (or period).
PER_CHAT = ("llm-requests", "llm-errors", "tool-calls", "tool-results", "cp-requests")


def chat_counts(llm: list[dict], cp: list[dict]) -> dict[str, int]:
    """What one chat made the service do, from what the LLM hosts and the control plane
    recorded of it. Tool calls are the ones the mock LLM itself sent (its record of its own
    answers); a result counts when the service handed it back for one of those calls."""
    sent = {(r.get("conversation"), c["id"]) for r in llm for c in (r.get("response") or {}).get("toolCalls", [])}
    returned = {(x.conversation, x.call_id) for x in tool_exchanges(llm) if x.result is not None}
    return {
        "llm-requests": len(llm),
        "llm-errors": sum(1 for r in llm if (r.get("response") or {}).get("status", 0) >= 500),
        "tool-calls": len(sent),
        "tool-results": len(sent & returned),
        "cp-requests": len(cp),
    }


@dataclass
class Exercise:
    """What a scenario (or a set of service periods) exercised."""

    counts: dict[str, float]
    chats: dict[str, int]  # sent, answered, failed: the service's own word, shown only
    seen: dict[str, int]  # what the witnesses recorded besides (egress attempts, lookups, packets)
    instances: list[int]
    phases: list[str]

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        c = self.counts
        return (f"{self.chats.get('sent', 0)} chats ({int(c.get('chats-reaching-llm', 0))} reached the LLM), "
                f"{int(c.get('llm-requests', 0))} LLM requests, {int(c.get('tool-calls', 0))} tool calls, "
                f"{int(c.get('tool-results', 0))} results returned, {int(c.get('cp-requests', 0))} control-plane requests")


def tally(chats: list[ChatRecord], *, judged_only: bool, instances_started: int, instances_stopped: int,
          idle_seconds: float, proxy_attempts: int, seen: dict[str, int], instances: list[int]) -> Exercise:
    """Sum what the chats and the lab recorded. `judged_only`: a scenario's per-chat counts are
    those of the chats it judges (a positive control proves the lab, not the claim); over a
    service's whole life every chat of the judged periods counts."""
    counted = [c for c in chats if c.role == "judged" or not judged_only]
    counts: dict[str, float] = {k: sum(c.counts.get(k, 0) for c in counted) for k in PER_CHAT}
    counts["chats-reaching-llm"] = sum(1 for c in counted if c.reached_llm)
    counts["good-token-accepted"] = sum(1 for c in chats if c.token == "valid" and c.reached_llm)
    counts["instances-started"] = instances_started
    counts["instances-stopped"] = instances_stopped
    counts["idle-seconds"] = round(idle_seconds, 3)
    counts["proxy-attempts"] = proxy_attempts
    phases = [name for name, key in (("start-up", "instances-started"), ("chat", "chats-reaching-llm"),
                                     ("error path", "llm-errors"), ("idle", "idle-seconds"),
                                     ("shutdown", "instances-stopped")) if counts[key]]
    answered = sum(1 for c in chats if c.status)
    return Exercise(counts, {"sent": len(chats), "answered": answered, "failed": sum(1 for c in chats if not c.succeeded)},
                    seen, instances, phases)


def unmet(required: dict[str, float], exercise: Exercise) -> list[str]:
    """What the service was not seen doing, of what the claim and the scenario require."""
    missing = []
    for key, least in required.items():
        if key not in COUNTERS:
            raise KeyError(f"unknown exercise counter {key!r}; known: {', '.join(COUNTERS)}")
        got = exercise.counts.get(key, 0)
        if got < least:
            missing.append(f"{COUNTERS[key]}: {got:g} (at least {least:g} needed)")
    return missing


def merged(*requirements: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in requirements:
        for k, v in r.items():
            out[k] = max(out.get(k, 0), v)
    return out


def combined(exercises: list[dict]) -> dict:
    """A claim's exercise: what its scenarios saw, added up (instances and phases united)."""
    out: dict = {"counts": {}, "chats": {}, "seen": {}, "instances": set(), "phases": []}
    for e in exercises:
        for part in ("counts", "chats", "seen"):
            for k, v in (e.get(part) or {}).items():
                out[part][k] = round(out[part].get(k, 0) + v, 3)
        out["instances"] |= set(e.get("instances") or [])
        out["phases"] += [p for p in e.get("phases") or [] if p not in out["phases"]]
    out["instances"] = sorted(out["instances"])
    out["scenarios"] = len(exercises)
    return out
