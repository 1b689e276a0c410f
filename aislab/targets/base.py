"""The lab topology every backend builds, and the process handle they share."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path

# One topology: the hosts and their address suffix on the lab /24.
HOSTS = {
    "harness": 1, "idp": 10, "controlplane": 11, "llm": 12, "service": 20,
    "tinyproxy": 30, "squid": 31, "provider": 40, "outside": 41, "dns": 53,
}
# Main (or admin) port of each Python lab host; the witness lives on the service's host.
PORTS = {"idp": 5556, "controlplane": 8090, "llm": 8000, "provider": 80, "outside": 8080, "dns": 8080, "witness": 15000}
MOCKS = ("idp", "controlplane", "llm", "provider", "outside", "dns")
# Hosts the service may talk to directly (in-cluster infrastructure); everything else it tries
# is redirected to the egress witness.
INFRASTRUCTURE = ("idp", "controlplane", "llm", "dns", "tinyproxy", "squid")
WITNESS_TCP, WITNESS_UDP = 15001, 15002
# Names of the outside world as the lab's DNS answers them.
OUTSIDE_NAMES = {"api.openai.com": "provider", "llm.provider.example": "provider"}


class LabError(RuntimeError):
    """The lab itself failed (never a verdict about the service)."""


@dataclass
class HostProcess:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            with self.log.open(errors="replace") as fh:
                return "".join(deque(fh, lines))
        except FileNotFoundError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        """CPU time the process itself has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 3.0) -> None:
        stop_all([self], grace)


    def await_ready_line(self, timeout: float) -> None:
        """Wait for the READY line a mock host prints once its socket listens."""
        deadline = time.monotonic() + timeout
        stream = self.popen.stdout
        with selectors.DefaultSelector() as sel:
            sel.register(stream, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    break
                line = stream.readline()
                if line.strip() == b"READY":
                    return
                if not line:  # EOF: the process died before binding
                    self.popen.wait()
                    raise LabError(f"lab host {self.name} exited ({self.popen.returncode}) before it was ready:\n{self.tail()}")
        raise LabError(f"lab host {self.name} not ready within {timeout:.0f}s:\n{self.tail()}")


class Target(ABC):
    """A backend: builds the hosts, runs processes on them, tears everything down."""

    name: str

    @abstractmethod
    def create(self) -> None: ...

    @abstractmethod
    def address(self, host: str) -> str: ...

    @abstractmethod
    def spawn(self, host: str, command: list[str], env: dict[str, str], log: Path, cwd: Path, announces: bool = False) -> HostProcess: ...

    @abstractmethod
    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a short command on a lab host (the witness's positive-control probes)."""

    @abstractmethod
    def destroy(self) -> None: ...


def make_target(name: str, state_root: Path) -> Target:
    if name == "local":
        from aislab.targets.local import LocalTarget

        return LocalTarget.acquire(state_root)
    if name in ("docker", "kind"):
        raise LabError(f"target {name!r} is not built yet (see the issue tracker); use --target local")
    raise LabError(f"unknown target {name!r}; choose local, docker or kind")


def stop_all(processes: list[HostProcess], grace: float = 1.0) -> None:
    """SIGTERM everything at once, wait one shared grace period, then SIGKILL what is left."""
    running = [p for p in processes if p.alive()]
    for p in running:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.signal(signal.SIGKILL)
            p.popen.wait()
