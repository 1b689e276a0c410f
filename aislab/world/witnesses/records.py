"""What every recording lab host keeps: an append-only record of everything it saw, for the
lab's whole life. Nothing is ever cleared: the harness reads from a mark (a sequence number),
so a scenario sees its own window while the whole life stays available for lifetime checks,
and a service that learnt the admin secret still could not wipe the evidence.

Records carry `seq` (their index) and `t` (epoch seconds when the thing happened), so they
can be attributed afterwards to the service instance that was running at that moment.
`pending` counts what a host has begun to record but not finished (a connection being read),
so the harness can wait until the record is complete instead of waiting a fixed time.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ADMIN_HEADER = "x-lab-admin"


class Recorder:
    def __init__(self, admin_secret: str):
        self.admin_secret = admin_secret
        self.items: list[dict] = []
        self.pending = 0
        self.queued: list[Callable[[], int]] = []  # what is waiting to be read (datagrams in a socket)
        self._lock = threading.Lock()

    def add(self, entry: dict) -> dict:
        with self._lock:
            entry.setdefault("t", time.time())
            entry["seq"] = len(self.items)
            self.items.append(entry)
        return entry

    @contextmanager
    def in_flight(self):
        """Counts one thing being recorded (e.g. a connection still being read)."""
        with self._lock:
            self.pending += 1
        try:
            yield
        finally:
            with self._lock:
                self.pending -= 1

    def snapshot(self, since: int) -> dict:
        waiting = sum(count() for count in self.queued)
        with self._lock:
            return {"records": self.items[since:], "next": len(self.items), "pending": self.pending + waiting}

    def authorized(self, request: Request) -> bool:
        return hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), self.admin_secret)

    async def endpoint(self, request: Request) -> JSONResponse:
        """GET /_lab/records?since=N: records from N on, the next mark, and what is in flight."""
        if not self.authorized(request):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            return JSONResponse({"error": "since must be a record number"}, 400)
        return JSONResponse(self.snapshot(int(since)))

    def routes(self) -> list[Route]:
        return [Route("/_lab/records", self.endpoint, methods=["GET"])]
