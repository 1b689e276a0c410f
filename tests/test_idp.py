"""The mock IdP: real RS256 tokens that a strict verifier accepts, and bad variants it rejects."""

import base64
import json

import jwt
import pytest
from starlette.testclient import TestClient

from aislab.world.mocks.idp.app import create_app
from aislab.world.mocks.idp.tokens import AUDIENCE, BAD_TOKEN_VARIANTS, SigningKey, TokenFactory, attacker_certificate, jwks_document
from aislab.world.witnesses.records import Recorder

USER = {"sub": "u-1", "email": "u1@lab.example", "groups": ["qa"]}


@pytest.fixture
def factory():
    return TokenFactory(SigningKey.generate(), "http://idp.lab")


def verify(factory, token):
    key = jwt.PyJWK(factory.key.jwk()).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=factory.issuer,
                      options={"require": ["exp", "iss", "aud", "sub"]})


def test_good_token_verifies_with_published_key(factory):
    claims = verify(factory, factory.mint(USER))
    assert (claims["sub"], claims["email"], claims["groups"]) == ("u-1", "u1@lab.example", ["qa"])
    assert jwt.get_unverified_header(factory.mint(USER))["kid"] == factory.key.kid


@pytest.mark.parametrize("variant", BAD_TOKEN_VARIANTS)
def test_every_bad_variant_is_rejected_by_a_strict_verifier(factory, variant):
    with pytest.raises((jwt.InvalidTokenError, KeyError, ValueError)):
        verify(factory, factory.bad(variant, USER))


def test_bad_variants_differ_in_exactly_the_intended_way(factory):
    def header(variant):  # read by hand: PyJWT refuses some of these headers even unverified
        head = factory.bad(variant, USER).split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))

    claims = lambda v: jwt.decode(factory.bad(v, USER), options={"verify_signature": False})  # noqa: E731
    assert header("alg-none")["alg"] == "none"
    assert header("hs256-with-public-key")["alg"] == "HS256"
    assert header("unknown-key")["kid"] != factory.key.kid
    assert header("unknown-key-known-kid")["kid"] == factory.key.kid
    assert "sub" not in claims("missing-subject")
    assert claims("wrong-audience")["aud"] != AUDIENCE
    assert claims("wrong-issuer")["iss"] != factory.issuer
    # At the edges: seconds and minutes, not only hours.
    now = claims("expired-seconds-ago")["exp"] + 5
    assert now - 10 < claims("expired-seconds-ago")["exp"] < now and claims("expired-minutes-ago")["exp"] <= now - 60
    assert 0 < claims("not-yet-valid-for-seconds")["nbf"] - now <= 60 and claims("issued-in-the-future")["iat"] > now
    # Headers that name their own key material point at the lab's attacker endpoints.
    assert header("jku-attacker-keys")["jku"].endswith("/attacker/jwks.json")
    assert header("x5u-attacker-certificate")["x5u"].endswith("/attacker/cert.pem")
    assert header("embedded-jwk")["jwk"]["kid"] == factory.rogue_key.kid and header("embedded-x5c-certificate")["x5c"]
    assert "../" in header("kid-path-traversal")["kid"] and "'" in header("kid-sql-injection")["kid"]
    assert header("unknown-critical-header")["crit"] == ["urn:aislab:must-understand"]
    assert [header(v)["alg"] for v in ("alg-none", "alg-none-capitalised", "alg-none-upper-case")] == ["none", "None", "NONE"]
    assert factory.bad("signature-stripped", USER).endswith(".")


def test_hs256_variant_is_really_keyed_with_the_public_pem(factory):
    token = factory.bad("hs256-with-public-key", USER)
    head, body, sig = token.split(".")
    import base64, hashlib, hmac  # noqa: E401

    mac = hmac.new(factory.key.public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(mac).rstrip(b"=").decode() == sig


def test_idp_serves_discovery_and_jwks_and_records_every_request(tmp_path, factory):
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document(factory.key)))
    (tmp_path / "attacker-jwks.json").write_text(json.dumps(jwks_document(factory.rogue_key)))
    (tmp_path / "attacker-cert.pem").write_bytes(attacker_certificate(factory.rogue_key))
    records = Recorder("secret")
    client = TestClient(create_app(tmp_path, "http://idp.lab", records))
    discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "http://idp.lab" and discovery["jwks_uri"] == "http://idp.lab/keys"
    assert client.get("/keys").json()["keys"][0]["kid"] == factory.key.kid
    # What header-injection tokens point at is served, so trusting them is observable.
    assert client.get("/attacker/jwks.json").json()["keys"][0]["kid"] == factory.rogue_key.kid
    assert b"BEGIN CERTIFICATE" in client.get("/attacker/cert.pem").content
    assert [r["path"] for r in records.items] == ["/.well-known/openid-configuration", "/keys", "/attacker/jwks.json", "/attacker/cert.pem"]
