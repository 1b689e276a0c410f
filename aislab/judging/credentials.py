"""Finding a credential in whatever form it travels: as it is, percent-encoded, base64 (standard
or URL-safe, at any alignment inside a longer encoded text), hex, and for a JWT its payload or
its signature alone. The checks use it to find a token where it must not be; the redactor uses
the same forms, so what a check would find is never written out in clear."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from urllib.parse import quote

MIN_PART = 16  # shorter fragments would match by chance


def _b64_needles(data: bytes) -> dict[str, str]:
    """Substrings that base64 of any text containing `data` must contain, whatever the offset
    of `data` in that text: encode it from each of the three byte alignments."""
    needles = {}
    for skip in range(3):
        chunk = data[skip:]
        chunk = chunk[: len(chunk) // 3 * 3]
        encoded = base64.b64encode(chunk).decode()
        needles[f"base64 (alignment {skip})"] = encoded
        needles[f"base64url (alignment {skip})"] = encoded.replace("+", "-").replace("/", "_")
    return needles


def forms(secret: str) -> dict[str, str]:
    """Every form of `secret` worth looking for, each with a name for the message."""
    found = {"as is": secret, "percent-encoded": quote(secret, safe=""), "hex": secret.encode().hex()}
    found.update(_b64_needles(secret.encode()))
    parts = secret.split(".")
    if len(parts) == 3 and all(parts[:2]):  # a JWT: its payload or signature alone is as telling
        payload, signature = parts[1], parts[2]
        if len(payload) >= MIN_PART:
            found["JWT payload"] = payload
        if len(signature) >= MIN_PART:
            found["JWT signature"] = signature
            found["JWT signature, standard base64"] = signature.replace("-", "+").replace("_", "/")
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            found["JWT signature, hex"] = raw.hex()
    unique: dict[str, str] = {}
    for name, value in found.items():  # a JWT is its own percent-encoding: keep one name per form
        if len(value) >= MIN_PART and value not in unique.values():
            unique[name] = value
    return unique


def token_subject(token: str) -> str:
    """The `sub` of a JWT, read without verifying it (to say whose token was found)."""
    try:
        body = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("sub", "?"))
    except (ValueError, IndexError, AttributeError):
        return "?"


@dataclass(frozen=True)
class Hit:
    label: str  # which secret
    form: str  # in which form
    needle: str


class CredentialIndex:
    """Many secrets at once (every token the lab minted, its keys): finds any form of any of
    them in a text. A needle of length >= 2*BLOCK-1 always covers one whole BLOCK-aligned block
    of the text, starting at one of its first BLOCK offsets; so indexing those BLOCK substrings
    of each needle lets a scan look only at every BLOCK-th position of the text."""

    BLOCK = 16

    def __init__(self, secrets: dict[str, str] | None = None):
        self._blocks: dict[str, list[tuple[Hit, int]]] = {}
        self._short: list[Hit] = []  # too short for the block scan: searched one by one
        self.labels: dict[str, str] = {}
        self._secrets: set[str] = set()
        for label, secret in (secrets or {}).items():
            self.add(label, secret)

    def add(self, label: str, secret: str) -> None:
        """Index a secret under a label; the first label given for a value is the one kept."""
        if not secret or len(secret) < MIN_PART or label in self.labels or secret in self._secrets:
            return
        self.labels[label] = secret
        self._secrets.add(secret)
        for form, needle in forms(secret).items():
            hit = Hit(label, form, needle)
            if len(needle) < 2 * self.BLOCK - 1:
                self._short.append(hit)
                continue
            for offset in range(self.BLOCK):
                self._blocks.setdefault(needle[offset: offset + self.BLOCK], []).append((hit, offset))

    def find(self, text: str) -> list[tuple[int, Hit]]:
        """(position, hit) of every occurrence."""
        found = set()
        for block_at in range(0, len(text) - self.BLOCK + 1, self.BLOCK):
            for hit, offset in self._blocks.get(text[block_at: block_at + self.BLOCK], ()):
                start = block_at - offset
                if start >= 0 and text.startswith(hit.needle, start):
                    found.add((start, hit))
        for hit in self._short:
            start = text.find(hit.needle)
            while start >= 0:
                found.add((start, hit))
                start = text.find(hit.needle, start + 1)
        return sorted(found, key=lambda h: (h[0], -len(h[1].needle)))

    def replace(self, text: str, label_for) -> str:
        """`text` with every occurrence replaced by `label_for(hit)`."""
        out, at = [], 0
        for position, hit in self.find(text):
            if position < at:
                continue  # inside a longer hit already replaced
            out += [text[at:position], label_for(hit)]
            at = position + len(hit.needle)
        return "".join(out) + text[at:]
