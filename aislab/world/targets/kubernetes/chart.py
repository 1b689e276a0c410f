"""The service installed from its Helm chart: the chart rendered by the real helm with the
customer's values plus the lab's endpoint overrides (the configuration family's rendering, as a
customer's `--set`), its objects created in the lab's namespace, and the service run from its
workload's pod template exactly as the chart renders it. What the harness adds or overrides is
listed for the report."""

from __future__ import annotations

import copy


from aislab.deployment.rendering import WORKLOADS, containers, parse
from aislab.deployment.values import merge
from aislab.driver.model import render
from aislab.world.targets.base import LabError
from aislab.world.targets.kubernetes import manifests

# Objects of the chart the lab creates beside the service's pod (the workload itself is run as
# one pod per service instance); others (Ingress, autoscalers, ...) need no lab and are skipped.
INSTALLED = ("ServiceAccount", "Secret", "ConfigMap", "Service")


class ChartService:
    def __init__(self, target, deployment, container: str | None, overrides: dict, values):
        self.target = target
        self.deployment = deployment
        self.container_name = container or deployment.chart.name
        self.overrides = overrides
        self.values = values  # the lab's placeholder values, known once the lab is up
        self.installed = False
        self.secrets_made: set[str] = set()
        self._manifests: list[dict] | None = None

    def image(self) -> tuple[str, str]:
        ref = self.target.delivery.ref(self.target.image_tags["reference"])
        repository, _, tag = ref.rpartition(":")
        return repository, tag

    def manifests(self) -> list[dict]:
        if self._manifests is None:
            repository, tag = self.image()
            self.target.delivery.deliver([self.target.image_tags["reference"]])
            lab = render(copy.deepcopy(self.overrides), self.values(), "service.env_from_chart.values")
            image = {"image": {"registry": "", "repository": repository, "tag": tag, "pullPolicy": self.target.delivery.pull_policy},
                     "global": {"imageRegistry": ""}}
            values = merge(merge(self.deployment.values.for_chart(), lab), image)
            self._manifests = parse(self.deployment.chart.template(values))
            self.target.additions.append(
                f"helm values: the lab's endpoints ({', '.join(sorted(_leaves(lab)))}) and the image "
                f"{repository}:{tag} (image.registry, image.repository, image.tag, image.pullPolicy "
                f"{self.target.delivery.pull_policy}, global.imageRegistry) given over the customer's values, like --set")
        return self._manifests

    def workload(self) -> dict:
        for obj in self.manifests():
            if obj.get("kind") in WORKLOADS and any(c.get("name") == self.container_name for c in containers(obj)):
                return obj
        raise LabError(f"the chart renders no workload with a container named {self.container_name}")

    def install_once(self) -> None:
        if self.installed:
            return
        skipped = []
        for obj in self.manifests():
            if obj.get("kind") in INSTALLED:
                obj = copy.deepcopy(obj)
                obj["metadata"].pop("namespace", None)
                obj["metadata"].setdefault("labels", {}).update(self.target.labels)
                self.target._create(obj)
                if obj["kind"] == "Secret":
                    self.secrets_made.add(obj["metadata"]["name"])
            elif obj is not self.workload():
                skipped.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}")
        if skipped:
            self.target.additions.append(f"not created (nothing in the lab uses them): {', '.join(skipped)}")
        workload = self.workload()
        self.target.additions.append(f"{workload['kind']}/{workload['metadata']['name']}: its pod template run as one pod per service instance")
        account = ((workload.get("spec") or {}).get("template") or {}).get("spec", {}).get("serviceAccountName")
        if account:
            self._await_token(account)
        self.installed = True

    def _await_token(self, account: str) -> None:
        if self.target._tokens_by_request():
            return
        cluster = self.target.cluster
        if not cluster.await_named(cluster.core.list_namespaced_service_account, account, lambda a: a and a.secrets, 30,
                                   namespace=self.target.namespace):
            raise LabError(f"service account {account} got no token within 30s")

    def container(self, env: dict[str, str]) -> manifests.ServiceContainer:
        workload = self.workload()
        template = workload["spec"]["template"] if workload["kind"] != "Pod" else workload
        service = manifests.chart_container(template, self.container_name, env, self.target.dirs)
        self._secrets_for(service.container, env)
        self.install_once()
        return service

    def _secrets_for(self, container: dict, env: dict[str, str]) -> None:
        """A Secret the chart references but does not render is the customer's (their cluster has
        it): the lab makes it with the value the driver supplies."""
        wanted: dict[str, dict[str, str]] = {}
        for entry in container.get("env") or []:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] not in self.secrets_made and entry["name"] in env:
                wanted.setdefault(ref["name"], {})[ref["key"]] = env[entry["name"]]
        for name, data in wanted.items():
            self.target._create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                 "metadata": {"name": name, "labels": dict(self.target.labels)}, "stringData": data})
            self.secrets_made.add(name)
            self.target.additions.append(f"Secret/{name} (referenced by the chart, the customer's own): made with the value "
                                         f"the driver supplies for {', '.join(sorted(data))}")


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out += _leaves(value, path) if isinstance(value, dict) else [path]
    return out
