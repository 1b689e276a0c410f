"""The mock IdP: real RS256 tokens that a strict verifier accepts, and bad variants it rejects."""

import base64
import time
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


# --- faults: real ones, on real sockets ---------------------------------------------------------
import asyncio  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

import httpx  # noqa: E402

from aislab.world.hosts import listen  # noqa: E402
from aislab.world.mocks.idp.app import IdentityProvider, SwitchablePort  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def idp_host(tmp_path, factory):
    """The IdP as its lab host runs it: a main port that can go down, an admin port that stays."""
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document(factory.key)))
    (tmp_path / "attacker-jwks.json").write_text(json.dumps(jwks_document(factory.rogue_key)))
    (tmp_path / "attacker-cert.pem").write_bytes(attacker_certificate(factory.rogue_key))
    idp = IdentityProvider(tmp_path, "http://idp.lab", Recorder("secret"))
    main, admin = free_port(), free_port()
    idp.main = SwitchablePort(idp.main_app(), "127.0.0.1", main, listen)
    import uvicorn

    admin_server = uvicorn.Server(uvicorn.Config(idp.admin_app(), log_level="warning", lifespan="off"))
    sockets = (listen("127.0.0.1", admin), listen("127.0.0.1", main))
    loop = asyncio.new_event_loop()

    async def serve():
        await asyncio.gather(admin_server.serve(sockets=[sockets[0]]), idp.main.serve(sockets=[sockets[1]]))

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    yield idp, f"http://127.0.0.1:{main}", f"http://127.0.0.1:{admin}"
    admin_server.should_exit = True
    idp.main.should_exit = True
    loop.call_soon_threadsafe(lambda: None)
    thread.join(10)


def admin(url: str, path: str, doc: dict, secret: str = "secret") -> httpx.Response:
    return httpx.post(url + path, json=doc, headers={"x-lab-admin": secret}, timeout=10)


def test_the_idp_goes_down_for_real_and_comes_back_while_its_admin_port_stays(idp_host, factory):
    idp, main, admin_url = idp_host
    assert httpx.get(main + "/keys").json()["keys"][0]["kid"] == factory.key.kid
    assert admin(admin_url, "/_lab/fault", {"mode": "down"}, secret="wrong").status_code == 403  # only the harness may
    assert admin(admin_url, "/_lab/fault", {"mode": "down"}).json()["mode"] == "down"
    with pytest.raises(httpx.ConnectError):  # nothing listens: the kernel refuses the connection
        httpx.get(main + "/keys", timeout=5)
    admin(admin_url, "/_lab/fault", {"mode": "none"})
    assert httpx.get(main + "/keys").status_code == 200


def test_the_idp_answers_5xx_or_holds_its_answer_until_released_or_abandoned(idp_host):
    idp, main, admin_url = idp_host
    admin(admin_url, "/_lab/fault", {"mode": "error", "status": 503})
    assert httpx.get(main + "/keys").status_code == 503
    admin(admin_url, "/_lab/fault", {"mode": "slow"})
    with pytest.raises(httpx.ReadTimeout):  # held past the client's patience: it gives up
        httpx.get(main + "/keys", timeout=0.5)
    late = threading.Thread(target=lambda: setattr(late, "status", httpx.get(main + "/keys", timeout=30).status_code))
    late.start()
    records = lambda: httpx.get(admin_url + "/_lab/records", headers={"x-lab-admin": "secret"}).json()["records"]  # noqa: E731
    deadline = time.monotonic() + 10
    while sum(1 for r in records() if r.get("fault") == "held") < 2 and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    assert admin(admin_url, "/_lab/fault", {"mode": "none"}).json()["released"] >= 1
    late.join(10)
    assert late.status == 200  # released: answered, late
    held = [r for r in records() if r.get("fault") == "held"]
    assert [r["outcome"] for r in held] == ["abandoned", "released"] and held[0]["status"] == 0
    assert admin(admin_url, "/_lab/fault", {"mode": "error", "status": 404}).status_code == 400  # a fault is a 5xx


def test_the_idp_rotates_its_keys_and_its_reset_restores_them(idp_host, factory):
    idp, main, admin_url = idp_host
    new = SigningKey.generate()
    assert admin(admin_url, "/_lab/keys", jwks_document(new)).json() == {"kids": [new.kid]}
    assert [k["kid"] for k in httpx.get(main + "/keys").json()["keys"]] == [new.kid]
    admin(admin_url, "/_lab/fault", {"mode": "down"})
    admin(admin_url, "/_lab/reset", {})
    assert [k["kid"] for k in httpx.get(main + "/keys").json()["keys"]] == [factory.key.kid]  # up again, its own key
