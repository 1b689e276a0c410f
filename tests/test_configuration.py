"""The configuration family's logic on hand-made inputs: values read and merged as helm does,
every check satisfied on a clean container, violated on its defect, undetermined or not
applicable where it cannot judge; and ignored keys and render-then-run on the stand-in chart
with the real helm."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aislab.deployment import ConfigurationError
from aislab.deployment.helm import Chart
from aislab.deployment.intent import infer, registry_of, where
from aislab.deployment.rendering import Container, Deployment, Ignored
from aislab.deployment.runenv import chart_env
from aislab.deployment.values import Values, load, mentions, merge
from aislab.judging import configuration as cfg
from aislab.judging.verdict import NOT_APPLICABLE, Undetermined, Violation
from tests.suite_runs import PROJECT

CHART = PROJECT / "fixtures" / "charts" / "testkube-ai-service"
VALUES = PROJECT / "fixtures" / "values"
DEFAULTS = {"additionalEnvVars": [], "llmApi": {"url": ""}}
CP = {"name": "CONTROL_PLANE_ENDPOINT", "value": "http://tk-api.testkube.svc.cluster.local:8088"}
SECRET = {"name": "LLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm", "key": "LLM_API_KEY"}}}


def container(*env: dict) -> Container:
    return Container("Deployment/ai", {"name": "testkube-ai-service", "image": "docker.io/kubeshop/testkube-ai-copilot:1.15.2",
                                       "env": [CP, SECRET, *env]})


def asked(**env) -> dict:
    return {name: (("testkube-ai-service", "additionalEnvVars[0]"), value) for name, value in env.items()}


def not_applicable():
    return pytest.raises(pytest.skip.Exception, match=NOT_APPLICABLE)


# --- values ----------------------------------------------------------------------------------
def test_a_yaml_error_names_file_and_line(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("a: 1\nb: [unclosed\nc: 2\n")
    with pytest.raises(ConfigurationError, match=r"v\.yaml:3:2: not valid YAML: .*flow sequence at line 2"):
        load(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigurationError, match="a mapping of keys, not a list"):
        load(path)


def test_values_merge_as_helm_merges():
    merged = merge({"a": {"x": 1, "y": 2}, "l": [1, 2], "k": "v"}, {"a": {"y": 3}, "l": [9], "k": None})
    assert merged == {"a": {"x": 1, "y": 3}, "l": [9], "k": None}  # maps deeply, lists replaced, null kept


def test_umbrella_shape_reaches_the_chart_with_its_globals(tmp_path):
    (tmp_path / "v.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "mirror.corp"}, "llmApi": {"url": "x"},
        "testkube-ai-service": {"enabled": True, "logLevel": "warn", "global": {"domain": "d"}}}))
    values = Values.read([tmp_path / "v.yaml"])
    assert values.umbrella and values.prefix == ("testkube-ai-service",)
    assert values.for_chart() == {"logLevel": "warn", "global": {"domain": "d", "imageRegistry": "mirror.corp"}}
    assert values.outside({"llmApi", "logLevel"}) == [("llmApi",)]


def test_mentions_find_env_entries_and_keys():
    tree = {"extraEnvVars": [{"name": "DO_NOT_TRACK", "value": "true"}], "env": {"HTTP_PROXY": "http://p:3128"}}
    assert mentions(tree, {"DO_NOT_TRACK", "HTTP_PROXY"}, ("s",)) == {
        "DO_NOT_TRACK": (("s", "extraEnvVars[0]"), "true"), "HTTP_PROXY": (("s", "env", "HTTP_PROXY"), "http://p:3128")}


# --- checks ----------------------------------------------------------------------------------
def test_ignored_keys_name_the_key_and_the_fix():
    assert cfg.no_ignored_keys([], DEFAULTS) == []
    env_list = Ignored(("testkube-ai-service", "extraEnvVars"), [{"name": "DO_NOT_TRACK", "value": "true"}], "same")
    with pytest.raises(Violation, match=r"testkube-ai-service\.extraEnvVars .*move these entries to additionalEnvVars"):
        cfg.no_ignored_keys([env_list], DEFAULTS)
    with pytest.raises(Violation, match=r"llmApi .*move it under testkube-ai-service:"):
        cfg.no_ignored_keys([Ignored(("llmApi",), {"url": "u"}, "beside", beside_umbrella=True)], DEFAULTS)
    with pytest.raises(Undetermined, match="renders differently"):
        cfg.no_ignored_keys("the chart renders differently each time", DEFAULTS)


def test_telemetry_opt_out_must_arrive_as_asked():
    dnt = {"name": "DO_NOT_TRACK", "value": "true"}
    assert cfg.telemetry_off(asked(DO_NOT_TRACK="true"), container(dnt), DEFAULTS)
    with not_applicable():
        cfg.telemetry_off({}, container(), DEFAULTS)
    with pytest.raises(Violation, match=r"DO_NOT_TRACK \(at testkube-ai-service.additionalEnvVars\[0\]\); move these entries to additionalEnvVars"):
        cfg.telemetry_off(asked(DO_NOT_TRACK="true"), container(), DEFAULTS)
    with pytest.raises(Violation, match="quote it"):
        cfg.telemetry_off(asked(DO_NOT_TRACK=True), container({"name": "DO_NOT_TRACK", "value": True}), DEFAULTS)
    with pytest.raises(Violation, match="the values ask for 'true'"):
        cfg.telemetry_off(asked(DO_NOT_TRACK="true"), container({"name": "DO_NOT_TRACK"}), DEFAULTS)
    with pytest.raises(Violation, match="switches nothing off"):
        cfg.telemetry_off(asked(DO_NOT_TRACK="false"), container({"name": "DO_NOT_TRACK", "value": "false"}), DEFAULTS)


@pytest.mark.parametrize("host, no_proxy, exempt", [
    ("tk-api.testkube.svc.cluster.local", ".svc.cluster.local", True),
    ("tk-api.testkube.svc.cluster.local", "svc.cluster.local", True),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("anything", "*", True),
    ("tk-api.testkube.svc.cluster.local", "localhost,127.0.0.1", False),
    ("10.1.2.3", "192.168.0.0/16", False),
])
def test_no_proxy_matching(host, no_proxy, exempt):
    assert cfg.covered(host, no_proxy) is exempt


def test_proxy_reaches_and_no_proxy_exempts_the_cluster():
    proxy = {"name": "HTTPS_PROXY", "value": "http://proxy.corp.internal:3128"}
    llm = {"name": "LLM_API_URL", "value": "http://ollama.llm.svc.cluster.local:11434/v1"}
    good = container(llm, proxy, {"name": "NO_PROXY", "value": ".svc.cluster.local"})
    assert cfg.proxy_set(asked(HTTPS_PROXY="http://proxy.corp.internal:3128"), good, DEFAULTS)
    assert cfg.no_proxy_exempts(good)["exempted"] == {"the control plane": "tk-api.testkube.svc.cluster.local",
                                                     "the in-cluster LLM": "ollama.llm.svc.cluster.local"}
    with not_applicable():
        cfg.proxy_set({}, good, DEFAULTS)
    with pytest.raises(Violation, match="HTTPS_PROXY"):
        cfg.proxy_set(asked(HTTPS_PROXY="http://proxy.corp.internal:3128"), container(), DEFAULTS)
    with pytest.raises(Violation, match=r"does not exempt the control plane .* and the in-cluster LLM"):
        cfg.no_proxy_exempts(container(llm, proxy, {"name": "no_proxy", "value": "localhost"}))
    assert cfg.no_proxy_exempts(container()) == {"proxy": None}  # no proxy: nothing to exempt


def test_llm_key_only_from_a_secret():
    assert cfg.key_from_secret(container()) == {"LLM_API_KEY": SECRET["valueFrom"]}
    literal = Container("Deployment/ai", {"name": "c", "env": [{"name": "LLM_API_KEY", "value": ""}]})
    with pytest.raises(Violation, match="LLM_API_KEY is a literal value"):
        cfg.key_from_secret(literal)
    with pytest.raises(Violation, match="LLM_TRACING_API_KEY"):
        cfg.key_from_secret(container({"name": "LLM_TRACING_API_KEY", "value": "lt-123"}))
    with pytest.raises(Undetermined, match="no LLM_API_KEY"):
        cfg.key_from_secret(Container("Deployment/ai", {"name": "c", "env": []}))


def test_hosted_proxy_never_in_production_or_self_hosted():
    hosted = {"name": "LLM_API_URL", "value": "https://llm.testkube.io"}
    evaluation = infer("https://llm.testkube.io", None)
    assert evaluation.kind == "hosted-proxy"
    assert cfg.no_hosted_proxy(container(hosted, {"name": "NODE_ENV", "value": "development"}), evaluation)
    with pytest.raises(Violation, match="NODE_ENV is 'production'"):
        cfg.no_hosted_proxy(container(hosted, {"name": "NODE_ENV", "value": "production"}), evaluation)
    with pytest.raises(Violation, match="the deployment is self-hosted"):
        cfg.no_hosted_proxy(container(hosted, {"name": "NODE_ENV", "value": "development"}), infer("http://llm.svc", None).__class__("self-hosted", "given"))


@pytest.mark.parametrize("url, outcome", [
    ("http://ollama.llm.svc.cluster.local:11434/v1", None),
    ("http://10.0.4.7:8000/v1", None),
    ("http://ollama:11434", None),
    (None, Violation),
    ("https://api.openai.com/v1", Violation),
    ("http://8.8.8.8/v1", Violation),
    ("https://llm.acme.example/v1", Undetermined),
])
def test_self_hosted_llm_is_inside(url, outcome):
    self_hosted = infer("http://ollama:11434", None)
    c = container(*([{"name": "LLM_API_URL", "value": url}] if url else []))
    if outcome is None:
        assert cfg.llm_inside(c, self_hosted)["where"] in ("in-cluster", "private")
    else:
        with pytest.raises(outcome):
            cfg.llm_inside(c, self_hosted)


def test_llm_inside_is_not_applicable_to_a_third_party_llm():
    with not_applicable():
        cfg.llm_inside(container(), infer("https://api.openai.com/v1", None))


def test_air_gapped_images_come_from_the_named_registry():
    air_gapped = infer("http://ollama:11434", "registry.corp.internal:5000")
    assert air_gapped.kind == "air-gapped"
    pod = lambda *images: [{"kind": "Deployment", "metadata": {"name": "ai"}, "spec": {"template": {"spec": {  # noqa: E731
        "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}}}]
    assert cfg.images_from(pod("registry.corp.internal:5000/kubeshop/testkube-ai-copilot:1.15.2"), air_gapped, "registry.corp.internal:5000")
    with pytest.raises(Violation, match="not pulled from registry.corp.internal:5000: Deployment/ai container c1 image busybox"):
        cfg.images_from(pod("registry.corp.internal:5000/a:1", "busybox"), air_gapped, "registry.corp.internal:5000")
    with pytest.raises(Violation, match="names no private registry"):
        cfg.images_from(pod("kubeshop/testkube-ai-copilot:1.15.2"), air_gapped, None)
    with not_applicable():
        cfg.images_from(pod("busybox"), infer("http://ollama:11434", None), None)


def test_registry_and_address_classification():
    assert [registry_of(i) for i in ("busybox", "kubeshop/x:1", "ghcr.io/a/b", "localhost:5000/a", "r.corp:5000/a")] == [
        "docker.io", "docker.io", "ghcr.io", "localhost:5000", "r.corp:5000"]
    assert [where(h) for h in ("ollama", "a.b.svc", "192.168.1.2", "8.8.8.8", "api.openai.com", "llm.acme.example")] == [
        "in-cluster", "in-cluster", "private", "public", "public", "unknown"]


def test_schemas_are_strict():
    good = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ai"}}
    assert cfg.schema_valid([good])["versions"] == list(cfg.SCHEMA_VERSIONS)
    with pytest.raises(Violation, match=r"ServiceAccount/ai .*automountServiceAccountTokn"):
        cfg.schema_valid([{**good, "automountServiceAccountTokn": True}])
    with pytest.raises(Undetermined, match="no schema"):
        cfg.schema_valid([{"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "x"}}])


# --- the stand-in chart, rendered by helm ------------------------------------------------------
def deployment(*files: str | Path, chart: Path = CHART) -> Deployment:
    return Deployment.render(Chart.open(str(chart), "ai", "testkube"), Values.read([VALUES / f for f in files]))


def test_the_page_snippet_is_found_ignored_and_restated_defaults_are_not():
    d = deployment("page/telemetry.yaml")
    assert [i.path for i in d.ignored] == [("testkube-ai-service", "extraEnvVars")]
    assert "DO_NOT_TRACK" not in d.container.env


def test_ignored_keys_are_found_at_the_leaf_and_beside_the_umbrella(tmp_path):
    (tmp_path / "v.yaml").write_text(yaml.safe_dump({
        "additionalEnvVars": [],  # a chart key beside the umbrella section never reaches the chart
        "testkube-ai-service": {"image": {"repository": "kubeshop/testkube-ai-copilot", "tag": "1.16.0"},  # restated default: no finding
                                "llmApi": {"url": "https://api.openai.com/v1", "secretRef": "s", "apiKey": "sk-shadowed"}}}))
    d = deployment(tmp_path / "v.yaml")
    assert [(i.path, i.reason.split(",")[0]) for i in d.ignored] == [
        (("additionalEnvVars",), "written beside testkube-ai-service:"),
        (("testkube-ai-service", "llmApi", "apiKey"), "the rendering is the same without it")]
    assert d.secrets(cfg.SECRET_ENV) == {"values-llmApi-apiKey": "sk-shadowed"}


def test_a_chart_that_renders_differently_each_time_cannot_be_judged(tmp_path):
    chart = tmp_path / "random"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: random\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: r}\ndata: {token: {{ randAlphaNum 16 | quote }}}\n")
    (tmp_path / "v.yaml").write_text("x: 1\n")
    assert "renders differently" in deployment(tmp_path / "v.yaml", chart=chart).ignored


def test_helm_errors_are_shown(tmp_path):
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "x.yaml").write_text('{{ required "llmApi.url is required" .Values.nothing }}\n')
    with pytest.raises(ConfigurationError, match="llmApi.url is required"):
        deployment(chart=chart)
    with pytest.raises(ConfigurationError, match="no chart directory"):
        Chart.open(str(tmp_path / "absent"), "ai", "testkube")


def test_render_then_run_env_keeps_placeholders_and_withholds_what_the_chart_drops():
    overrides = {"controlPlaneRestApiUri": "{lab.controlplane.url}", "llmApi": {"url": "{lab.llm.url}"}}
    made = chart_env(deployment("page/proxy.yaml"), "testkube-ai-service", overrides, {"LLM_API_KEY": "{lab.llm.api_key}"})
    assert made.env["CONTROL_PLANE_ENDPOINT"] == "{lab.controlplane.url}" and made.env["LLM_API_URL"] == "{lab.llm.url}"
    assert made.env["LLM_API_KEY"] == "{lab.llm.api_key}"  # the Secret's value, supplied by the lab
    assert set(made.withheld) == {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}
    good = chart_env(deployment("good/proxy.yaml"), "testkube-ai-service", overrides, {"LLM_API_KEY": "k"})
    assert "HTTPS_PROXY" not in good.env  # the customer's proxy is not in the lab: the scenarios set the lab's
    assert set(good.withheld) == {"http_proxy", "https_proxy", "no_proxy"}  # asked for, dropped by the chart
    with pytest.raises(ConfigurationError, match="give its value in the driver's service.env.LLM_API_KEY"):
        chart_env(deployment("good/proxy.yaml"), "testkube-ai-service", overrides, {})
    with pytest.raises(ConfigurationError, match="service.env.NODE_ENV would override"):
        chart_env(deployment("good/proxy.yaml"), "testkube-ai-service", overrides, {"LLM_API_KEY": "k", "NODE_ENV": "development"})
