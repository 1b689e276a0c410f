"""The local cluster: a real single-node Kubernetes (upstream 1.20.2 as Debian bookworm ships its
source), built once per machine and run from Debian's own etcd, containerd, runc and CNI plugins.

    python -m aislab.world.targets.kubernetes.local build|start|stop|status|kubeconfig

- build: `scripts/local-cluster-build.sh` (cached under /var/cache/aislab/kubernetes/<source
  version>/; a second build is a no-op).
- start: a bridge with the node's address, etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler, a containerd of its own (own root, state, socket; Docker's is left alone), the
  kubelet and kube-proxy; prints the kubeconfig's path once the node is Ready.
- stop: everything start changed on the machine is undone: processes (and every container),
  mounts, network namespaces, the bridge and its routes, iptables chains and rules, cgroups,
  sysctls. What start found is recorded first, so stop removes only what the cluster added, also
  after a crash or a killed start.

The cluster has no policy-enforcing CNI and no cluster DNS (neither is packaged in bookworm):
the kubernetes target never relies on either. Its pod network (10.236.0.0/16) is routed from this
machine, so the harness reaches pods directly.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import io
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aislab import PROJECT
from aislab.world.pki import subject_alt_names
from aislab.world.targets.base import LabError, await_ended

CACHE = Path(os.environ.get("AISLAB_K8S_CACHE", "/var/cache/aislab/kubernetes"))
RUN = Path(os.environ.get("AISLAB_K8S_RUN", "/run/aislab-k8s"))  # a running cluster's everything
DATA = Path(os.environ.get("AISLAB_K8S_DATA", "/var/lib/aislab/kubernetes"))  # containerd's image store: kept
LOGS = Path("/var/log/aislab-k8s")
BUILD_SCRIPT = PROJECT / "scripts" / "local-cluster-build.sh"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")

BRIDGE = "aisk8s0"
NODE_IP = "10.236.0.1"
POD_CIDR = "10.236.0.0/16"
SERVICE_CIDR = "10.237.0.0/24"
NODE_NAME = "aislab-node"
API_PORT = 16443
ETCD_PORTS = (2479, 2480)
PAUSE_IMAGE = "aislab/pause:static"
CONTAINERD_SOCK = RUN / "containerd.sock"
KUBECONFIG = RUN / "admin.kubeconfig"
STATE = RUN / "found.json"  # what start found on the machine, so stop removes only what it added
# Sysctls the kubelet and kube-proxy set (kernel defaults they insist on, route_localnet) or the
# CNI bridge plugin does (ip_forward): put back as they were.
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys",
           "kernel.keys.root_maxbytes", "net.ipv4.conf.all.route_localnet", "net.ipv4.ip_forward",
           "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
CHAIN_PREFIXES = ("KUBE-", "CNI-", "AISLAB-K8S")
TABLES = ("filter", "nat", "mangle", "raw")


def say(message: str) -> None:
    print(f"local-cluster: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


# --- build -----------------------------------------------------------------------------------
def build() -> Path:
    """The binaries (built once per machine and source version); returns their directory."""
    if os.geteuid() != 0:
        raise LabError("the local cluster is built and run as root (apt, network, cgroups): run as root (CI does)")
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, env={**os.environ, "AISLAB_K8S_CACHE": str(CACHE)})
    if proc.returncode != 0:
        raise LabError(f"building the local cluster failed (exit {proc.returncode}); its output is above")
    return Path(proc.stdout.strip().splitlines()[-1]) / "bin"


def built() -> Path | None:
    """The binaries' directory if a build is complete (the newest source version built)."""
    done = sorted((p for p in CACHE.glob("*/.built")), key=lambda p: p.stat().st_mtime)
    return done[-1].parent / "bin" if done else None


# --- certificates ------------------------------------------------------------------------------
class Authority:
    """The cluster's CA and the certificates its components present (ECDSA P-256)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._builder("aislab-local-cluster-ca", None, self.key).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).issuer_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aislab-local-cluster-ca")])).sign(self.key, hashes.SHA256())
        self._write("ca", self.cert, self.key)

    @staticmethod
    def _builder(cn: str, org: str | None, key) -> x509.CertificateBuilder:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else [])
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(x509.Name(attrs)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=30)))

    def _sign(self, builder: x509.CertificateBuilder, ca_key) -> x509.Certificate:
        return builder.issuer_name(self.cert.subject).sign(ca_key, hashes.SHA256())

    def _write(self, name: str, cert: x509.Certificate, key) -> None:
        (self.dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path = self.dir / f"{name}.key"
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def issue(self, name: str, cn: str, org: str | None = None, server_names: tuple[str, ...] = ()) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = self._builder(cn, org, key).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if server_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(subject_alt_names(server_names)), critical=False)
        self._write(name, self._sign(builder, self.key), key)

    def kubeconfig(self, path: Path, name: str) -> Path:
        """A kubeconfig for the client certificate `name`, everything embedded."""
        import base64

        def b64(suffix: str, of: str) -> str:
            return base64.b64encode((self.dir / f"{of}.{suffix}").read_bytes()).decode()

        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "aislab-local",
            "clusters": [{"name": "aislab-local", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                              "certificate-authority-data": b64("crt", "ca")}}],
            "users": [{"name": name, "user": {"client-certificate-data": b64("crt", name), "client-key-data": b64("key", name)}}],
            "contexts": [{"name": "aislab-local", "context": {"cluster": "aislab-local", "user": name}}],
        }, indent=1))
        path.chmod(0o600)
        return path


# --- what is on the machine --------------------------------------------------------------------
def machine_state() -> dict:
    """What stop must find again: links, routes, iptables chains and rules, mounts, network
    namespaces, cgroups, sysctls (a test lists these before start and after stop)."""
    state: dict = {
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in _run(["ip", "-o", "link", "show"]).stdout.splitlines()),
        "routes": sorted(_run(["ip", "route", "show"]).stdout.strip().splitlines()),
        "netns": sorted(p.name for p in Path("/run/netns").glob("*")) if Path("/run/netns").is_dir() else [],
        "mounts": sorted({line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*")),
        "sysctls": {k: _sysctl(k) for k in SYSCTLS},
    }
    for tool in ("iptables", "ip6tables"):
        state[tool] = {t: sorted(_run([tool, "-w", "-t", t, "-S"], check=False).stdout.strip().splitlines()) for t in TABLES}
    return state


def footprint() -> dict:
    """What of the machine is the cluster's (others may change the rest meanwhile: docker labs,
    network-namespace labs): its bridge and pod veths, routes to its networks, its iptables
    rules and chains, its mounts and network namespaces, kubepods cgroups, its live processes.
    Empty once stopped."""
    ours = lambda text: any(p in text for p in (*CHAIN_PREFIXES, BRIDGE, "10.236.", "10.237."))  # noqa: E731
    links = _run(["ip", "-o", "link", "show"]).stdout.splitlines()
    found = {
        "links": sorted(line.split(":")[1].strip() for line in links if f"master {BRIDGE}" in line or f" {BRIDGE}:" in line),
        "routes": sorted(r for r in _run(["ip", "route", "show"]).stdout.splitlines() if ours(r)),
        "mounts": sorted({p for p in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
                          if p.startswith((str(RUN), str(DATA), "/run/netns/cni-"))}),
        "netns": sorted(p.name for p in Path("/run/netns").glob("cni-*")) if Path("/run/netns").is_dir() else [],
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*")),
        "processes": sorted(p for p in our_processes() if _alive(p)),
    }
    for tool in ("iptables", "ip6tables"):
        found[tool] = sorted(line for line in _run([tool + "-save"], check=False).stdout.splitlines() if ours(line))
    return {k: v for k, v in found.items() if v}


def _sysctl(key: str) -> str | None:
    path = Path("/proc/sys") / key.replace(".", "/")
    return path.read_text().strip() if path.exists() else None


def our_processes() -> list[int]:
    """Every process of the local cluster: its components, its containerd and shims, and every
    process in a pod (by cgroup), whether or not a pid file still names it."""
    binaries = {str(b) for b in CACHE.glob("*/bin/*")}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            exe = os.readlink(entry / "exe")
            cgroup = (entry / "cgroup").read_text()
        except (OSError, ValueError):
            continue
        args = [a.decode(errors="replace") for a in cmdline if a]
        mine = (exe in binaries or any(str(RUN) in a for a in args)
                or "/kubepods" in cgroup)
        if mine and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


# --- start ---------------------------------------------------------------------------------------
class Cluster:
    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.pki = RUN / "pki"

    def _spawn(self, name: str, cmd: list[str]) -> int:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        (RUN / "pids").mkdir(exist_ok=True)
        (RUN / "pids" / f"{name}.pid").write_text(str(proc.pid))
        self._procs[name] = proc
        return proc.pid

    def _await(self, what: str, check, timeout: float, component: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if component and self._procs[component].poll() is not None:
                raise LabError(f"{component} exited ({self._procs[component].returncode}) before {what}; "
                               f"its log ({LOGS / (component + '.log')}):\n{_tail(LOGS / (component + '.log'))}")
            time.sleep(0.1)
        raise LabError(f"{what} did not happen within {timeout:.0f}s; log: {LOGS / ((component or 'kubelet') + '.log')}\n"
                       f"{_tail(LOGS / ((component or 'kubelet') + '.log'))}")

    def start(self) -> dict[str, float]:
        self._procs: dict[str, subprocess.Popen] = {}
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        for d in (RUN, self.pki, RUN / "cni", DATA):
            d.mkdir(parents=True, exist_ok=True)
        STATE.write_text(json.dumps(machine_state()))
        ca = Authority(self.pki)
        ca.issue("apiserver", "kube-apiserver", server_names=("127.0.0.1", "localhost", NODE_IP, "10.237.0.1", "kubernetes",
                                                               "kubernetes.default", "kubernetes.default.svc"))
        ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
        ca.issue("admin", "aislab-admin", "system:masters")
        ca.issue("controller-manager", "system:kube-controller-manager")
        ca.issue("scheduler", "system:kube-scheduler")
        ca.issue("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        ca.issue("kubelet-serving", NODE_NAME, server_names=(NODE_IP, NODE_NAME))
        ca.issue("kube-proxy", "system:kube-proxy")
        sa = ec.generate_private_key(ec.SECP256R1())
        (self.pki / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        (self.pki / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
        for who in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"):
            ca.kubeconfig(RUN / f"{who}.kubeconfig", who)

        # The node's address lives on the pod bridge (the kubelet refuses a loopback node IP).
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        self._firewall()
        self._cni()

        pki = self.pki
        self._spawn("etcd", ["etcd", "--name", "aislab", "--data-dir", str(RUN / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORTS[0]}",
                             "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORTS[0]}",
                             "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PORTS[1]}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PORTS[1]}",
                             "--initial-cluster", f"aislab=http://127.0.0.1:{ETCD_PORTS[1]}", "--log-level", "warn"])
        self._containerd()
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{ETCD_PORTS[0]}",
            "--bind-address=127.0.0.1", f"--secure-port={API_PORT}", f"--advertise-address={NODE_IP}",
            "--insecure-port=0", "--authorization-mode=Node,RBAC", f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}", "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true", "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass",
            "--profiling=false", "--v=0"])
        self._await("the API server ready", self._api_ready, 60, "kube-apiserver")
        timings["apiserver"] = time.monotonic() - t0
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={RUN / 'controller-manager.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service", "--profiling=false"])
        self._spawn("kube-scheduler", [str(self.bin / "kube-scheduler"), f"--kubeconfig={RUN / 'scheduler.kubeconfig'}",
                                       "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false"])
        self._kubelet()
        self._spawn("kube-proxy", [
            str(self.bin / "kube-proxy"), f"--kubeconfig={RUN / 'kube-proxy.kubeconfig'}", "--proxy-mode=iptables",
            f"--cluster-cidr={POD_CIDR}", f"--hostname-override={NODE_NAME}", "--healthz-bind-address=127.0.0.1:10256",
            "--metrics-bind-address=127.0.0.1:10249", "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0", "--profiling=false"])
        self._import_pause()
        self._await("the node Ready", self._node_ready, 90, "kubelet")
        # ClusterIPs are reachable from this machine too (kube-proxy's rules do the rest).
        _run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        timings["ready"] = time.monotonic() - t0
        (RUN / "started.json").write_text(json.dumps({"timings": timings, "bin": str(self.bin), "at": time.time()}))
        return timings

    def _firewall(self) -> None:
        """Pods reach each other and this machine, never beyond: no masquerade, and a reject for
        anything from the pod network bound elsewhere."""
        _run(["iptables", "-w", "-N", "AISLAB-K8S"])
        _run(["iptables", "-w", "-A", "AISLAB-K8S", "-d", POD_CIDR, "-j", "RETURN"])
        _run(["iptables", "-w", "-A", "AISLAB-K8S", "-d", SERVICE_CIDR, "-j", "RETURN"])
        _run(["iptables", "-w", "-A", "AISLAB-K8S", "-j", "REJECT"])
        _run(["iptables", "-w", "-I", "FORWARD", "-s", POD_CIDR, "-j", "AISLAB-K8S"])

    def _cni(self) -> None:
        (RUN / "cni" / "10-aislab.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "aislab-pods",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(RUN / "cni-ipam"), "routes": [{"dst": "0.0.0.0/0"}],
                          "ranges": [[{"subnet": POD_CIDR, "rangeStart": "10.236.0.10", "gateway": NODE_IP}]]}},
                # Docker sets the FORWARD policy to DROP, and bridged pod traffic passes FORWARD.
                {"type": "firewall", "backend": "iptables"},
            ],
        }, indent=1))

    def _containerd(self) -> None:
        config = RUN / "containerd.toml"
        config.write_text(f"""version = 2
root = "{DATA / 'containerd'}"
state = "{RUN / 'containerd'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{CONTAINERD_SOCK}"
[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{DATA / 'containerd-opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{RUN / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{RUN / 'runc'}"
        SystemdCgroup = false
""")
        self._spawn("containerd", ["containerd", "--config", str(config), "--log-level", "warn"])
        self._await("containerd answering", lambda: _run(ctr("version"), check=False).returncode == 0, 30, "containerd")

    def _kubelet(self) -> None:
        root = RUN / "kubelet"
        root.mkdir(exist_ok=True)
        config = RUN / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": 10250, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs", "failSwapOn": False, "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local", "maxPods": 250, "serializeImagePulls": False,
            # Images cannot be pulled here: never collect one, and evict nothing for a busy disk.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "volumeStatsAggPeriod": "1h", "nodeStatusReportFrequency": "10s",
        }))
        self._spawn("kubelet", [
            str(self.bin / "kubelet"), f"--config={config}", f"--kubeconfig={RUN / 'kubelet.kubeconfig'}",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{CONTAINERD_SOCK}",
            f"--root-dir={root}", f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
            f"--cert-dir={root / 'pki'}", "--v=0"])

    def _import_pause(self) -> None:
        have = _run(ctr("-n", "k8s.io", "images", "ls", "-q"), check=False).stdout.split()
        if f"docker.io/{PAUSE_IMAGE}" in have:
            return
        _import_tar(pause_image_tar(self.bin / "pause"))

    def _api_ready(self) -> bool:
        return _api_get("/readyz") == 200

    def _node_ready(self) -> bool:
        try:
            return node_ready()
        except Exception:  # noqa: BLE001 - not registered yet, API busy
            return False


def ctr(*args: str) -> list[str]:
    return ["ctr", "--address", str(CONTAINERD_SOCK), *args]


def _import_tar(data: bytes) -> None:
    proc = subprocess.run(ctr("-n", "k8s.io", "images", "import", "--all-platforms", "-"), input=data, capture_output=True)
    if proc.returncode != 0:
        raise LabError(f"importing an image into the local cluster failed: {proc.stderr.decode(errors='replace')[-1000:]}")


def pause_image_tar(binary: Path) -> bytes:
    """A docker-archive holding only the static pause binary (every pod sandbox runs it)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(binary, "rb") as fh:
            tar.addfile(info, fh)
    layer_bytes = layer.getvalue()
    import hashlib

    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/pause"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "history": [{"created_by": "aislab local cluster"}]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes),
                           ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE],
                                                          "Layers": ["layer/layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _ssl_context() -> ssl.SSLContext:
    pki = RUN / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def _api_get(path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{API_PORT}{path}", context=_ssl_context(), timeout=2) as response:
            return response.status
    except Exception:  # noqa: BLE001 - not up yet
        return None


def _api_json(path: str) -> dict:
    with urllib.request.urlopen(f"https://127.0.0.1:{API_PORT}{path}", context=_ssl_context(), timeout=5) as response:
        return json.loads(response.read())


def node_ready() -> bool:
    node = _api_json(f"/api/v1/nodes/{NODE_NAME}")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- stop ----------------------------------------------------------------------------------------
def stop() -> float:
    """Undo everything start did (also after a crash): returns the seconds it took."""
    t0 = time.monotonic()
    found = json.loads(STATE.read_text()) if STATE.exists() else None
    # The kubelet first (it would restart containers), then every pod's processes, then the rest.
    _stop_pids(_pidfile("kubelet"))
    for _ in range(3):
        pids = our_processes()
        if not pids:
            break
        _stop_pids(pids, grace=3.0)
    _unmount_under([RUN, DATA])
    for name in (Path("/run/netns").glob("cni-*") if Path("/run/netns").is_dir() else []):
        if found is None or name.name not in found["netns"]:
            subprocess.run(["umount", str(name)], capture_output=True)
            name.unlink(missing_ok=True)
    for tool in ("iptables", "ip6tables"):
        _remove_chains(tool, (found or {}).get(tool, {}))
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    for link in _run(["ip", "-o", "link", "show", "type", "veth"], check=False).stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name.startswith("veth") and found is not None and name not in found["links"]:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    _remove_cgroups()
    for key, value in ((found or {}).get("sysctls") or {}).items():
        if value is not None and _sysctl(key) != value:
            (Path("/proc/sys") / key.replace(".", "/")).write_text(value)
    shutil.rmtree(RUN, ignore_errors=True)
    return time.monotonic() - t0


def _pidfile(name: str) -> list[int]:
    path = RUN / "pids" / f"{name}.pid"
    try:
        return [int(path.read_text())]
    except (FileNotFoundError, ValueError):
        return []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _stop_pids(pids: list[int], grace: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    await_ended(pids, grace)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    await_ended(pids, 5)


def _unmount_under(roots: list[Path]) -> None:
    """Every mount the cluster made (pod volumes, container root filesystems, sandbox shm),
    deepest first."""
    for _ in range(3):
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        ours = sorted({p for p in points if any(p == str(r) or p.startswith(str(r) + "/") for r in roots)},
                      key=lambda p: -p.count("/"))
        if not ours:
            return
        for point in ours:
            subprocess.run(["umount", point], capture_output=True)
        for point in ours:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_chains(tool: str, before: dict[str, list[str]]) -> None:
    """Rules and chains the cluster added (KUBE-*, CNI-*, AISLAB-K8S), nothing that was there."""
    for table in TABLES:
        had = set(before.get(table, []))
        rules = _run([tool, "-w", "-t", table, "-S"], check=False).stdout.splitlines()
        for rule in rules:
            if rule.startswith("-A ") and rule not in had and any(p in rule for p in CHAIN_PREFIXES):
                words = shlex.split(rule)  # comments are quoted
                if not words[1].startswith(CHAIN_PREFIXES):  # rules in built-in chains jumping to ours
                    subprocess.run([tool, "-w", "-t", table, "-D", *words[1:]], capture_output=True)
        for rule in rules:
            if rule.startswith("-N ") and rule not in had and rule.split()[1].startswith(CHAIN_PREFIXES):
                subprocess.run([tool, "-w", "-t", table, "-F", rule.split()[1]], capture_output=True)
        for rule in rules:
            if rule.startswith("-N ") and rule not in had and rule.split()[1].startswith(CHAIN_PREFIXES):
                subprocess.run([tool, "-w", "-t", table, "-X", rule.split()[1]], capture_output=True)


def _remove_cgroups() -> None:
    for top in Path("/sys/fs/cgroup").glob("*/kubepods*"):
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
            try:
                path.rmdir()
            except OSError:
                pass


# --- the command ---------------------------------------------------------------------------------
def running() -> bool:
    return KUBECONFIG.exists() and _api_get("/readyz") == 200


def ensure_started() -> Path:
    """Build if need be, start unless running; the admin kubeconfig (what `make test` uses)."""
    with _lock():
        bin_dir = built() or build()
        if not running():
            if RUN.exists():  # a crashed or killed cluster: clean before starting afresh
                stop()
            Cluster(bin_dir).start()
        return KUBECONFIG


class _lock:
    def __enter__(self):
        Path("/run/lock").mkdir(exist_ok=True)
        self.fd = os.open("/run/lock/aislab-local-cluster.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aislab.world.targets.kubernetes.local",
                                     description="The local single-node Kubernetes (1.20.2 from Debian's source).")
    parser.add_argument("command", choices=("build", "start", "stop", "status", "kubeconfig", "ensure"))
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            t0 = time.monotonic()
            bin_dir = build()
            say(f"binaries in {bin_dir} ({time.monotonic() - t0:.1f}s)")
        elif args.command == "start":
            with _lock():
                if running():
                    say("already running")
                else:
                    bin_dir = built() or build()
                    if RUN.exists():
                        stop()
                    timings = Cluster(bin_dir).start()
                    say(f"node Ready in {timings['ready']:.1f}s (API server {timings['apiserver']:.1f}s)")
            print(KUBECONFIG)
        elif args.command == "ensure":
            print(ensure_started())
        elif args.command == "stop":
            with _lock():
                seconds = stop()
            say(f"stopped in {seconds:.1f}s")
        elif args.command == "status":
            if running():
                print(f"running: {KUBECONFIG}")
            else:
                print("stopped")
                return 3
        elif args.command == "kubeconfig":
            if not running():
                say("not running: start it first (python -m aislab.world.targets.kubernetes.local start)")
                return 1
            print(KUBECONFIG)
    except LabError as err:
        say(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
