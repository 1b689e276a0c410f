"""Local target: every lab host is a network namespace on a bridge that lives in its own
namespace. The service's host has a route to the lab /24 only, so nothing can leave it.

Labs run side by side in numbered slots (10.231.<slot>.0/24, names `ais<slot>-*`); a slot is
owned through an flock, so a slot whose lock is free but whose namespaces exist was left by a
killed run and is cleaned before reuse.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from aislab.targets.base import HOSTS, INFRASTRUCTURE, WITNESS_TCP, WITNESS_UDP, HostProcess, LabError, Target, stop_all

SLOTS = 32
LOCK_DIR = Path("/run/aislab")


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
    for tool, package in (("ip", "iproute2"), ("iptables-restore", "iptables")):
        if shutil.which(tool) is None:
            raise LabError(f"the local target needs `{tool}` (Debian package {package}): apt-get install {package}")
    if os.geteuid() != 0:
        raise LabError(
            "the local target needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces "
            "with `ip netns add`; run as root (CI does), e.g. `sudo make conformance`"
        )


class LocalTarget(Target):
    name = "local"

    def __init__(self, slot: int, lock_fd: int):
        self.slot = slot
        self._lock_fd = lock_fd
        self.prefix = f"ais{slot}"
        self.subnet = f"10.231.{slot}"
        self.switch = f"{self.prefix}-sw"
        self.processes: list[HostProcess] = []

    @classmethod
    def acquire(cls, _state_root: Path) -> "LocalTarget":
        preflight()
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOTS):
            fd = os.open(LOCK_DIR / f"slot{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            target = cls(slot, fd)
            target._remove_leftovers()
            return target
        raise LabError(f"all {SLOTS} local lab slots are in use (see `ip netns list`)")

    def netns(self, host: str) -> str:
        return f"{self.prefix}-{host[:12]}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def create(self) -> None:
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
        self._egress_witness_plumbing()

    def _egress_witness_plumbing(self) -> None:
        """Give the service's host a default route into a dead end and redirect every attempt
        that is not to lab infrastructure to the witness, which records it. IPv6 is off there,
        so no attempt can slip past over v6."""
        ns = self.netns("service")
        _ip_batch(["link add dead0 type veth peer name dead1", "link set dead0 up", "link set dead1 up",
                   "route add default dev dead0"], ns)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True, capture_output=True)
        allowed = ["-A OUTPUT -d 127.0.0.0/8 -j RETURN"] + [f"-A OUTPUT -d {self.address(h)}/32 -j RETURN" for h in INFRASTRUCTURE]
        # TCP: REDIRECT, the witness reads SO_ORIGINAL_DST. UDP: REDIRECT would hide the original
        # destination, so mark it, route it to lo and TPROXY it (IP_RECVORIGDSTADDR keeps it).
        rules = ["*nat", *allowed, f"-A OUTPUT -p tcp -j REDIRECT --to-ports {WITNESS_TCP}", "COMMIT",
                 "*mangle", *allowed, "-A OUTPUT -p udp -j MARK --set-mark 1",
                 f"-A PREROUTING -i lo -p udp -m mark --mark 1 -j TPROXY --on-ip 127.0.0.1 --on-port {WITNESS_UDP} --tproxy-mark 1",
                 "COMMIT", ""]
        _ip_batch(["rule add fwmark 1 lookup 100", "route add local 0.0.0.0/0 dev lo table 100"], ns)
        proc = subprocess.run(["ip", "netns", "exec", ns, "iptables-restore"], input="\n".join(rules), capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"iptables-restore in {ns} failed: {proc.stderr.strip()}")

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

    def spawn(self, host: str, command: list[str], env: dict[str, str], log: Path, cwd: Path, announces: bool = False) -> HostProcess:
        logfh = log.open("ab")
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(host), *command],
            # A mock announces READY on stdout; anything else writes all its output to its log.
            stdout=subprocess.PIPE if announces else logfh,
            stderr=logfh,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() reaches its children too
        )
        logfh.close()
        proc = HostProcess(host, popen, log)
        self.processes.append(proc)
        return proc

    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.netns(host), *command], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def destroy(self) -> None:
        stop_all(self.processes)
        self.processes.clear()
        self._remove_leftovers()
        self.release()

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

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
