"""Evidence: redacted, attached to the Allure result and written beside the report."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

import allure

from aislab.judging.credentials import MIN_PART, CredentialIndex, token_subject

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
URL_CREDENTIALS = re.compile(r"(://[^/\s:@\"']+:)[^@\s/\"']+@")  # proxy URLs with user:password


def _jwt_label(token: str) -> str:
    return f"<redacted-jwt sub={token_subject(token)} sha256={hashlib.sha256(token.encode()).hexdigest()[:10]}>"


class Redactor:
    """Replaces known secrets in every form a check would recognise (see judging.credentials:
    encoded, split, base64 at any offset), and any other JWT, keeping a token's subject and a
    hash of it for correlation."""

    def __init__(self, secrets: dict[str, str] | None = None, tokens: Iterable[str] = ()):
        self.index = CredentialIndex()
        self.short: dict[str, str] = {}  # too short to have forms worth searching: replaced as they are
        for name, value in (secrets or {}).items():
            self.add(name, value)
        self.add_tokens(tokens)

    def add(self, name: str, value: str) -> None:
        if len(value or "") >= MIN_PART:
            self.index.add(f"redacted-{name}", value)
        elif len(value or "") >= 6:
            self.short[name] = value

    def add_tokens(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self.index.add(_jwt_label(token)[1:-1], token)

    def text(self, text: str) -> str:
        text = self.index.replace(text, lambda hit: f"<{hit.label}>" if hit.form == "as is" else f"<{hit.label} ({hit.form})>")
        for name, value in self.short.items():
            text = text.replace(value, f"<redacted-{name}>")
        text = URL_CREDENTIALS.sub(r"\1<redacted>@", text)
        return JWT.sub(lambda m: _jwt_label(m.group(0)), text)


class EvidenceSink:
    """Writes one scenario's evidence under the report directory and attaches it to Allure."""

    def __init__(self, report_dir: Path, scenario_dir: str, redactor: Redactor):
        self.report_dir = report_dir
        self.scenario_dir = scenario_dir
        self.redactor = redactor

    def attach(self, name: str, payload) -> dict:
        text = payload if isinstance(payload, str) else json.dumps(payload, indent=1, default=str)
        data = self.redactor.text(text).encode()
        relative = f"{self.scenario_dir}/{name}.json"
        path = self.report_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        allure.attach(data, name=name, attachment_type=allure.attachment_type.JSON)
        return {"path": relative, "sha256": hashlib.sha256(data).hexdigest()}
