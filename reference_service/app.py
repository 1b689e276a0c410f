"""HTTP surface: `GET /` health (the chart's probes) and the documented chat endpoint.

POST /api/v1/chat
  Authorization: Bearer <the user's JWT>
  {"message": "...", "environmentId": "env-...", "organizationId": "org-..." (optional)}
-> 200 {"answer": "...", "toolCalls": [{"name": ..., "status": ...}]}
-> 401 {"error": "unauthorized"} for any missing or bad token, before anything else happens.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from openai import APIError, AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reference_service.agent import Agent
from reference_service.auth import Authenticator, Unauthorized
from reference_service.settings import Settings, tls_verify
from reference_service.telemetry import Telemetry
from reference_service.tools import ChatContext, ToolBox

log = logging.getLogger("reference_service")
SCOPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Components:
    settings: Settings
    authenticator: Authenticator
    toolbox: ToolBox
    agent: Agent
    telemetry: Telemetry
    wrap_app: Callable[[Starlette], Callable] = lambda app: app  # ASGI middleware around the whole service


def outbound(timeout: float) -> httpx.AsyncClient:
    """A client for what the service calls. trust_env: HTTP_PROXY / HTTPS_PROXY / NO_PROXY apply.
    No connection is kept between requests: a proxy that closes one just as the next request
    reuses it fails that request (tinyproxy did: a chat lost to "Connection error", no retry)."""
    return httpx.AsyncClient(timeout=timeout, verify=tls_verify(), trust_env=True, limits=httpx.Limits(max_keepalive_connections=0))


def build_components(settings: Settings) -> Components:
    http = outbound(timeout=30)
    llm = AsyncOpenAI(
        base_url=settings.llm_api_url,  # None means OpenAI's public API, as in the chart
        api_key=settings.llm_api_key,
        http_client=outbound(timeout=60),
        max_retries=0,
    )
    toolbox = ToolBox(settings.control_plane, http)
    return Components(settings, Authenticator(settings, http), toolbox, Agent(settings, llm, toolbox), Telemetry(settings, http))


def create_app(c: Components) -> Starlette:
    async def health(_request: Request):
        return JSONResponse({"status": "ok"})

    async def chat(request: Request):
        try:
            identity = await c.authenticator.verify(request.headers.get("authorization"))
        except Unauthorized as err:
            log.info("chat refused: %s", err)
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, 400)
        message = body.get("message") if isinstance(body, dict) else None
        org = body.get("organizationId") or c.settings.org_id
        env = body.get("environmentId") or c.settings.env_id
        if not isinstance(message, str) or not message.strip():
            return JSONResponse({"error": "message is required"}, 400)
        if not all(isinstance(v, str) and SCOPE_ID.match(v) for v in (org, env)):
            return JSONResponse({"error": "organizationId and environmentId are required"}, 400)
        ctx = ChatContext(identity=identity, org_id=org, env_id=env)
        try:
            answer = await c.agent.run(message, ctx)
        except APIError as err:
            log.warning("LLM provider error: %s", err)
            c.telemetry.event("chat_failed", reason="llm_error")
            return JSONResponse({"error": "the language model is unavailable"}, 502)
        c.telemetry.event("chat_completed", tool_calls=len(ctx.tool_log))
        return JSONResponse({"answer": answer, "toolCalls": ctx.tool_log})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        c.telemetry.event("service_started")
        yield
        await c.telemetry.close()

    return c.wrap_app(Starlette(routes=[Route("/", health), Route("/api/v1/chat", chat, methods=["POST"])], lifespan=lifespan))
