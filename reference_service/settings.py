"""Configuration from the environment names the Helm chart sets (TESTKUBE.md section 2)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

TRUTHY = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    port: int
    control_plane: str
    oidc_configuration_url: str | None
    jwks_url: str | None
    issuer: str | None
    audience: str
    llm_api_url: str | None
    llm_api_key: str
    model: str
    org_id: str
    env_id: str
    do_not_track: bool
    telemetry_endpoint: str
    max_tool_rounds: int = 8

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        missing = [k for k in ("CONTROL_PLANE_ENDPOINT", "LLM_API_KEY") if not env.get(k)]
        if not env.get("OIDC_CONFIGURATION_URL") and not (env.get("OAUTH_JWKS_URL") and env.get("OAUTH_ISSUER")):
            missing.append("OIDC_CONFIGURATION_URL (or OAUTH_JWKS_URL and OAUTH_ISSUER)")
        if missing:
            raise SystemExit(f"reference ai-service: missing configuration: {', '.join(missing)}")
        return cls(
            port=int(env.get("PORT", "9090")),
            control_plane=env["CONTROL_PLANE_ENDPOINT"].rstrip("/"),
            oidc_configuration_url=env.get("OIDC_CONFIGURATION_URL"),
            jwks_url=env.get("OAUTH_JWKS_URL"),
            issuer=env.get("OAUTH_ISSUER"),
            audience=env.get("OAUTH_AUDIENCE", "testkube-enterprise"),
            llm_api_url=env.get("LLM_API_URL") or None,  # unset means OpenAI
            llm_api_key=env["LLM_API_KEY"],
            model=env.get("MODEL_NAME", "gpt-4o"),
            org_id=env.get("TK_ORG_ID", ""),
            env_id=env.get("TK_ENV_ID", ""),
            do_not_track=env.get("DO_NOT_TRACK", "").strip().lower() in TRUTHY,
            telemetry_endpoint=env.get("TELEMETRY_ENDPOINT", "https://api.segment.io/v1/track"),
        )


def tls_verify() -> ssl.SSLContext | bool:
    """Trust the system store plus SSL_CERT_FILE / SSL_CERT_DIR, as the real service's runtime does."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        return True
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=cafile, capath=capath)
    return ctx
