"""Waivers (InSpec-style): a claim that is known to fail, accepted for a while, with a reason.
A waived claim still runs; the report shows what was observed and why it is waived. An expired
waiver is ignored with a warning."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import yaml


class WaiverError(ValueError):
    pass


@dataclass(frozen=True)
class Waiver:
    claim: str
    justification: str
    owner: str
    expires: datetime.date

    def as_dict(self) -> dict:
        return {"justification": self.justification, "owner": self.owner, "expires": self.expires.isoformat()}


def load_waivers(path: Path, known_claims: set[str], today: datetime.date | None = None) -> tuple[list[Waiver], list[str]]:
    """(active waivers, warnings). Errors name the entry and field."""
    today = today or datetime.date.today()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise WaiverError(f"{path}: cannot read waivers: {err}") from None
    entries = doc.get("waivers") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise WaiverError(f"{path}: expected a mapping with a `waivers` list")
    active, warnings = [], []
    for i, entry in enumerate(entries):
        where = f"{path}: waivers[{i}]"
        if not isinstance(entry, dict):
            raise WaiverError(f"{where}: expected a mapping")
        for field in ("claim", "justification", "owner", "expires"):
            if not entry.get(field):
                raise WaiverError(f"{where}.{field}: required")
        if entry["claim"] not in known_claims:
            raise WaiverError(f"{where}.claim: {entry['claim']} is not in claims.yaml")
        expires = entry["expires"]
        if isinstance(expires, str):
            try:
                expires = datetime.date.fromisoformat(expires)
            except ValueError:
                raise WaiverError(f"{where}.expires: {expires!r} is not a date (YYYY-MM-DD)") from None
        if not isinstance(expires, datetime.date):
            raise WaiverError(f"{where}.expires: expected a date")
        waiver = Waiver(entry["claim"], str(entry["justification"]), str(entry["owner"]), expires)
        if expires < today:
            warnings.append(f"waiver for {waiver.claim} (owner {waiver.owner}) expired on {expires}: ignored")
        else:
            active.append(waiver)
    return active, warnings
