"""Driver files: parsed strictly, every error names the offending file and field.

Unknown keys are errors (with the nearest valid key), and every placeholder is checked when the
file is loaded, before any lab starts. Placeholders (`{lab.controlplane.url}`, `{user.token}`,
`{env:NAME}` ...) are filled late, so one driver file fits every target: the target decides the
addresses, the driver only says where they go. `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("authentication", "authorization", "read-only", "audit", "proxy", "telemetry", "air-gap", "configuration")
# `{{` and `}}` stand for literal braces; `{name}` is a placeholder.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.:-]*)\}")
# What the lab fills everywhere; what only a chat has; `file:NAME` and `env:NAME` besides.
LAB_PLACEHOLDERS = frozenset({
    "python", "project", "lab.idp.url", "lab.idp.issuer", "lab.idp.jwks_url", "lab.idp.discovery_url",
    "lab.controlplane.url", "lab.llm.url", "lab.llm.api_key", "lab.llm.model", "lab.org_id", "lab.service_token",
    "lab.service.port", "lab.ca_file", "lab.scratch_dir",
})
CHAT_PLACEHOLDERS = frozenset({"prompt", "user.token", "environment", "output_file"})
KEYS = {  # every key a driver file may have, per level
    "driver": ("name", "version", "service", "chat", "families", "auth", "files", "secret_env", "network", "notes"),
    "service": ("command", "image", "port", "env", "ready", "env_from_chart", "keep_in_sight"),
    "service.ready": ("path", "status", "timeout"),
    "chat": ("mode", "answer", "answer_format", "error", "timeout", "method", "path", "headers", "json", "command"),
    "chat.error": ("path", "equals"),
    "network": ("llm_url_env", "ca_file_env", "telemetry_off_env"),
}


class DriverError(ValueError):
    """A driver file that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class Readiness:
    path: str = "/"
    status: int = 200
    timeout: float = 20.0


@dataclass(frozen=True)
class EnvFromChart:
    """Render, then run: the service's env is the rendered chart's (see aislab.deployment.runenv)."""

    container: str | None  # the container whose env it is (default: the one named after the chart)
    values: dict  # the lab's endpoints, given to helm over the customer's values


@dataclass(frozen=True)
class ServiceSpec:
    command: tuple[str, ...] | None  # None: nothing long-running (a CLI assistant)
    image: str | None
    port: int | None
    env: dict[str, str]
    ready: Readiness
    env_from_chart: EnvFromChart | None = None
    withheld_env: tuple[str, ...] = ()  # asked for by the customer's values, dropped by their chart
    keep_in_sight: tuple[str, ...] = ()  # paths under /tmp it runs from, kept visible in its private /tmp


@dataclass(frozen=True)
class ErrorSpec:
    """Where a chat failed although its status says success: the value at `path` (present and
    not null, or equal to `equals` when given)."""

    path: str
    equals: Any = None


@dataclass(frozen=True)
class ChatSpec:
    mode: str  # "http": a request to the running service; "cli": a command per prompt
    answer: str  # dotted path into the JSON answer (HTTP body, the command's stdout or output file)
    answer_format: str = "json"  # or "text": the whole output is the answer
    error: ErrorSpec | None = None
    timeout: float = 30.0
    method: str = "POST"
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    """Where the service takes the settings the network claims vary."""

    llm_url_env: str = "LLM_API_URL"
    ca_file_env: str = "SSL_CERT_FILE"
    telemetry_off_env: dict[str, str] = field(default_factory=dict)  # its own switches, beside DO_NOT_TRACK


IDENTITY_FAMILIES = ("authentication", "authorization", "audit")


@dataclass(frozen=True)
class Driver:
    path: Path
    name: str
    version: str
    service: ServiceSpec
    chat: ChatSpec
    families: tuple[str, ...]
    auth: str = "bearer"
    files: dict[str, str] = field(default_factory=dict)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    secret_env: tuple[str, ...] = ("LLM_API_KEY",)
    notes: str = ""

    def __repr__(self) -> str:
        # Shown in reports and tracebacks: no machine path, and never the env values it maps.
        return f"Driver({self.name} {self.version}, {self.path.name})"

    def applies(self, family: str) -> bool:
        return family in self.families and not (self.auth == "none" and family in IDENTITY_FAMILIES)

    def why_not(self, family: str) -> str:
        if self.auth == "none" and family in IDENTITY_FAMILIES:
            return f"driver {self.name} has no user authentication (auth: none), so {family} cannot be judged"
        return f"driver {self.name} does not declare family {family}"


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


def _known_keys(doc: dict, where: str) -> None:
    """Unknown keys are errors, named with the nearest valid key: a misspelt key silently
    ignored would run a different test than the one written."""
    allowed = KEYS[where]
    for key in doc:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise DriverError(f"{where}.{key}: unknown key; {hint}valid keys: {', '.join(allowed)}")


def _merge(base: dict, over: dict) -> dict:
    """`over` wins key by key, mappings merged deeply; a null in `over` removes what `base` set."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise DriverError(f"{chain[-1]}: extends: {path} extends itself through {' -> '.join(map(str, chain))}")
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DriverError(f"{chain[-1]}: extends: no driver file {path}" if chain else f"{path}: driver file not found") from None
    except yaml.YAMLError as err:
        raise DriverError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise DriverError(f"{path}: a driver file is a mapping with name, service, chat and families")
    base = doc.pop("extends", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise DriverError(f"{path}: extends: expected the path of another driver file, got {base!r}")
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
    _known_keys(doc, "driver")
    name = _need(doc, "name", str, "driver")
    chat = _chat(_need(doc, "chat", dict, "driver"))
    service = _service(_need(doc, "service", dict, "driver", default={}), chat.mode)
    families = _need(doc, "families", list, "driver")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise DriverError(f"families: unknown {unknown}; known: {list(FAMILIES)}")
    auth = _need(doc, "auth", str, "driver", default="bearer")
    if auth not in ("bearer", "none"):
        raise DriverError(f"auth: {auth!r}; use bearer (the user's JWT) or none")
    files = _str_map(doc, "files", "driver")
    net = _need(doc, "network", dict, "driver", default={})
    _known_keys(net, "network")
    _check_placeholders(service, chat, files)
    return Driver(
        path=path,
        name=name,
        version=str(_need(doc, "version", (str, int, float), "driver", default="unknown")),
        service=service,
        chat=chat,
        families=tuple(families),
        auth=auth,
        files=files,
        network=NetworkSpec(
            llm_url_env=_need(net, "llm_url_env", str, "network", default="LLM_API_URL"),
            ca_file_env=_need(net, "ca_file_env", str, "network", default="SSL_CERT_FILE"),
            telemetry_off_env=_str_map(net, "telemetry_off_env", "network"),
        ),
        secret_env=tuple(_need(doc, "secret_env", list, "driver", default=["LLM_API_KEY"])),
        notes=doc.get("notes", ""),
    )


def _strings(value: list, where: str) -> tuple[str, ...]:
    if not all(isinstance(c, str) for c in value):
        raise DriverError(f"{where}: every item must be a string")
    return tuple(value)


def _chat(doc: dict) -> ChatSpec:
    _known_keys(doc, "chat")
    mode = _need(doc, "mode", str, "chat", default="http")
    answer_format = _need(doc, "answer_format", str, "chat", default="json")
    if answer_format not in ("json", "text"):
        raise DriverError(f"chat.answer_format: {answer_format!r}; use json (answer is a path into it) or text (all of it)")
    error = doc.get("error")
    if isinstance(error, str):
        error = {"path": error}
    if error is not None:
        if not isinstance(error, dict):
            raise DriverError(f"chat.error: expected a path or {{path, equals}}, got {error!r}")
        _known_keys(error, "chat.error")
        error = ErrorSpec(_need(error, "path", str, "chat.error"), error.get("equals"))
    common = {"answer": _need(doc, "answer", str, "chat", default="" if answer_format == "text" else ...),
              "answer_format": answer_format, "error": error,
              "timeout": float(_need(doc, "timeout", (int, float), "chat", default=30))}
    if mode == "cli":
        command = _strings(_need(doc, "command", list, "chat"), "chat.command")
        if "{prompt}" not in repr(command):
            raise DriverError("chat.command: no item carries the {prompt} placeholder")
        return ChatSpec(mode="cli", command=command, **common)
    if mode != "http":
        raise DriverError(f"chat.mode: {mode!r}; use http or cli")
    method = _need(doc, "method", str, "chat", default="POST").upper()
    if method not in ("GET", "POST", "PUT"):
        raise DriverError(f"chat.method: {method} cannot carry a prompt")
    chat = ChatSpec(mode="http", method=method, path=_need(doc, "path", str, "chat"),
                    headers=_str_map(doc, "headers", "chat"), json=doc.get("json"), **common)
    if "{prompt}" not in repr(chat.json) + chat.path:
        raise DriverError("chat: no field carries the {prompt} placeholder")
    return chat


def _service(svc: dict, mode: str) -> ServiceSpec:
    _known_keys(svc, "service")
    command = _need(svc, "command", list, "service", default=None)
    image = _need(svc, "image", str, "service", default=None)
    if mode == "http" and not command and not image:
        raise DriverError("service: give a command (local target) or an image (container targets)")
    port = _need(svc, "port", int, "service", default=None if mode == "cli" else ...)
    if port is not None and not 0 < port < 65536:
        raise DriverError(f"service.port: {port} is not a TCP port")
    ready_doc = _need(svc, "ready", dict, "service", default={})
    _known_keys(ready_doc, "service.ready")
    chart_doc = _need(svc, "env_from_chart", dict, "service", default=None)
    return ServiceSpec(
        command=_strings(command, "service.command") if command else None,
        image=image,
        port=port,
        env=_str_map(svc, "env", "service"),
        ready=Readiness(
            path=_need(ready_doc, "path", str, "service.ready", default="/"),
            status=_need(ready_doc, "status", int, "service.ready", default=200),
            timeout=float(_need(ready_doc, "timeout", (int, float), "service.ready", default=20)),
        ),
        env_from_chart=_env_from_chart(chart_doc) if chart_doc is not None else None,
        keep_in_sight=_absolute_paths(_need(svc, "keep_in_sight", list, "service", default=[]), "service.keep_in_sight"),
    )


def _absolute_paths(value: list, where: str) -> tuple[str, ...]:
    paths = _strings(value, where)
    relative = [p for p in paths if not p.startswith("/")]
    if relative:
        raise DriverError(f"{where}: {relative} are not absolute paths")
    return paths


# --- service.env_from_chart (the configuration family's render, then run) ------------------
def _env_from_chart(doc: dict) -> EnvFromChart:
    where = "service.env_from_chart"
    unknown = sorted(set(doc) - {"container", "values"})
    if unknown:
        raise DriverError(f"{where}: unknown keys {unknown}; known: container, values")
    return EnvFromChart(container=_need(doc, "container", str, where, default=None),
                        values=_need(doc, "values", dict, where, default={}))


def _check_placeholders(service: ServiceSpec, chat: ChatSpec, files: dict[str, str]) -> None:
    """Every placeholder must be one the lab fills where it stands, before any lab starts."""
    lab = set(LAB_PLACEHOLDERS) | {f"file:{name}" for name in files}
    places = {"service.env": (service.env, lab), "service.command": (list(service.command or []), lab),
              "files": (files, LAB_PLACEHOLDERS),
              "chat": ([chat.path, chat.headers, chat.json, list(chat.command)], lab | CHAT_PLACEHOLDERS)}
    if service.env_from_chart is not None:
        places["service.env_from_chart.values"] = (service.env_from_chart.values, lab)
    for where, (value, known) in places.items():
        for name in sorted(placeholders(value)):
            if name.startswith("env:"):
                if name[4:] not in os.environ:
                    raise DriverError(f"{where}: placeholder {{{name}}} needs the environment variable {name[4:]}, which is not set")
            elif name not in known:
                near = difflib.get_close_matches(name, sorted(known), n=1)
                raise DriverError(f"{where}: unknown placeholder {{{name}}}" + (f"; did you mean {{{near[0]}}}?" if near else "")
                                  + f" (known here: {', '.join(sorted(known))}, file:NAME, env:NAME; write {{{{ and }}}} for literal braces)")


def render(value: Any, values: dict[str, str], where: str) -> Any:
    """Fill placeholders recursively; an unknown placeholder is an error naming its field."""
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(1) is None:  # an escaped brace
                return m.group(0)[0]
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
    return {name for name in PLACEHOLDER.findall(repr(value)) if name}
