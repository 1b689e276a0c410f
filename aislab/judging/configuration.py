"""Verdicts of the configuration family, judged on the manifests the chart rendered from the
customer's values, never on the values text (the values only say what the customer asked for).
Each check returns what it saw, for the evidence, or raises Violation / Undetermined; every
finding names the values key, the rendered object and field, and what a fix looks like."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.request import proxy_bypass_environment

import kubernetes_validate
import pytest

from aislab.deployment.intent import Intent, host_of, is_hosted_proxy, where
from aislab.deployment.rendering import Container, Ignored, containers, ref
from aislab.deployment.values import KeyPath, dotted
from aislab.judging.verdict import NOT_APPLICABLE, Undetermined, undetermined_unless, violation_if

TELEMETRY_VARS = ("DO_NOT_TRACK",)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
TRUTHY = ("1", "true", "yes", "on")
# Two Kubernetes minor versions this harness certifies against: the one of the kubectl it
# installs (1.35) and the one before.
SCHEMA_VERSIONS = ("1.34.0", "1.35.0")
SECRET_ENV = ("LLM_API_KEY", "LLM_TRACING_API_KEY")

Asked = dict[str, tuple[KeyPath, Any]]  # env name -> (values key, value asked for)


def not_applicable(reason: str) -> None:
    pytest.skip(f"{NOT_APPLICABLE} {reason}")


def the_container(container: Container | None, name: str) -> Container:
    undetermined_unless(container is not None, f"no container named {name} in the rendered workloads: nothing to judge")
    return container


def env_list_key(defaults: dict) -> str | None:
    """The chart's own key for extra env entries: a list by default, named for env."""
    return next((k for k, v in defaults.items() if isinstance(v, list) and "env" in k.lower()), None)


def _fix(item: Ignored, defaults: dict) -> str:
    key = env_list_key(defaults)
    env_like = isinstance(item.value, list) and item.value and all(isinstance(e, dict) and "name" in e for e in item.value)
    if env_like and key:
        return f"move these entries to {key}"
    if item.beside_umbrella:
        return "move it under testkube-ai-service:"
    return "remove it, or write it under the key this chart reads (see the chart's values.yaml)"


def no_ignored_keys(ignored: list[Ignored] | str, defaults: dict) -> list[dict]:
    if isinstance(ignored, str):
        raise Undetermined(ignored)
    seen = [{"key": dotted(i.path), "why": i.reason, "fix": _fix(i, defaults)} for i in ignored]
    violation_if(bool(seen), "values the chart ignores: " + "; ".join(f"{s['key']} ({s['why']}): {s['fix']}" for s in seen))
    return seen


def _literal(entry: dict | None) -> Any:
    """An env entry's literal value: none for an absent entry or one from a Secret or ConfigMap,
    and an empty string for an entry with neither (what Kubernetes gives the container)."""
    return None if entry is None or "valueFrom" in entry else entry.get("value", "")


def reaches(asked: Asked, container: Container, defaults: dict) -> dict:
    """Every env variable the values ask for is in the container's env, with the value asked."""
    env = container.env
    missing = {n: dotted(p) for n, (p, _) in asked.items() if n not in env}
    key = env_list_key(defaults)
    fix = f"move these entries to {key}" if key else "set them through a key the chart reads"
    violation_if(bool(missing), "asked for in the values but not in " + container.where() + ": "
                 + ", ".join(f"{n} (at {k})" for n, k in missing.items()) + f"; {fix}")
    for name, (path, value) in asked.items():
        got = _literal(env[name])
        violation_if(got is not None and not isinstance(got, str),
                     f"{container.where()} {name}: value {got!r} is a {type(got).__name__} (from {dotted(path)}); "
                     "Kubernetes takes env values as strings only: quote it")
        violation_if(got is not None and isinstance(value, (str, int, float, bool)) and got != _as_env(value),
                     f"{container.where()} {name} is {got!r}, the values ask for {_as_env(value)!r} at {dotted(path)}")
    return {n: env[n] for n in asked}


def _as_env(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def telemetry_off(asked: Asked, container: Container, defaults: dict) -> dict:
    if not asked:
        not_applicable("the values ask for no telemetry opt-out (DO_NOT_TRACK)")
    seen = reaches(asked, container, defaults)
    got = _literal(container.env["DO_NOT_TRACK"])
    violation_if(isinstance(got, str) and got.strip().lower() not in TRUTHY,
                 f"{container.where()} DO_NOT_TRACK is {got!r}, which switches nothing off; use \"true\"")
    return seen


def covered(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts `host`: names by suffix (curl's and Python's rule), IPs by CIDR."""
    if proxy_bypass_environment(host, {"no": no_proxy}):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in (e.strip() for e in no_proxy.split(",")):
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def proxy_set(asked: Asked, container: Container, defaults: dict) -> dict:
    if not asked:
        not_applicable("the values ask for no proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)")
    return reaches(asked, container, defaults)


def no_proxy_exempts(container: Container) -> dict:
    """With a proxy set, NO_PROXY exempts the control plane and an in-cluster LLM: they must
    never go out through the corporate proxy."""
    env = container.env
    if not any(_literal(env.get(n)) for n in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")):
        return {"proxy": None}
    no_proxy = ",".join(v for v in (_literal(env.get("NO_PROXY")), _literal(env.get("no_proxy"))) if isinstance(v, str))
    must = {"the control plane": _literal(env.get("CONTROL_PLANE_ENDPOINT"))}
    llm = _literal(env.get("LLM_API_URL"))
    if llm and where(host_of(llm)) in ("in-cluster", "private"):
        must["the in-cluster LLM"] = llm
    gaps = [f"{what} ({host_of(url)})" for what, url in must.items() if url and not covered(host_of(url), no_proxy)]
    violation_if(bool(gaps), f"{container.where()} has a proxy but NO_PROXY={no_proxy!r} does not exempt "
                 + " and ".join(gaps) + ": add them to NO_PROXY (and no_proxy)")
    return {"NO_PROXY": no_proxy, "exempted": {what: host_of(url) for what, url in must.items() if url}}


def key_from_secret(container: Container) -> dict:
    """The LLM key (and a tracing key) come from a Secret reference, never a literal; an empty
    literal counts (it is what the chart renders when neither apiKey nor secretRef is set)."""
    env = container.env
    undetermined_unless("LLM_API_KEY" in env, f"{container.where()} has no LLM_API_KEY: the key's source cannot be judged")
    literal = [n for n in SECRET_ENV if n in env and "valueFrom" not in env[n]]
    violation_if(bool(literal), f"{container.where()} " + ", ".join(literal) + " is a literal value (redacted here) "
                 "written into the Deployment: set llmApi.secretRef to a Secret holding the key (key LLM_API_KEY, "
                 "or llmApi.secretRefKey) and remove llmApi.apiKey")
    return {n: env[n]["valueFrom"] for n in SECRET_ENV if n in env}


def no_hosted_proxy(container: Container, intent: Intent) -> dict:
    """The vendor's hosted proxy is for evaluation: never in production, self-hosted or air-gapped."""
    url = _literal(container.env.get("LLM_API_URL"))
    node_env = _literal(container.env.get("NODE_ENV"))
    host = host_of(url) if url else None
    why = [w for w, hit in ((f"NODE_ENV is {node_env!r}", node_env == "production"),
                            (f"the deployment is {intent.kind}", intent.kind in ("self-hosted", "air-gapped"))) if hit]
    violation_if(bool(host and is_hosted_proxy(host) and why),
                 f"{container.where()} LLM_API_URL points at the hosted evaluation proxy {host} while "
                 + " and ".join(why) + ": point llmApi.url at your own LLM (the hosted proxy is for evaluation only)")
    return {"LLM_API_URL": url, "NODE_ENV": node_env, **intent.as_evidence()}


def llm_inside(container: Container, intent: Intent) -> dict:
    """Self-hosted and air-gapped: the LLM is an in-cluster or private address."""
    if intent.kind not in ("self-hosted", "air-gapped"):
        not_applicable(f"a {intent.kind} deployment's LLM is outside by design ({intent.how})")
    url = _literal(container.env.get("LLM_API_URL"))
    violation_if(not url, f"{container.where()} has no LLM_API_URL, so the service calls OpenAI: set llmApi.url to your in-cluster LLM")
    host = host_of(url)
    place = where(host)
    violation_if(place == "public" or is_hosted_proxy(host),
                 f"{container.where()} LLM_API_URL points at {host}, a public address, in a {intent.kind} deployment: "
                 "set llmApi.url to the in-cluster service of your LLM")
    undetermined_unless(place != "unknown", f"{container.where()} LLM_API_URL points at {host}: whether that name is private "
                        "depends on your cluster's resolver; an in-cluster service name (*.svc.cluster.local) or a private address can be judged")
    return {"LLM_API_URL": url, "where": place, **intent.as_evidence()}


def images_from(manifests: list[dict], intent: Intent, registry: str | None) -> dict:
    """Air-gapped: every image is pulled from the private registry the values name."""
    if intent.kind != "air-gapped":
        not_applicable(f"only an air-gapped deployment must pull from a private registry ({intent.how})")
    images = {f"{ref(obj)} container {c.get('name')}": c.get("image", "") for obj in manifests for c in containers(obj)}
    undetermined_unless(bool(images), "the rendering has no container image to judge")
    violation_if(not registry, "an air-gapped deployment names no private registry: set global.imageRegistry to your mirror; "
                 "images now: " + ", ".join(sorted(set(images.values()))))
    outside = {w: i for w, i in images.items() if not i.startswith(registry.rstrip("/") + "/")}
    violation_if(bool(outside), f"images not pulled from {registry}: "
                 + "; ".join(f"{w} image {i}" for w, i in outside.items()) + ": set global.imageRegistry (and each image's registry) to it")
    return {"registry": registry, "images": images}


def schema_valid(manifests: list[dict], versions: tuple[str, ...] = SCHEMA_VERSIONS) -> dict:
    """Every manifest against the official schemas (strict: unknown fields are errors)."""
    errors, unchecked = [], set()
    for obj in manifests:
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unchecked.add(f"{obj.get('apiVersion')}/{obj.get('kind')}")
            except kubernetes_validate.ValidationError as err:
                field_ = ".".join(str(p) for p in err.path) or "(root)"
                errors.append(f"{ref(obj)} {field_}: {err.message} (Kubernetes {version})")
    kinds = {f"{o.get('apiVersion')}/{o.get('kind')}" for o in manifests}
    undetermined_unless(bool(kinds - unchecked), f"no schema for any rendered kind ({sorted(kinds)}): nothing was validated")
    violation_if(bool(errors), "rendered manifests Kubernetes rejects: " + "; ".join(dict.fromkeys(errors)))
    return {"versions": list(versions), "objects": [ref(o) for o in manifests], "no schema (custom resources)": sorted(unchecked)}
