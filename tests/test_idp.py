"""The mock IdP: real RS256 tokens that a strict verifier accepts, and bad variants it rejects."""

import json

import jwt
import pytest
from starlette.testclient import TestClient

from aislab.world.mocks.idp.app import create_app
from aislab.world.mocks.idp.tokens import AUDIENCE, BAD_TOKEN_VARIANTS, SigningKey, TokenFactory, jwks_document

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
    header = lambda v: jwt.get_unverified_header(factory.bad(v, USER))  # noqa: E731
    claims = lambda v: jwt.decode(factory.bad(v, USER), options={"verify_signature": False})  # noqa: E731
    assert header("alg-none")["alg"] == "none"
    assert header("hs256-with-public-key")["alg"] == "HS256"
    assert header("unknown-key")["kid"] != factory.key.kid
    assert header("unknown-key-known-kid")["kid"] == factory.key.kid
    assert "sub" not in claims("missing-subject")
    assert claims("wrong-audience")["aud"] != AUDIENCE
    assert claims("wrong-issuer")["iss"] != factory.issuer


def test_hs256_variant_is_really_keyed_with_the_public_pem(factory):
    token = factory.bad("hs256-with-public-key", USER)
    head, body, sig = token.split(".")
    import base64, hashlib, hmac  # noqa: E401

    mac = hmac.new(factory.key.public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(mac).rstrip(b"=").decode() == sig


def test_idp_serves_discovery_and_jwks(tmp_path, factory):
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document(factory.key)))
    client = TestClient(create_app(tmp_path, "http://idp.lab"))
    discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "http://idp.lab" and discovery["jwks_uri"] == "http://idp.lab/keys"
    assert client.get("/keys").json()["keys"][0]["kid"] == factory.key.kid
