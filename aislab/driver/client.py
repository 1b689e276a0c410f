"""Sends one chat through a driver's chat spec and picks the answer out of the response."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aislab.driver.model import ChatSpec, DriverError, placeholders, render

MISSING = object()


@dataclass
class ChatExchange:
    user: str | None
    prompt: str
    status: int  # 0: the service gave no answer at all (see `error`)
    answer: str | None
    body: Any
    seconds: float
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # why there is no answer (a timeout, a refused connection, the driver's error path)
    exit_code: int | None = None  # a one-shot command's own exit code

    def __repr__(self) -> str:
        # The body is whole tool results: the evidence attachments hold it, a repr only sums it up.
        answer = "no answer" if self.answer is None else f"answer of {len(self.answer)} characters"
        return f"ChatExchange({self.user or 'anonymous'}: HTTP {self.status}, {answer}, {self.seconds:.2f} s)"

    @property
    def answered(self) -> bool:
        """The service said something (whatever it said)."""
        return self.status != 0

    @property
    def succeeded(self) -> bool:
        """It says it succeeded: a success status and not the driver's error path."""
        return 200 <= self.status < 400 and self.error is None


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return MISSING
    return doc


def read_answer(spec: ChatSpec, exchange: ChatExchange, output: str) -> ChatExchange:
    """The answer, or why there is none: the driver's error path says the chat failed although
    its status is success; an answer path that matches nothing is the driver's fault, and the
    run stops on it with the response shown."""
    if not 200 <= exchange.status < 400:
        return exchange
    if spec.error is not None:
        value = _dig(exchange.body, spec.error.path)
        failed = value is not MISSING and value is not None and (spec.error.equals is None or value == spec.error.equals)
        if failed:
            exchange.error = f"the service reported an error at {spec.error.path}: {json.dumps(value)[:300]}"
            return exchange
    if spec.answer_format == "text":
        exchange.answer = output.strip()
        return exchange
    answer = _dig(exchange.body, spec.answer)
    if answer is MISSING:
        raise DriverError(f"chat.answer: the path {spec.answer!r} matches nothing in the response "
                          f"(HTTP {exchange.status}): {json.dumps(exchange.body)[:1000] if not isinstance(exchange.body, str) else exchange.body[:1000]}")
    exchange.answer = answer if isinstance(answer, str) else json.dumps(answer)
    return exchange


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
    exchange = ChatExchange(user, values.get("prompt", ""), response.status_code, None, body, seconds,
                            headers=list(response.headers.multi_items()))
    return read_answer(spec, exchange, response.text)


def run_cli_chat(target, spec: ChatSpec, values: dict[str, str], env: dict[str, str], user: str | None,
                 outputs: Path, log: Path, sandbox) -> ChatExchange:
    """A command per prompt, run on the service's host in its sandbox; exit 0 reads as 200,
    anything else as 500, a timeout as no answer (and everything it started is killed). Its
    answer is on stdout, or in `{output_file}` when the command names it. Its stdout and
    stderr go to the service log, as a long-running service's output would."""
    output_file = outputs / f"answer-{uuid.uuid4().hex[:12]}"
    command = render(list(spec.command), {**values, "output_file": str(output_file)}, "chat.command")
    started = time.monotonic()
    try:
        proc = target.run_in("service", command, timeout=spec.timeout, env=env, sandbox=sandbox)
    except subprocess.TimeoutExpired:
        return ChatExchange(user, values.get("prompt", ""), 0, None, None, time.monotonic() - started,
                            error=f"no answer within {spec.timeout:.0f}s: the command was killed with everything it started")
    seconds = time.monotonic() - started
    with log.open("a") as fh:
        fh.write(f"--- chat {output_file.name}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    output = proc.stdout
    if "output_file" in placeholders(list(spec.command)):
        output = output_file.read_text(errors="replace") if output_file.exists() else ""
        output_file.unlink(missing_ok=True)
    try:
        body = json.loads(output)
    except ValueError:
        body = {"output": output[-2000:], "stderr": proc.stderr[-2000:]}
    exchange = ChatExchange(user, values.get("prompt", ""), 200 if proc.returncode == 0 else 500, None, body, seconds,
                            exit_code=proc.returncode)
    if proc.returncode != 0:
        exchange.error = f"exit code {proc.returncode}; the end of its stderr: {proc.stderr[-1500:]}"
    return read_answer(spec, exchange, output)
