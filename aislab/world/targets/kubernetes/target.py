"""Kubernetes target: the lab's hosts as pods of one namespace per lab, through the official
`kubernetes` client (no kubectl for the target's own work).

- Every lab host is a pod that owns the host's address (the pause of a pod does what the docker
  target's holder container does). The pods exist before anything else, so the lab's files are
  written with their addresses and then delivered through the API (exec), and each program on
  a host (a mock, a proxy) is started in its pod with the harness following its output.
- The service's host is a pod per service instance: the service (from the driver, or the chart's
  pod template as the chart renders it) with the egress witness as a sidecar in its network
  namespace, the witness's plumbing applied by an init container (`plumbing.py`, as on every
  target). A restart is a new pod: the old one's service is stopped by the kubelet as in any
  cluster while its witness keeps recording (preStop), the harness drains it, and the new pod's
  witness starts from everything the old one recorded, so record numbers run on.
- Addresses are the pods' own: the service's changes with each instance (`address("service")`
  is the running one's).
- Nothing here relies on a NetworkPolicy or cluster DNS: the witness judges, and every pod's
  resolver is the lab's sinkhole.

The namespace carries the lab's slot and run; teardown deletes it, and the next run in that slot
deletes what a killed run left.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes.client import V1PodStatus
from kubernetes.client.rest import ApiException

from aislab.world.targets.base import (HOSTS, INFRASTRUCTURE, MOCKS, PORTS, LabError, LabProcess, Sandbox,
                                       Target, claim_slot)
from aislab.world.targets.kubernetes import manifests
from aislab.world.targets.kubernetes.cluster import Access, Cluster
from aislab.world.targets.kubernetes.delivery import Delivery, need_docker
from aislab.world.targets.kubernetes.relay import Relay, RelayTransport
from aislab.world.targets.kubernetes.manifests import (GATE_CONTAINER, HOST_CONTAINER, LABEL, MACHINE_LABEL, PODSIDE,
                                                       RUN_LABEL, SERVICE_CONTAINER, WITNESS_CONTAINER, Images)

PROJECT_IN_IMAGE = "/opt/aislab"
# Hosts whose programs run in one pod for the lab's life; the others are witnessed hosts (the
# service's), whose pods come and go with the service instance.
PROXY_HOSTS = ("tinyproxy", "squid")
POD_START_TIMEOUT = 90.0
NAMESPACE_GONE_TIMEOUT = 90.0
# What a witness keeps recording after the service's pod is told to go, at most.
WITNESS_HOLD = 120


def machine_id() -> str:
    """Short and stable per machine: labs of several machines can share one cluster."""
    try:
        raw = Path("/etc/machine-id").read_text().strip()
    except OSError:
        raw = os.uname().nodename
    return hashlib.sha256(raw.encode()).hexdigest()[:8]


def lab_tag(target: str, slot: int) -> str:
    """A lab's label and the rest of its namespace's name: this machine's, this target's, its slot."""
    return f"{machine_id()}-{target}-{slot}"


def leftover_slots(cluster: Cluster, target: str) -> set[int]:
    """Slots of this machine and target whose namespaces are still there."""
    prefix = f"{machine_id()}-{target}-"
    try:
        listed = cluster.core.list_namespace(label_selector=f"{MACHINE_LABEL}={machine_id()}").items
    except ApiException:
        return set()
    tags = [(n.metadata.labels or {}).get(LABEL, "") for n in listed]
    return {int(t.removeprefix(prefix)) for t in tags if t.startswith(prefix) and t.removeprefix(prefix).isdigit()}


def lab_hosts() -> list[str]:
    return [h for h in HOSTS if h != "harness" and (h in MOCKS or h in PROXY_HOSTS)]


def witnessed_hosts() -> list[str]:
    return [h for h in HOSTS if h != "harness" and h not in lab_hosts()]


@dataclass
class Settings:
    access: Access = field(default_factory=Access)
    image_registry: str | None = None
    kind_cluster: str | None = None  # images go there with `kind load`


class KubernetesTarget(Target):
    name = "kubernetes"
    python = "python"
    project = PROJECT_IN_IMAGE

    def __init__(self, slot: int, lock_fd: int | None, cluster: Cluster, settings: Settings):
        super().__init__(slot, lock_fd)
        self.cluster = cluster
        self.settings = settings
        self.machine = machine_id()
        self.tag = lab_tag(self.name, slot)
        self.namespace = f"aislab-{self.tag}"
        self.run_id = uuid.uuid4().hex[:12]
        self.subnet = "pods"
        self.labels = {LABEL: self.tag, MACHINE_LABEL: self.machine, RUN_LABEL: self.run_id}
        self.addresses: dict[str, str] = {}
        self.images: Images | None = None
        self.image_tags: dict[str, str] = {}
        self.delivery = self._delivery()
        self.witnessed: dict[str, WitnessedHost] = {}
        # How the harness reaches the pods: "direct" (this machine routes to the pod network: the
        # local cluster, kind here) or "relay" (through the lab's harness pod; any other cluster).
        self.access = os.environ.get("AISLAB_K8S_POD_ACCESS", "")
        self.relay: Relay | None = None
        self.chart: "ChartService | None" = None
        self.created: list[dict] = []  # every manifest this lab created (validated in the tests)
        self.additions: list[str] = []  # what the harness added to the service's pod (for the report)
        self._followers: list[threading.Event] = []

    def __repr__(self) -> str:
        return f"KubernetesTarget(slot {self.slot}, namespace {self.namespace}, {self.cluster.version})"

    @classmethod
    def acquire(cls, settings: Settings | None = None) -> "KubernetesTarget":
        settings = settings or Settings()
        need_docker()
        cluster = Cluster(settings.access)
        # Permissions are asked for the namespace of slot 0 (they are the same for every slot).
        cluster.check_permissions(f"aislab-{lab_tag(cls.name, 0)}")
        slot, fd = claim_slot(cls.name, lambda n: cls(n, None, cluster, settings)._remove_leftovers(),
                              lambda: leftover_slots(cluster, cls.name))
        return cls(slot, fd, cluster, settings)

    def _delivery(self) -> Delivery:
        from aislab.world.targets.kubernetes import local

        if self.settings.image_registry:
            return Delivery("registry", self.settings.image_registry)
        if self.settings.kind_cluster:
            return Delivery("kind", self.settings.kind_cluster)
        if self.cluster.server.rstrip("/") == f"https://127.0.0.1:{local.API_PORT}" and local.CONTAINERD_SOCK.exists():
            return Delivery("containerd")
        raise LabError(f"the lab's images are built here and cannot reach the cluster at {self.cluster.server}: give "
                       "--image-registry REGISTRY (the cluster pulls them from there), or use kind (--target kind) or the "
                       "local cluster")

    # --- addresses ---------------------------------------------------------------------------
    def address(self, host: str) -> str:
        if host in self.witnessed:
            return self.witnessed[host].address or "0.0.0.0"
        if host in self.addresses:
            return self.addresses[host]
        if host in witnessed_hosts():
            return "0.0.0.0"  # its first pod starts with its first program: until then, every address of it
        raise LabError(f"host {host} has no address (the lab is not created yet)")

    def process_env(self) -> dict[str, str]:
        return {}  # the image's own PATH and locale

    # --- bring-up ----------------------------------------------------------------------------
    def create(self) -> None:
        from aislab.world.targets.docker import images as docker_images

        t0 = time.monotonic()
        tags = docker_images.ensure_images(log=lambda m: None)
        self.image_tags = {"lab": tags["lab"], "reference": tags["reference"]}
        self.delivery.deliver([tags["lab"]])
        self.images = Images(self.delivery.ref(tags["lab"]), self.delivery.pull_policy)
        self.timings["images"] = time.monotonic() - t0
        self._namespace()
        dns = self._create_host_pods(["dns"], None)
        self.access = self.access or ("direct" if _routed(dns["dns"]) else "relay")
        others = [h for h in lab_hosts() if h != "dns"] + (["harness"] if self.access == "relay" else [])
        self._create_host_pods(others, dns["dns"])
        self.addresses.update(dns)
        if self.access == "relay":  # the harness's connections come from its own pod
            self.relay = Relay(self._exec_stream("host-harness"), PODSIDE)
        else:
            self.addresses["harness"] = self._harness_address(self.addresses["dns"])
        self.timings["pods"] = time.monotonic() - t0 - self.timings["images"]

    def _create(self, manifest: dict) -> dict:
        self.created.append(manifest)
        kind = manifest["kind"]
        try:
            if kind == "Namespace":
                return self.cluster.core.create_namespace(manifest)
            create = getattr(self.cluster.core, "create_namespaced_" + {"ServiceAccount": "service_account", "ConfigMap": "config_map"}.get(kind, kind.lower()))
            return create(self.namespace, manifest)
        except ApiException as err:
            raise LabError(f"the cluster refused {kind} {manifest['metadata'].get('name')}: {err.status} {err.reason}: "
                           f"{_message(err)}") from None

    def _namespace(self) -> None:
        self._await_namespace_gone()
        self._create(manifests.namespace(self.namespace, self.labels))
        # A pod made right after its namespace can fail ("No API token found for service account
        # default"): wait for the default service account's token.
        if not self.cluster.await_named(self.cluster.core.list_namespaced_service_account, "default",
                                        lambda a: a and (a.secrets or self._tokens_by_request()), 30, namespace=self.namespace):
            raise LabError(f"namespace {self.namespace}: its default service account got no token within 30s "
                           "(is the controller-manager running?)")

    def _tokens_by_request(self) -> bool:
        """Since Kubernetes 1.24 tokens are requested by the kubelet, not stored: nothing to wait for."""
        major, minor = (self.cluster.version.lstrip("v").split(".") + ["0"])[:2]
        return (int(major), int("".join(c for c in minor if c.isdigit()) or 0)) >= (1, 24)

    def _await_namespace_gone(self) -> None:
        last = []

        def gone(ns) -> bool:
            last[:] = [ns]
            if ns is not None:
                self._delete_namespace(self.namespace)  # again at each change: a pod made as it began to end
            return ns is None

        try:
            if self.cluster.await_named(self.cluster.core.list_namespace, self.namespace, gone, NAMESPACE_GONE_TIMEOUT):
                return
        except ApiException as err:
            raise LabError(f"cannot read namespace {self.namespace}: {err.status} {err.reason}") from None
        ns = last[0]
        finalizers = (ns.spec.finalizers if ns.spec else None) or []
        conditions = "; ".join(f"{c.type}: {c.message}" for c in (ns.status.conditions or []) if c.status == "True")
        pods = _unless_gone(lambda: self.cluster.core.list_namespaced_pod(self.namespace).items,
                            f"cannot list the pods of {self.namespace}", 404) or []
        left = ", ".join(f"{p.metadata.name} ({p.status.phase if p.status else '?'}, deleted "
                         f"{p.metadata.deletion_timestamp or 'not yet'})" for p in pods)
        raise LabError(f"namespace {self.namespace} is stuck {ns.status.phase} (finalizers {finalizers}; {conditions or 'no conditions'}; "
                       f"pods: {left or 'none'}): remove what blocks it (kubectl get all -n {self.namespace}) and run again")

    def _create_host_pods(self, hosts: list[str], dns_ip: str | None) -> dict[str, str]:
        for host in hosts:
            self._create(manifests.host_pod(host, self.images, self.dirs, self.labels, dns_ip, self.project))
        with ThreadPoolExecutor(len(hosts)) as pool:
            ips = dict(zip(hosts, pool.map(lambda h: self.await_pod(f"host-{h}", running=True), hosts)))
        self.addresses.update(ips)
        return ips

    def await_pod(self, name: str, running: bool = False, timeout: float = POD_START_TIMEOUT,
                  container: str | None = None) -> str:
        """The pod's address once it has one (and, with `running`, once its containers run, or
        `container` does). A pod that cannot start says why: its events and logs."""
        last = []

        def started(pod) -> str | None:
            if pod is None:
                raise LabError(f"pod {name} is gone")
            status = pod.status or V1PodStatus()  # none yet: not scheduled
            last[:] = [status]
            waiting = [s for s in (status.init_container_statuses or []) + (status.container_statuses or [])
                       if s.state and s.state.waiting and s.state.waiting.reason in BROKEN]
            if waiting:
                raise self._pod_failed(name, f"{waiting[0].name}: {waiting[0].state.waiting.reason}: {waiting[0].state.waiting.message}")
            if status.phase in ("Failed", "Succeeded"):
                raise self._pod_failed(name, f"the pod ended ({status.phase})")
            ready = status.pod_ip and (not running or status.phase == "Running")
            if ready and container:  # started: running, or already ended (its end is the caller's to tell)
                ready = any(s.name == container and s.state and (s.state.running or s.state.terminated)
                            for s in status.container_statuses or [])
            return status.pod_ip if ready else None

        if address := self.cluster.await_named(self.cluster.core.list_namespaced_pod, name, started, timeout, namespace=self.namespace):
            return address
        what = f"its container {container} did not start" if container else f"not {'running' if running else 'given an address'}"
        raise self._pod_failed(name, f"{what} within {timeout:.0f}s (phase {last[0].phase if last else 'unknown'})")

    def _pod_failed(self, name: str, why: str) -> LabError:
        try:
            pod = self.cluster.core.read_namespaced_pod(name, self.namespace)
            names = [c.name for c in (pod.spec.init_containers or []) + pod.spec.containers]
        except ApiException:
            names = []
        logs = "".join(f"\n--- log of {c}:\n{self.cluster.logs(self.namespace, name, c)}" for c in names)
        return LabError(f"pod {name} in {self.namespace}: {why}\nits events:\n{self.cluster.events(self.namespace, name)}{logs}")

    def _exec_stream(self, pod: str):
        def open_exec(command: list[str]):
            from kubernetes.stream import stream

            return stream(self.cluster.streaming().connect_get_namespaced_pod_exec, pod, self.namespace,
                          container=HOST_CONTAINER, command=command, stdin=True, stdout=True, stderr=True, tty=False,
                          _preload_content=False)

        return open_exec

    def lab_network(self) -> str:
        """Pods get addresses anywhere in the cluster's pod network (and a new one each instance):
        the accepting proxy serves any; only the lab's pods are pointed at it."""
        return "0.0.0.0/0"

    def reach(self, address: str, port: int) -> tuple[str, int]:
        return self.relay.reach(address, port) if self.relay is not None else (address, port)

    def http_transport(self):
        return RelayTransport(self.reach)

    def _harness_address(self, pod_ip: str) -> str:
        """The address pods see the harness's connections come from (the route to the pods)."""
        route = subprocess.run(["ip", "-o", "route", "get", pod_ip], capture_output=True, text=True).stdout.split()
        if "src" not in route:
            raise LabError(f"this machine has no route to the pod network ({pod_ip}): set AISLAB_K8S_POD_ACCESS=relay")
        return route[route.index("src") + 1]

    # --- files --------------------------------------------------------------------------------
    def _lab_files(self, include_service: bool = True, extra: dict[str, bytes] | None = None) -> str:
        """The lab's directory (without its logs), as a base64 tar.gz to unpack in a pod."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
            for path in sorted(self.dirs.root.rglob("*")):
                if path.is_relative_to(self.dirs.logs) or (not include_service and path.is_relative_to(self.dirs.service)):
                    continue
                tar.add(path, arcname=str(path).lstrip("/"), recursive=False)
            for name, data in (extra or {}).items():
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
        return base64.b64encode(buffer.getvalue()).decode()

    def etc_hosts(self, host: str) -> str:
        """A host's /etc/hosts as on the local target: its own name, and every lab host's."""
        known = [(self.address(h), h) for h in HOSTS]
        # A witnessed host's earlier addresses too (its earlier pods): a proxy logging an old
        # connection late still finds the name without asking the DNS sinkhole.
        known += [(ip, h) for h, w in self.witnessed.items() for ip in w.history if ip != w.address]
        return (f"127.0.0.1 localhost\n127.0.1.1 {host}\n"
                + "".join(f"{ip} {h}.lab\n" for ip, h in known if ip != "0.0.0.0"))

    def host_moved(self) -> None:
        """A witnessed host has a new address (a new pod): the proxies learn it, as the local
        target's hosts files have it (their reverse lookups of a client stay off the wire; the
        mocks look nobody up)."""
        def update(host: str) -> None:
            self.cluster.exec(self.namespace, f"host-{host}", HOST_CONTAINER, [*PODSIDE, "hosts"], {"hosts": self.etc_hosts(host)})

        hosts = [h for h in PROXY_HOSTS if h in self.addresses]  # the lab's programs that look their clients up
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(update, hosts))
        for program in self.processes:
            if isinstance(program, HostProgram) and program.alive():
                program.reread_hosts()

    def read_file(self, host: str, path: Path, offset: int = 0) -> bytes:
        out, err, code = self.cluster.exec(self.namespace, f"host-{host}", HOST_CONTAINER, [*PODSIDE, "read", str(path), str(offset)])
        if code != 0:
            raise LabError(f"reading {path} on {host} failed: {err[-300:]}")
        return base64.b64decode(out.strip() or "")

    def file_size(self, host: str, path: Path) -> int:
        return len(self.read_file(host, path))

    # --- programs -----------------------------------------------------------------------------
    def spawn(self, host: str, command: list[str] | None, env: dict[str, str], log: Path, announces: bool = False,
              image: str | None = None, net_admin: bool = False, sandbox: Sandbox | None = None,
              background: bool = False) -> LabProcess:
        # `background` (the idle instance): every lab pod is best-effort alike, none is favoured;
        # on a cluster the idle instance's pods may as well run on another node.
        if host in witnessed_hosts():
            witnessed = self.witnessed.setdefault(host, WitnessedHost(self, host))
            if sandbox is None and net_admin:
                proc = witnessed.start_witness(command, env, log)
            elif sandbox is not None:
                proc = witnessed.start_service(command, env, log, image, sandbox)
            else:
                raise LabError(f"the kubernetes target runs only the witness and the service on {host}")
        else:
            if image is not None or command is None:
                raise LabError(f"lab host {host} runs commands of the lab image, not the image {image}")
            proc = HostProgram(self, host, command, env, log, announces)
        self.processes.append(proc)
        return proc

    def run_in(self, host: str, command: list[str], timeout: float = 10, env: dict[str, str] | None = None,
               sandbox: Sandbox | None = None) -> subprocess.CompletedProcess:
        if sandbox is not None:
            raise LabError("one-shot assistants (chat.mode: cli) are not supported on the kubernetes target yet; "
                           "use --target local or docker")
        return self._run_in(host, command, timeout, env)

    def look_inside(self, command: list[str], sandbox: Sandbox) -> subprocess.CompletedProcess:
        """In the lab image the service's command runs from, as the service's user."""
        from aislab.world.targets.base import SEEN_FROM_INSIDE

        return self._run_in("service", ["sh", "-c", SEEN_FROM_INSIDE, "preflight", *command], 20, None, sandbox.uid)

    def _run_in(self, host: str, command: list[str], timeout: float, env: dict[str, str] | None,
                uid: int | None = None) -> subprocess.CompletedProcess:
        if host in self.witnessed:  # in the service's network namespace, from the witness's container
            pod, container = self.witnessed[host].pod, WITNESS_CONTAINER
        else:
            pod, container = f"host-{host}", HOST_CONTAINER
        request = {"command": command, "env": env, "cwd": self.project, "timeout": timeout, "uid": uid}
        out, err, code = self.cluster.exec(self.namespace, pod, container, [*PODSIDE, "exec"], request, timeout=timeout + 30)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"running {command[:2]} on {host} failed (exit {code}): {err[-500:]}") from None
        if result.get("timeout"):
            raise subprocess.TimeoutExpired(command, timeout)
        return subprocess.CompletedProcess(command, result["code"], result["stdout"], result["stderr"])

    def may_run_as(self, uid: int, command: list[str]) -> bool:
        return True  # the lab image is readable by every user

    def witness_records(self, address: str) -> dict[str, list[dict]]:
        """Everything a witnessed host's witnesses recorded (read as the harness reads them: the
        witness secret is the lab's, on this machine)."""
        import httpx

        secret = json.loads((self.dirs.state / "lab.json").read_text())["witness_secret"]
        found = {}
        with httpx.Client(trust_env=False, timeout=30, transport=self.http_transport()) as http:
            for name, path in (("witness", ""), ("packets", "/packets")):
                response = http.get(f"http://{address}:{PORTS['witness']}{path}/_lab/records", params={"since": 0},
                                    headers={"x-lab-admin": secret})
                if response.status_code != 200:
                    raise LabError(f"reading the {name} witness's record at {address} failed: {response.status_code} "
                                   f"{response.text[:300]}")
                found[name] = response.json()["records"]
        return found

    # --- the service from the chart -------------------------------------------------------------
    def deploy_service_from_chart(self, deployment, container: str, overrides: dict, values) -> None:
        from aislab.world.targets.kubernetes.chart import ChartService

        self.chart = ChartService(self, deployment, container, overrides, values)

    # --- teardown -----------------------------------------------------------------------------
    def details(self) -> dict:
        return {"kind": "kubernetes", "cluster": self.cluster.server, "context": self.cluster.context,
                "kubernetesVersion": self.cluster.version, "namespace": self.namespace, "images": self.delivery.describe(),
                "podAccess": {"direct": "direct (this machine routes to the pod network)",
                              "relay": "relay (every connection of the harness through the lab's harness pod, by exec)"}.get(
                                  self.access, self.access),
                "networkPolicies": "not relied on: the egress witness judges (the local cluster does not enforce them)",
                "addedToTheServicePod": list(dict.fromkeys(self.additions))}

    def destroy(self) -> None:
        for stop in self._followers:
            stop.set()
        if self.relay is not None:
            self.relay.close()
        self.processes.clear()
        try:
            self._remove_leftovers()
        finally:
            self.dirs.remove()
            self.release()

    def _remove_leftovers(self) -> None:
        """This slot's namespace (also one a killed run left), and wait until it is gone."""
        try:
            listed = self.cluster.core.list_namespace(label_selector=f"{LABEL}={self.tag}").items
        except ApiException as err:
            raise LabError(f"cannot list namespaces: {err.status} {err.reason}") from None
        # Never a namespace without this lab's label, whatever the API's selector did.
        found = [ns for ns in listed if (ns.metadata.labels or {}).get(LABEL) == self.tag
                 and (ns.metadata.labels or {}).get(MACHINE_LABEL) == self.machine]
        for ns in found:
            self._delete_namespace(ns.metadata.name)
        if found:
            self._await_namespace_gone()

    def _delete_namespace(self, name: str) -> None:
        """The namespace first, then each of its pods without grace. Once it is Terminating no
        controller can make a pod in it (a Deployment's pod deleted earlier comes back). Each pod
        on its own: one gone meanwhile (the service's, deleted with its grace as it stopped) once
        spared the rest, left to the namespace controller's graceful delete, and a held witness
        kept the namespace past 90 s."""
        core = self.cluster.core
        # 404: gone already; 409: Terminating already (the API refuses a second delete)
        _unless_gone(lambda: core.delete_namespace(name, grace_period_seconds=0), f"cannot delete namespace {name}", 404, 409)
        pods = _unless_gone(lambda: core.list_namespaced_pod(name).items, f"cannot list the pods of {name}", 404) or []
        for pod in pods:
            _unless_gone(lambda: core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0),
                         f"cannot delete pod {name}/{pod.metadata.name}", 404)

    def follow(self, stop: threading.Event) -> None:
        self._followers.append(stop)


def _unless_gone(call, failure: str, *expected: int):
    """`call`'s answer; None where the API answers one of the `expected` statuses."""
    try:
        return call()
    except ApiException as err:
        if err.status not in expected:
            raise LabError(f"{failure}: {err.status} {err.reason}") from None
        return None


def _routed(pod_ip: str) -> bool:
    """Whether this machine has a route of its own to the pod network (not just its default)."""
    matching = subprocess.run(["ip", "-o", "route", "show", "match", pod_ip], capture_output=True, text=True).stdout
    return any(not line.startswith("default") for line in matching.splitlines())


BROKEN = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError", "CrashLoopBackOff", "RunContainerError"}


def _keep(fh, chunk: bytes) -> None:
    """A program's output into its log; a full log space keeps no more, the program still watched."""
    try:
        fh.write(chunk)
        fh.flush()
    except OSError:
        pass


def _message(err: ApiException) -> str:
    try:
        return json.loads(err.body).get("message", "")[:500]
    except (ValueError, TypeError, AttributeError):
        return str(err.body)[:500]


# --- a program on a lab host ---------------------------------------------------------------------
class HostProgram(LabProcess):
    """A program started in a lab host's pod; a thread copies its output to the log as it
    comes (through an exec that follows it), notices READY, and ends with its exit code."""

    def __init__(self, target: KubernetesTarget, host: str, command: list[str], env: dict[str, str], log: Path, announces: bool):
        self.target, self.name, self.log, self.command = target, host, log, command
        self.program = f"{host}-{uuid.uuid4().hex[:6]}"
        self.pod = f"host-{host}"
        self._ready, self._exited, self._stop = threading.Event(), threading.Event(), threading.Event()
        self.returncode: int | None = None
        self._announces = announces
        request = {"files": target._lab_files(), "hosts": target.etc_hosts(host), "name": self.program, "command": command,
                   "env": env, "cwd": target.project}
        out, err, code = target.cluster.exec(target.namespace, self.pod, HOST_CONTAINER, [*PODSIDE, "run"], request)
        if code != 0:
            raise LabError(f"cannot start {command[:3]} on {host}: {err[-500:]}")
        target.follow(self._stop)
        threading.Thread(target=self._pump, name=f"follow-{self.program}", daemon=True).start()

    def _pump(self) -> None:
        from kubernetes.stream import stream

        partial = b""
        try:
            ws = stream(self.target.cluster.streaming().connect_get_namespaced_pod_exec, self.pod, self.target.namespace,
                        container=HOST_CONTAINER, command=[*PODSIDE, "follow", self.program], stdin=False, stdout=True,
                        stderr=True, tty=False, _preload_content=False)
            with self.log.open("ab") as fh:
                while ws.is_open() and not self._stop.is_set():
                    ws.update(timeout=0.5)
                    if ws.peek_stdout():
                        chunk = ws.read_stdout().encode()
                        _keep(fh, chunk)
                        if self._announces and not self._ready.is_set():
                            *lines, partial = (partial + chunk).split(b"\n")
                            if b"READY" in lines:
                                self._ready.set()
                    if ws.peek_stderr():
                        for line in ws.read_stderr().splitlines():
                            if line.startswith("EXIT "):
                                self.returncode = int(line.split()[1])
            ws.close()
        except Exception as err:  # noqa: BLE001 - the pod went (teardown): the program went with it
            with self.log.open("a") as fh:
                fh.write(f"[lab] lost the program: {type(err).__name__}: {err}\n")
        finally:
            if self.returncode is None and not self._stop.is_set():
                self.returncode = -1
            self._exited.set()

    def wait(self, timeout: float | None) -> int | None:
        if self._exited.wait(timeout):
            return self.returncode if self.returncode is not None else -1
        return None

    def reread_hosts(self, timeout: float = 10) -> None:
        """squid reads /etc/hosts once, at start: told to read its configuration again, it
        finds a host's new address there (for the reverse lookups its cache manager makes)."""
        if Path(self.command[0]).name != "squid" or "-f" not in self.command:
            return
        conf = self.command[self.command.index("-f") + 1]
        text = self.target.read_file(self.name, Path(conf)).decode()
        cache_log = next((Path(line.split()[1]) for line in text.splitlines() if line.startswith("cache_log ")), None)
        if cache_log is None:
            raise LabError(f"squid's configuration {conf} names no cache_log to watch")
        before = self.target.file_size(self.name, cache_log)
        done = self.target.run_in(self.name, ["squid", "-k", "reconfigure", "-f", conf])
        if done.returncode != 0:
            raise LabError(f"squid would not reconfigure: {done.stderr[-300:]}")
        ports = sum(1 for line in text.splitlines() if line.startswith("http_port "))
        awaited = self.target.run_in(self.name, [*PODSIDE, "await-text", str(cache_log), str(before),
                                                 "Accepting HTTP Socket connections", str(ports), str(timeout)], timeout=timeout + 10)
        if awaited.returncode != 0:
            raise LabError(f"squid did not accept connections again within {timeout:.0f}s of reconfiguring")

    def signal(self, sig: int) -> None:
        try:
            self.target.cluster.exec(self.target.namespace, self.pod, HOST_CONTAINER, [*PODSIDE, "signal", self.program, str(int(sig))])
        except LabError:
            pass

    def cpu_seconds(self) -> float:
        out, _err, _code = self.target.cluster.exec(self.target.namespace, self.pod, HOST_CONTAINER, [*PODSIDE, "cpu", self.program])
        try:
            return float(out.strip() or 0)
        except ValueError:
            return 0.0

    def await_ready_line(self, timeout: float) -> None:
        self._await_ready_event(self._ready, self._exited, timeout)


# --- the witnessed host (the service's) -------------------------------------------------------------
class WitnessedHost:
    """The pods of a host whose programs are the service and its witness: one pod per service
    instance, each with the witness beside the service; each new pod's witness starts from the
    whole record of the one before it."""

    def __init__(self, target: KubernetesTarget, host: str):
        self.target, self.host = target, host
        self.pod: str | None = None
        self.address: str | None = None
        self.history: list[str] = []  # every address it had, pod after pod
        self.generation = 0
        self.witness_spec: dict | None = None
        self.witness_log: Path | None = None
        self.archive: dict[str, list[dict]] = {}  # by witness (witness, packets): what the pods before recorded
        self.carried: str | None = None  # the service's /tmp of the last pod, as a base64 tar.gz
        self.current: ServicePod | None = None
        self.witness: WitnessProcess | None = None

    def start_witness(self, command: list[str], env: dict[str, str], log: Path) -> "WitnessProcess":
        # The witness binds the host's address; a pod's address is known only once it runs, so
        # the pod puts its own in place of this one.
        self.witness_spec = {"command": command, "env": env, "cwd": self.target.project, "address": self.target.address(self.host)}
        self.witness_log = log
        self.witness = WitnessProcess(self)
        self._new_pod(None, None)
        return self.witness

    def start_service(self, command, env, log, image, sandbox) -> "ServicePod":
        if self.witness_spec is None:
            raise LabError(f"the service's witness must run on {self.host} before the service")
        self._retire()
        target = self.target
        if target.chart is not None:
            service = target.chart.container(env)
        else:
            if image is not None:
                target.delivery.deliver([image])
            service = manifests.driver_container(command, env, target.delivery.ref(image) if image else None, target.images,
                                                 sandbox.uid, target.dirs, target.project)
        self.current = ServicePod(self, log)
        self._new_pod(service, self.current)
        return self.current

    def _new_pod(self, service, process: "ServicePod | None") -> None:
        target = self.target
        self.generation += 1
        name = f"{self.host}-{self.generation}-{uuid.uuid4().hex[:4]}"
        grace = WITNESS_HOLD + int((service.pod_spec or {}).get("terminationGracePeriodSeconds", 30) if service else 0)
        aliases = {f"{h}.lab": target.address(h) for h in HOSTS if h != "harness" and h not in witnessed_hosts()}
        pod, added = manifests.witnessed_pod(name, self.host, service, target.images, target.dirs, target.labels,
                                             target.address("dns"), aliases, grace, target.project)
        target.additions += added
        if target.chart is not None and service is not None:
            target.chart.install_once()
        target._create(pod)
        self.pod = name
        self.address = target.await_pod(name)  # the address comes with the sandbox, before any container runs
        self.history.append(self.address)
        target.host_moved()
        self._deliver(service)
        if process is not None:
            process.attach(name)
        self.witness.attach(name)
        self.witness.await_ready(POD_START_TIMEOUT)
        if process is not None:
            target.await_pod(name, container=SERVICE_CONTAINER if target.chart is None else target.chart.container_name)

    def _deliver(self, service) -> None:
        """The lab's files, the witness's record so far, the service's /tmp, the plumbing."""
        target = self.target
        self._await_gate()
        archives = {str(target.dirs.state / f"{name}-archive.json"): json.dumps(records).encode()
                    for name, records in self.archive.items()}
        request = {
            "files": target._lab_files(extra=archives),
            "carried": self.carried if service is not None and service.tmp_volume else None,
            "carried_under": manifests.CARRIED_TMP, "service_owner": None,
            "plumbing": {"allowed": [target.address(h) for h in INFRASTRUCTURE]},
            "witness": self.witness_spec,
        }
        out, err, code = target.cluster.exec(target.namespace, self.pod, GATE_CONTAINER, [*PODSIDE, "deliver"], request, timeout=120)
        if code != 0:
            raise target._pod_failed(self.pod, f"delivering the lab's files failed: {err[-500:]}")

    def _await_gate(self) -> None:
        def running(pod) -> bool:
            if pod is None:
                raise LabError(f"pod {self.pod} is gone")
            gate = next((s for s in (pod.status or V1PodStatus()).init_container_statuses or [] if s.name == GATE_CONTAINER), None)
            if gate and gate.state and gate.state.waiting and gate.state.waiting.reason in BROKEN:
                raise self.target._pod_failed(self.pod, f"{GATE_CONTAINER}: {gate.state.waiting.reason}: {gate.state.waiting.message}")
            return bool(gate and gate.state and gate.state.running)

        cluster = self.target.cluster
        if not cluster.await_named(cluster.core.list_namespaced_pod, self.pod, running, POD_START_TIMEOUT, namespace=self.target.namespace):
            raise self.target._pod_failed(self.pod, f"its {GATE_CONTAINER} did not start within {POD_START_TIMEOUT:.0f}s")

    def _retire(self) -> None:
        """The running pod goes (its service already stopped, or never there): everything its
        witness recorded is kept for the next pod's witness, then the witness is let go."""
        if self.pod is None:
            return
        target, old = self.target, self.pod
        if self.current is not None and self.current.alive():
            self.current.stop()
        self.archive = target.witness_records(self.address)
        request = {"tmp": manifests.CARRIED_TMP, "tmp_as": "/" + manifests.CARRIED_TMP.lstrip("/")}
        out, err, code = target.cluster.exec(target.namespace, old, WITNESS_CONTAINER, [*PODSIDE, "retire"], request, timeout=120)
        if code != 0:
            raise target._pod_failed(old, f"keeping the service's /tmp failed: {err[-500:]}")
        self.carried = json.loads(out.strip().splitlines()[-1])["carried"]
        self.witness.detach()
        try:
            target.cluster.exec(target.namespace, old, WITNESS_CONTAINER, [*PODSIDE, "release"])
        except LabError:
            pass
        try:
            target.cluster.core.delete_namespaced_pod(old, target.namespace, grace_period_seconds=1)
        except ApiException:
            pass


class _PodLogs:
    """Copies one container's log, pod after pod, into one log file (each instance's output in
    order); says when the container has ended and with which code."""

    def __init__(self, target: KubernetesTarget, container: str, log: Path, announces: bool = False):
        self.target, self.container, self.log = target, container, log
        self.announces = announces
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.stop = threading.Event()
        self.stopping = threading.Event()  # the harness deleted the pod
        self.code: int | None = None
        target.follow(self.stop)

    def start(self, pod: str) -> None:
        self.pod = pod
        self.ready.clear()
        self.ended.clear()
        self.code = None
        threading.Thread(target=self._pump, args=(pod,), name=f"logs-{pod}-{self.container}", daemon=True).start()

    def _pump(self, pod: str) -> None:
        ns = self.target.namespace
        try:
            self._await_started(pod)
            response = self.target.cluster.streaming().read_namespaced_pod_log(pod, ns, container=self.container, follow=True,
                                                                               _preload_content=False)
            partial = b""
            with self.log.open("ab") as fh:
                for chunk in response.stream(4096):
                    if self.stop.is_set():
                        break
                    _keep(fh, chunk)
                    if self.announces and not self.ready.is_set():
                        *lines, partial = (partial + chunk).split(b"\n")
                        if b"READY" in lines:
                            self.ready.set()
            response.release_conn()
            # A pod being deleted reports no container state until all its containers are gone
            # (its witness waits to be drained): an end the harness asked for needs no code.
            self.code = -15 if self.stopping.is_set() else self._exit_code(pod)
        except Exception as err:  # noqa: BLE001 - the pod went under us
            with self.log.open("a") as fh:
                fh.write(f"[lab] lost the log of {pod}/{self.container}: {type(err).__name__}\n")
            self.code = -1
        finally:
            self.ended.set()

    def _state(self, pod) -> object | None:
        if pod is None:
            raise LabError("the pod is gone")
        mine = next((s for s in (pod.status or V1PodStatus()).container_statuses or [] if s.name == self.container), None)
        return mine.state if mine else None

    def _await_started(self, pod: str) -> None:
        """Until the container runs (or has already ended), or the harness stops it."""
        def started(found) -> bool:
            if self.stop.is_set():
                return True
            state = self._state(found)
            return bool(state and (state.running or state.terminated))

        cluster = self.target.cluster
        # A container may wait longer than a pod's start (an image pull): awaited until stopped.
        while not cluster.await_named(cluster.core.list_namespaced_pod, pod, started, POD_START_TIMEOUT, namespace=self.target.namespace):
            pass

    def _exit_code(self, pod: str, timeout: float = 5) -> int:
        def code(found) -> str | None:  # a string: exit code 0 is an answer too
            state = self._state(found)
            return str(state.terminated.exit_code) if state and state.terminated else None

        cluster = self.target.cluster
        try:
            found = cluster.await_named(cluster.core.list_namespaced_pod, pod, code, timeout, namespace=self.target.namespace)
        except (ApiException, LabError):  # the pod is gone
            return -1
        return -1 if found is None else int(found)


class WitnessProcess(LabProcess):
    """The witness of a witnessed host, whichever pod it is in now."""

    def __init__(self, host: WitnessedHost):
        self.host, self.name, self.log = host, f"{host.host}-witness", host.witness_log
        self.logs: _PodLogs | None = None
        self._detached = False

    def attach(self, pod: str) -> None:
        if self.logs is not None:
            self.logs.stop.set()
        self.logs = _PodLogs(self.host.target, WITNESS_CONTAINER, self.log, announces=True)
        self.logs.start(pod)
        self._detached = False

    def detach(self) -> None:
        self._detached = True  # its pod is going: that is not the witness dying

    def await_ready(self, timeout: float) -> None:
        if not self.logs.ready.wait(timeout):
            raise self.host.target._pod_failed(self.host.pod, f"the witness did not say READY within {timeout:.0f}s")

    def wait(self, timeout: float | None) -> int | None:
        if self._detached or self.logs is None:
            return None
        return self.logs.code if self.logs.ended.wait(timeout) else None

    def signal(self, sig: int) -> None:
        pass  # it goes with its pod

    def cpu_seconds(self) -> float:
        return 0.0

    def await_ready_line(self, timeout: float) -> None:
        self.await_ready(timeout)


class ServicePod(LabProcess):
    """The service of one pod: its log into the service's log, its end noticed; stopping it
    deletes its pod the way any cluster does (SIGTERM, the pod's grace period), while the
    witness beside it keeps recording until the harness has drained it."""

    def __init__(self, host: WitnessedHost, log: Path):
        self.host, self.name, self.log = host, host.host, log
        target = host.target
        container = target.chart.container_name if target.chart is not None else SERVICE_CONTAINER
        self.logs = _PodLogs(target, container, log)
        self.pod: str | None = None
        self.deleted = False

    def attach(self, pod: str) -> None:
        self.pod = pod
        self.logs.start(pod)

    def wait(self, timeout: float | None) -> int | None:
        return self.logs.code if self.logs.ended.wait(timeout) else None

    def signal(self, sig: int) -> None:
        if self.pod and not self.deleted:
            self.deleted = True
            self.logs.stopping.set()
            target = self.host.target
            try:
                target.cluster.core.delete_namespaced_pod(self.pod, target.namespace)
            except ApiException:
                pass

    def stop(self, grace: float = 30.0) -> None:
        """As the kubelet stops it: SIGTERM, then its pod's grace period."""
        self.signal(15)
        self.wait(grace)

    def cpu_seconds(self) -> float:
        return 0.0

    def await_ready_line(self, timeout: float) -> None:
        raise LabError("the service announces nothing: its readiness is probed")
