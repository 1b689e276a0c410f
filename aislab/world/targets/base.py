"""The lab topology every backend builds, and the process handle they share."""

from __future__ import annotations

import fcntl
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from aislab.world.layout import LabDirs, lab_dirs, sweep_orphans

# One topology: the hosts and their address suffix on the lab /24.
HOSTS = {
    "harness": 1, "idp": 10, "controlplane": 11, "llm": 12, "service": 20, "idle": 21,
    "tinyproxy": 30, "squid": 31, "provider": 40, "outside": 41, "dns": 53,
}
# Hosts where the service under test runs, each with an egress witness beside it: the main one
# (every scenario's), and one where an instance is kept alive and idle for the whole run in the
# configuration the whole-life claims of the telemetry opt-out and the air gap are both about (an
# air-gapped install: DO_NOT_TRACK=true, the LLM inside, no proxy), so that what begins only after
# tens of seconds of life or idleness shows in any profile, at no wall time.
IDLE_HOSTS = ("idle",)
SERVICE_HOSTS = ("service", *IDLE_HOSTS)
# Main (or admin) port of each Python lab host; the witness lives on the service's host.
PORTS = {"idp": 5556, "controlplane": 8090, "llm": 8000, "provider": 80, "outside": 8080, "dns": 8080, "witness": 15000}
# Hosts whose admin endpoints (`/_lab/...`) have a port of their own, which stays up while the
# main one is taken down (the IdP's outage: nothing listens on its main port).
ADMIN_PORTS = {"idp": 5557}
MOCKS = ("idp", "controlplane", "llm", "provider", "outside", "dns")
# Hosts the service may talk to directly (in-cluster infrastructure); everything else it tries
# is redirected to the egress witness.
INFRASTRUCTURE = ("idp", "controlplane", "llm", "dns", "tinyproxy", "squid")
WITNESS_TCP, WITNESS_UDP = 15001, 15002
# Names of the outside world as the lab's DNS answers them.
OUTSIDE_NAMES = {"api.openai.com": "provider", "llm.provider.example": "provider"}
# The service's host is dual-stack: its own IPv6 address (on the dead end, unique to the host)
# and the IPv6 addresses it is given for outside names (documentation range: only its witness
# can receive them).
SERVICE_V6 = "fd00:a15::20"
# Where the witness's positive-control probe goes (documentation ranges: the witness answers
# them on the service's host, no packet can leave) and the domain of its canary names.
PROBE_V4, PROBE_V6, PROBE_DOMAIN = "198.51.100.77", "2001:db8:a15::77", "witness.example"
PROBE_PROTOCOL = 253  # an IP protocol number for experiments (RFC 3692): the raw-socket probe's
OUTSIDE_V6 = {"provider": "2001:db8:a15::40", "outside": "2001:db8:a15::41"}


SLOTS = 32
LOCK_DIR = Path("/run/aislab")
# Run in the service's sandbox with its command as arguments: says what of it cannot be run there.
SEEN_FROM_INSIDE = r"""
check() { [ -e "$2" ] || { echo "$1 absent $2"; return 1; }; [ "$1" = argument ] || [ -x "$2" ] || echo "$1 noexec $2"; }
program=$1; shift
case "$program" in
  /*) ;;
  *) found=$(command -v "$program") || { echo "program absent $program"; exit 0; }; program=$found ;;
esac
if check program "$program"; then
  read -r first < "$program" 2>/dev/null || first=
  case "$first" in "#!"*) set -- ${first#"#!"} "$@"; case "$1" in /*) check interpreter "$1" && shift ;; esac ;; esac
fi
for arg in "$@"; do case "$arg" in /*) check argument "$arg" ;; esac; done
exit 0
"""


class LabError(RuntimeError):
    """The lab itself failed (never a verdict about the service)."""

    @classmethod
    def silent(cls, host: str, err: Exception) -> "LabError":
        """A lab host that did not answer the harness, with where it was asked and the cause
        (refused, unreachable, timed out): enough to tell a dead program from a lost address."""
        try:
            where = f" at {err.request.url.host}:{err.request.url.port}"  # an httpx error knows its request
        except (AttributeError, RuntimeError):
            where = ""
        return cls(f"the lab's {host}{where} did not answer ({type(err).__name__}: {err}): it died or stalls")


@dataclass(frozen=True)
class Sandbox:
    """How the service under test runs: in its own mount (and host-name) namespace or its own
    container, with a private /tmp, none of the lab's secrets in sight (no state directory, no
    Docker socket, no lab locks), and as its own unprivileged user where its command allows."""

    dirs: LabDirs
    uid: int | None  # None: root (its command is not readable by another user; said in the report)
    keep: tuple[str, ...] = ()  # paths it runs from, kept in sight even under its own /tmp
    hostname: str = "service"
    tmp: Path | None = None  # its private /tmp (default: the main instance's, dirs.tmp)

    @property
    def private_tmp(self) -> Path:
        return self.tmp or self.dirs.tmp


class LabProcess(ABC):
    """A program running on a lab host: a process here, or a container."""

    name: str
    log: Path

    @abstractmethod
    def wait(self, timeout: float | None) -> int | None:
        """Its exit code once it has exited, or None if it still runs at the timeout."""

    @abstractmethod
    def signal(self, sig: int) -> None: ...

    @abstractmethod
    def cpu_seconds(self) -> float:
        """CPU time it has used (user + system)."""

    @abstractmethod
    def await_ready_line(self, timeout: float) -> None:
        """Wait for the READY line a mock host prints once its socket listens."""

    def alive(self) -> bool:
        return self.wait(0) is None

    def stalled(self) -> bool:
        """Whether it is stopped (SIGSTOP, a debugger) where the target can tell; else False."""
        return False

    def tail(self, lines: int = 40) -> str:
        try:
            with self.log.open(errors="replace") as fh:
                return "".join(deque(fh, lines))
        except FileNotFoundError:
            return "(no log)"

    def stop(self, grace: float = 3.0) -> None:
        stop_all([self], grace)

    def _await_ready_event(self, ready: threading.Event, exited: threading.Event, timeout: float) -> None:
        """For a program whose output a thread reads: until that thread saw READY, or the program
        ended first (its code in `self.returncode`)."""
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._not_ready(timeout, None)
            if exited.wait(min(left, 0.05)):
                if ready.is_set():
                    return
                raise self._not_ready(timeout, self.returncode)

    def _not_ready(self, timeout: float, code: int | None) -> LabError:
        if code is not None:
            return LabError(f"lab host {self.name} exited ({code}) before it was ready:\n{self.tail()}")
        return LabError(f"lab host {self.name} not ready within {timeout:.0f}s:\n{self.tail()}")


def await_ended(pids: list[int], timeout: float) -> None:
    """Until every process has ended (its pidfd becomes readable), or `timeout` has passed."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    # poll, not select: in a long-lived process (a test session) descriptors pass select's 1024.
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while fds and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                fds.remove(fd)
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


@dataclass
class HostProcess(LabProcess):
    name: str
    popen: subprocess.Popen
    log: Path

    def wait(self, timeout: float | None) -> int | None:
        if timeout is None:
            return self.popen.wait()
        code = self.popen.poll()
        if code is None and timeout > 0:
            # Its end is an event (its pidfd readable): Popen.wait(timeout) would poll in sleeps.
            await_ended([self.popen.pid], timeout)
            code = self.popen.poll()
        return code

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stalled(self) -> bool:
        try:
            return Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
        except (OSError, IndexError):
            return False

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def await_ready_line(self, timeout: float) -> None:
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
                    raise self._not_ready(timeout, self.popen.wait())
        raise self._not_ready(timeout, None)


class Target(ABC):
    """A backend: builds the hosts, runs programs on them, tears everything down.

    `python` and `project` are where the lab's own code lives for programs run on the hosts;
    `process_env` is what every program's environment starts from."""

    name: str
    python: str
    project: str
    subnet: str  # the first three octets: 10.23x.<slot>

    def __init__(self, slot: int, lock_fd: int | None) -> None:
        self.slot = slot
        self.dirs = lab_dirs(self.name, slot)
        self.processes: list[LabProcess] = []
        self.timings: dict[str, float] = {}
        self._lock_fd = lock_fd  # the slot's lock (claim_slot); None for a throwaway handle

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slot {self.slot}, {self.subnet}.0/24)"

    def release(self) -> None:
        """Give the slot up (destroy does it last; a crashed owner does it by dying)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @abstractmethod
    def create(self) -> None:
        """Build the hosts; the lab's directories (`self.dirs`) are visible on every lab host at
        the same paths (the service sees only its own and the public one)."""

    @abstractmethod
    def address(self, host: str) -> str: ...

    @abstractmethod
    def process_env(self) -> dict[str, str]: ...

    @abstractmethod
    def spawn(self, host: str, command: list[str] | None, env: dict[str, str], log: Path, announces: bool = False,
              image: str | None = None, net_admin: bool = False, sandbox: Sandbox | None = None,
              background: bool = False) -> LabProcess:
        """Start a program on a host. `image`: run that image (with `command` as its arguments, if
        any) instead of a command of the lab's own; `net_admin`: it may intercept traffic (the
        witness); `sandbox`: it is the service under test; `background`: it gets the CPU only
        when the scenarios leave it idle (the idle instance and its witness)."""

    @abstractmethod
    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None,
               sandbox: Sandbox | None = None) -> subprocess.CompletedProcess:
        """Run a short command on a lab host (the witness's positive-control probes, one-shot
        assistants); at the timeout it is killed with everything it started."""

    def unrunnable(self, command: list[str], sandbox: Sandbox) -> list[str]:
        """What stops `command` from running inside the service's sandbox, seen from inside it:
        its program (and a script's interpreter) missing, hidden or not executable, and any
        other absolute path it names that exists here but not there (a private /tmp hides what
        lies under the machine's)."""
        found = self.look_inside(command, sandbox)
        if found.returncode != 0:
            raise LabError(f"could not look into the service's sandbox: {found.stderr.strip()[-500:]}")
        problems = []
        for line in found.stdout.splitlines():
            role, kind, path = line.split(" ", 2)
            here = path.startswith("/") and Path(path).exists()
            if kind == "noexec":
                problems.append(f"the {role} {path} is not executable by the service's user inside its sandbox")
            elif here:  # there on this machine, not in the sandbox
                problems.append(f"the {role} {path} exists on this machine but not inside the service's sandbox"
                                + ("; paths under /tmp are private to the service (it gets a /tmp of its own): install it "
                                   "elsewhere, or list the path in the driver's service.keep_in_sight" if path.startswith("/tmp/") else ""))
            elif role != "argument":  # an argument that is no path anywhere is just an argument
                problems.append(f"the {role} {path} does not exist" + ("" if path.startswith("/") else " on the service's PATH"))
        return problems

    def look_inside(self, command: list[str], sandbox: Sandbox) -> subprocess.CompletedProcess:
        """SEEN_FROM_INSIDE run in the service's sandbox with `command` as its arguments."""
        return self.run_in("service", ["sh", "-c", SEEN_FROM_INSIDE, "preflight", *command], sandbox=sandbox, timeout=20)

    @abstractmethod
    def may_run_as(self, uid: int, command: list[str]) -> bool:
        """Whether a user other than root can run this command on the service's host."""

    def read_file(self, host: str, path: Path, offset: int = 0) -> bytes:
        """A file a program on `host` writes (a proxy's log), from `offset` on. Here the lab's
        directories are this machine's; a target whose hosts keep their own overrides it."""
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""

    def file_size(self, host: str, path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    def lab_network(self) -> str:
        """The lab's hosts' addresses, as a CIDR (who the accepting proxy serves)."""
        return f"{self.subnet}.0/24"

    def reach(self, address: str, port: int) -> tuple[str, int]:
        """Where the harness connects to reach `address:port` of a lab host: the address itself,
        unless the hosts are behind a relay (a cluster whose pods this machine cannot route to)."""
        return address, port

    def http_transport(self):
        """The harness's HTTP transport to the lab's hosts (None: httpx's own)."""
        return None

    def deploy_service_from_chart(self, deployment, container: str | None, overrides: dict, values) -> None:
        """Run the service as its chart deploys it (render, then run); a target without a
        cluster runs it with the chart's env alone (the driver's env, already taken from it)."""

    def details(self) -> dict | None:
        """What a reviewer should know of where the lab ran, beyond the target's name."""
        return None

    @abstractmethod
    def _remove_leftovers(self) -> None:
        """Remove everything this slot's lab made on the machine, also what a killed run left."""

    def destroy(self) -> None:
        stop_all(self.processes)
        self.processes.clear()
        self._remove_leftovers()
        self.dirs.remove()
        self.release()


TARGETS = ("local", "docker", "kubernetes", "kind")


def make_target(name: str, settings: dict | None = None) -> Target:
    """`settings`: the cluster targets' options (kubeconfig, context, image_registry,
    kind_cluster, keep_cluster)."""
    if name == "local":
        from aislab.world.targets.local import LocalTarget

        return LocalTarget.acquire()
    if name == "docker":
        from aislab.world.targets.docker import DockerTarget

        return DockerTarget.acquire()
    if name in ("kubernetes", "kind"):
        from aislab.world.targets.kubernetes import acquire

        return acquire(name, settings or {})
    raise LabError(f"unknown target {name!r}; choose {', '.join(TARGETS)}")


def preflight(name: str, settings: dict | None = None) -> None:
    """What can be told before any scenario runs: a cluster target's missing tool, kubeconfig,
    unreachable cluster or missing permission is a broken input (exit 1), never a verdict."""
    if name in ("kubernetes", "kind"):
        from aislab.world.targets.kubernetes import preflight as cluster_preflight

        cluster_preflight(name, settings or {})


def slot_lock(kind: str, slot: int) -> Path:
    return LOCK_DIR / f"{kind}-slot{slot}.lock"


def claim_slot(kind: str, on_claim, leftovers=lambda: set()) -> tuple[int, int]:
    """Labs of one kind run side by side in numbered slots, each owned through an flock, so a
    slot whose lock is free but whose leftovers exist was left by a killed run: `on_claim(slot)`
    cleans it. The slot claimed is cleaned before reuse, and so is every other free slot that
    `leftovers()` names (and the lab directories of every free slot: they hold keys), so one run
    after a crash leaves nothing of it behind, whichever slot it had. Returns (slot, lock fd)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for slot in range(SLOTS):
        fd = _try_lock(kind, slot)
        if fd is None:
            continue
        on_claim(slot)
        lab_dirs(kind, slot).remove()
        for other in sorted(set(leftovers()) - {slot}):
            held = _try_lock(kind, other)
            if held is not None:  # a live lab holds its lock: its things are its own
                try:
                    on_claim(other)
                finally:
                    os.close(held)
        sweep_orphans(kind, lambda n: slot_lock(kind, n))
        return slot, fd
    raise LabError(f"all {SLOTS} {kind} lab slots are in use (locks in {LOCK_DIR})")


def _try_lock(kind: str, slot: int) -> int | None:
    fd = os.open(slot_lock(kind, slot), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def stop_all(processes: list[LabProcess], grace: float = 1.0) -> None:
    """SIGTERM everything at once, wait one shared grace period, then SIGKILL what is left."""
    running = [p for p in processes if p.alive()]
    for p in running:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        if p.wait(max(0.0, deadline - time.monotonic())) is None:
            p.signal(signal.SIGKILL)
            p.wait(None)
