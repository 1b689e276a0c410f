"""Sends one chat through a driver's chat spec and picks the answer out of the response."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from aislab.driver.model import ChatSpec, placeholders, render


@dataclass
class ChatExchange:
    user: str | None
    prompt: str
    status: int  # 0: the service gave no answer at all (see `error`)
    answer: str | None
    body: Any
    seconds: float
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # why there is no answer (a timeout, a refused connection)

    def __repr__(self) -> str:
        # The body is whole tool results: the evidence attachments hold it, a repr only sums it up.
        answer = "no answer" if self.answer is None else f"answer of {len(self.answer)} characters"
        return f"ChatExchange({self.user or 'anonymous'}: HTTP {self.status}, {answer}, {self.seconds:.2f} s)"


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def send_chat(client: httpx.Client, base_url: str, spec: ChatSpec, values: dict[str, str], user: str | None) -> ChatExchange:
    # A header that needs the user's token is left out entirely when chatting anonymously.
    headers = {
        k: render(v, values, f"chat.headers.{k}")
        for k, v in spec.headers.items()
        if "user.token" not in placeholders(v) or "user.token" in values
    }
    started = time.monotonic()
    try:
        response = client.request(
            spec.method,
            base_url + render(spec.path, values, "chat.path"),
            headers=headers,
            json=render(spec.json, values, "chat.json") if spec.json is not None else None,
            timeout=spec.timeout,
        )
    except httpx.TransportError as err:
        return ChatExchange(user, values.get("prompt", ""), 0, None, None, time.monotonic() - started,
                            error=f"no answer: {type(err).__name__}: {err}")
    seconds = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = response.text
    answer = _dig(body, spec.answer) if response.status_code < 400 else None
    return ChatExchange(user, values.get("prompt", ""), response.status_code, answer if isinstance(answer, str) else None, body,
                        seconds, headers=list(response.headers.multi_items()))


def run_cli_chat(target, spec: ChatSpec, values: dict[str, str], env: dict[str, str], user: str | None) -> ChatExchange:
    """A command per prompt, run on the service's host; exit 0 reads as 200, anything else as 500."""
    command = render(list(spec.command), values, "chat.command")
    started = time.monotonic()
    proc = target.run_in("service", command, timeout=spec.timeout, env=env)
    seconds = time.monotonic() - started
    try:
        body = json.loads(proc.stdout)
    except ValueError:
        body = {"stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}
    answer = _dig(body, spec.answer) if proc.returncode == 0 else None
    status = 200 if proc.returncode == 0 else 500
    return ChatExchange(user, values.get("prompt", ""), status, answer if isinstance(answer, str) else None, body, seconds)
