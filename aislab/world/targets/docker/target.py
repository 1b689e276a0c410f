"""Docker target: every lab host is a container on an internal lab network, started through
testcontainers.

Each host is a holder container that owns the host's address (like a Kubernetes pod's pause
container); the programs on a host (a mock, a proxy, the service, the witness beside it) are
containers joined to its network namespace. The service can so be restarted while the
witness keeps watching, and the witness's plumbing is applied once, from this machine, in the
holder's namespace. Nothing is reaped for us (no Ryuk here): everything is labelled with the
lab's slot, and teardown, or the next start after a crash, removes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from aislab.world.targets.base import HOSTS, INFRASTRUCTURE, SERVICE_HOSTS, LabError, LabProcess, Sandbox, Target, claim_slot
from aislab.world.targets.docker import firewall, images
from aislab.world.targets.plumbing import egress_witness_plumbing

# The reaper's image cannot be pulled without a registry; the harness cleans up itself.
testcontainers_config.ryuk_disabled = True
LABEL = "org.aislab.world.lab"
PROJECT_IN_IMAGE = "/opt/aislab"


def preflight() -> docker.DockerClient:
    if os.geteuid() != 0:
        raise LabError("the docker target needs root: it closes the lab network with host iptables rules and "
                       "enters the service's network namespace with nsenter; run as root (CI does)")
    for tool, package in (("iptables", "iptables"), ("nsenter", "util-linux"), ("ip", "iproute2"), ("apt-get", "apt")):
        if shutil.which(tool) is None:
            raise LabError(f"the docker target needs `{tool}` (Debian package {package})")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        raise LabError(f"the docker target needs a running Docker engine ({err}); "
                       "`make docker-engine` installs docker.io and starts dockerd") from None
    return client


def leftover_slots(client: docker.DockerClient) -> set[int]:
    """Slots of which labelled containers, networks or firewall rules are still there."""
    tags = [(c.attrs.get("Labels") or {}).get(LABEL, "") for c in labelled(client, LABEL)]
    tags += [n.attrs.get("Labels", {}).get(LABEL, "") for n in client.networks.list(filters={"label": LABEL})]
    tags += firewall.tags("aislab-d")
    return {int(t.removeprefix("aislab-d")) for t in tags if t.removeprefix("aislab-d").isdigit()}


def labelled(client: docker.DockerClient, label: str) -> list:
    """The containers with `label`, as the list call saw them (id, labels), without inspecting
    each: other labs' short-lived containers (a probe, a program that ended) go while we look,
    and docker-py's full listing fails on the first that went (404 on its inspect)."""
    return client.containers.list(all=True, filters={"label": label}, sparse=True)


def release_endpoints(network) -> None:
    """Disconnect the network's containers one at a time. The engine counts a network's
    endpoints with a read-modify-write that loses updates made side by side: containers removed
    in parallel left a network it counted endpoints on with none there, which it then refused to
    remove until restarted (a CI failure; moby/moby#42119)."""
    network.reload()  # a listing leaves the containers out
    for container_id in network.attrs.get("Containers") or {}:
        try:
            network.disconnect(container_id, force=True)
        except docker.errors.NotFound:  # gone meanwhile
            pass


def remove_network(network) -> None:
    try:
        network.remove()
    except docker.errors.APIError as err:
        if "active endpoints" not in str(err.explanation):
            raise
        network.reload()
        left = sorted(ep.get("Name", cid) for cid, ep in (network.attrs.get("Containers") or {}).items())
        if left:
            raise LabError(f"cannot remove the lab network {network.name}: still attached: {', '.join(left)}") from None
        raise LabError(f"the Docker engine counts endpoints on the lab network {network.name} though none is left "
                       f"(its count drifted, moby/moby#42119); only an engine restart clears it: stop dockerd, "
                       f"then make docker-engine") from None


class ContainerProcess(LabProcess):
    """A program run as a container. A thread copies its output to the log file as it comes,
    notices the READY line, and once the container exits records its code and removes it."""

    def __init__(self, name: str, container: DockerContainer, log: Path, announces: bool):
        self.name, self.log = name, log
        self.container = container.get_wrapped_container()
        self._announces = announces
        self._ready = threading.Event()
        self._exited = threading.Event()
        self.returncode: int | None = None
        threading.Thread(target=self._pump, name=f"logs-{name}", daemon=True).start()

    def _pump(self) -> None:
        partial = b""  # the unfinished last line, while a READY line is still awaited
        try:
            with self.log.open("ab") as fh:
                for chunk in self.container.logs(stream=True, follow=True):
                    try:
                        fh.write(chunk)
                        fh.flush()
                    except OSError:  # its log's space is full: the rest is not kept, the program still watched
                        pass
                    if self._announces and not self._ready.is_set():
                        *lines, partial = (partial + chunk).split(b"\n")
                        if b"READY" in lines:
                            self._ready.set()
            self.returncode = self.container.wait()["StatusCode"]
        except docker.errors.APIError as err:  # removed under us (teardown of a crashed lab)
            self.returncode = -1
            with self.log.open("a") as fh:
                fh.write(f"[lab] lost the container: {err}\n")
        finally:
            try:
                self.container.remove(force=True)
            except docker.errors.APIError:
                pass
            self._exited.set()

    def wait(self, timeout: float | None) -> int | None:
        return self.returncode if self._exited.wait(timeout) else None

    def signal(self, sig: int) -> None:
        try:
            self.container.kill(signal=int(sig))
        except docker.errors.APIError:  # already gone
            pass

    def cpu_seconds(self) -> float:
        stats = self.container.stats(stream=False, one_shot=True)
        return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9

    def await_ready_line(self, timeout: float) -> None:
        self._await_ready_event(self._ready, self._exited, timeout)


class DockerTarget(Target):
    name = "docker"
    python = "python"
    project = PROJECT_IN_IMAGE

    def __init__(self, slot: int, lock_fd: int | None, client: docker.DockerClient):
        super().__init__(slot, lock_fd)
        self.client = client
        self.tag = f"aislab-d{slot}"
        self.bridge = f"aisd{slot}"
        self.subnet = f"10.232.{slot}"
        self.network: Network | None = None
        self.holders: dict[str, DockerContainer] = {}
        self.images: dict[str, str] = {}

    @classmethod
    def acquire(cls) -> "DockerTarget":
        client = preflight()
        slot, fd = claim_slot("docker", lambda n: cls(n, None, client)._remove_leftovers(), lambda: leftover_slots(client))
        return cls(slot, fd, client)

    @property
    def etc(self) -> Path:
        """The hosts' /etc/hosts and resolv.conf, readable by every host."""
        return self.dirs.public / "docker-etc"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def process_env(self) -> dict[str, str]:
        return {}  # the image's own PATH and locale

    # --- bring-up ----------------------------------------------------------------------
    def create(self) -> None:
        t0 = time.monotonic()
        self.images = images.ensure_images(log=lambda m: None)
        self.timings["images"] = time.monotonic() - t0
        self.etc.mkdir(exist_ok=True)
        (self.etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 service\n" + "".join(f"{self.address(h)} {h}.lab\n" for h in HOSTS))
        (self.etc / "resolv.conf").write_text(f"nameserver {self.address('dns')}\noptions timeout:1 attempts:1\n")
        self.network = Network(docker_network_kw={
            "driver": "bridge",
            "internal": True,
            "ipam": IPAMConfig(pool_configs=[IPAMPool(subnet=f"{self.subnet}.0/24", gateway=self.address("harness"))]),
            "options": {"com.docker.network.bridge.name": self.bridge},
            "labels": {LABEL: self.tag},
        }).create()
        firewall.close(self.bridge, f"{self.subnet}.0/24", self.tag)
        hosts = [h for h in HOSTS if h != "harness"]
        with ThreadPoolExecutor(len(hosts)) as pool:
            for host, holder in zip(hosts, pool.map(self._holder, hosts)):
                self.holders[host] = holder
        for host in SERVICE_HOSTS:
            pid = self.holders[host].get_wrapped_container().attrs["State"]["Pid"]
            egress_witness_plumbing(["nsenter", "-t", str(pid), "-n"], [self.address(h) for h in INFRASTRUCTURE])
        self.timings["containers"] = time.monotonic() - t0 - self.timings["images"]

    def _holder(self, host: str) -> DockerContainer:
        holder = DockerContainer(self.images["lab"]).with_command(["sleep", "infinity"]).with_name(f"{self.tag}-{host}")
        holder.with_kwargs(
            labels={LABEL: self.tag}, hostname=host, network=self.network.name,
            networking_config={self.network.name: EndpointConfig(self.client.api._version, ipv4_address=self.address(host))},
        )
        holder.start()
        holder.get_wrapped_container().reload()  # for its PID
        return holder

    # --- programs on hosts -------------------------------------------------------------
    def _container(self, host: str, command: list[str] | None, env: dict[str, str], image: str | None,
                   net_admin: bool, sandbox: Sandbox | None = None, background: bool = False) -> DockerContainer:
        c = DockerContainer(image or self.images["lab"])
        if command:
            c.with_command(command)
        c.with_envs(**env)
        if sandbox is None:  # a lab program: the lab's directories
            c.with_volume_mapping(str(self.dirs.root), str(self.dirs.root), "rw")
        else:  # the service: its own directory, the public one, its own /tmp; never the lab's state
            c.with_volume_mapping(str(sandbox.dirs.service), str(sandbox.dirs.service), "rw")
            c.with_volume_mapping(str(sandbox.dirs.public), str(sandbox.dirs.public), "ro")
            c.with_volume_mapping(str(sandbox.private_tmp), "/tmp", "rw")
            for kept in (Path(k) for k in sandbox.keep if Path(k).exists()):  # what it runs from (driver: keep_in_sight)
                c.with_volume_mapping(str(kept), str(kept), "ro")
        c.with_volume_mapping(str(self.etc / "hosts"), "/etc/hosts", "ro")
        c.with_volume_mapping(str(self.etc / "resolv.conf"), "/etc/resolv.conf", "ro")
        c.with_kwargs(
            labels={LABEL: self.tag}, network=None, network_mode=f"container:{self.holders[host].get_container_id()}",
            # A real init: SIGTERM reaches the program even where it does not handle it as PID 1.
            init=True, cap_add=["NET_ADMIN"] if net_admin else None,
            # The service runs as its own user when it is a command of the lab image; an image
            # keeps the user it was built for.
            user=f"{sandbox.uid}:{sandbox.uid}" if sandbox and sandbox.uid is not None and image is None else None,
            cpu_shares=2 if background else None,  # the CPU only when the scenarios leave it idle
        )
        return c

    def spawn(self, host: str, command: list[str] | None, env: dict[str, str], log: Path, announces: bool = False,
              image: str | None = None, net_admin: bool = False, sandbox: Sandbox | None = None,
              background: bool = False) -> ContainerProcess:
        if image is not None:
            self._require_image(image)
        container = self._container(host, command, env, image, net_admin, sandbox, background)
        try:
            container.start()
        except docker.errors.DockerException as err:
            raise LabError(f"cannot start {image or command} on {host}: {err}") from None
        proc = ContainerProcess(host, container, log, announces)
        self.processes.append(proc)
        return proc

    def may_run_as(self, uid: int, command: list[str]) -> bool:
        return True  # the lab image is readable by every user

    def _require_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            self.client.images.pull(image)
        except docker.errors.DockerException as err:
            raise LabError(f"image {image} is not in the local Docker engine and cannot be pulled ({err}); "
                           f"load it first: docker load -i FILE.tar") from None

    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None,
               sandbox: Sandbox | None = None) -> subprocess.CompletedProcess:
        # At the timeout the container is killed: everything it started goes with it.
        container = self._container(host, command, env or {}, None, False, sandbox).start().get_wrapped_container()
        try:
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except requests.exceptions.RequestException:  # the docker client's read timeout
                container.kill(signal=signal.SIGKILL)
                raise subprocess.TimeoutExpired(command, timeout) from None
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
            return subprocess.CompletedProcess(command, code, out, err)
        finally:
            container.remove(force=True)

    def _remove_leftovers(self) -> None:
        """Everything labelled with this slot: containers, the network, the firewall rules."""
        def remove(container) -> None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass

        networks = self.client.networks.list(filters={"label": f"{LABEL}={self.tag}"})
        for network in networks:
            release_endpoints(network)
        containers = labelled(self.client, f"{LABEL}={self.tag}")
        if containers:
            with ThreadPoolExecutor(len(containers)) as pool:
                list(pool.map(remove, containers))
        for network in networks:
            remove_network(network)
        firewall.remove(self.tag)
