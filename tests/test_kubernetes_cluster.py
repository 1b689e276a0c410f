"""The kubernetes target on a real cluster: the local single-node Kubernetes 1.20.2 built here
from Debian's source (tests/conftest.py starts it once). The whole suite against the reference
installed from the stand-in chart gives the same verdict per claim as the local target; the
docker target's mutants are killed by the same claims; a run killed with SIGKILL leaves its
namespace to the next run and the cluster as it was; `--target kind` drives a recording
stand-in `kind`; every object a real lab creates is valid; the cluster's build is cached and
its start and stop leave nothing on the machine. Timings go to reports/kubernetes-bench.json."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from aislab.driver import load_driver
from aislab.world.lab import Lab
from aislab.world.targets import make_target
from aislab.world.targets.kubernetes import local
from aislab.world.targets.kubernetes.cluster import Access, Cluster
from aislab.world.targets.kubernetes.manifests import LABEL
from tests.suite_runs import DRIVERS, PROJECT, run_suite
from tests.test_kubernetes_offline import schema_errors
from tests.test_mutant_matrix import BY_NAME, DOCKER_VARIANTS, FAMILY_OF, WITH_CHART

BENCH = PROJECT / "reports" / "kubernetes-bench.json"


def bench(**timings) -> None:
    """The numbers the README quotes, from the last `make test`."""
    known = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    BENCH.parent.mkdir(parents=True, exist_ok=True)
    BENCH.write_text(json.dumps({**known, **timings}, indent=2) + "\n")


def lab_namespaces(cluster: Cluster) -> set[str]:
    return {n.metadata.name for n in cluster.core.list_namespace().items if LABEL in (n.metadata.labels or {})}


@pytest.fixture(scope="module")
def cluster(local_cluster) -> Cluster:
    return Cluster(Access(str(local_cluster)))


def test_the_build_is_cached_outside_the_clone(local_cluster):
    started = time.monotonic()
    bin_dir = local.build()
    cached = time.monotonic() - started
    assert cached < 10, cached  # a second build is a no-op
    assert not bin_dir.is_relative_to(PROJECT) and all((bin_dir / c).exists() for c in local.COMPONENTS)
    version = subprocess.run([str(bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True).stdout
    assert "v1.20.2" in version, version
    fresh = (bin_dir.parent / "build-seconds").read_text().strip()
    bench(build_fresh_seconds=int(fresh), build_cached_seconds=round(cached, 1))


def test_a_real_lab_creates_only_valid_objects_and_says_what_it_added(local_cluster, cluster):
    started = time.monotonic()
    lab = Lab(make_target("kubernetes"), load_driver(DRIVERS / "reference.yaml"))
    try:
        lab.up()
        up = time.monotonic() - started
        started = time.monotonic()
        lab.restart_service({"DO_NOT_TRACK": "1"})
        restart = time.monotonic() - started
        details = lab.target.details()
        created = lab.target.created
    finally:
        lab.down()
    bench(lab_up_seconds=round(up, 1), service_restart_seconds=round(restart, 1))
    assert {o["kind"] for o in created} == {"Namespace", "Pod"}
    errors = schema_errors(created)
    assert not errors, errors
    assert details["kubernetesVersion"] == "v1.20.2" and details["images"] == "imported into the local cluster's containerd"
    assert any("aislab-witness" in a for a in details["addedToTheServicePod"])


PARALLEL = 3  # suite runs at once, each in a lab (a namespace) of its own


@pytest.fixture(scope="module")
def runs(local_cluster, tmp_path_factory) -> dict:
    """The suite from the chart on the cluster and on the local target, and the docker target's
    subset of mutants on the cluster, each over the families of the claims it breaks (the lean
    subset: the other families are judged by the full run), PARALLEL at a time."""
    root = tmp_path_factory.mktemp("kubernetes-runs")
    jobs = {"kubernetes": ("kubernetes", None, WITH_CHART, "reference-chart.yaml"),
            "local": ("local", None, WITH_CHART, "reference-chart.yaml")}
    for name in DOCKER_VARIANTS:
        subject = BY_NAME[name]
        families = ",".join(sorted({FAMILY_OF[c] for c in subject.declared}))
        jobs[name] = ("kubernetes", subject.variant, ("--claims", families), subject.driver)

    def run(item):
        name, (target, variant, extra, driver) = item
        return name, run_suite(name, root / name.replace(":", "-"), variant, ["--target", target, *extra], driver=DRIVERS / driver)

    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = dict(pool.map(run, jobs.items()))
    bench(cluster_runs_wall_seconds=round(time.monotonic() - started, 1),
          suite_seconds_kubernetes=round(done["kubernetes"].seconds, 1), suite_seconds_local=round(done["local"].seconds, 1))
    done["report"] = json.loads((root / "kubernetes" / "conformance-report.json").read_text())
    return done


def test_the_suite_from_the_chart_gives_the_same_verdicts_as_the_local_target(runs):
    """The reference installed from the stand-in chart with the sample values, on the cluster;
    the same driver on the local target: the same verdict for every claim."""
    on_cluster, here = runs["kubernetes"], runs["local"]
    differing = {c: (here.verdicts.get(c), v) for c, v in on_cluster.verdicts.items() if here.verdicts.get(c) != v}
    assert not differing, f"verdicts differ (local, kubernetes): {differing}\n{on_cluster.output}"
    assert set(on_cluster.verdicts) == set(here.verdicts)
    added = runs["report"]["targetDetails"]["addedToTheServicePod"]
    assert any("Deployment/testkube-ai-service: its pod template" in a for a in added), added


@pytest.mark.parametrize("name", DOCKER_VARIANTS)
def test_the_docker_targets_mutants_are_killed_by_the_same_claims(runs, name):
    """Exactly its declared claims violated among the families it is run over."""
    run, declared = runs[name], BY_NAME[name].declared
    violated = run.with_verdict("violated")
    assert declared <= violated, f"{name} survived {sorted(declared - violated)} on kubernetes\n{run.output}"
    assert violated <= declared, f"{name} also violated {sorted(violated - declared)} on kubernetes\n{run.output}"


def test_without_a_route_to_the_pods_the_harness_goes_through_its_relay_pod(runs, tmp_path):
    """As on a cluster whose pod network this machine cannot route to: every connection of the
    harness relayed through the lab's harness pod (exec); the same verdicts as direct."""
    claims = ["AIS-AUTH-01", "AIS-AUTH-03", "AIS-PROXY-03", "AIS-TELEM-01"]
    run = run_suite("relay", tmp_path / "relay", extra=["--target", "kubernetes", *WITH_CHART, "--claims", ",".join(claims)],
                    driver=DRIVERS / "reference-chart.yaml", env_extra={"AISLAB_K8S_POD_ACCESS": "relay"})
    direct = runs["kubernetes"].verdicts
    assert {c: run.verdicts[c] for c in claims} == {c: direct[c] for c in claims}, run.output
    report = json.loads((tmp_path / "relay" / "conformance-report.json").read_text())
    assert report["targetDetails"]["podAccess"].startswith("relay"), report["targetDetails"]


def test_a_run_killed_with_sigkill_leaves_its_namespace_to_the_next_run(local_cluster, cluster, tmp_path):
    before = lab_namespaces(cluster)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "steps", "-q", "--target", "kubernetes", "--claims", "telemetry",
                             "--report-dir", str(tmp_path / "killed")], cwd=PROJECT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    left: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        left = lab_namespaces(cluster) - before
        services = [p for ns in left for p in cluster.core.list_namespaced_pod(ns).items if p.metadata.name.startswith("service-")]
        if any(p.status.phase == "Running" for p in services):
            break
        time.sleep(0.5)
    assert proc.poll() is None and left, "the run never got its service running"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lab_namespaces(cluster) - before == left  # nothing removed it: it was killed
    after = run_suite("next", tmp_path / "next", extra=["--target", "kubernetes", "--claims", "AIS-AUTH-01"])
    assert after.verdicts["AIS-AUTH-01"] == "satisfied", after.output
    assert lab_namespaces(cluster) == before  # the killed run's namespace went, and the next run's own
    node = cluster.core.list_node().items[0]
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


STAND_IN = '''#!/usr/bin/env python3
"""A recording stand-in for kind: every call is logged; a "cluster" is the local cluster."""
import json, os, shutil, subprocess, sys
log, state = os.environ["KIND_LOG"], os.environ["KIND_STATE"]
clusters = json.load(open(state)) if os.path.exists(state) else []
args = sys.argv[1:]
entry = {"args": args}
def opt(name):
    return args[args.index(name) + 1] if name in args else None
if args[:2] == ["create", "cluster"]:
    entry["config"] = json.load(open(opt("--config")))
    shutil.copy(os.environ["LOCAL_KUBECONFIG"], opt("--kubeconfig"))
    clusters.append(opt("--name"))
elif args[:2] == ["get", "clusters"]:
    print("\\n".join(clusters))
elif args[:2] == ["get", "kubeconfig"]:
    print(open(os.environ["LOCAL_KUBECONFIG"]).read())
elif args[:2] == ["load", "docker-image"]:
    sys.path.insert(0, os.environ["PROJECT"])
    from aislab.world.targets.kubernetes.delivery import Delivery
    Delivery("containerd").deliver([args[2]])
elif args[:2] == ["delete", "cluster"]:
    clusters.remove(opt("--name"))
with open(log, "a") as fh:
    fh.write(json.dumps(entry) + "\\n")
json.dump(clusters, open(state, "w"))
'''


def test_kind_creates_loads_and_deletes_its_cluster_through_the_kind_cli(local_cluster, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kind = bin_dir / "kind"
    kind.write_text(STAND_IN.replace("#!/usr/bin/env python3", f"#!{sys.executable}"))
    kind.chmod(kind.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "kind.log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "KIND_LOG": str(log), "KIND_STATE": str(tmp_path / "clusters.json"),
           "LOCAL_KUBECONFIG": str(local_cluster), "PROJECT": str(PROJECT)}
    run = run_suite("kind", tmp_path / "report", extra=["--target", "kind", "--claims", "AIS-AUTH-01"], env_extra=env)
    assert run.verdicts["AIS-AUTH-01"] == "satisfied", run.output
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    create = next(c for c in calls if c["args"][:2] == ["create", "cluster"])
    name = create["args"][create["args"].index("--name") + 1]
    assert create["config"]["kind"] == "Cluster" and create["config"]["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert create["config"]["name"] == name and create["config"]["nodes"] == [{"role": "control-plane"}]
    loaded = [c["args"][2] for c in calls if c["args"][:2] == ["load", "docker-image"]]
    assert loaded and all(c["args"][-2:] == ["--name", name] for c in calls if c["args"][:2] == ["load", "docker-image"])
    assert any(tag.startswith("aislab/lab:") for tag in loaded)
    assert calls[-1]["args"] == ["delete", "cluster", "--name", name]  # thrown away at the end
    report = json.loads((tmp_path / "report" / "conformance-report.json").read_text())
    assert report["targetDetails"]["kind"] == "kind" and report["targetDetails"]["kindCluster"] == name


def test_stop_leaves_nothing_on_the_machine_and_start_brings_it_back(local_cluster, cluster):
    """Last: after labs ran on it. Stopped, the cluster leaves no process, mount, network
    namespace, bridge, route, iptables rule or chain, cgroup or changed sysctl; started again
    (cold), its node is Ready."""
    found = json.loads(local.STATE.read_text())
    started = time.monotonic()
    local.stop()
    stopped = time.monotonic() - started
    assert local.footprint() == {}
    assert {k: local._sysctl(k) for k in local.SYSCTLS} == found["sysctls"]
    started = time.monotonic()
    local.ensure_started()
    bench(cluster_stop_seconds=round(stopped, 1), cluster_start_seconds=round(time.monotonic() - started, 1))
    assert local.node_ready()
