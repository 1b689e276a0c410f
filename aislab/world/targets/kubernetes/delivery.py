"""How the lab's images (built locally by the docker target's builder) reach a cluster that
cannot pull them: imported into the local cluster's containerd, `kind load`ed into a kind
cluster, or pushed to a registry the cluster pulls from (`--image-registry`)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from aislab.world.targets.base import LabError


@dataclass(frozen=True)
class Delivery:
    how: str  # "containerd" (the local cluster), "kind", "registry"
    where: str = ""  # the kind cluster's name, or the registry

    @property
    def pull_policy(self) -> str:
        return "IfNotPresent" if self.how == "registry" else "Never"

    def describe(self) -> str:
        return {"containerd": "imported into the local cluster's containerd", "kind": f"kind load into cluster {self.where}",
                "registry": f"pushed to {self.where}"}[self.how]

    def ref(self, tag: str) -> str:
        """The name pods use for a local image."""
        return f"{self.where.rstrip('/')}/{tag}" if self.how == "registry" else tag

    def deliver(self, tags: list[str], log=lambda m: None) -> None:
        for tag in dict.fromkeys(tags):
            if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
                raise LabError(f"image {tag} is not in the local Docker engine, so it cannot reach the cluster; "
                               "load or build it first (docker load -i FILE.tar)")
            getattr(self, f"_{self.how}")(tag, log)

    def _containerd(self, tag: str, log) -> None:
        from aislab.world.targets.kubernetes import local

        have = subprocess.run(local.ctr("-n", "k8s.io", "images", "ls", "-q"), capture_output=True, text=True).stdout.split()
        image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True).stdout.strip()
        if _qualified(tag) in have and image_id in have:
            return
        log(f"importing {tag} into the local cluster")
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        imported = subprocess.run(local.ctr("-n", "k8s.io", "images", "import", "--all-platforms", "-"), stdin=save.stdout,
                                  capture_output=True, text=True)
        save.stdout.close()
        if save.wait() != 0 or imported.returncode != 0:
            raise LabError(f"importing {tag} into the local cluster failed: {imported.stderr.strip()[-500:]}")

    def _kind(self, tag: str, log) -> None:
        log(f"kind load docker-image {tag} --name {self.where}")
        proc = subprocess.run(["kind", "load", "docker-image", tag, "--name", self.where], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"kind could not load {tag} into cluster {self.where}: {proc.stderr.strip()[-500:]}")

    def _registry(self, tag: str, log) -> None:
        target = self.ref(tag)
        for cmd in (["docker", "tag", tag, target], ["docker", "push", target]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise LabError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]} (is --image-registry "
                               f"{self.where} reachable, and are you logged in?)")


def _qualified(tag: str) -> str:
    """containerd's full name of a Docker Hub style tag."""
    first = tag.split("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return tag
    return f"docker.io/{tag}" if "/" in tag else f"docker.io/library/{tag}"


def need_docker() -> None:
    if shutil.which("docker") is None:
        raise LabError("the kubernetes target builds the lab's images with Docker: install docker.io and start it (make docker-engine)")
