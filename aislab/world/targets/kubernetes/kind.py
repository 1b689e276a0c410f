"""The kind target: the kubernetes target on a throwaway kind cluster made for the run (its
config written by the harness), the lab's images `kind load`ed into it, deleted at the end
unless --keep-cluster; or an existing one (--kind-cluster NAME), left as it was found.

The cluster is named after the machine and the lab's slot, so the next run in that slot deletes
one a killed run left (with the route to its pods)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from aislab.world.targets.base import LabError, claim_slot
from aislab.world.targets.kubernetes.cluster import Access, Cluster
from aislab.world.targets.kubernetes.target import KubernetesTarget, Settings, lab_tag, machine_id

KIND_INSTALL = ("--target kind needs the `kind` CLI on PATH, and Docker: install kind from "
                "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (a release binary, or "
                "`go install sigs.k8s.io/kind@latest`), then run again")
STATE = Path("/var/lib/aislab/kind")
POD_SUBNET, SERVICE_SUBNET = "10.238.0.0/16", "10.239.0.0/16"


def kind_binary() -> str:
    found = shutil.which("kind")
    if found is None:
        raise LabError(KIND_INSTALL)
    return found


def kind(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([kind_binary(), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"`kind {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def cluster_config(name: str) -> dict:
    """The throwaway cluster: one node, subnets apart from the other targets' labs."""
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": name,
            "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET},
            "nodes": [{"role": "control-plane"}]}


class KindTarget(KubernetesTarget):
    name = "kind"

    def __init__(self, slot, lock_fd, cluster, settings, kind_name: str, created: bool, keep: bool, route: str | None):
        super().__init__(slot, lock_fd, cluster, settings)
        self.kind_name, self.created_cluster, self.keep, self.route = kind_name, created, keep, route

    @classmethod
    def acquire(cls, settings: dict) -> "KindTarget":
        kind_binary()
        if shutil.which("docker") is None:
            raise LabError(KIND_INSTALL)
        existing = settings.get("kind_cluster")
        if existing:
            if existing not in kind("get", "clusters").stdout.split():
                raise LabError(f"--kind-cluster {existing}: kind knows no such cluster ({kind('get', 'clusters').stdout.split()})")
            slot, fd = claim_slot("kind", lambda n: None)
            return cls._connect(slot, fd, existing, created=False, keep=True)
        slot, fd = claim_slot("kind", lambda n: _delete_leftover(cluster_name(n)), _leftover_slots)
        name = cluster_name(slot)
        STATE.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="kind-config-", dir=STATE, delete=False) as fh:
            json.dump(cluster_config(name), fh)
        try:
            kind("create", "cluster", "--name", name, "--config", fh.name, "--kubeconfig", str(kubeconfig_of(name)), "--wait", "180s")
        finally:
            Path(fh.name).unlink(missing_ok=True)
        return cls._connect(slot, fd, name, created=True, keep=bool(settings.get("keep_cluster")))

    @classmethod
    def _connect(cls, slot: int, fd: int, name: str, created: bool, keep: bool) -> "KindTarget":
        path = kubeconfig_of(name)
        if not created:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(kind("get", "kubeconfig", "--name", name).stdout)
        try:
            cluster = Cluster(Access(str(path), None))
            cluster.check_permissions(f"aislab-{lab_tag(cls.name, slot)}")
            route = _route_to_pods(cluster)
        except BaseException:
            if created and not keep:
                _delete_leftover(name)
            raise
        settings = Settings(Access(str(path), None), kind_cluster=name)
        return cls(slot, fd, cluster, settings, name, created, keep, route)

    def details(self) -> dict:
        return {**super().details(), "kind": "kind", "kindCluster": self.kind_name,
                "kindClusterFate": "deleted at the end" if self.created_cluster and not self.keep else "kept"}

    def destroy(self) -> None:
        try:
            super().destroy()
        finally:
            if self.created_cluster and not self.keep:
                _delete_leftover(self.kind_name)
            elif self.route:  # a kept cluster keeps its pods; this machine forgets the way to them
                subprocess.run(["ip", "route", "del", self.route], capture_output=True)


def cluster_name(slot: int) -> str:
    return f"aislab-{machine_id()}-{slot}"


def _leftover_slots() -> set[int]:
    """Slots of this machine whose kind clusters are still there."""
    prefix = cluster_name(0)[:-1]
    names = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    return {int(n.removeprefix(prefix)) for n in names if n.startswith(prefix) and n.removeprefix(prefix).isdigit()}


def kubeconfig_of(name: str) -> Path:
    return STATE / f"{name}.kubeconfig"


def _delete_leftover(name: str) -> None:
    """A cluster of this slot that a killed run left, and the route to its pods."""
    if shutil.which("kind") and name in subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split():
        kind("delete", "cluster", "--name", name)
    subprocess.run(["ip", "route", "del", POD_SUBNET], capture_output=True)
    kubeconfig_of(name).unlink(missing_ok=True)


def _route_to_pods(cluster: Cluster) -> str | None:
    """The harness reaches pods directly: a route to the node's pod range through the node
    (a container on this machine) unless there is one already."""
    node = cluster.core.list_node().items[0]
    cidr = node.spec.pod_cidr
    internal = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), None)
    if not cidr or not internal:
        return None
    probe = str(next(ipaddress.ip_network(cidr).hosts()))
    matching = subprocess.run(["ip", "-o", "route", "show", "match", probe], capture_output=True, text=True).stdout.splitlines()
    if any(not line.startswith("default") for line in matching):
        return None  # routed already (kind's node network is this machine's, or a route exists)
    proc = subprocess.run(["ip", "route", "replace", cidr, "via", internal], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"cannot route this machine to the kind cluster's pods ({cidr} via {internal}): {proc.stderr.strip()}")
    return cidr
