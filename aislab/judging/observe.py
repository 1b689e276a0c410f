"""What the witnesses saw during one step: the control-plane journal and the LLM's record,
cut to the requests the service made after a mark."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


@dataclass
class Window:
    cp: list[dict]
    llm: list[dict]
    harness_cp: list[dict] = field(default_factory=list)
    provider: list[dict] = field(default_factory=list)  # the third-party LLM's record (reached through a proxy)

    def __repr__(self) -> str:
        return f"Window({len(self.llm)} LLM requests, {len(self.cp)} control-plane requests)"


@dataclass(frozen=True)
class Mark:
    cp: int
    llm: int
    provider: int


class Observer:
    def __init__(self, lab):
        self.lab = lab

    @property
    def service_ip(self) -> str:
        """The running instance's address (on Kubernetes each instance is a pod of its own)."""
        return self.lab.target.address("service")

    @property
    def sources(self) -> set[str]:
        """The proxies relay only the service's traffic (the harness never uses them): what reaches
        the control plane through them is the service's too."""
        return {self.service_ip, *(self.lab.target.address(h) for h in ("tinyproxy", "squid"))}

    def __repr__(self) -> str:
        return f"Observer(service at {self.service_ip})"

    def mark(self) -> Mark:
        heads = self.lab.witnesses.heads(("controlplane", "llm", "provider"))
        return Mark(heads["controlplane"], heads["llm"], heads["provider"])

    def since(self, mark: Mark) -> Window:
        reader = self.lab.witnesses
        cp, llm, provider = reader.pool.map(lambda pair: reader.since(*pair),
                                            (("controlplane", mark.cp), ("llm", mark.llm), ("provider", mark.provider)))
        service_ip, sources = self.service_ip, self.sources
        return Window(
            cp=[e for e in cp if e["client"] in sources],
            llm=[r for r in llm if r["client"] == service_ip],
            harness_cp=[e for e in cp if e["client"] not in sources],
            provider=provider,
        )


def canaries(text: str, nonce: str) -> set[str]:
    return set(re.findall(rf"CANARY_[a-z]+_[A-Za-z0-9.-]+_{nonce}", text))


@dataclass
class ToolExchange:
    call_id: str
    name: str
    arguments: dict | str
    result: str | None
    conversation: str | None


def tool_exchanges(llm_requests: list[dict]) -> list[ToolExchange]:
    """Every tool call the model asked for and the result the service handed back, read from
    the conversation history the service itself sent to the LLM."""
    found: dict[tuple, ToolExchange] = {}
    for req in llm_requests:
        body = req.get("body") or {}
        conv = req.get("conversation")
        for m in body.get("messages", []) if isinstance(body, dict) else []:
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = fn.get("arguments")
                found.setdefault((conv, call["id"]), ToolExchange(call["id"], fn.get("name"), args, None, conv))
            if m.get("role") == "tool" and (conv, m.get("tool_call_id")) in found:
                content = m.get("content")
                found[(conv, m["tool_call_id"])].result = content if isinstance(content, str) else json.dumps(content)
    return list(found.values())


def header_values(entry: dict, name: str) -> list[str]:
    """Every value of a header, repeated ones included (the journal keeps them all)."""
    raw = entry.get("rawHeaders")
    if raw is None:
        value = entry.get("headers", {}).get(name)
        return [] if value is None else [value]
    return [v for k, v in raw if k.lower() == name]


def bearer(entry: dict) -> str | None:
    """The bearer token of a request, if it carries exactly one Authorization header."""
    values = header_values(entry, "authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    return token if scheme.lower() == "bearer" else None


def wire_text(requests: list[dict]) -> str:
    """Everything of these requests that crossed the wire: method, path, query, every header
    (repeated ones too) and the body, as one text to search."""
    return json.dumps([{k: r.get(k) for k in ("method", "path", "rawPath", "query", "rawHeaders", "headers", "body")}
                       for r in requests])


def everything_sent_to_llm(llm_requests: list[dict]) -> str:
    return wire_text(llm_requests)
