"""An in-memory Kubernetes API for the kubernetes target's offline tests: kmock's emulator on a
local port (the official client talks to it over HTTP), with what kmock lacks for this target
added here: namespaces (its path parser takes /api/v1/namespaces for a namespaced path),
/version, SelfSubjectAccessReview, watches (its streams reach the official client with no
event), and a kubelet that gives pods an address and runs them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from pathlib import Path

import kmock
from kmock._internal import parsing
from kubernetes import client, watch

RESOURCES = ("v1/namespaces", "v1/pods", "v1/secrets", "v1/serviceaccounts", "v1/services", "v1/configmaps", "v1/events")
VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0-kmock", "platform": "linux/amd64", "buildDate": "",
           "compiler": "gc", "gitCommit": "", "gitTreeState": "clean", "goVersion": "go"}

_parse_path = parsing.parse_path


def _cluster_scoped_namespaces(path: str):
    bits = path.split("?")[0].strip("/").split("/")
    if bits[:3] == ["api", "v1", "namespaces"] and len(bits) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, bits[3] if len(bits) == 4 else None, None)
    return _parse_path(path)


class _Emulator(kmock.KubernetesEmulator):
    """An access review is asked, never stored (kmock would keep it, and refuse the next as a
    conflict)."""

    async def _handle(self, request):
        if request.resource is not None and request.resource.plural == "selfsubjectaccessreviews":
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        return await super()._handle(request)


class KubeMock:
    """Run with `with KubeMock() as api:`; `api.kubeconfig` is a kubeconfig for it."""

    def __init__(self, tmp: Path, allowed: bool = True, kubelet: str = "runs"):
        self.tmp, self.allowed, self.kubelet_mode = tmp, allowed, kubelet
        self._ready, self._stop, self._kubelet_stop = threading.Event(), threading.Event(), threading.Event()
        self.url = ""

    def __enter__(self) -> "KubeMock":
        parsing.parse_path = _cluster_scoped_namespaces
        self._stream, watch.Watch.stream = watch.Watch.stream, lambda _w, func, *a, **kw: self._watch_by_listing(func, *a, **kw)
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("kmock did not start")
        configuration = client.Configuration()
        configuration.host = self.url
        self.core = client.CoreV1Api(client.ApiClient(configuration))
        self.kubeconfig = self.tmp / "kmock.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "offline"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}]}))
        self._kubelet_thread = threading.Thread(target=self._kubelet, daemon=True)
        self._kubelet_thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._kubelet_stop.set()  # the kubelet's pass ends before the API it talks to
        self._kubelet_thread.join(10)
        self._stop.set()
        parsing.parse_path = _parse_path
        watch.Watch.stream = self._stream

    def _watch_by_listing(self, func, *args, timeout_seconds=None, resource_version=None, _request_timeout=None, **kw):
        """A watch as the API server gives it (each object ADDED first, then what changes),
        told from lists taken one after another."""
        seen: dict = {}
        deadline = time.monotonic() + (timeout_seconds or 3600)
        while time.monotonic() < deadline and not self._stop.is_set():
            now = {o.metadata.name: o for o in func(*args, **kw).items}
            for name, obj in now.items():
                if name not in seen or obj.to_dict() != seen[name].to_dict():
                    yield {"type": "MODIFIED" if name in seen else "ADDED", "object": obj}
            for name in seen.keys() - now.keys():
                yield {"type": "DELETED", "object": seen[name]}
            seen = now
            time.sleep(0.05)

    async def _serve(self) -> None:
        try:
            await self._emulate()
        except RuntimeError as err:  # kmock's resolver interception, unwound from another thread's loop
            if "resolver chain" not in str(err):
                raise

    async def _emulate(self) -> None:
        async with _Emulator() as emulator, kmock.Server(emulator) as server:
            for resource in RESOURCES:
                emulator.resources[resource] = {}
            emulator["get /version/"] << VERSION
            emulator["post /apis/authorization.k8s.io/v1/selfsubjectaccessreviews"] << {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {},
                "status": {"allowed": self.allowed}}
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

    def objects(self) -> list[tuple[str, str | None, str]]:
        """(plural, namespace, name) of every object the API holds."""
        return [(key[0].plural, key[1], key[2]) for key in self.emulator.objects]

    def _controller(self, namespace: str) -> None:
        """The controller-manager's part: a new namespace's default service account, with its token."""
        try:
            if any(a.metadata.name == "default" for a in self.core.list_namespaced_service_account(namespace).items
                   if a.metadata.namespace == namespace):
                return
            self.core.read_namespace(namespace)
            self.core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"},
                                                                    "secrets": [{"name": "default-token-kmock"}]})
        except client.ApiException:
            pass  # deleted meanwhile

    def _kubelet(self) -> None:
        """Pods get an address and run (or, kubelet="image", wait on an image they cannot get); new
        namespaces get their default service account."""
        addresses = ipaddress.ip_network("10.99.0.0/24").hosts()
        next(addresses)
        while not self._kubelet_stop.is_set():
            for plural, ns, name in self.objects():
                if plural == "namespaces":
                    self._controller(name)
                if plural != "pods":
                    continue
                try:
                    pod = self.core.read_namespaced_pod(name, ns)
                except client.ApiException:
                    continue  # deleted (kmock keeps the history)
                if pod.status and pod.status.pod_ip:
                    continue
                names = [c.name for c in pod.spec.containers]
                if self.kubelet_mode == "image":
                    state = {"waiting": {"reason": "ErrImageNeverPull", "message": "the image is not present with pull policy Never"}}
                    status = {"phase": "Pending", "podIP": str(next(addresses)),
                              "containerStatuses": [{"name": n, "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                                                     "state": state} for n in names]}
                else:
                    status = {"phase": "Running", "podIP": str(next(addresses)),
                              "containerStatuses": [{"name": n, "ready": True, "restartCount": 0, "image": "x", "imageID": "",
                                                     "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}} for n in names]}
                try:
                    self.core.patch_namespaced_pod_status(name, ns, {"status": status})
                except client.ApiException:
                    continue  # deleted since it was read
            time.sleep(0.05)
