"""The cluster as the target sees it: the official `kubernetes` client on a kubeconfig and
context, checked before anything is created (reachable, and allowed to do what a lab needs:
SelfSubjectAccessReview), and the few calls the target makes through it (exec included)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream

from aislab.world.targets.base import LabError

# What a lab does, as (verb, resource, subresource, namespaced): checked before anything exists.
NEEDED = (
    ("create", "namespaces", "", False), ("delete", "namespaces", "", False), ("list", "namespaces", "", False),
    ("create", "pods", "", True), ("get", "pods", "", True), ("list", "pods", "", True), ("delete", "pods", "", True),
    ("create", "pods", "exec", True), ("get", "pods", "log", True), ("list", "events", "", True),
    ("list", "serviceaccounts", "", True),
    ("watch", "namespaces", "", False), ("watch", "pods", "", True), ("watch", "serviceaccounts", "", True),
)
# What installing the chart's objects beside the service's pod needs as well.
NEEDED_FOR_CHART = (("create", "secrets", "", True), ("create", "serviceaccounts", "", True), ("create", "services", "", True),
                    ("create", "configmaps", "", True))


@dataclass(frozen=True)
class Access:
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config
    context: str | None = None


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")


class Cluster:
    """A connected, checked cluster."""

    def __init__(self, access: Access, connect_timeout: float = 5.0):
        self.access = access
        path = access.kubeconfig or default_kubeconfig()
        if not Path(path).is_file():
            raise LabError(f"no kubeconfig at {path}: give --kubeconfig FILE (or set KUBECONFIG); for the local cluster: "
                           "python -m aislab.world.targets.kubernetes.local start (it prints its kubeconfig)")
        self.kubeconfig = path
        configuration = client.Configuration()
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)
            names = [c["name"] for c in contexts]
            if access.context and access.context not in names:
                raise LabError(f"--context {access.context}: not in {path}; its contexts: {', '.join(names) or 'none'}")
            config.load_kube_config(config_file=path, context=access.context, client_configuration=configuration)
        except ConfigException as err:
            raise LabError(f"cannot use the kubeconfig {path}: {err}") from None
        self.context = access.context or (active or {}).get("name")
        self.server = configuration.host
        configuration.retries = False
        self.configuration = configuration
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.authz = client.AuthorizationV1Api(self.api_client)
        self.version = self._reach(connect_timeout)

    def _reach(self, timeout: float) -> str:
        try:
            info = client.VersionApi(self.api_client).get_code(_request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise LabError(f"the cluster at {self.server} (context {self.context}) is unreachable: {type(err).__name__}: "
                           f"{str(err)[:300]}") from None
        except ApiException as err:
            raise LabError(f"the cluster at {self.server} refused us: {err.status} {err.reason} "
                           f"({(err.body or '')[:300]}): check the credentials of context {self.context}") from None
        return info.git_version

    def check_permissions(self, namespace: str, chart: bool = False) -> None:
        """Everything a lab will do, asked before anything is created (SelfSubjectAccessReview)."""
        missing = []
        for verb, resource, sub, namespaced in NEEDED + (NEEDED_FOR_CHART if chart else ()):
            attrs = {"verb": verb, "resource": resource, "group": ""}
            if sub:
                attrs["subresource"] = sub
            if namespaced:
                attrs["namespace"] = namespace
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}}
            try:
                allowed = self.authz.create_self_subject_access_review(review).status.allowed
            except ApiException as err:
                raise LabError(f"cannot ask the cluster what we may do (SelfSubjectAccessReview): {err.status} {err.reason}") from None
            if not allowed:
                missing.append(f"{verb} {resource}{'/' + sub if sub else ''}{' in ' + namespace if namespaced else ''}")
        if missing:
            raise LabError(f"the credentials of context {self.context} may not: {'; '.join(missing)}. A lab needs them "
                           "(it creates a namespace of its own with pods in it); ask for a role that allows them")

    # --- calls ------------------------------------------------------------------------------
    def streaming(self) -> client.CoreV1Api:
        """A client of its own for each stream: the client's websocket calls swap its request
        method while they run, which would capture calls other threads make meanwhile."""
        return client.CoreV1Api(client.ApiClient(self.configuration))

    def await_named(self, list_call, name: str, until, timeout: float, **kw):
        """`until`'s first true answer about the object `name` (None: there is none), asked now
        and at each change the API server tells of (a watch: nothing is polled); None once
        `timeout` has passed. A watch that ends (the server's timeout, a version too old, a
        silent connection) is followed by a fresh list. Names are matched here too: a server
        may ignore the field selector."""
        selector = f"metadata.name={name}"
        deadline = time.monotonic() + timeout
        while True:
            listed = list_call(field_selector=selector, **kw)
            if answer := until(next((o for o in listed.items if o.metadata.name == name), None)):
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            events = watch.Watch()
            try:
                for event in events.stream(list_call, field_selector=selector, resource_version=listed.metadata.resource_version,
                                           timeout_seconds=max(1, math.ceil(left)), _request_timeout=left + 5, **kw):
                    if event["type"] == "ERROR":
                        break
                    if event["object"].metadata.name != name:
                        continue
                    if answer := until(None if event["type"] == "DELETED" else event["object"]):
                        return answer
            except ApiException as err:
                if err.status != 410:  # 410: the version listed is too old to watch from
                    raise
            except urllib3.exceptions.HTTPError:
                pass  # the connection fell silent past the deadline, or broke: the list tells
            finally:
                events.stop()

    def exec(self, namespace: str, pod: str, container: str, command: list[str], request: dict | None = None,
             timeout: float = 60) -> tuple[str, str, int | None]:
        """Run a command in a container; `request` goes to its stdin as one JSON line. Returns
        stdout, stderr and the exit code."""
        try:
            ws = stream(self.streaming().connect_get_namespaced_pod_exec, pod, namespace, container=container, command=command,
                        stdin=request is not None, stdout=True, stderr=True, tty=False, _preload_content=False)
        except ApiException as err:
            raise LabError(f"exec in {pod}/{container} failed: {err.status} {err.reason} {(err.body or '')[:300]}") from None
        out, err = [], []
        try:
            if request is not None:
                ws.write_stdin(json.dumps(request) + "\n")
            deadline = time.monotonic() + timeout
            while ws.is_open():
                ws.update(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
                if ws.peek_stdout():
                    out.append(ws.read_stdout())
                if ws.peek_stderr():
                    err.append(ws.read_stderr())
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(command, timeout)
            out.append(ws.read_stdout() if ws.peek_stdout() else "")
            err.append(ws.read_stderr() if ws.peek_stderr() else "")
            code = ws.returncode
        finally:
            ws.close()
        return "".join(out), "".join(err), code

    def events(self, namespace: str, pod: str) -> str:
        try:
            items = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
        except ApiException:
            return "(events unreadable)"
        return "\n".join(f"  {e.type} {e.reason}: {e.message}" for e in items[-15:]) or "  (no events)"

    def logs(self, namespace: str, pod: str, container: str, lines: int = 30) -> str:
        try:
            return self.core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=lines) or "(empty)"
        except ApiException as err:
            return f"(no log: {err.reason})"
