"""Requests a mock holds without answering (a slow identity provider, a control plane that does
not answer): each until the lab releases them all or its client gives up, whichever comes first.
The lab's release returns only once every held request is recorded, so the harness reads a
complete record."""

from __future__ import annotations

import asyncio

from starlette.requests import Request


class Holds:
    def __init__(self):
        self._release = asyncio.Event()
        self._open: set[asyncio.Future] = set()

    def enter(self) -> asyncio.Future:
        """One more request held (until `leave`, once it is recorded)."""
        ticket = asyncio.get_running_loop().create_future()
        self._open.add(ticket)
        return ticket

    def leave(self, ticket: asyncio.Future) -> None:
        ticket.set_result(None)
        self._open.discard(ticket)

    async def wait(self, request: Request) -> str:
        """Hold until released ("released") or the client disconnects ("abandoned")."""
        async def client_gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        waits = [asyncio.ensure_future(self._release.wait()), asyncio.ensure_future(client_gone())]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return "released" if waits[0] in done else "abandoned"
        finally:
            for w in waits:
                w.cancel()

    async def release(self) -> int:
        """Let every held request go; returns, once each is recorded, how many there were."""
        held = len(self._open)
        self._release.set()
        if self._open:
            await asyncio.gather(*self._open)
        self._release = asyncio.Event()
        return held
