"""Driver files: the shipped ones load; every broken one is refused naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aislab.driver import DriverError, load_driver
from aislab.driver.model import render

DRIVERS = Path(__file__).resolve().parent.parent / "fixtures" / "drivers"


@pytest.mark.parametrize("path", sorted(DRIVERS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_driver_loads(path, monkeypatch):
    monkeypatch.setenv("AIS_MUTANT", "any")  # the defect drivers take their variant from it
    assert load_driver(path).families


def test_reference_driver_loads():
    d = load_driver(DRIVERS / "reference.yaml")
    assert d.name == "reference-ai-service" and d.service.port == 9090
    assert d.applies("audit") and d.chat.answer == "answer"


def test_mutant_driver_extends_the_reference(monkeypatch):
    monkeypatch.setenv("AIS_MUTANT", "any")
    d = load_driver(DRIVERS / "mutant.yaml")
    assert d.service.command[-2:] == ("mutants", "{env:AIS_MUTANT}")
    assert d.service.env["CONTROL_PLANE_ENDPOINT"] == "{lab.controlplane.url}"  # inherited


def test_image_driver_drops_the_inherited_command_with_null():
    d = load_driver(DRIVERS / "reference-image.yaml")
    assert (d.service.image, d.service.command) == ("aislab/reference-service:latest", None)
    assert d.service.env["OAUTH_JWKS_URL"] == "{lab.idp.jwks_url}"  # the rest is inherited


def broken(tmp_path, mutate) -> Path:
    doc = yaml.safe_load((DRIVERS / "reference.yaml").read_text())
    mutate(doc)
    path = tmp_path / "driver.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("name"), "driver.name"),
    (lambda d: d["service"].update(port="9090"), "service.port"),
    (lambda d: d["service"].update(port=70000), "service.port"),
    (lambda d: d["service"].pop("command"), "service"),
    (lambda d: d["service"]["ready"].update(timeout="soon"), "service.ready.timeout"),
    (lambda d: d["chat"].pop("path"), "chat.path"),
    (lambda d: d["chat"]["json"].pop("message"), "{prompt}"),
    (lambda d: d["chat"].update(method="DELETE"), "chat.method"),
    (lambda d: d.update(families=["authentication", "telepathy"]), "families"),
    (lambda d: d["service"]["env"].update(NESTED={"a": 1}), "service.env.NESTED"),
])
def test_broken_driver_names_the_field(tmp_path, mutate, field):
    with pytest.raises(DriverError, match=field.replace("{", r"\{").replace("}", r"\}")):
        load_driver(broken(tmp_path, mutate))


def test_cli_driver_loads_without_a_service_and_without_auth():
    d = load_driver(DRIVERS / "cli-assistant.yaml")
    assert (d.chat.mode, d.service.command, d.auth) == ("cli", None, "none")
    assert not d.applies("authentication") and not d.applies("audit") and d.applies("air-gap")
    assert "no user authentication" in d.why_not("authorization")
    assert d.network.telemetry_off_env == {"ASSISTANT_NO_TELEMETRY": "1"} and "assistant.ini" in d.files


@pytest.mark.parametrize("override, field", [
    ({"chat": {"mode": "carrier-pigeon"}}, "chat.mode"),
    ({"chat": {"mode": "cli", "command": ["assistant", "ask"], "answer": "answer"}}, r"chat.command: no item carries the \{prompt\}"),
    ({"auth": "basic"}, "auth"),
    ({"network": {"telemetry_off_env": {"X": ["not", "a", "string"]}}}, "network.telemetry_off_env.X"),
    ({"files": {"a.ini": {"nested": 1}}}, "driver.files.a.ini"),
])
def test_broken_contract_fields_are_named(tmp_path, override, field):
    doc = {"extends": str(DRIVERS / "reference.yaml"), **override}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DriverError, match=field):
        load_driver(path)


def test_not_yaml_and_missing_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(DriverError, match="not valid YAML"):
        load_driver(tmp_path / "bad.yaml")
    with pytest.raises(DriverError, match="not found"):
        load_driver(tmp_path / "absent.yaml")


def test_extends_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(DriverError, match="extends itself"):
        load_driver(tmp_path / "a.yaml")


def test_an_extends_to_a_missing_file_names_the_file_and_the_field(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: base/absent.yaml\nname: mine\n")
    with pytest.raises(DriverError, match=r"mine.yaml: extends: no driver file .*base/absent.yaml"):
        load_driver(tmp_path / "mine.yaml")


@pytest.mark.parametrize("override, message", [
    ({"service": {"comand": ["x"]}}, r"service.comand: unknown key; did you mean 'command'\?"),
    ({"service": {"ready": {"timout": 5}}}, r"service.ready.timout: unknown key; did you mean 'timeout'\?"),
    ({"chat": {"anwser": "x"}}, r"chat.anwser: unknown key; did you mean 'answer'\?"),
    ({"netwrok": {}}, r"driver.netwrok: unknown key; did you mean 'network'\?"),
    ({"network": {"llm_url": "X"}}, r"network.llm_url: unknown key; did you mean 'llm_url_env'\?"),
    ({"chat": {"error": {"path": "status", "equal": "error"}}}, r"chat.error.equal: unknown key; did you mean 'equals'\?"),
])
def test_a_misspelt_key_is_an_error_naming_the_nearest_valid_one(tmp_path, override, message):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), **override}))
    with pytest.raises(DriverError, match=message):
        load_driver(path)


@pytest.mark.parametrize("override, message", [
    ({"service": {"env": {"X": "{lab.controlplane.uri}"}}}, r"service.env: unknown placeholder \{lab.controlplane.uri\}; did you mean \{lab.controlplane.url\}"),
    ({"service": {"env": {"X": "{prompt}"}}}, r"service.env: unknown placeholder \{prompt\}"),  # a chat's, not the service's
    ({"service": {"env": {"X": "{env:AISLAB_SURELY_UNSET}"}}}, r"needs the environment variable AISLAB_SURELY_UNSET"),
    ({"service": {"env": {"X": "{file:absent.ini}"}}}, r"unknown placeholder \{file:absent.ini\}"),
    ({"service": {"env": {"X": "${HOME}"}}}, r"unknown placeholder \{HOME\}.*write \{\{ and \}\} for literal braces"),
])
def test_every_placeholder_is_checked_when_the_driver_loads(tmp_path, override, message):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), **override}))
    with pytest.raises(DriverError, match=message):
        load_driver(path)


def test_doubled_braces_are_literal_braces(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"),
                                    "service": {"env": {"SHELLY": "${{HOME}}/x-{lab.org_id}", "FMT": "{{asctime}}"}}}))
    env = load_driver(path).service.env
    rendered = render({k: env[k] for k in ("SHELLY", "FMT")}, {"lab.org_id": "org-lab"}, "service.env")
    assert (rendered["SHELLY"], rendered["FMT"]) == ("${HOME}/x-org-lab", "{asctime}")


def test_error_path_and_text_answers_are_part_of_the_contract():
    d = load_driver(DRIVERS / "opsbuddy.yaml")
    assert (d.chat.error.path, d.chat.error.equals, d.chat.answer) == ("status", "error", "result.text")
    assert d.service.env["HOME"] == "{lab.scratch_dir}" and d.network.telemetry_off_env == {"OPSBUDDY_TELEMETRY": "off"}


def test_unknown_placeholder_names_field_and_placeholder():
    with pytest.raises(DriverError, match=r"service.env.X: unknown placeholder \{lab.nope\}"):
        render({"X": "{lab.nope}"}, {"lab.llm.url": "u"}, "service.env")


def test_env_from_chart_is_parsed_strictly(tmp_path):
    d = load_driver(DRIVERS / "reference-chart.yaml")
    assert d.service.env_from_chart.values["controlPlaneRestApiUri"] == "{lab.controlplane.url}"
    assert "LLM_API_URL" not in d.service.env and d.service.env["LLM_API_KEY"] == "{lab.llm.api_key}"
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "service": {"env_from_chart": {"containr": "x"}}}))
    with pytest.raises(DriverError, match=r"service.env_from_chart: unknown keys \['containr'\]"):
        load_driver(path)
