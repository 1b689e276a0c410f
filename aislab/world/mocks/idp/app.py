"""The IdP host: OIDC discovery and JWKS, as Dex serves them (and `/keys` like the vendor's stub).

It also serves an attacker's key material under `/attacker/` (a JWKS and a certificate the
issuer never published), which the header-injection tokens point at (`jku`, `x5u`): a service
that trusts the token's header fetches them, and every request here is recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aislab.world.witnesses.records import Recorder

ATTACKER_JWKS = "/attacker/jwks.json"
ATTACKER_CERT = "/attacker/cert.pem"


def create_app(state_dir: Path, issuer: str, records: Recorder) -> Starlette:
    jwks = json.loads((state_dir / "jwks.json").read_text())
    attacker_jwks = json.loads((state_dir / "attacker-jwks.json").read_text())
    attacker_cert = (state_dir / "attacker-cert.pem").read_text()
    discovery = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/keys",
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "groups", "profile", "offline_access"],
        "claims_supported": ["sub", "email", "groups", "exp", "iss", "aud"],
    }
    served = {
        "/.well-known/openid-configuration": lambda: JSONResponse(discovery),
        "/keys": lambda: JSONResponse(jwks),
        ATTACKER_JWKS: lambda: JSONResponse(attacker_jwks),
        ATTACKER_CERT: lambda: PlainTextResponse(attacker_cert, media_type="application/pem-certificate-chain"),
    }

    async def anything(request: Request) -> Response:
        records.add({"client": request.client.host if request.client else None, "method": request.method,
                     "path": request.url.path, "query": request.url.query,
                     "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw]})
        serve = served.get(request.url.path) if request.method == "GET" else None
        return serve() if serve else JSONResponse({"error": "not found"}, 404)

    return Starlette(routes=[*records.routes(), Route("/{path:path}", anything, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])])
