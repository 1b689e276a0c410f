"""Local target: every lab host is a network namespace on a bridge that lives in its own
namespace. The service's host has a route to the lab /24 only, so nothing can leave it.

Labs run side by side in numbered slots (10.231.<slot>.0/24, names `ais<slot>-*`); a slot is
owned through an flock, so a slot whose lock is free but whose namespaces exist was left by a
killed run and is cleaned before reuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from aislab import PROJECT
from aislab.world.targets.base import HOSTS, INFRASTRUCTURE, HostProcess, LabError, Target, claim_slot
from aislab.world.targets.plumbing import egress_witness_plumbing


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _ip_batch(lines: list[str], netns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    proc = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}\n" + "\n".join(lines))


def preflight() -> None:
    """Say exactly what is missing instead of failing deep inside `ip`."""
    for tool, package in (("ip", "iproute2"), ("iptables-restore", "iptables"), ("tinyproxy", "tinyproxy"), ("squid", "squid")):
        if shutil.which(tool) is None:
            raise LabError(f"the local target needs `{tool}` (Debian package {package}): apt-get install {package}")
    if os.geteuid() != 0:
        raise LabError(
            "the local target needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces "
            "with `ip netns add`; run as root (CI does), e.g. `sudo make conformance`"
        )


class LocalTarget(Target):
    name = "local"
    python = sys.executable
    project = str(PROJECT)

    def __init__(self, slot: int, lock_fd: int):
        super().__init__(lock_fd)
        self.slot = slot
        self.prefix = f"ais{slot}"
        self.subnet = f"10.231.{slot}"
        self.switch = f"{self.prefix}-sw"

    @classmethod
    def acquire(cls, _state_root: Path) -> "LocalTarget":
        preflight()
        slot, fd = claim_slot("local", lambda n: cls(n, None)._remove_leftovers())
        return cls(slot, fd)

    def netns(self, host: str) -> str:
        return f"{self.prefix}-{host[:12]}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def process_env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}

    def create(self, shared: Path) -> None:  # one filesystem: `shared` is already everywhere
        _ip("netns", "add", self.switch)
        _ip_batch(["link add br0 type bridge", "link set br0 up", "link set lo up"], self.switch)
        # The harness's own leg into the lab: lets pytest reach every host directly.
        hveth = f"{self.prefix}-h"
        _ip("link", "add", hveth, "type", "veth", "peer", "name", "harness", "netns", self.switch)
        _ip_batch([f"addr add {self.address('harness')}/24 dev {hveth}", f"link set {hveth} up"])
        _ip_batch(["link set harness master br0", "link set harness up"], self.switch)
        for host in HOSTS:
            if host != "harness":
                self._add_host(host)
        egress_witness_plumbing(["ip", "netns", "exec", self.netns("service")], [self.address(h) for h in INFRASTRUCTURE])

    def _add_host(self, host: str) -> None:
        ns = self.netns(host)
        _ip("netns", "add", ns)
        _ip("-n", self.switch, "link", "add", host[:15], "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip_batch([f"link set {host[:15]} master br0", f"link set {host[:15]} up"], self.switch)
        # Only the connected lab /24: no default route, so every outside connect fails at once.
        _ip_batch(["link set lo up", f"addr add {self.address(host)}/24 dev eth0", "link set eth0 up"], ns)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{self.address(h)} {h}.lab\n" for h in HOSTS)
        )
        (etc / "resolv.conf").write_text(f"nameserver {self.subnet}.53\noptions timeout:1 attempts:1\n")

    def spawn(self, host: str, command: list[str] | None, env: dict[str, str], log: Path, announces: bool = False,
              image: str | None = None, net_admin: bool = False) -> HostProcess:
        if image is not None or command is None:
            raise LabError(f"the local target runs commands; to run the image {image} use --target docker")
        logfh = log.open("ab")
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(host), *command],
            # A mock announces READY on stdout; anything else writes all its output to its log.
            stdout=subprocess.PIPE if announces else logfh,
            stderr=logfh,
            env=env,
            cwd=self.project,
            start_new_session=True,  # its own process group: stop() reaches its children too
        )
        logfh.close()
        proc = HostProcess(host, popen, log)
        self.processes.append(proc)
        return proc

    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.netns(host), *command], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def _remove_leftovers(self) -> None:
        listed = _ip("netns", "list", check=False).stdout.split("\n")
        names = [line.split()[0] for line in listed if line.startswith(self.prefix + "-")]
        for ns in names:
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        _ip("link", "del", f"{self.prefix}-h", check=False)
