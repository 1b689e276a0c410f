"""Driver files: parsed strictly, every error names the offending field.

Placeholders (`{lab.controlplane.url}`, `{user.token}`, `{env:NAME}` ...) are resolved late, so
one driver file fits every target: the target decides the addresses, the driver only says
where they go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("authentication", "authorization", "read-only", "audit", "proxy", "telemetry", "air-gap")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.:-]*)\}")


class DriverError(ValueError):
    """A driver file that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class Readiness:
    path: str = "/"
    status: int = 200
    timeout: float = 20.0


@dataclass(frozen=True)
class ServiceSpec:
    command: tuple[str, ...] | None
    image: str | None
    port: int
    env: dict[str, str]
    ready: Readiness


@dataclass(frozen=True)
class ChatSpec:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    answer: str
    timeout: float = 30.0


@dataclass(frozen=True)
class NetworkSpec:
    """Where the service takes the settings the network claims vary."""

    llm_url_env: str = "LLM_API_URL"
    ca_file_env: str = "SSL_CERT_FILE"


@dataclass(frozen=True)
class Driver:
    path: Path
    name: str
    version: str
    service: ServiceSpec
    chat: ChatSpec
    families: tuple[str, ...]
    network: NetworkSpec = field(default_factory=NetworkSpec)
    secret_env: tuple[str, ...] = ("LLM_API_KEY",)
    notes: str = ""

    def applies(self, family: str) -> bool:
        return family in self.families


def _need(doc: dict, key: str, kind: type | tuple, where: str, default=...):
    if key not in doc:
        if default is not ...:
            return default
        raise DriverError(f"{where}.{key}: required field is missing")
    value = doc[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DriverError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
    return value


def _str_map(doc: dict, key: str, where: str) -> dict[str, str]:
    raw = _need(doc, key, dict, where, default={})
    out = {}
    for k, v in raw.items():
        if not isinstance(v, (str, int, float, bool)):
            raise DriverError(f"{where}.{key}.{k}: expected a string, got {type(v).__name__}")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise DriverError(f"{path}: extends itself through {' -> '.join(map(str, chain))}")
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DriverError(f"{path}: driver file not found") from None
    except yaml.YAMLError as err:
        raise DriverError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise DriverError(f"{path}: a driver file is a mapping with name, service, chat and families")
    base = doc.pop("extends", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise DriverError(f"{path}: extends: expected the path of another driver file")
    return _merge(_read((path.parent / base).resolve(), chain + (path,)), doc)


def load_driver(path: str | Path) -> Driver:
    """Load a driver file; `extends: other.yaml` starts from another driver and overrides it."""
    path = Path(path)
    doc = _read(path)
    try:
        return _parse(path, doc)
    except DriverError as err:
        raise DriverError(f"{path}: {err}") from None


def _parse(path: Path, doc: dict) -> Driver:
    name = _need(doc, "name", str, "driver")
    svc = _need(doc, "service", dict, "driver")
    command = _need(svc, "command", list, "service", default=None)
    image = _need(svc, "image", str, "service", default=None)
    if not command and not image:
        raise DriverError("service: give a command (local target) or an image (container targets)")
    if command and not all(isinstance(c, str) for c in command):
        raise DriverError("service.command: every item must be a string")
    ready_doc = _need(svc, "ready", dict, "service", default={})
    ready = Readiness(
        path=_need(ready_doc, "path", str, "service.ready", default="/"),
        status=_need(ready_doc, "status", int, "service.ready", default=200),
        timeout=float(_need(ready_doc, "timeout", (int, float), "service.ready", default=20)),
    )
    port = _need(svc, "port", int, "service")
    if not 0 < port < 65536:
        raise DriverError(f"service.port: {port} is not a TCP port")
    chat_doc = _need(doc, "chat", dict, "driver")
    method = _need(chat_doc, "method", str, "chat", default="POST").upper()
    if method not in ("GET", "POST", "PUT"):
        raise DriverError(f"chat.method: {method} cannot carry a prompt")
    chat = ChatSpec(
        method=method,
        path=_need(chat_doc, "path", str, "chat"),
        headers=_str_map(chat_doc, "headers", "chat"),
        json=chat_doc.get("json"),
        answer=_need(chat_doc, "answer", str, "chat"),
        timeout=float(_need(chat_doc, "timeout", (int, float), "chat", default=30)),
    )
    if "{prompt}" not in repr(chat.json) + chat.path:
        raise DriverError("chat: no field carries the {prompt} placeholder")
    families = _need(doc, "families", list, "driver")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise DriverError(f"families: unknown {unknown}; known: {list(FAMILIES)}")
    return Driver(
        path=path,
        name=name,
        version=str(_need(doc, "version", (str, int, float), "driver", default="unknown")),
        service=ServiceSpec(
            command=tuple(command) if command else None,
            image=image,
            port=port,
            env=_str_map(svc, "env", "service"),
            ready=ready,
        ),
        chat=chat,
        families=tuple(families),
        network=NetworkSpec(
            llm_url_env=_need(net := _need(doc, "network", dict, "driver", default={}), "llm_url_env", str, "network", default="LLM_API_URL"),
            ca_file_env=_need(net, "ca_file_env", str, "network", default="SSL_CERT_FILE"),
        ),
        secret_env=tuple(_need(doc, "secret_env", list, "driver", default=["LLM_API_KEY"])),
        notes=doc.get("notes", ""),
    )


def render(value: Any, values: dict[str, str], where: str) -> Any:
    """Fill placeholders recursively; an unknown placeholder is an error naming its field."""
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            key = m.group(1)
            if key not in values:
                raise DriverError(f"{where}: unknown placeholder {{{key}}}; known: {sorted(values)}")
            return values[key]

        return PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: render(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def placeholders(value: Any) -> set[str]:
    return set(PLACEHOLDER.findall(repr(value)))
