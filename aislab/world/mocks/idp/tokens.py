"""Token minting with real crypto, including every malformed variant a service must reject.

The harness mints tokens in-process with the same key the IdP host publishes, so a scenario
needs no round trip to obtain one. Bad variants are built by hand where PyJWT refuses to
(alg "none", HS256 keyed with the public key), because those are exactly the attacks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "testkube-enterprise"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(_new_rsa_key(), uuid.uuid4().hex[:16])

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def jwk(self) -> dict:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def save(self, path: Path) -> None:
        path.write_bytes(self.private_pem())
        path.with_suffix(".kid").write_text(self.kid)

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return cls(key, path.with_suffix(".kid").read_text().strip())


def jwks_document(*keys: SigningKey) -> dict:
    return {"keys": [k.jwk() for k in keys]}


@dataclass
class TokenFactory:
    """Mints tokens for fixture users as the lab's IdP would issue them."""

    key: SigningKey
    issuer: str
    audience: str = AUDIENCE
    lifetime: int = 600
    # A second key the IdP never published: tokens signed with it must be rejected.
    rogue_key: SigningKey = field(default_factory=SigningKey.generate)

    def claims_for(self, user: dict, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user["sub"],
            "email": user.get("email", ""),
            "groups": user.get("groups", []),
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def _sign(self, claims: dict, key: SigningKey) -> str:
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid})

    def mint(self, user: dict, **overrides) -> str:
        return self._sign(self.claims_for(user, **overrides), self.key)

    def bad(self, variant: str, user: dict) -> str:
        """A token for `user` broken in exactly one way (see BAD_TOKEN_VARIANTS)."""
        now = int(time.time())
        if variant == "expired":
            return self.mint(user, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
        if variant == "not-yet-valid":
            return self.mint(user, nbf=now + 3600, iat=now, exp=now + 7200)
        if variant == "unknown-key":
            return self._sign(self.claims_for(user), self.rogue_key)
        if variant == "unknown-key-known-kid":
            rogue = SigningKey(self.rogue_key.private, self.key.kid)
            return self._sign(self.claims_for(user), rogue)
        if variant == "alg-none":
            return self._unsigned(self.claims_for(user))
        if variant == "hs256-with-public-key":
            return self._hs256(self.claims_for(user), self.key.public_pem())
        if variant == "wrong-issuer":
            return self.mint(user, iss=self.issuer.rstrip("/") + "-evil")
        if variant == "wrong-audience":
            return self.mint(user, aud="some-other-client")
        if variant == "missing-subject":
            return self.mint(user, sub=None)
        if variant == "tampered-payload":
            head, _, sig = self.mint(user).split(".")
            forged = _b64(json.dumps(self.claims_for(user, groups=["admins"])).encode())
            return f"{head}.{forged}.{sig}"
        if variant == "garbage":
            return "not-a-jwt"
        raise KeyError(f"unknown bad-token variant {variant!r}")

    def _unsigned(self, claims: dict) -> str:
        head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{head}.{_b64(json.dumps(claims).encode())}."

    def _hs256(self, claims: dict, secret: bytes) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.key.kid}).encode())
        body = _b64(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(mac)}"


BAD_TOKEN_VARIANTS = (
    "expired",
    "not-yet-valid",
    "unknown-key",
    "unknown-key-known-kid",
    "alg-none",
    "hs256-with-public-key",
    "wrong-issuer",
    "wrong-audience",
    "missing-subject",
    "tampered-payload",
    "garbage",
)
