"""The IdP host: OIDC discovery and JWKS, as Dex serves them (and `/keys` like the vendor's stub)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(state_dir: Path, issuer: str) -> Starlette:
    jwks = json.loads((state_dir / "jwks.json").read_text())
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

    async def well_known(_request):
        return JSONResponse(discovery)

    async def keys(_request):
        return JSONResponse(jwks)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", well_known),
            Route("/keys", keys),
        ]
    )
