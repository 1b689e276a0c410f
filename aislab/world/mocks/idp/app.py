"""The IdP host: OIDC discovery and JWKS, as Dex serves them (and `/keys` like the vendor's stub).

It also serves an attacker's key material under `/attacker/` (a JWKS and a certificate the
issuer never published), which the header-injection tokens point at (`jku`, `x5u`): a service
that trusts the token's header fetches them, and every request here is recorded.

Its faults are real, so that failing closed is judged against a real failure: the lab can take
its main port down (it stops listening: every connection is refused by the kernel), make it answer
5xx, or make it hold every answer until the harness releases it or the client gives up (the
record says which, and after how long); and it can publish another key set (a rotation). The
admin endpoints live on a port of their own (`/_lab/...`, behind the lab admin secret), which
stays up while the main one is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aislab.world.hosts import server_config
from aislab.world.mocks.holding import Holds
from aislab.world.witnesses.records import Recorder

ATTACKER_JWKS = "/attacker/jwks.json"
ATTACKER_CERT = "/attacker/cert.pem"
FAULT_MODES = ("none", "down", "error", "slow")
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]


class IdentityProvider:
    """The IdP's state: the key set it publishes and the fault it is in."""

    def __init__(self, state_dir: Path, issuer: str, records: Recorder):
        self.records = records
        self.original_jwks = json.loads((state_dir / "jwks.json").read_text())
        self.jwks = self.original_jwks
        self.attacker_jwks = json.loads((state_dir / "attacker-jwks.json").read_text())
        self.attacker_cert = (state_dir / "attacker-cert.pem").read_text()
        self.discovery = {
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
        self.fault: dict = {"mode": "none"}
        self.main: SwitchablePort | None = None  # set when it serves on a real port (not in-process tests)
        self.holds = Holds()

    # --- the main port -----------------------------------------------------------------
    def main_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.anything, methods=ALL_METHODS)])

    def _served(self, path: str):
        return {
            "/.well-known/openid-configuration": lambda: JSONResponse(self.discovery),
            "/keys": lambda: JSONResponse(self.jwks),
            ATTACKER_JWKS: lambda: JSONResponse(self.attacker_jwks),
            ATTACKER_CERT: lambda: PlainTextResponse(self.attacker_cert, media_type="application/pem-certificate-chain"),
        }.get(path)

    async def anything(self, request: Request) -> Response:
        entry = self.records.add({"client": request.client.host if request.client else None, "method": request.method,
                                  "path": request.url.path, "query": request.url.query,
                                  "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw]})
        fault = dict(self.fault)
        if fault["mode"] == "error":
            entry.update(fault=f"answered {fault['status']}", status=fault["status"])
            return JSONResponse({"error": "server_error", "error_description": "identity provider failure (lab fault)"}, fault["status"])
        if fault["mode"] == "slow":
            entry["fault"] = "held"
            started, ticket = time.monotonic(), self.holds.enter()
            outcome = await self.holds.wait(request)
            entry.update(outcome=outcome, heldSeconds=round(time.monotonic() - started, 3))
            self.holds.leave(ticket)
            if outcome == "abandoned":  # the client gave up first: nothing is sent (it is gone)
                entry["status"] = 0
                return Response(status_code=504)
        serve = self._served(request.url.path) if request.method == "GET" else None
        response = serve() if serve else JSONResponse({"error": "not found"}, 404)
        entry["status"] = response.status_code
        return response

    # --- faults and keys (admin) ----------------------------------------------------------
    async def set_fault(self, mode: str, status: int | None = None) -> dict:
        """Leave the current fault (release what it holds, listen again), then enter `mode`.
        Returns once the change is in force: held answers recorded, the port closed or open."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        if mode == "error" and not (isinstance(status, int) and 500 <= status <= 599):
            raise ValueError("an error fault needs a 5xx status")
        released = await self.holds.release()
        if self.main is not None and self.fault["mode"] == "down" and mode != "down":
            await self.main.up()
        if mode == "down" and self.main is not None:
            await self.main.down()
        self.fault = {"mode": mode, **({"status": status} if mode == "error" else {})}
        return {**self.fault, "released": released}

    def admin_app(self) -> Starlette:
        def guarded(handler):
            async def endpoint(request: Request) -> Response:
                if not self.records.authorized(request):
                    return JSONResponse({"error": "lab admin secret required"}, 403)
                try:
                    return JSONResponse(await handler(await request.json() if await request.body() else {}))
                except (ValueError, KeyError, TypeError) as err:
                    return JSONResponse({"error": str(err)}, 400)
            return endpoint

        async def fault(doc: dict) -> dict:
            return await self.set_fault(doc["mode"], doc.get("status"))

        async def keys(doc: dict) -> dict:
            if not isinstance(doc.get("keys"), list):
                raise ValueError("a JWKS document needs a 'keys' list")
            self.jwks = {"keys": doc["keys"]}
            return {"kids": [k.get("kid") for k in doc["keys"]]}

        async def reset(_doc: dict) -> dict:
            self.jwks = self.original_jwks
            return await self.set_fault("none")

        return Starlette(routes=[*self.records.routes(),
                                 Route("/_lab/fault", guarded(fault), methods=["POST"]),
                                 Route("/_lab/keys", guarded(keys), methods=["POST"]),
                                 Route("/_lab/reset", guarded(reset), methods=["POST"])])


def create_app(state_dir: Path, issuer: str, records: Recorder) -> Starlette:
    """The main port's application (in-process use: tests)."""
    return IdentityProvider(state_dir, issuer, records).main_app()


class _Unsignalled(uvicorn.Server):
    """A server that leaves the process's signals to the servers that live as long as it."""

    def capture_signals(self):
        return contextlib.nullcontext()


class SwitchablePort:
    """A port that can stop listening (the kernel then refuses every connection) and listen
    again, on the same address, within the running event loop."""

    def __init__(self, app, host: str, port: int, listen):
        self.app, self.host, self.port, self.listen = app, host, port, listen
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None
        self._ended = asyncio.Event()

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Runs until `should_exit` is set, like a uvicorn server, across any downs and ups."""
        await self.up(sockets[0])
        await self._ended.wait()
        await self.down()

    @property
    def should_exit(self) -> bool:
        return self._ended.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._ended.set()

    async def up(self, sock: socket.socket | None = None) -> None:
        if self.server is not None:
            return
        sock = sock or self.listen(self.host, self.port)
        self.server = _Unsignalled(server_config(self.app))
        # The socket listens already: the kernel queues connections until the server accepts them.
        self.task = asyncio.ensure_future(self.server.serve(sockets=[sock]))

    async def down(self) -> None:
        """Stop listening and close every connection; returns once nothing listens."""
        if self.server is None:
            return
        self.server.should_exit = True
        await self.task
        self.server, self.task = None, None
