"""Local target: every lab host is a network namespace on a bridge that lives in its own
namespace. The service's host has a route to the lab /24 only, so nothing can leave it.

Labs run side by side in numbered slots (10.231.<slot>.0/24, names `ais<slot>-*`); a slot is
owned through an flock, so a slot whose lock is free but whose namespaces exist was left by a
killed run and is cleaned before reuse.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from aislab import PROJECT
from aislab.world.targets.base import HOSTS, INFRASTRUCTURE, SERVICE_HOSTS, HostProcess, LabError, Sandbox, Target, claim_slot
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


# Docker's default capability set (what a container, or a pod, gets unless told otherwise).
CONTAINER_CAPS = ",".join(f"+{c}" for c in ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
                                            "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write"))


def sandboxed(command: list[str], sandbox: Sandbox) -> list[str]:
    """The command in its own mount and host-name namespaces: its own /tmp, a fresh /run (no
    Docker socket, no lab locks), the lab's state directory replaced by an empty one, its own
    host name, and its own user where it may."""
    dirs = sandbox.dirs
    # What the service runs from stays in sight even where it lies under /tmp (a checkout there):
    # set aside under the new /run, then put back into the private /tmp at the same path.
    kept = [Path(p) for p in sandbox.keep if Path(p).is_relative_to("/tmp")]
    q = shlex.quote
    setup = " && ".join([
        f"hostname {sandbox.hostname}",
        "mount -t tmpfs -o mode=0755,size=1m aislab-run /run",
        *(f"mkdir -p /run/kept/{i} && mount --bind {q(str(p))} /run/kept/{i}" for i, p in enumerate(kept)),
        f"mount --bind {q(str(sandbox.private_tmp))} /tmp",
        *(f"mkdir -p {q(str(p))} && mount --bind /run/kept/{i} {q(str(p))}" for i, p in enumerate(kept)),
        f"mount -t tmpfs -o mode=0700,size=1m aislab-hidden {q(str(dirs.state))}",
    ])
    # The capabilities a container gets by default, no more: its own user keeps CAP_NET_RAW (raw
    # and ICMP sockets, as in Docker and Kubernetes, so what it could do in a pod it can do here,
    # under the witnesses' eyes); root (when its command allows no other user) is bounded to the
    # same default set, so it cannot rewrite its host's firewall around the witness.
    user = (["setpriv", f"--bounding-set=-all,{CONTAINER_CAPS}", "--"] if sandbox.uid is None else
            ["setpriv", f"--reuid={sandbox.uid}", f"--regid={sandbox.uid}", "--clear-groups",
             "--inh-caps=+net_raw", "--ambient-caps=+net_raw", "--"])
    return ["unshare", "--mount", "--uts", "--propagation", "private", "--",
            "sh", "-c", f'{setup} && exec "$@"', "sandbox", *user, *command]


def leftover_slots() -> set[int]:
    """Slots of which namespaces or the harness's veth are still there."""
    names = _ip("netns", "list", check=False).stdout.split() + _ip("-o", "link", "show", check=False).stdout.split()
    return {int(m[1]) for n in names if (m := re.match(r"ais(\d+)-", n))}


def preflight() -> None:
    """Say exactly what is missing instead of failing deep inside `ip`."""
    for tool, package in (("ip", "iproute2"), ("iptables-restore", "iptables"), ("tinyproxy", "tinyproxy"), ("squid", "squid"),
                          ("unshare", "util-linux"), ("setpriv", "util-linux")):
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

    def __init__(self, slot: int, lock_fd: int | None):
        super().__init__(slot, lock_fd)
        self.prefix = f"ais{slot}"
        self.subnet = f"10.231.{slot}"
        self.switch = f"{self.prefix}-sw"

    @classmethod
    def acquire(cls) -> "LocalTarget":
        preflight()
        slot, fd = claim_slot("local", lambda n: cls(n, None)._remove_leftovers(), leftover_slots)
        return cls(slot, fd)

    def netns(self, host: str) -> str:
        return f"{self.prefix}-{host[:12]}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def process_env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}

    def create(self) -> None:  # one filesystem: the lab's directories are already everywhere
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
        for host in SERVICE_HOSTS:
            egress_witness_plumbing(["ip", "netns", "exec", self.netns(host)], [self.address(h) for h in INFRASTRUCTURE])

    def _add_host(self, host: str) -> None:
        ns = self.netns(host)
        _ip("netns", "add", ns)
        _ip("-n", self.switch, "link", "add", host[:15], "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip_batch([f"link set {host[:15]} master br0", f"link set {host[:15]} up"], self.switch)
        # Only the connected lab /24: no default route, so every outside connect fails at once.
        _ip_batch(["link set lo up", f"addr add {self.address(host)}/24 dev eth0", "link set eth0 up"], ns)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        # A host knows its own name (an ordinary server looks it up), and every lab host's; every
        # instance of the service is called `service` (its sandbox's host name).
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {'service' if host in SERVICE_HOSTS else host}\n"
                                   + "".join(f"{self.address(h)} {h}.lab\n" for h in HOSTS))
        (etc / "resolv.conf").write_text(f"nameserver {self.subnet}.53\noptions timeout:1 attempts:1\n")

    def spawn(self, host: str, command: list[str] | None, env: dict[str, str], log: Path, announces: bool = False,
              image: str | None = None, net_admin: bool = False, sandbox: Sandbox | None = None,
              background: bool = False) -> HostProcess:
        if image is not None or command is None:
            raise LabError(f"the local target runs commands; to run the image {image} use --target docker")
        logfh = log.open("ab")
        popen = subprocess.Popen(
            ["nice", "-n", "19", *self._on(host, command, sandbox)] if background else self._on(host, command, sandbox),
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

    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None,
               sandbox: Sandbox | None = None) -> subprocess.CompletedProcess:
        popen = subprocess.Popen(self._on(host, command, sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env, cwd=self.project, start_new_session=True)
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)  # everything it started goes with it
            popen.communicate()
            raise
        return subprocess.CompletedProcess(command, popen.returncode, out, err)

    def _on(self, host: str, command: list[str], sandbox: Sandbox | None) -> list[str]:
        return ["ip", "netns", "exec", self.netns(host), *(sandboxed(command, sandbox) if sandbox else command)]

    def may_run_as(self, uid: int, command: list[str]) -> bool:
        """Whether that user can execute the program (through every symlink and directory)."""
        program = shutil.which(command[0]) or command[0]
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        return subprocess.run([*as_user, "test", "-x", program], capture_output=True).returncode == 0

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
