"""The LLM host: OpenAI-compatible `/v1/chat/completions` (plain and streaming) and `/v1/models`.

Every request, on any path and with any method, is recorded with all its headers (repeated
ones too), its query and its body: the record, not the service's word, is the evidence of what
reached the model provider.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aislab.world.mocks.llm.script import ScriptError, Turn, conversation_of, plan_turn, validate
from aislab.world.witnesses.records import Recorder

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass
class Hold:
    reached: asyncio.Event  # a reply is being held under this name
    released: asyncio.Event  # the harness let it go


class MockLLM:
    def __init__(self, api_key: str, admin_secret: str, model: str = "lab-model"):
        self.api_key = api_key
        self.model = model
        self.requests = Recorder(admin_secret)
        self.scripts: dict[str, dict] = {}
        self.barriers: dict[str, tuple[int, list[asyncio.Event]]] = {}
        self.holds: dict[str, Hold] = {}

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models),
                *self.requests.routes(),
                Route("/_lab/reset", self.admin_reset, methods=["POST"]),
                Route("/_lab/scripts", self.admin_scripts, methods=["POST"]),
                Route("/_lab/holds/{name}", self.admin_hold, methods=["GET", "POST"]),
                Route("/{path:path}", self.anything_else, methods=ALL_METHODS),
            ]
        )

    # --- provider API ------------------------------------------------------------------
    def _record(self, request: Request, body) -> dict:
        return self.requests.add({
            "client": request.client.host if request.client else None,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "rawHeaders": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body": body,
        })

    async def anything_else(self, request: Request) -> Response:
        """Any other path or method: recorded like the chat API (a token sent to
        /v1/embeddings or in a HEAD request is still sent to the provider), then 404."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = self._record(request, body)
        entry["response"] = {"status": 404}
        return self._error(404, f"no such endpoint: {request.method} {request.url.path}", "not_found")

    def _authorized(self, request: Request) -> bool:
        expected = f"Bearer {self.api_key}"
        return hmac.compare_digest(request.headers.get("authorization", ""), expected)

    @staticmethod
    def _error(status: int, message: str, code: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}}, status)

    async def models(self, request: Request) -> Response:
        entry = self._record(request, None)
        entry["response"] = {"status": 200 if self._authorized(request) else 401}
        if not self._authorized(request):
            return self._error(401, "Incorrect API key provided", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "lab"}]})

    async def completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            self._record(request, raw.decode("utf-8", "replace"))["response"] = {"status": 400}
            return self._error(400, "body is not JSON", "invalid_json")
        entry = self._record(request, body)
        # What the mock answered is recorded with the request: the lab's own account of what it
        # asked the service to do (tool calls) and which error path it provoked.
        if not self._authorized(request):
            entry["response"] = {"status": 401}
            return self._error(401, "Incorrect API key provided", "invalid_api_key")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            entry["response"] = {"status": 400}
            return self._error(400, "'messages' must be a non-empty list", "invalid_messages")
        conversation = conversation_of(body["messages"])
        entry["conversation"] = conversation
        turn = plan_turn(self.scripts.get(conversation), body)
        if turn.barrier:
            entry["barrierMet"] = await self._barrier(turn.barrier)
        if turn.hold:
            entry["held"] = await self._hold(turn.hold)
        entry["response"] = {"status": turn.fail_status or 200,
                             "toolCalls": [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                           for c in turn.tool_calls]}
        if turn.fail_status:
            return self._error(turn.fail_status, "scripted provider failure", "scripted_failure")
        if body.get("stream"):
            return StreamingResponse(self._stream(turn), media_type="text/event-stream")
        return JSONResponse(self._completion(turn))

    async def _barrier(self, spec: dict) -> bool:
        """Hold this reply until `parties` conversations reach the same barrier, so concurrent
        chats interleave deterministically instead of by luck. With `cohorts`, arrivals are let
        go `parties` at a time, in the order they came (a service that runs fewer chats at once
        than the whole crowd still meets it)."""
        count, events = self.barriers.get(spec["name"], (0, []))
        cohort = count // spec["parties"] if spec.get("cohorts") else 0
        while len(events) <= cohort:
            events.append(asyncio.Event())
        self.barriers[spec["name"]] = (count + 1, events)
        event = events[cohort]
        if (count + 1 - cohort * spec["parties"]) >= spec["parties"]:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), spec.get("timeout", 10))
            return True
        except asyncio.TimeoutError:
            return False

    def _hold_named(self, name: str) -> "Hold":
        return self.holds.setdefault(name, Hold(asyncio.Event(), asyncio.Event()))

    async def _hold(self, spec: dict) -> str:
        """Hold this reply until the harness releases it (the moment the harness controls, e.g.
        once the user's token has expired), or until the hold's timeout: says which."""
        hold = self._hold_named(spec["name"])
        hold.reached.set()
        try:
            await asyncio.wait_for(hold.released.wait(), spec.get("timeout", 60))
            return "released"
        except asyncio.TimeoutError:
            return "timed out"

    def _completion(self, turn: Turn) -> dict:
        message = {"role": "assistant", "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = turn.tool_calls
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if turn.tool_calls else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    async def _stream(self, turn: Turn):
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> str:
            doc = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": self.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(doc)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for i, call in enumerate(turn.tool_calls):
            yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"], "arguments": ""}}]})
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": call["function"]["arguments"]}}]})
        for word in (turn.content or "").split(" ") if turn.content else []:
            yield chunk({"content": word + " "})
        yield chunk({}, "tool_calls" if turn.tool_calls else "stop")
        yield "data: [DONE]\n\n"

    # --- lab admin ---------------------------------------------------------------------
    async def admin_reset(self, request: Request) -> Response:
        """Forget the scripts but those meant to outlive scenarios (an idle instance's); the
        record of requests is kept for the lab's whole life."""
        if not self.requests.authorized(request):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        self.scripts = {k: v for k, v in self.scripts.items() if v.get("persist")}
        self.barriers.clear()
        for hold in self.holds.values():  # nothing stays held past its scenario
            hold.released.set()
        self.holds.clear()
        return JSONResponse({"ok": True})

    async def admin_hold(self, request: Request) -> Response:
        """GET: wait (up to `timeout` seconds) until a reply is held under this name, and say
        whether one is; POST: release it (and any reply that reaches it later)."""
        if not self.requests.authorized(request):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        hold = self._hold_named(request.path_params["name"])
        if request.method == "POST":
            hold.released.set()
            return JSONResponse({"released": True})
        try:
            await asyncio.wait_for(hold.reached.wait(), float(request.query_params.get("timeout", "30")))
        except asyncio.TimeoutError:
            pass
        return JSONResponse({"held": hold.reached.is_set()})

    async def admin_scripts(self, request: Request) -> Response:
        if not self.requests.authorized(request):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        try:
            scripts = [validate(s) for s in json.loads(await request.body())]
        except (ValueError, ScriptError, TypeError, AttributeError) as err:
            return JSONResponse({"error": str(err)}, 400)
        self.scripts.update({s["match"]: s for s in scripts})
        return JSONResponse({"registered": [s["match"] for s in scripts]})
