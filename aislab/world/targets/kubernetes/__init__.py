"""The cluster targets: `kubernetes` (any cluster, by kubeconfig and context) and `kind` (a
throwaway kind cluster, or one named), and the local single-node cluster (`local.py`) this
project builds to prove them against a real API server and kubelet."""

from __future__ import annotations


def acquire(name: str, settings: dict):
    from aislab.world.targets.kubernetes.cluster import Access
    from aislab.world.targets.kubernetes.target import KubernetesTarget, Settings

    if name == "kind":
        from aislab.world.targets.kubernetes.kind import KindTarget

        return KindTarget.acquire(settings)
    access = Access(settings.get("kubeconfig"), settings.get("context"))
    return KubernetesTarget.acquire(Settings(access, settings.get("image_registry")))


def preflight(name: str, settings: dict) -> None:
    """Before any scenario: kind's CLI, or the cluster reachable and the permissions a lab needs."""
    from aislab.world.targets.kubernetes.cluster import Access, Cluster
    from aislab.world.targets.kubernetes.target import lab_tag

    if name == "kind":
        from aislab.world.targets.kubernetes.kind import kind_binary

        kind_binary()
        return
    Cluster(Access(settings.get("kubeconfig"), settings.get("context"))).check_permissions(f"aislab-{lab_tag(name, 0)}")
