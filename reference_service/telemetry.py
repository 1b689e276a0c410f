"""Anonymous diagnostic telemetry, off when DO_NOT_TRACK is set. Never carries chat content."""

from __future__ import annotations

import asyncio
import logging
import platform
import uuid

import httpx

from reference_service import __version__
from reference_service.settings import Settings

log = logging.getLogger("reference_service.telemetry")


class Telemetry:
    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.settings = settings
        self.http = http
        self.install_id = uuid.uuid4().hex
        self._tasks: set[asyncio.Task] = set()

    @property
    def enabled(self) -> bool:
        return not self.settings.do_not_track

    def event(self, name: str, **properties) -> None:
        if not self.enabled:
            return
        self.in_background(self._send(name, properties))

    def in_background(self, coroutine) -> None:
        """Fire and forget, but keep a reference until it is done (asyncio holds only weak ones)."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """At shutdown: let events already on their way arrive (no new ones are made)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)

    async def _send(self, name: str, properties: dict) -> None:
        payload = {
            "event": name,
            "anonymousId": self.install_id,
            "properties": {**properties, "version": __version__, "python": platform.python_version()},
        }
        try:
            await self.http.post(self.settings.telemetry_endpoint, json=payload, timeout=5)
        except httpx.HTTPError as err:  # diagnostics must never break the service
            log.debug("telemetry not sent: %s", err)
