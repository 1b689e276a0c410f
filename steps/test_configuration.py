"""Scenarios of features/configuration.feature: thin steps over aislab.judging.configuration,
on the customer's deployment rendered once per session (aislab.suite.configuration)."""

from __future__ import annotations

from pytest_bdd import given, scenarios, then, when

from aislab.deployment.rendering import Container, Deployment
from aislab.judging import configuration as cfg

scenarios("configuration.feature")


@given("the chart rendered with the customer's values", target_fixture="container")
def rendered(deployment: Deployment, evidence) -> Container:
    evidence["rendered-manifests"] = deployment.text
    evidence["deployment"] = {"chart": str(deployment.chart.path), "values": [str(f) for f in deployment.values.files],
                              "shape": "umbrella (testkube-ai-service:)" if deployment.values.umbrella else "sub-chart",
                              **deployment.intent.as_evidence()}
    return cfg.the_container(deployment.container, deployment.chart.name)


@when("the chart is rendered again without each key the customer set", target_fixture="ignored")
def rendered_without_each_key(deployment: Deployment, evidence):
    ignored = deployment.ignored
    evidence["ignored-keys"] = ignored if isinstance(ignored, str) else [
        {"key": ".".join(i.path), "value": i.value, "why": i.reason} for i in ignored]
    return ignored


@then("no key leaves the rendering unchanged")
def no_key_ignored(ignored, deployment: Deployment):
    cfg.no_ignored_keys(ignored, deployment.chart.defaults)


@then("the DO_NOT_TRACK the values ask for is in the ai-service container's env")
def telemetry_off(deployment: Deployment, container: Container, evidence):
    evidence["telemetry"] = cfg.telemetry_off(deployment.asked(cfg.TELEMETRY_VARS), container, deployment.chart.defaults)


@then("the proxy variables the values ask for are in the ai-service container's env")
def proxy_reaches(deployment: Deployment, container: Container, evidence):
    evidence["proxy"] = cfg.proxy_set(deployment.asked(cfg.PROXY_VARS), container, deployment.chart.defaults)


@then("NO_PROXY exempts the control plane and an in-cluster LLM")
def no_proxy_exempts(container: Container, evidence):
    evidence["no-proxy"] = cfg.no_proxy_exempts(container)


@then("the ai-service container takes its LLM key from a Secret reference")
def key_from_secret(container: Container, evidence):
    evidence["llm-key"] = cfg.key_from_secret(container)


@then("the ai-service container's LLM is not the hosted proxy in production, self-hosted or air-gapped")
def no_hosted_proxy(deployment: Deployment, container: Container, evidence):
    evidence["hosted-proxy"] = cfg.no_hosted_proxy(container, deployment.intent)


@then("the ai-service container's LLM is an in-cluster or private address when self-hosted or air-gapped")
def llm_inside(deployment: Deployment, container: Container, evidence):
    evidence["llm"] = cfg.llm_inside(container, deployment.intent)


@then("every rendered image comes from the private registry the values name when air-gapped")
def images_from_registry(deployment: Deployment, evidence):
    evidence["images"] = cfg.images_from(deployment.manifests, deployment.intent, deployment.registry)


@then("every rendered manifest passes the strict Kubernetes schemas")
def schema_valid(deployment: Deployment, evidence):
    evidence["schemas"] = cfg.schema_valid(deployment.manifests)
