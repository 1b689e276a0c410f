"""Token minting with real crypto, including every malformed variant a service must reject.

The harness mints tokens in-process with the same key the IdP host publishes, so a scenario
needs no round trip to obtain one. Bad variants are built by hand where PyJWT refuses to
(alg "none", HS256 keyed with the public key), because those are exactly the attacks.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from aislab.world.pki import write_private

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
        write_private(path, self.private_pem())
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
    # Where the lab serves the attacker's key material (the IdP host's /attacker/).
    attacker_base: str = "http://idp.lab"
    # A second key the IdP never published: tokens signed with it must be rejected.
    rogue_key: SigningKey = field(default_factory=SigningKey.generate)
    # Every valid token minted, so a check (or the redactor) can look for any of them.
    minted: list[str] = field(default_factory=list)

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
        return self._rs256({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key)

    @staticmethod
    def _rs256(header: dict, claims: dict, key: SigningKey) -> str:
        """Signed by hand: PyJWT would refuse some of the headers the attacks need."""
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = key.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def mint(self, user: dict, **overrides) -> str:
        token = self._sign(self.claims_for(user, **overrides), self.key)
        self.minted.append(token)
        return token

    def bad(self, variant: str, user: dict) -> str:
        """A token for `user` broken in exactly one way (see BAD_TOKEN_VARIANTS)."""
        if variant not in BAD_TOKEN_VARIANTS:
            raise KeyError(f"unknown bad-token variant {variant!r}")
        return getattr(self, "_bad_" + variant.replace("-", "_"))(user, int(time.time()))

    # Validity at the edges: seconds and minutes off, not only hours, so a leeway shows.
    def _bad_expired(self, user, now):
        return self._sign(self.claims_for(user, iat=now - 7200, nbf=now - 7200, exp=now - 3600), self.key)

    def _bad_expired_seconds_ago(self, user, now):
        return self._sign(self.claims_for(user, iat=now - 600, nbf=now - 600, exp=now - 5), self.key)

    def _bad_expired_minutes_ago(self, user, now):
        return self._sign(self.claims_for(user, iat=now - 900, nbf=now - 900, exp=now - 120), self.key)

    def _bad_not_yet_valid(self, user, now):
        return self._sign(self.claims_for(user, nbf=now + 3600, iat=now, exp=now + 7200), self.key)

    def _bad_not_yet_valid_for_seconds(self, user, now):
        return self._sign(self.claims_for(user, nbf=now + 30, iat=now, exp=now + 600), self.key)

    def _bad_issued_in_the_future(self, user, now):
        return self._sign(self.claims_for(user, iat=now + 3600, nbf=None, exp=now + 7200), self.key)

    # Keys the issuer never published.
    def _bad_unknown_key(self, user, now):
        return self._sign(self.claims_for(user), self.rogue_key)

    def _bad_unknown_key_known_kid(self, user, now):
        return self._sign(self.claims_for(user), SigningKey(self.rogue_key.private, self.key.kid))

    # The token's own header naming where its key is: each served by the lab's IdP host, so a
    # service that trusts it is seen fetching it (and, accepting the token, acting on it).
    def _bad_jku_attacker_keys(self, user, now):
        header = {"alg": "RS256", "typ": "JWT", "kid": self.rogue_key.kid, "jku": f"{self.attacker_base}/attacker/jwks.json"}
        return self._rs256(header, self.claims_for(user), self.rogue_key)

    def _bad_x5u_attacker_certificate(self, user, now):
        header = {"alg": "RS256", "typ": "JWT", "x5u": f"{self.attacker_base}/attacker/cert.pem"}
        return self._rs256(header, self.claims_for(user), self.rogue_key)

    def _bad_embedded_x5c_certificate(self, user, now):
        der = x509.load_pem_x509_certificate(attacker_certificate(self.rogue_key)).public_bytes(serialization.Encoding.DER)
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        return self._rs256(header, self.claims_for(user), self.rogue_key)

    def _bad_embedded_jwk(self, user, now):
        header = {"alg": "RS256", "typ": "JWT", "jwk": self.rogue_key.jwk()}
        return self._rs256(header, self.claims_for(user), self.rogue_key)

    # kid as an injection vector: a path to an empty file, a query that returns a chosen key.
    def _bad_kid_path_traversal(self, user, now):
        return self._hmac({"alg": "HS256", "typ": "JWT", "kid": "../../../../../../../../dev/null"}, self.claims_for(user), b"")

    def _bad_kid_sql_injection(self, user, now):
        header = {"alg": "HS256", "typ": "JWT", "kid": "x' UNION SELECT 'lab-sqli-key' -- "}
        return self._hmac(header, self.claims_for(user), b"lab-sqli-key")

    def _bad_unknown_critical_header(self, user, now):
        """Signed with the real key, but says it needs an extension no one understands (RFC 7515 4.1.11)."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid, "crit": ["urn:aislab:must-understand"],
                  "urn:aislab:must-understand": True}
        return self._rs256(header, self.claims_for(user), self.key)

    # Algorithms: none in any spelling, a stripped signature, HMAC keyed with the public key.
    def _bad_alg_none(self, user, now):
        return self._unsigned("none", self.claims_for(user))

    def _bad_alg_none_capitalised(self, user, now):
        return self._unsigned("None", self.claims_for(user))

    def _bad_alg_none_upper_case(self, user, now):
        return self._unsigned("NONE", self.claims_for(user))

    def _bad_signature_stripped(self, user, now):
        head, body, _sig = self._sign(self.claims_for(user), self.key).split(".")
        return f"{head}.{body}."

    def _bad_hs256_with_public_key(self, user, now):
        return self._hmac({"alg": "HS256", "typ": "JWT", "kid": self.key.kid}, self.claims_for(user), self.key.public_pem())

    # Claims: someone else's issuer or audience, no subject, a payload changed after signing.
    def _bad_wrong_issuer(self, user, now):
        return self._sign(self.claims_for(user, iss=self.issuer.rstrip("/") + "-evil"), self.key)

    def _bad_wrong_audience(self, user, now):
        return self._sign(self.claims_for(user, aud="some-other-client"), self.key)

    def _bad_missing_subject(self, user, now):
        return self._sign(self.claims_for(user, sub=None), self.key)

    def _bad_tampered_payload(self, user, now):
        head, _, sig = self._sign(self.claims_for(user), self.key).split(".")
        return f"{head}.{_b64(json.dumps(self.claims_for(user, groups=['admins'])).encode())}.{sig}"

    def _bad_garbage(self, user, now):
        return "not-a-jwt"

    @staticmethod
    def _unsigned(alg: str, claims: dict) -> str:
        return f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."

    @staticmethod
    def _hmac(header: dict, claims: dict, secret: bytes) -> str:
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def attacker_certificate(key: SigningKey) -> bytes:
    """A self-signed certificate for the rogue key (what `x5u` / `x5c` tokens present)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key.private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


# Every bad token a service must refuse alike; `garbage` is the reference refusal.
BAD_TOKEN_VARIANTS = tuple(
    name.removeprefix("_bad_").replace("_", "-") for name in vars(TokenFactory) if name.startswith("_bad_")
)
