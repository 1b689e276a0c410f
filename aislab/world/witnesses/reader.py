"""The harness's side of the recording hosts: marks (a scenario's window), the whole life, and
drains (waiting until what has begun to be recorded is complete)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable

import httpx

from aislab.world.targets.base import LabError
from aislab.world.witnesses.catcher import send_sentinel
from aislab.world.witnesses.records import ADMIN_HEADER

# Every host that keeps a record, and what it records.
RECORDING_HOSTS = {
    "controlplane": "every control-plane request (the journal)",
    "llm": "every request to the lab's LLM",
    "provider": "every request to the third-party LLM provider",
    "witness": "every attempt to leave the service's host (TCP, UDP, IPv4, IPv6)",
    "packets": "every other packet the service's host sent (ICMP, raw IP) and every TCP attempt to a lab host",
    "outside": "everything that reached the outside world",
    "dns": "every DNS query",
    "idp": "every request to the identity provider",
}


def witness_host(service_host: str) -> str:
    """The recording host of the egress witness beside the service on `service_host`."""
    return "witness" if service_host == "service" else f"witness:{service_host}"


class WitnessReader:
    def __init__(self, http: httpx.Client, url_of: Callable[[str], str], secret_of: Callable[[str], str]):
        self.http = http
        self.url_of = url_of
        self.secret_of = secret_of
        self.marks = dict.fromkeys(RECORDING_HOSTS, 0)
        self.pool = ThreadPoolExecutor(len(RECORDING_HOSTS), thread_name_prefix="records")

    def _get(self, host: str, since: int) -> dict:
        try:
            response = self.http.get(f"{self.url_of(host)}/_lab/records", params={"since": since},
                                     headers={ADMIN_HEADER: self.secret_of(host)})
        except httpx.TransportError as err:
            raise LabError.silent(host, err) from None
        if response.status_code != 200:
            raise LabError(f"reading the records of {host} failed: {response.status_code} {response.text[:300]}")
        return response.json()

    def head(self, host: str) -> int:
        """The mark that a window opened now would start from."""
        return self._get(host, 1 << 62)["next"]

    def heads(self, hosts) -> dict[str, int]:
        """The marks of several hosts, asked of them all at once (they answer independently)."""
        hosts = list(hosts)
        return dict(zip(hosts, self.pool.map(self.head, hosts)))

    def forget(self, program: str) -> None:
        """A recording program started afresh keeps nothing of before: its marks start over."""
        for host in ("witness", "packets") if program == "witness" else (program,):
            if host in self.marks:
                self.marks[host] = 0

    def mark_all(self) -> None:
        """Start a new window on every host (nothing is forgotten: the life stays readable)."""
        self.marks.update(self.heads(RECORDING_HOSTS))

    def since(self, host: str, mark: int) -> list[dict]:
        """What `host` recorded from `mark` on (the harness's own drain sentinels left out)."""
        return [r for r in self._get(host, mark)["records"] if "sentinel" not in r]

    def since_mark(self, host: str) -> list[dict]:
        return self.since(host, self.marks[host])

    def whole_life(self, host: str) -> list[dict]:
        return self.since(host, 0)

    def drain(self, witness_address: tuple[str, int], witness: str = "witness", timeout: float = 5.0) -> None:
        """Wait until every connection the service made so far is completely recorded: a
        sentinel queued behind them on the witness proves they were all accepted, and then
        nothing may be pending anywhere (its packet witness, the outside world)."""
        ident, head = uuid.uuid4().hex, self.head(witness)
        packets = witness.replace("witness", "packets", 1)
        send_sentinel(witness_address, ident)
        deadline = time.monotonic() + timeout
        while True:
            records = self._get(witness, head)
            seen = any(r.get("sentinel") == ident for r in records["records"])
            pending = {witness: records["pending"], **{h: self._get(h, 1 << 62)["pending"] for h in (packets, "outside")}}
            if seen and not any(pending.values()):
                return
            if time.monotonic() >= deadline:
                raise LabError(f"the witnesses did not finish recording within {timeout:.0f}s (sentinel seen: {seen}, pending: {pending})")
            threading.Event().wait(0.02)  # back-off between looks
