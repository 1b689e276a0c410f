"""Evidence: redacted, attached to the Allure result and written beside the report."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import allure

from aislab.judging.credentials import MIN_PART, CredentialIndex, token_subject

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
URL_CREDENTIALS = re.compile(r"(://[^/\s:@\"']+:)[^@\s/\"']+@")  # proxy URLs with user:password


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()


def _jwt_label(token: str) -> str:
    return f"<redacted-jwt sub={token_subject(token)} sha256={hashlib.sha256(token.encode()).hexdigest()[:10]}>"


class Redactor:
    """Replaces known secrets in every form a check would recognise (see judging.credentials:
    encoded, split, base64 at any offset), and any other JWT, keeping a token's subject and a
    hash of it for correlation."""

    def __init__(self, secrets: dict[str, str] | None = None, tokens: Iterable[str] = ()):
        self.index = CredentialIndex()
        self.short: dict[str, str] = {}  # too short to have forms worth searching: replaced as they are
        # Digests of what this redactor wrote since it last learned a secret: its output is a fixed
        # point, so a text handed back (an attachment's Allure copy) is not scanned a second time.
        self._clean: set[bytes] = set()
        self._lock = threading.RLock()  # the evidence writer redacts while the run learns new tokens
        for name, value in (secrets or {}).items():
            self.add(name, value)
        self.add_tokens(tokens)

    def add(self, name: str, value: str) -> None:
        with self._lock:
            self._add(name, value)

    def _add(self, name: str, value: str) -> None:
        if len(value or "") >= MIN_PART:
            known = len(self.index.labels)
            self.index.add(f"redacted-{name}", value)
            learned = len(self.index.labels) != known
        elif len(value or "") >= 6:
            learned = self.short.get(name) != value
            self.short[name] = value
        else:
            return
        if learned:
            self._clean.clear()

    def add_tokens(self, tokens: Iterable[str]) -> None:
        with self._lock:
            known = len(self.index.labels)
            for token in tokens:
                self.index.add(_jwt_label(token)[1:-1], token)
            if known != len(self.index.labels):
                self._clean.clear()

    def text(self, text: str) -> str:
        with self._lock:
            if _digest(text) in self._clean:
                return text
            text = self._redact(text)
            self._clean.add(_digest(text))
            return text

    def _redact(self, text: str) -> str:
        text = self.index.replace(text, lambda hit: f"<{hit.label}>" if hit.form == "as is" else f"<{hit.label} ({hit.form})>")
        for name, value in self.short.items():
            text = text.replace(value, f"<redacted-{name}>")
        text = URL_CREDENTIALS.sub(r"\1<redacted>@", text)
        return JWT.sub(lambda m: _jwt_label(m.group(0)), text)


class EvidenceWriter:
    """Redacts and writes a run's evidence in a thread of its own, in order, while the run goes on:
    a scenario's evidence is a second of CPU, and the next scenario's waits on the service leave a
    core for it. Drained before anything reads what it wrote (the report's hashes, the bundle)."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="evidence")
        self._work: list[tuple[str, Future]] = []

    def submit(self, owner: str, work) -> Future:
        future = self._pool.submit(work)
        self._work.append((owner, future))
        return future

    def drain(self) -> dict[str, str]:
        """Wait until everything submitted is written; what failed, by owner (a scenario)."""
        failed: dict[str, str] = {}
        for owner, future in self._work:
            if (error := future.exception()) is not None:
                failed.setdefault(owner, f"{type(error).__name__}: {error}")
        self._work.clear()
        return failed


class Pending:
    """Evidence the writer has not written yet: Allure's file writer is handed this, and queues
    its copy of the redacted bytes behind it."""

    def __init__(self, writer: EvidenceWriter, owner: str, future: Future):
        self.writer, self.owner, self.future = writer, owner, future

    def then(self, work) -> None:
        self.writer.submit(self.owner, lambda: work(self.future.result()))


class EvidenceSink:
    """Writes one scenario's evidence under the report directory and attaches it to Allure."""

    def __init__(self, report_dir: Path, scenario_dir: str, redactor: Redactor, writer: EvidenceWriter, owner: str):
        self.report_dir = report_dir
        self.scenario_dir = scenario_dir
        self.redactor = redactor
        self.writer = writer
        self.owner = owner

    def attach(self, name: str, payload) -> dict:
        """Its entry in the report; the hash is filled in once the writer has written it. The text
        is made here: what the scenario saw, as it was when the scenario ended."""
        text = payload if isinstance(payload, str) else json.dumps(payload, indent=1, default=str)
        relative = f"{self.scenario_dir}/{name}.json"
        entry = {"path": relative, "sha256": None}

        def write() -> bytes:
            data = self.redactor.text(text).encode()
            path = self.report_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            return data

        allure.attach(Pending(self.writer, self.owner, self.writer.submit(self.owner, write)), name=name,
                      attachment_type=allure.attachment_type.JSON)
        return entry
