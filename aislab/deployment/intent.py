"""What the customer means to deploy (self-hosted, third-party, hosted-proxy, air-gapped), and
where an address points: inside the cluster, a private network, or the public internet."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEPLOYMENTS = ("self-hosted", "third-party", "hosted-proxy", "air-gapped")
HOSTED_PROXY = "llm.testkube.io"  # the vendor's evaluation proxy: never for production
# Names that resolve only inside a cluster or a private network (RFC 6762, RFC 8375, ICANN's .internal).
PRIVATE_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local", ".local", ".internal", ".lan", ".home.arpa")
# Hosted LLM providers' API names: public wherever the cluster is.
PUBLIC_LLM_SUFFIXES = ("api.openai.com", "openai.azure.com", "api.anthropic.com", "generativelanguage.googleapis.com",
                       "aiplatform.googleapis.com", "api.mistral.ai", "api.groq.com", "api.cohere.ai", "api.cohere.com",
                       "openrouter.ai", "api.together.xyz", "api.deepseek.com", HOSTED_PROXY)
# Registries anyone can pull from: an air-gapped cluster reaches none of them.
PUBLIC_REGISTRIES = ("docker.io", "index.docker.io", "registry-1.docker.io", "ghcr.io", "quay.io", "gcr.io",
                     "registry.k8s.io", "mcr.microsoft.com", "public.ecr.aws")


def host_of(url: str) -> str:
    return (urlsplit(url if "://" in url else f"//{url}").hostname or "").lower()


def where(host: str) -> str:
    """in-cluster, private, public, or unknown (a DNS name only the customer's resolver can place)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if "." not in host or host.endswith(PRIVATE_SUFFIXES):
            return "in-cluster"
        if any(host == s or host.endswith("." + s) for s in PUBLIC_LLM_SUFFIXES):
            return "public"
        return "unknown"
    return "private" if ip.is_private or ip.is_loopback or ip.is_link_local else "public"


def is_hosted_proxy(host: str) -> bool:
    return host == HOSTED_PROXY or host.endswith("." + HOSTED_PROXY)


def registry_of(image: str) -> str:
    """The registry an image reference pulls from (docker.io when it names none)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return "docker.io"


@dataclass(frozen=True)
class Intent:
    kind: str
    how: str  # "given with --deployment", or what it was inferred from

    def as_evidence(self) -> dict:
        return {"deployment": self.kind, "source": self.how}


def named_registry(chart_values: dict) -> str | None:
    """The private registry the values name for the images (the global mirror wins, as in the chart)."""
    glob = chart_values.get("global") if isinstance(chart_values.get("global"), dict) else {}
    image = chart_values.get("image") if isinstance(chart_values.get("image"), dict) else {}
    return glob.get("imageRegistry") or image.get("registry") or None


def infer(llm_url: str | None, registry: str | None) -> Intent:
    """From the LLM the rendered container is pointed at, and the registry the values name."""
    if llm_url is None:
        return Intent("third-party", "inferred: LLM_API_URL is unset, so the service calls OpenAI")
    host = host_of(llm_url)
    if is_hosted_proxy(host):
        return Intent("hosted-proxy", f"inferred: LLM_API_URL points at the hosted proxy {host}")
    if where(host) in ("in-cluster", "private"):
        if registry and registry_of(registry + "/x") not in PUBLIC_REGISTRIES:
            return Intent("air-gapped", f"inferred: LLM_API_URL points at {host} in the cluster and images come from {registry}")
        return Intent("self-hosted", f"inferred: LLM_API_URL points at {host} in the cluster or a private network")
    return Intent("third-party", f"inferred: LLM_API_URL points at {host}")
