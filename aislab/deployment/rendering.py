"""The customer's deployment: the chart rendered with their values, the ai-service container
in it, and the keys the chart ignores (found by rendering again without each key)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
import yaml

from aislab.deployment import intent as intents
from aislab.deployment.helm import Chart
from aislab.deployment.values import KeyPath, Values, get, mentions, own_keys, without

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
# helm processes at once: each is short and mostly CPU, and a few overlap their start-up.
PARALLEL = 4


def parse(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pod_spec(obj: dict) -> dict | None:
    if obj.get("kind") not in WORKLOADS:
        return None
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj) or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def ref(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


@dataclass(frozen=True)
class Container:
    """One container of the rendered manifests: where it is, and its env as Kubernetes builds it
    (a later entry of the same name wins)."""

    owner: str  # Kind/name of the workload
    spec: dict

    @property
    def name(self) -> str:
        return self.spec.get("name", "")

    @property
    def env(self) -> dict[str, dict]:
        return {e.get("name"): e for e in self.spec.get("env") or []}

    def where(self) -> str:
        return f"{self.owner} container {self.name} env"


def find_container(manifests: list[dict], name: str) -> Container | None:
    for obj in manifests:
        for c in containers(obj):
            if c.get("name") == name:
                return Container(ref(obj), c)
    return None


@dataclass(frozen=True)
class Ignored:
    path: KeyPath  # in the values as the customer wrote them
    value: object
    reason: str
    beside_umbrella: bool = False  # a chart key written beside `testkube-ai-service:`


@dataclass
class Deployment:
    """The chart rendered with the customer's values, and what follows from it."""

    chart: Chart
    values: Values
    text: str
    manifests: list[dict]
    given: str | None = None  # --deployment, when the customer says what they intend

    @classmethod
    def render(cls, chart: Chart, values: Values, given: str | None = None) -> "Deployment":
        text = chart.template(values.for_chart())
        return cls(chart, values, text, parse(text), given)

    @property
    def container(self) -> Container | None:
        """The ai-service container: the chart names it after itself."""
        return find_container(self.manifests, self.chart.name)

    @property
    def intent(self) -> intents.Intent:
        if self.given:
            return intents.Intent(self.given, "given with --deployment")
        entry = self.container.env.get("LLM_API_URL") if self.container else None
        return intents.infer(entry.get("value") if entry else None, self.registry)

    @property
    def registry(self) -> str | None:
        return intents.named_registry(self.values.for_chart())

    def asked(self, names: tuple[str, ...]) -> dict[str, tuple[KeyPath, object]]:
        """The env variables among `names` that the values ask for, with where (as written)."""
        return mentions(get(self.values.merged, self.values.prefix), set(names), self.values.prefix)

    def secrets(self, names: tuple[str, ...]) -> dict[str, str]:
        """Literal keys, rendered into env or written in the values (llmApi.apiKey,
        llmTracing.apiKey): to be redacted from everything the run leaves."""
        found = {}
        for obj in self.manifests:
            for c in containers(obj):
                for entry in c.get("env") or []:
                    if entry.get("name") in names and entry.get("value"):
                        found[f"{entry['name'].lower()}-literal"] = str(entry["value"])
        mine = self.values.for_chart()
        for section in ("llmApi", "llmTracing"):
            key = mine.get(section, {}).get("apiKey") if isinstance(mine.get(section), dict) else None
            if key:
                found[f"values-{section}-apiKey"] = str(key)
        return found

    @cached_property
    def ignored(self) -> list[Ignored] | str:
        """Every key whose removal leaves the rendering unchanged, or why this cannot be told.

        Subtrees first: a key whose removal changes the rendering is opened and its own keys
        tried, so a values file costs about one render per key that matters."""
        mine = self.values.for_chart()
        with ThreadPoolExecutor(PARALLEL) as pool:
            def rendered(tree: dict) -> list[dict]:
                return parse(self.chart.template(tree))

            again = pool.submit(rendered, mine)
            base = parse(self.text)
            if again.result() != base:
                return "the chart renders differently each time (random or time-based values), so a key's effect cannot be isolated"
            found = [Ignored(p, get(self.values.merged, p), "written beside testkube-ai-service:, where this chart never receives it", True)
                     for p in self.values.outside(set(self.chart.defaults))]
            frontier = list(own_keys(mine, self.chart.defaults))
            while frontier:
                results = pool.map(lambda p: rendered(without(mine, p)) != base, frontier)
                nxt = []
                for path, changed in zip(frontier, results):
                    if not changed:
                        found.append(Ignored(self.values.prefix + path, get(mine, path), "the rendering is the same without it"))
                    elif isinstance(get(mine, path), dict):
                        nxt += self._opened(mine, path)
                frontier = nxt
        return sorted(found, key=lambda i: i.path)

    def _opened(self, tree: dict, path: KeyPath) -> list[KeyPath]:
        """The own keys under `path` worth a render each: a lone child's removal is its parent's,
        so a chain of lone children is followed down to where keys part."""
        children = list(own_keys(tree, self.chart.defaults, path))
        while len(children) == 1 and isinstance(get(tree, children[0]), dict):
            children = list(own_keys(tree, self.chart.defaults, children[0]))
        return children if len(children) > 1 else []

    def describe(self) -> str:
        files = ", ".join(map(str, self.values.files)) or "its defaults"
        return f"chart {self.chart.path} (release {self.chart.release}, namespace {self.chart.namespace}) with {files}"
