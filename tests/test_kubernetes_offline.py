"""The kubernetes target without a cluster: its life cycle against an in-memory Kubernetes API
(kmock), teardown leaving nothing, what a killed run left removed by the next; every object it
creates valid for Kubernetes 1.34 and 1.35 (kubernetes-validate, strict); bad input and bad
clusters (no kubeconfig, unreachable, missing permissions, a pod that cannot get its image, a
namespace stuck terminating) as clear errors; --target kind without kind."""

from __future__ import annotations

import copy
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from kubernetes import client

from aislab.deployment.helm import Chart
from aislab.deployment.rendering import Deployment
from aislab.deployment.values import Values
from aislab.judging.configuration import SCHEMA_VERSIONS
from aislab.world.layout import SERVICE_UID, lab_dirs
from aislab.world.targets import LabError
from aislab.world.targets.base import HOSTS
from aislab.world.targets.kubernetes import manifests, target as k8s
from aislab.world.targets.kubernetes.chart import ChartService
from aislab.world.targets.kubernetes.cluster import Access, Cluster
from aislab.world.targets.kubernetes.delivery import Delivery
from tests.kube_mock import KubeMock

PROJECT = Path(__file__).resolve().parent.parent
CHART = PROJECT / "fixtures" / "charts" / "testkube-ai-service"
VALUES = PROJECT / "fixtures" / "values" / "good" / "everything.yaml"
IMAGES = manifests.Images("aislab/lab:0123456789ab", "Never")


# --- every object the target creates is valid -----------------------------------------------------
def _chart_service(tmp_path, made: list) -> ChartService:
    """The chart install as the target does it, with a target that only collects."""
    dirs = lab_dirs("kubernetes", 7)
    fake = SimpleNamespace(
        delivery=SimpleNamespace(ref=lambda tag: tag, deliver=lambda tags: None, pull_policy="Never"),
        image_tags={"reference": "aislab/reference-service:0123456789ab"}, additions=[], dirs=dirs,
        labels={manifests.LABEL: "test-7"}, _create=made.append, _tokens_by_request=lambda: True)
    deployment = Deployment.render(Chart.open(str(CHART), "testkube-ai-service", "testkube"), Values.read([VALUES]))
    overrides = {"controlPlaneRestApiUri": "{lab.controlplane.url}", "global": {"dex": {"issuer": "{lab.idp.issuer}"}},
                 "llmApi": {"url": "{lab.llm.url}", "apiKey": "{lab.llm.api_key}"}, "tls": {"serveHTTPS": False},
                 "service": {"port": "{lab.service.port}"}}
    values = {"lab.controlplane.url": "http://10.99.0.11:8090", "lab.idp.issuer": "http://10.99.0.10:5556",
              "lab.llm.url": "http://10.99.0.12:8000/v1", "lab.llm.api_key": "sk-lab-x", "lab.service.port": "9090"}
    return ChartService(fake, deployment, None, overrides, lambda: values)


def every_manifest(tmp_path) -> list[dict]:
    dirs = lab_dirs("kubernetes", 7)
    labels = {manifests.LABEL: "test-7", manifests.MACHINE_LABEL: "test", manifests.RUN_LABEL: "run"}
    made = [manifests.namespace("aislab-test-7", labels)]
    made += [manifests.host_pod(h, IMAGES, dirs, labels, "10.99.0.53", k8s.PROJECT_IN_IMAGE) for h in k8s.lab_hosts()]
    aliases = {f"{h}.lab": f"10.99.0.{n}" for h, n in HOSTS.items()}
    env = {"CONTROL_PLANE_ENDPOINT": "http://10.99.0.11:8090", "LLM_API_KEY": "sk-lab-x", "DO_NOT_TRACK": "true",
           "HTTPS_PROXY": "http://10.99.0.31:3128", "SSL_CERT_FILE": str(dirs.public / "ca.pem")}
    services = [None,
                manifests.driver_container(["python", "-m", "reference_service"], env, None, IMAGES, SERVICE_UID, dirs, k8s.PROJECT_IN_IMAGE),
                manifests.driver_container(["--verbose"], env, "vendor/ai:1.0", IMAGES, None, dirs, k8s.PROJECT_IN_IMAGE)]
    chart = _chart_service(tmp_path, made)
    services.append(chart.container({**env, "OIDC_CONFIGURATION_URL": "http://10.99.0.10:5556/.well-known/openid-configuration"}))
    for n, service in enumerate(services):
        pod, _added = manifests.witnessed_pod(f"service-{n}", "service", service, IMAGES, dirs, labels, "10.99.0.53", aliases,
                                              150, k8s.PROJECT_IN_IMAGE)
        made.append(pod)
    return made


def schema_errors(objects: list[dict]) -> list[str]:
    """Each object against the official schemas of Kubernetes 1.34 and 1.35, strictly."""
    errors = []
    for obj in objects:
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} {'.'.join(map(str, err.path))}: {err.message} ({version})")
    return errors


def test_every_object_the_target_creates_is_valid_for_kubernetes_1_34_and_1_35(tmp_path):
    made = every_manifest(tmp_path)
    kinds = {m["kind"] for m in made}
    assert {"Namespace", "Pod", "Secret", "ServiceAccount", "Service"} <= kinds, kinds
    errors = schema_errors(made)
    assert not errors, "\n".join(errors)


def test_the_chart_pod_is_the_charts_own_with_only_what_judging_needs(tmp_path):
    made: list = []
    chart = _chart_service(tmp_path, made)
    workload = chart.workload()
    template = copy.deepcopy(workload["spec"]["template"]["spec"])
    env = {e["name"]: e.get("value") for e in template["containers"][0]["env"] if "value" in e}
    env.pop("HTTP_PROXY"), env.pop("HTTPS_PROXY"), env.pop("NO_PROXY")  # the customer's proxy: the lab runs without it
    env["LLM_API_KEY"] = "sk-lab-x"
    service = chart.container(env)
    pod, added = manifests.witnessed_pod("service-1", "service", service, IMAGES, lab_dirs("kubernetes", 7), {}, "10.99.0.53",
                                         {}, 150, k8s.PROJECT_IN_IMAGE)
    ours = pod["spec"]["containers"][1]
    theirs = template["containers"][0]
    # Everything the chart renders is kept: probes, ports, image, its Secret reference, its mounts.
    for key in ("livenessProbe", "readinessProbe", "ports", "image", "imagePullPolicy"):
        assert ours[key] == theirs[key], key
    assert ours["image"].endswith("aislab/reference-service:0123456789ab")  # through helm values, like --set
    key_entry = next(e for e in ours["env"] if e["name"] == "LLM_API_KEY")
    assert key_entry["valueFrom"]["secretKeyRef"]["name"] == "ollama-credentials"
    assert all(m in ours["volumeMounts"] for m in theirs["volumeMounts"])
    assert pod["spec"]["serviceAccountName"] == template["serviceAccountName"]
    assert not any(e["name"] in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY") for e in ours["env"])
    # The customer's Secret is made with the driver's value, and said so; the rest is listed too.
    secret = next(m for m in made if m["kind"] == "Secret" and m["metadata"]["name"] == "ollama-credentials")
    assert secret["stringData"] == {"LLM_API_KEY": "sk-lab-x"}
    said = " ".join(chart.target.additions + added)
    for expected in ("Secret/ollama-credentials", "aislab-gate", "aislab-witness", "dnsPolicy None", "restartPolicy Never",
                     "image.repository", "Ingress/testkube-ai-service"):
        assert expected in said, expected


# --- the life cycle against an in-memory API ------------------------------------------------------
@pytest.fixture
def offline(monkeypatch):
    """No Docker, no images, no route to pods: what the cluster itself does is what is tested."""
    monkeypatch.setattr("aislab.world.targets.docker.images.ensure_images",
                        lambda log=None: {"lab": "aislab/lab:0123456789ab", "reference": "aislab/reference-service:0123456789ab"})
    monkeypatch.setattr(Delivery, "deliver", lambda self, tags, log=None: None)
    monkeypatch.setattr(k8s.KubernetesTarget, "_harness_address", lambda self, ip: "10.99.0.1")
    monkeypatch.setattr(k8s, "need_docker", lambda: None)
    monkeypatch.setenv("AISLAB_K8S_POD_ACCESS", "direct")


def acquire(api: KubeMock) -> k8s.KubernetesTarget:
    return k8s.KubernetesTarget.acquire(k8s.Settings(Access(str(api.kubeconfig)), image_registry="registry.invalid:5000"))


def live(api: KubeMock, namespace: str) -> dict[str, list[str]]:
    names = [n.metadata.name for n in api.core.list_namespace().items]
    pods = [p.metadata.name for p in api.core.list_namespaced_pod(namespace).items] if namespace in names else []
    return {"namespaces": [n for n in names if n == namespace], "pods": pods}


@pytest.mark.parametrize("access", ["direct", "relay"])
def test_life_cycle_namespace_pods_addresses_and_a_teardown_that_leaves_nothing(tmp_path, offline, monkeypatch, access):
    """Direct: this machine routes to the pods. Relay: it cannot, and the harness's connections
    go through a harness pod of the lab's own, whose address is the harness's."""
    monkeypatch.setenv("AISLAB_K8S_POD_ACCESS", access)
    with KubeMock(tmp_path) as api:
        target = acquire(api)
        try:
            target.dirs.create()
            target.create()
            ns = api.core.read_namespace(target.namespace)
            assert ns.metadata.labels[manifests.LABEL] == target.tag and ns.metadata.labels[manifests.RUN_LABEL] == target.run_id
            pods = {p.metadata.name: p for p in api.core.list_namespaced_pod(target.namespace).items}
            assert set(pods) == {f"host-{h}" for h in k8s.lab_hosts()} | ({"host-harness"} if access == "relay" else set())
            if access == "relay":
                assert target.address("harness") == pods["host-harness"].status.pod_ip and target.relay is not None
            else:
                assert target.address("harness") == "10.99.0.1" and target.relay is None
            assert all(p.spec.containers[0].image == "registry.invalid:5000/aislab/lab:0123456789ab" for p in pods.values())
            addresses = {h: target.address(h) for h in k8s.lab_hosts()}
            assert len(set(addresses.values())) == len(addresses) and all(a.startswith("10.99.0.") for a in addresses.values())
            assert target.address("service") == "0.0.0.0"  # no service pod yet: every address of it
            assert pods["host-idp"].spec.dns_config.nameservers == [addresses["dns"]]  # the lab's sinkhole resolves
        finally:
            target.destroy()
        assert live(api, target.namespace) == {"namespaces": [], "pods": []}
        assert not target.dirs.root.exists()


def test_a_killed_runs_namespace_is_removed_by_the_next_run_in_its_slot(tmp_path, offline):
    with KubeMock(tmp_path) as api:
        first = acquire(api)
        first.dirs.create()
        first.create()
        first.release()  # the owner is killed: nothing torn down
        assert live(api, first.namespace)["pods"]
        second = acquire(api)
        try:
            assert second.slot == first.slot and second.namespace == first.namespace
            assert live(api, first.namespace) == {"namespaces": [], "pods": []}
        finally:
            second.destroy()


def test_teardown_deletes_the_namespace_first_then_every_pod_without_grace_even_one_gone_meanwhile(tmp_path, offline, monkeypatch):
    """The service's pod, deleted with its grace as the service stops, can vanish just as the
    teardown deletes it (a 404): every other pod is still deleted without grace (the namespace
    controller would give a held witness minutes). The namespace goes first: a Deployment's pod
    deleted while it is Active comes back."""
    with KubeMock(tmp_path) as api:
        target = acquire(api)
        core, calls = target.cluster.core, []
        delete_namespace, delete_pod = core.delete_namespace, core.delete_namespaced_pod

        def recorded_namespace(name, **kw):
            calls.append(("namespace", name, kw.get("grace_period_seconds")))
            return delete_namespace(name, **kw)

        def vanishing_pod(name, namespace, **kw):
            calls.append(("pod", name, kw.get("grace_period_seconds")))
            answer = delete_pod(name, namespace, **kw)
            if sum(kind == "pod" for kind, *_ in calls) == 1:
                raise client.ApiException(status=404, reason="Not Found")
            return answer

        try:
            target.dirs.create()
            target.create()
            hosts = {p.metadata.name for p in core.list_namespaced_pod(target.namespace).items}
            monkeypatch.setattr(core, "delete_namespace", recorded_namespace)
            monkeypatch.setattr(core, "delete_namespaced_pod", vanishing_pod)
        finally:
            target.destroy()
        assert calls[0] == ("namespace", target.namespace, 0), calls
        assert {name for kind, name, grace in calls if kind == "pod" and grace == 0} == hosts
        assert not core.list_namespaced_pod(target.namespace).items  # kmock would still list a deleted namespace's pods


def test_permissions_are_asked_before_anything_is_created(tmp_path, offline):
    with KubeMock(tmp_path, allowed=False) as api:
        with pytest.raises(LabError, match=r"may not: create namespaces.*create pods/exec in aislab-"):
            acquire(api)
        assert not [n for n in api.core.list_namespace().items]


def test_a_pod_that_cannot_get_its_image_says_so_with_its_events(tmp_path, offline, monkeypatch):
    with KubeMock(tmp_path, kubelet="image") as api:
        target = acquire(api)
        try:
            target.dirs.create()
            api.core.create_namespaced_event  # noqa: B018 - events are listed from the API, none here
            with pytest.raises(LabError, match=r"(?s)pod host-dns in aislab-.*ErrImageNeverPull.*its events"):
                target.create()
        finally:
            target.destroy()


def test_a_namespace_stuck_terminating_is_named_with_what_blocks_it(tmp_path, offline, monkeypatch):
    with KubeMock(tmp_path) as api:
        target = acquire(api)
        stuck = client.V1Namespace(metadata=client.V1ObjectMeta(name=target.namespace),
                                   spec=client.V1NamespaceSpec(finalizers=["kubernetes"]),
                                   status=client.V1NamespaceStatus(phase="Terminating", conditions=[client.V1NamespaceCondition(
                                       type="NamespaceContentRemaining", status="True", message="Some resources are remaining: pods")]))
        monkeypatch.setattr(target.cluster.core, "list_namespace",
                            lambda **_: client.V1NamespaceList(items=[stuck], metadata=client.V1ListMeta(resource_version="1")))
        monkeypatch.setattr(k8s, "NAMESPACE_GONE_TIMEOUT", 0.5)
        try:
            with pytest.raises(LabError, match=r"namespace aislab-\S+ is stuck Terminating.*kubernetes.*Some resources are remaining"):
                target.create()
        finally:
            monkeypatch.undo()
            target.destroy()


def test_no_kubeconfig_and_an_unreachable_cluster_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(LabError, match=r"no kubeconfig at .*absent: give --kubeconfig"):
        Cluster(Access())
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": [{"name": "c", "cluster": '
                      '{"server": "http://127.0.0.1:9"}}], "users": [{"name": "u", "user": {}}], "contexts": [{"name": "c", '
                      '"context": {"cluster": "c", "user": "u"}}]}')
    started = time.monotonic()
    with pytest.raises(LabError, match=r"the cluster at http://127.0.0.1:9 \(context c\) is unreachable"):
        Cluster(Access(str(closed)))
    assert time.monotonic() - started < 10
    with pytest.raises(LabError, match=r"--context elsewhere: not in .*contexts: c"):
        Cluster(Access(str(closed), "elsewhere"))


def test_kind_without_kind_exits_1_in_under_5_seconds_saying_what_to_install(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    assert subprocess.run(["sh", "-c", "command -v kind"], env=env, capture_output=True).returncode != 0
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "aislab.cli", "run", "--target", "kind", "--report-dir", str(tmp_path / "r")],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "needs the `kind` CLI" in proc.stdout + proc.stderr and "kind.sigs.k8s.io" in proc.stdout + proc.stderr
    assert seconds < 5, seconds


def test_the_local_clusters_stop_awaits_its_processes_whatever_the_descriptor_numbers():
    """A long test session holds descriptors past select()'s 1024: stopping the local cluster then
    crashed at the session's end. Its processes are awaited through their pidfds all the same."""
    from aislab.world.targets.kubernetes import local

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"this process's descriptor limit ({soft}) stays below select()'s 1024")
    held = [os.dup(0) for _ in range(1100 - len(os.listdir("/proc/self/fd")))]
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        started = time.monotonic()
        local._stop_pids([p.pid for p in procs], grace=5)
        assert all(p.wait(timeout=5) is not None for p in procs)
        assert time.monotonic() - started < 4  # ended by SIGTERM, seen at once: no wait for the grace
    finally:
        for fd in held:
            os.close(fd)
        for p in procs:
            p.kill()
            p.wait()


def test_the_gate_awaits_the_end_of_the_deliver_exec_not_only_its_marker(tmp_path, monkeypatch):
    """A CI failure: the gate saw the lab's files delivered and ended its init container while
    the deliver exec, its work done, was still exiting; the runtime killed it and the harness
    read a failed delivery (no error text). The gate now waits for that process to end."""
    from aislab.world.targets.kubernetes import podside

    monkeypatch.setattr(podside, "POD", tmp_path)
    deliverer = subprocess.Popen(  # the real deliver, then lingering as if still exiting
        [sys.executable, "-c", "import sys, pathlib; from aislab.world.targets.kubernetes import podside as p; "
         "p.POD = pathlib.Path(sys.argv[1]); p.deliver(); sys.stdout.flush(); sys.stdin.readline()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    try:
        deliverer.stdin.write('{"plumbing": {"allowed": []}, "witness": {}}\n')
        deliverer.stdin.flush()
        assert deliverer.stdout.readline() == "delivered\n"
        assert not podside.await_delivery(0.3), "the gate went on while the deliver exec was still running"
        deliverer.stdin.close()
        assert podside.await_delivery(30)
        assert deliverer.poll() == 0
    finally:
        deliverer.kill()
        deliverer.wait()
