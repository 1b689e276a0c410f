"""Every object the kubernetes target creates, as plain manifests (validated strictly against the
official schemas in the tests): the lab's namespace, a pod per lab host, and the pods of a
witnessed host (the service's): the service's own container, from the driver or from the chart,
with the witness beside it and the init container that applies its plumbing."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from aislab.world.layout import LabDirs

LABEL = "aislab.io/lab"
RUN_LABEL = "aislab.io/run"
HOST_LABEL = "aislab.io/host"
MACHINE_LABEL = "aislab.io/machine"
ROLE_LABEL = "aislab.io/role"
POD_DIR = "/aislab-pod"  # the pod's own bookkeeping, shared by its containers
PODSIDE = ["python", "-m", "aislab.world.targets.kubernetes.podside"]
WITNESS_CONTAINER, SERVICE_CONTAINER, GATE_CONTAINER, HOST_CONTAINER = "aislab-witness", "service", "aislab-gate", "host"
CARRIED_TMP = f"{POD_DIR}/service-tmp"  # the service's /tmp, seen by the harness's containers too
# The harness's own containers in the service's pod run as root with NET_ADMIN, whatever the
# chart's pod-level securityContext says (runAsNonRoot would refuse them).
ROOT_NET_ADMIN = {"capabilities": {"add": ["NET_ADMIN"]}, "runAsUser": 0, "runAsNonRoot": False}
SERVICE_SPACE = "512Mi"  # the service's files, HOME, outputs; its /tmp apart (layout.py: 512m of tmpfs)
DNS_OPTIONS = [{"name": "timeout", "value": "1"}, {"name": "attempts", "value": "1"}]


def namespace(name: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def _dns(dns_ip: str | None) -> dict:
    """The lab's sinkhole is every pod's resolver (the local cluster has no cluster DNS, and the
    service must not reach one): its own lookups are recorded like on the other targets."""
    return {"dnsPolicy": "None", "dnsConfig": {"nameservers": [dns_ip or "127.0.0.1"], "searches": [], "options": DNS_OPTIONS}}


def _mount(name: str, path: str, read_only: bool = False) -> dict:
    return {"name": name, "mountPath": path, **({"readOnly": True} if read_only else {})}


@dataclass(frozen=True)
class Images:
    lab: str
    pull_policy: str  # Never (imported into the node), IfNotPresent (pushed to a registry)


def host_pod(host: str, images: Images, dirs: LabDirs, labels: dict[str, str], dns_ip: str | None, project: str) -> dict:
    """A lab host: a pod that owns the host's address; the programs on it (a mock, a proxy) are
    started in it by the harness once the lab's files exist. It sees the lab's directory, as on
    every target."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"host-{host}", "labels": {**labels, HOST_LABEL: host, ROLE_LABEL: "lab-host"}},
        "spec": {
            "hostname": host, "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 2, **_dns(dns_ip),
            "containers": [{
                "name": HOST_CONTAINER, "image": images.lab, "imagePullPolicy": images.pull_policy,
                "command": [*PODSIDE, "hold"], "workingDir": project,
                "volumeMounts": [_mount("lab", str(dirs.root)), _mount("pod", POD_DIR)],
            }],
            "volumes": [{"name": "lab", "emptyDir": {}}, {"name": "pod", "emptyDir": {}}],
        },
    }


@dataclass
class ServiceContainer:
    """The service's container and what its pod brings along: from the driver (command or
    image), or the chart's pod template."""

    container: dict
    pod_spec: dict = field(default_factory=dict)  # the chart's pod spec (without its containers), else {}
    pod_labels: dict = field(default_factory=dict)
    tmp_volume: str | None = None  # an emptyDir the service has at /tmp, carried to its next pod
    added: list[str] = field(default_factory=list)  # what the harness added or changed, for the report
    from_chart: bool = False


def driver_container(command: list[str] | None, env: dict[str, str], image: str | None, images: Images, uid: int | None,
                     dirs: LabDirs, project: str) -> ServiceContainer:
    """The service as the driver starts it: its image (the command as its arguments), or the lab
    image running its command; it sees its own directory, the public one and a /tmp of its own."""
    container = {
        "name": SERVICE_CONTAINER, "image": image or images.lab,
        "imagePullPolicy": images.pull_policy,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [_mount("lab-service", str(dirs.service)), _mount("lab-public", str(dirs.public), True),
                         _mount("aislab-tmp", "/tmp")],
    }
    if image is None:
        container.update(command=list(command or []), workingDir=project)
        if uid is not None:
            container["securityContext"] = {"runAsUser": uid, "runAsGroup": uid}
    elif command:
        container["args"] = list(command)
    return ServiceContainer(container, {"volumes": [{"name": "aislab-tmp", "emptyDir": {"sizeLimit": SERVICE_SPACE}}]}, {},
                            "aislab-tmp")


def chart_container(template: dict, container_name: str, env: dict[str, str], dirs: LabDirs) -> ServiceContainer:
    """The service exactly as the chart's pod template has it (image, env with its Secret
    references, probes, securityContext, service account, volumes), with the env the scenario
    runs it with: an entry the chart renders keeps its form (a secretKeyRef stays one) unless the
    lab's value differs; what the chart does not render is appended; what the lab drops (the
    customer's proxy) goes. The harness mounts the lab's public files (its CA) and the service's
    own directory (its HOME)."""
    spec = copy.deepcopy(template.get("spec") or {})
    containers = spec.pop("containers", [])
    found = next((c for c in containers if c.get("name") == container_name), None)
    if found is None:
        raise ValueError(f"no container named {container_name} in the chart's pod template")
    others = [c for c in containers if c is not found]
    container = copy.deepcopy(found)
    added: list[str] = []
    entries = []
    rendered = {e.get("name"): e for e in container.get("env") or []}
    for entry in container.get("env") or []:
        name = entry.get("name")
        if name not in env:
            added.append(f"env {name} removed (the lab runs it without; the customer's proxy names hosts of their network)")
            continue
        if "valueFrom" in entry or str(entry.get("value", "")) == env[name]:
            entries.append(entry)
        else:
            entries.append({"name": name, "value": env[name]})
            added.append(f"env {name} set to the lab's value")
    for name, value in env.items():
        if name not in rendered:
            entries.append({"name": name, "value": value})
            added.append(f"env {name} added")
    container["env"] = entries
    mounts = list(container.get("volumeMounts") or [])
    mounts += [_mount("lab-service", str(dirs.service)), _mount("lab-public", str(dirs.public), True)]
    container["volumeMounts"] = mounts
    added.append(f"volume lab-public (the lab's CA and the proxies' public files) mounted read-only at {dirs.public}")
    added.append(f"volume lab-service (the service's HOME and config files) mounted at {dirs.service}")
    tmp = next((m["name"] for m in mounts if m.get("mountPath") == "/tmp"), None)
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    tmp_volume = tmp if tmp and "emptyDir" in volumes.get(tmp, {}) else None
    spec["containers"] = others
    return ServiceContainer(container, spec, dict((template.get("metadata") or {}).get("labels") or {}), tmp_volume, added, from_chart=True)


def witnessed_pod(name: str, host: str, service: ServiceContainer | None, images: Images, dirs: LabDirs,
                  labels: dict[str, str], dns_ip: str, host_aliases: dict[str, str], grace: int,
                  project: str) -> tuple[dict, list[str]]:
    """A pod of the service's host: the gate (init, NET_ADMIN: waits for the lab's files, applies
    the egress witness's plumbing), the witness (sidecar: starts before the service, which waits
    for it, and keeps recording until the harness has drained it) and the service, if any.
    Returns the pod and what the harness added to the service's own pod."""
    spec = copy.deepcopy(service.pod_spec) if service else {}
    # The service's own space has a set size, as on every target (the kubelet evicts a pod past it).
    harness_volumes = [{"name": n, "emptyDir": {"sizeLimit": SERVICE_SPACE} if n == "lab-service" else {}}
                       for n in ("pod", "lab-state", "lab-public", "lab-service")]
    spec["volumes"] = list(spec.get("volumes") or []) + harness_volumes
    tmp_mounts = [_mount(service.tmp_volume, CARRIED_TMP)] if service and service.tmp_volume else []
    lab_mounts = [_mount("pod", POD_DIR), _mount("lab-state", str(dirs.state)), _mount("lab-public", str(dirs.public))]
    gate = {
        "name": GATE_CONTAINER, "image": images.lab, "imagePullPolicy": images.pull_policy,
        "command": [*PODSIDE, "gate"], "workingDir": project,
        "securityContext": ROOT_NET_ADMIN,
        "volumeMounts": [*lab_mounts, _mount("lab-service", str(dirs.service)), *tmp_mounts],
    }
    witness = {
        "name": WITNESS_CONTAINER, "image": images.lab, "imagePullPolicy": images.pull_policy,
        "command": [*PODSIDE, "witness"], "workingDir": project,
        "env": [{"name": "AISLAB_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        # NET_ADMIN: IP_TRANSPARENT for the UDP it is handed by TPROXY.
        "securityContext": ROOT_NET_ADMIN,
        "lifecycle": {"postStart": {"exec": {"command": [*PODSIDE, "await-witness"]}},
                      "preStop": {"exec": {"command": [*PODSIDE, "hold-until-released"]}}},
        "volumeMounts": [*lab_mounts, *tmp_mounts],
    }
    spec["initContainers"] = [gate, *(spec.get("initContainers") or [])]
    spec["containers"] = [witness, *([service.container] if service else []), *(spec.get("containers") or [])]
    # ICMP echo without privileges, as Docker allows every container (a safe, namespaced sysctl):
    # the plumbing finds it set, since a container cannot write /proc/sys.
    context = spec.setdefault("securityContext", {})
    context["sysctls"] = [s for s in context.get("sysctls") or [] if s.get("name") != "net.ipv4.ping_group_range"] + [
        {"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}]
    spec.update(hostname=host, restartPolicy="Never", enableServiceLinks=False, **_dns(dns_ip),
                hostAliases=[{"ip": ip, "hostnames": [n]} for n, ip in sorted(host_aliases.items())],
                terminationGracePeriodSeconds=grace)
    if not service or not service.from_chart:  # the chart says for itself whether its pod gets a token
        spec["automountServiceAccountToken"] = False
    pod_labels = {**(service.pod_labels if service else {}), **labels, HOST_LABEL: host, ROLE_LABEL: "witnessed-host"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": pod_labels}, "spec": spec}
    added = [] if service is None else [
        *service.added,
        f"init container {GATE_CONTAINER} (lab image, NET_ADMIN): waits for the lab's files, applies the egress witness's plumbing",
        f"container {WITNESS_CONTAINER} (lab image, NET_ADMIN): the egress witness; the service starts once it listens "
        "(postStart) and it keeps recording through the service's shutdown (preStop)",
        f"dnsPolicy None, nameserver {dns_ip} (the lab's DNS sinkhole); hostAliases for the lab's host names; hostname {host}",
        "restartPolicy Never (one pod per service instance: the harness restarts it, so each instance's life is attributed)",
        "securityContext.sysctls net.ipv4.ping_group_range=0 2147483647 (unprivileged ICMP echo, as Docker allows)",
        f"terminationGracePeriodSeconds {grace} (the witness outlives the service's shutdown)",
        "volumes pod, lab-state, lab-public, lab-service (emptyDir; the lab's files delivered through the API)",
    ]
    return pod, added
