"""Which tool call provoked an attempt: a reviewer reading "DNS lookup: status.example.net" should
see beside it the call the model had just asked for (`check_host({"host": ...})`), not guess.

The mock LLM records each tool call it sent, with the time of the request it answered; the
service's next request in that conversation carries the results. An attempt recorded between
the two happened while those calls ran."""

from __future__ import annotations


def call_windows(llm: list[dict]) -> list[tuple[float, float, str]]:
    """(from, until, the calls) for every batch of tool calls the mock LLM sent."""
    by_conversation: dict[str | None, list[dict]] = {}
    for r in sorted(llm, key=lambda r: r.get("t", 0)):
        by_conversation.setdefault(r.get("conversation"), []).append(r)
    windows = []
    for requests in by_conversation.values():
        for i, r in enumerate(requests):
            calls = (r.get("response") or {}).get("toolCalls") or []
            if calls:
                until = requests[i + 1]["t"] if i + 1 < len(requests) else float("inf")
                text = "; ".join(f"{c['name']}({c.get('arguments') or '{}'})" for c in calls)
                windows.append((r.get("t", 0), until, text))
    return windows


def annotate(records: list[dict], llm: list[dict]) -> list[dict]:
    """The records, each attempt made while tool calls ran marked with those calls (`provokedBy`)."""
    windows = call_windows(llm)
    out = []
    for r in records:
        during = [text for start, until, text in windows if start <= r.get("t", 0) <= until]
        out.append({**r, "provokedBy": " | ".join(during)} if during else r)
    return out

