"""Bearer JWT verification against the IdP's published keys. Every failure looks the same."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import jwt

from reference_service.settings import Settings


# How long to wait for the identity provider: past it the token is refused (never accepted unverified).
IDP_TIMEOUT = 5.0


class Unauthorized(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    sub: str
    email: str
    token: str


class Authenticator:
    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.settings = settings
        self.http = http
        self._keys: dict[str, object] = {}
        self._issuer = settings.issuer
        self._jwks_url = settings.jwks_url

    async def _refresh_keys(self) -> None:
        if self.settings.oidc_configuration_url and not self._jwks_url:
            doc = (await self.http.get(self.settings.oidc_configuration_url, timeout=IDP_TIMEOUT)).raise_for_status().json()
            self._jwks_url, self._issuer = doc["jwks_uri"], doc["issuer"]
        jwks = (await self.http.get(self._jwks_url, timeout=IDP_TIMEOUT)).raise_for_status().json()
        self._keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"] if k.get("kty") == "RSA"}

    async def key_for(self, kid: str | None):
        if kid not in self._keys:
            await self._refresh_keys()  # key rotation: look once more before refusing
        if kid not in self._keys:
            raise Unauthorized("unknown signing key")
        return self._keys[kid]

    def decode_options(self) -> dict:
        return {"require": ["exp", "iss", "aud", "sub"]}

    async def verify(self, authorization: str | None) -> Identity:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise Unauthorized("unsupported algorithm")
            claims = jwt.decode(
                token,
                await self.key_for(header.get("kid")),
                algorithms=["RS256"],
                audience=self.settings.audience,
                issuer=self._issuer,
                options=self.decode_options(),
            )
        except (jwt.InvalidTokenError, httpx.HTTPError, ValueError, KeyError) as err:
            raise Unauthorized(str(err)) from None
        if not claims.get("sub"):
            raise Unauthorized("token has no subject")
        return Identity(sub=claims["sub"], email=claims.get("email", ""), token=token)
