"""The lab's redactor: every secret the lab knows of, and every token it minted."""

from __future__ import annotations

from aislab.report.evidence import Redactor

_REDACTORS: dict[int, tuple[Redactor, list[int]]] = {}


def redactor_for(lab) -> Redactor:
    """One redactor per lab, told of every token minted since it last looked (building the
    forms of hundreds of tokens anew for every evidence file would cost seconds)."""
    redactor, seen = _REDACTORS.setdefault(id(lab), (Redactor(lab.redaction_secrets()), [0]))
    minted = getattr(getattr(lab, "tokens", None), "minted", [])
    redactor.add_tokens(minted[seen[0]:])
    seen[0] = len(minted)
    return redactor
