"""The faults the lab injects, as the harness drives them: the identity provider down (its main
port closed: connections refused), answering 5xx or holding its answers; its keys rotated; the
control plane failing chosen calls (401, 5xx, no answer); a reply of the mock LLM held until the
harness lets it go. Every one is real on the wire, and every one is undone by the lab's reset.

All of it goes through the lab admin endpoints (the per-lab secret the service never sees)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aislab.world.mocks.idp.tokens import SigningKey, TokenFactory, jwks_document

# The IdP faults of the claims, by the words the scenarios use.
IDP_FAULTS = {"down": ("down", None), "answering 500": ("error", 500), "answering 503": ("error", 503), "slow": ("slow", None)}
# The control-plane faults, by the words the scenarios use.
CP_FAULTS = {"401": 401, "500": 500, "503": 503, "no answer": "no answer"}


@dataclass
class Rotation:
    """A key rotation: the key set the IdP published before and the new key it publishes now."""

    old: TokenFactory
    new: TokenFactory
    at: float = field(default_factory=time.time)
    mark: int = 0  # the IdP's record from just before it (what the service asked it since)
    elapsed: float = 0.0  # seconds from it until a token under the new key was accepted (or the last try)


class Faults:
    def __init__(self, lab):
        self.lab = lab

    # --- the identity provider -------------------------------------------------------------
    def idp(self, fault: str) -> dict:
        """Put the IdP into one of IDP_FAULTS ("none" to end it); returns once in force (for
        "down": nothing listens on its main port any more)."""
        mode, status = ("none", None) if fault == "none" else IDP_FAULTS[fault]
        return self.lab._admin("POST", "idp", "/_lab/fault", json={"mode": mode, "status": status}).json()

    def rotate_idp_keys(self) -> Rotation:
        """The IdP publishes a new signing key and removes the old one; the control plane, its
        relying party, trusts the new set too. Tokens minted under the new key are the lab's
        (redacted and looked for like every other)."""
        key = SigningKey.generate()
        old = self.lab.tokens
        new = TokenFactory(key, old.issuer, attacker_base=old.attacker_base, rogue_key=old.rogue_key, minted=old.minted)
        keys = jwks_document(key)
        self.lab._admin("POST", "idp", "/_lab/keys", json=keys)
        self.lab._admin("POST", "controlplane", "/_lab/keys", json=keys)
        return Rotation(old, new)

    def restore_idp_keys(self) -> None:
        self.lab._admin("POST", "idp", "/_lab/reset")
        self.lab._admin("POST", "controlplane", "/_lab/keys", json=jwks_document(self.lab.tokens.key))

    # --- the control plane -----------------------------------------------------------------
    def fail_cp(self, fault: str, operation: str | None = None, sub: str | None = None, times: int | None = None) -> None:
        """The control plane answers `fault` (one of CP_FAULTS) to the matching requests."""
        rule = {"respond": CP_FAULTS[fault], **({"operation": operation} if operation else {}),
                **({"sub": sub} if sub else {}), **({"times": times} if times is not None else {})}
        self.lab._admin("POST", "controlplane", "/_lab/faults", json={"rules": [rule]})

    def release_cp(self) -> int:
        """End every held control-plane request; returns once each is in the journal."""
        return self.lab._admin("POST", "controlplane", "/_lab/release").json()["released"]

    def cp_accepts(self, token: str) -> tuple[bool, str]:
        """Whether the control plane would accept this token now (its own clock, its own keys)."""
        verdict = self.lab._admin("POST", "controlplane", "/_lab/verify", json={"token": token}).json()
        return verdict["accepted"], verdict.get("why", "")

    # --- the mock LLM ----------------------------------------------------------------------
    def await_llm_hold(self, name: str, timeout: float) -> bool:
        """Wait until the mock LLM holds a reply under this name (a long poll: the event itself)."""
        response = self.lab._admin("GET", "llm", f"/_lab/holds/{name}", params={"timeout": timeout}, timeout=timeout + 10)
        return response.json()["held"]

    def release_llm_hold(self, name: str) -> None:
        self.lab._admin("POST", "llm", f"/_lab/holds/{name}")
