"""Evidence: redacted, attached to the Allure result and written beside the report."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import allure

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
URL_CREDENTIALS = re.compile(r"(://[^/\s:@\"']+:)[^@\s/\"']+@")  # proxy URLs with user:password


def _jwt_label(token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    try:
        body = token.split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("sub", "?")
    except (ValueError, IndexError, AttributeError):
        sub = "?"
    return f"<redacted-jwt sub={sub} sha256={digest}>"


class Redactor:
    """Replaces JWTs (keeping subject and a hash, for correlation) and known secrets."""

    def __init__(self, secrets: dict[str, str] | None = None):
        self.secrets = {k: v for k, v in (secrets or {}).items() if v}

    def add(self, name: str, value: str) -> None:
        if value:
            self.secrets[name] = value

    def text(self, text: str) -> str:
        for name, value in self.secrets.items():
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
