"""Values files, read as helm reads them and merged as helm merges them (mappings deeply, every
other value replaced, a null kept so that it removes the chart's default), in the shape of the
AI service's own chart whichever of the two documented shapes they were written in."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

# Where the umbrella chart (testkube-enterprise) keeps the AI service's values, as every
# snippet of the security page does.
UMBRELLA_KEY = "testkube-ai-service"
# Read by the umbrella (the sub-chart's condition), never by the sub-chart itself.
UMBRELLA_ONLY = ("enabled",)

KeyPath = tuple[str, ...]
_MISSING = object()


class ConfigurationError(ValueError):
    """A broken input (chart, values, option): a clear message and exit code 1, never a verdict."""


def load(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigurationError(f"{path}: cannot read values file: {err.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({err.context} at line {err.context_mark.line + 1})" if err.context and err.context_mark else ""
        raise ConfigurationError(f"{where}: not valid YAML: {err.problem}{context}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{path}: a values file is a mapping of keys, not a {type(doc).__name__}")
    return doc


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class Values:
    """The merged values, and how they reach the AI service's chart."""

    files: tuple[Path, ...]
    merged: dict
    umbrella: bool  # written under `testkube-ai-service:`, as for the umbrella chart

    @classmethod
    def read(cls, files: list[Path]) -> "Values":
        merged: dict = {}
        for path in files:
            merged = merge(merged, load(path))
        return cls(tuple(files), merged, isinstance(merged.get(UMBRELLA_KEY), dict))

    @property
    def prefix(self) -> KeyPath:
        """Where the chart's own keys sit in what the customer wrote."""
        return (UMBRELLA_KEY,) if self.umbrella else ()

    def for_chart(self) -> dict:
        """What the AI service's chart receives: in the umbrella shape, its section with the
        umbrella's globals merged over its own, as helm hands values to a sub-chart."""
        if not self.umbrella:
            return copy.deepcopy(self.merged)
        section = {k: v for k, v in self.merged[UMBRELLA_KEY].items() if k not in UMBRELLA_ONLY}
        if isinstance(self.merged.get("global"), dict):
            section["global"] = merge(section.get("global") or {}, self.merged["global"])
        return copy.deepcopy(section)

    def disabled(self) -> bool:
        return self.umbrella and self.merged[UMBRELLA_KEY].get("enabled") is False

    def outside(self, chart_keys: set[str]) -> list[KeyPath]:
        """Keys of the AI service's chart written beside `testkube-ai-service:` instead of under
        it: the umbrella hands them to no sub-chart of ours."""
        if not self.umbrella:
            return []
        return [(k,) for k in self.merged if k in chart_keys and k not in ("global", UMBRELLA_KEY)]


def dotted(path: KeyPath) -> str:
    return ".".join(path)


def get(tree: dict, path: KeyPath) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def without(tree: dict, path: KeyPath) -> dict:
    out = copy.deepcopy(tree)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def own_keys(values: dict, defaults: dict, at: KeyPath = ()) -> Iterator[KeyPath]:
    """Children of `at` the customer set to something other than the chart's default (a key
    restating a default changes nothing when removed, and is no finding)."""
    node, base = get(values, at), _get_or_none(defaults, at)
    for key, value in node.items():
        default = base.get(key, _MISSING) if isinstance(base, dict) else _MISSING
        if value == default:
            continue
        if isinstance(value, dict) and isinstance(default, dict) and not any(own_keys(values, defaults, at + (key,))):
            continue
        yield at + (key,)


def _get_or_none(tree: dict, path: KeyPath) -> Any:
    try:
        return get(tree, path)
    except (KeyError, TypeError):
        return None


def mentions(tree: Any, names: set[str], at: KeyPath = ()) -> dict[str, tuple[KeyPath, Any]]:
    """Env variables the values ask for, wherever they are written: as an EnvVar entry
    (`{name: X, value: ...}`) or as a key. Used for intent only, never for a verdict."""
    found: dict[str, tuple[KeyPath, Any]] = {}
    if isinstance(tree, dict):
        if tree.get("name") in names:
            found[tree["name"]] = (at, tree.get("value", tree.get("valueFrom")))
        for key, value in tree.items():
            if key in names and not isinstance(value, (dict, list)):
                found[key] = (at + (key,), value)
            found.update(mentions(value, names, at + (str(key),)))
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            found.update(mentions(item, names, at[:-1] + (f"{at[-1]}[{i}]",) if at else (f"[{i}]",)))
    return found
