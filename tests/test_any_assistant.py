"""Any assistant, honestly judged: an assistant shaped unlike the reference (errors inside HTTP
200, its own tools, structured output) gets no false verdict; the mock LLM fits any tool set;
the driver contract covers what real assistants need; and the service under test is sandboxed,
with nothing of a timed-out chat left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from aislab.driver import load_driver
from aislab.driver.client import run_cli_chat
from aislab.driver.model import ChatSpec, DriverError, ErrorSpec
from aislab.world.layout import SERVICE_UID
from aislab.world.lab import Lab
from aislab.world.mocks.llm.arguments import OUTSIDE_HOST, argument_sets, example
from aislab.world.mocks.llm.script import plan_turn
from aislab.world.targets import make_target
from tests.suite_runs import DRIVERS, run_suite

SEED = [{"workflowName": "checkout-e2e"}, {"executionId": "65a1", "executionName": "checkout-e2e-1", "workflowName": "checkout-e2e"}]
FIND_TESTS = {"name": "find_tests", "parameters": {"type": "object", "required": ["query", "limit", "status"], "properties": {
    "query": {"type": "string", "minLength": 2}, "limit": {"type": "integer", "minimum": 1, "maximum": 200},
    "status": {"type": "string", "enum": ["failed", "passed"]}, "include_logs": {"type": "boolean"}}}}
RUN_OUTPUT = {"name": "run_output", "parameters": {"type": "object", "required": ["run_id", "tail_lines"], "properties": {
    "run_id": {"type": "string"}, "tail_lines": {"type": "integer", "maximum": 500}}}}
DESCRIBE = {"name": "describe_test", "parameters": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}


def test_tools_of_any_shape_get_schema_valid_arguments_with_seed_data_where_they_name_resources():
    assert argument_sets(FIND_TESTS, SEED) == [{"query": "lab", "limit": 200, "status": "failed"}]
    assert argument_sets(RUN_OUTPUT, SEED) == [{"run_id": "65a1", "tail_lines": 500}]
    assert argument_sets(DESCRIBE, SEED) == [{"name": "checkout-e2e"}]
    for tool in (FIND_TESTS, RUN_OUTPUT, DESCRIBE):
        for args in argument_sets(tool, SEED):
            jsonschema.validate(args, tool["parameters"])


def test_a_destination_the_harness_chooses_for_a_tool_is_named_outside_the_lab():
    """A network-check tool given `lab` would show up as "DNS lookup: lab"; given an outside name
    its attempt reads as what it is."""
    check = {"name": "check_connectivity", "parameters": {"type": "object", "required": ["host", "endpoint_url", "mode"], "properties": {
        "host": {"type": "string"}, "endpoint_url": {"type": "string"}, "mode": {"type": "string", "enum": ["tcp", "http"]}}}}
    assert argument_sets(check, SEED) == [{"host": OUTSIDE_HOST, "endpoint_url": f"https://{OUTSIDE_HOST}/", "mode": "tcp"}]


def test_an_answer_asked_for_as_structured_output_is_valid_for_its_schema():
    schema = {"type": "object", "required": ["summary", "items", "confidence"], "additionalProperties": False, "properties": {
        "summary": {"type": "string"}, "items": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "string", "enum": ["low", "medium", "high"]}}}
    body = {"messages": [{"role": "user", "content": "[conv:c] hi"}, {"role": "assistant", "tool_calls": []},
                         {"role": "tool", "tool_call_id": "1", "content": "CANARY_log_x_n"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
    answer = json.loads(plan_turn({"match": "c", "steps": [{"answer": "x"}]}, body).content)
    jsonschema.validate(answer, schema)
    assert "CANARY_log_x_n" in answer["summary"]  # what the tools returned still reaches the answer
    assert json.loads(plan_turn(None, {**body, "response_format": {"type": "json_object"}}).content)["answer"]
    assert example({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 3}}}) == {"n": 3}


def test_an_assistant_with_its_own_tools_errors_inside_200_and_json_answers_gets_no_false_verdict(tmp_path):
    run = run_suite("opsbuddy", tmp_path / "r", driver=DRIVERS / "opsbuddy.yaml")
    assert not run.with_verdict("violated"), run.output
    # What its tools allow is judged; what needs the Testkube tools it has not is undetermined, with why.
    assert {"AIS-AUTH-01", "AIS-AUTH-02", "AIS-AUTH-03", "AIS-RBAC-01", "AIS-RO-01", "AIS-RO-02", "AIS-PROXY-01", "AIS-PROXY-04",
            "AIS-TELEM-01", "AIS-TELEM-02", "AIS-AIRGAP-01", "AIS-AIRGAP-02", "AIS-AIRGAP-03"} <= run.with_verdict("satisfied"), run.verdicts
    report = json.loads((tmp_path / "r" / "conformance-report.json").read_text())
    assert all(c.get("reason") for c in report["claims"] if c["verdict"] == "undetermined")
    telemetry = next(c for c in report["claims"] if c["id"] == "AIS-TELEM-01")
    assert any("its own telemetry switch" in s["name"] and s["outcome"] == "passed" for s in telemetry["scenarios"])
    airgap = next(c for c in report["claims"] if c["id"] == "AIS-AIRGAP-01")["scenarios"][0]
    tools_file = next(e["path"] for e in airgap["evidence"] if e["path"].endswith("/tools.json"))
    tools = json.loads((tmp_path / "r" / tools_file).read_text())
    assert {"find_tests", "run_output", "describe_test"} <= set(tools["called"]) <= set(tools["advertised"])


# --- the driver contract for one-shot assistants ----------------------------------------------
class HereTarget:
    """A target that runs commands here, as a lab host would (for the contract's own logic)."""

    def run_in(self, host, command, timeout=10, env=None, sandbox=None):
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def cli(tmp_path: Path, command: list[str], **spec) -> tuple:
    chat = ChatSpec(mode="cli", command=tuple(command), **{"answer": "answer", **spec})
    log = tmp_path / "service.log"
    exchange = run_cli_chat(HereTarget(), chat, {"prompt": "hi"}, {"PATH": "/usr/bin:/bin"}, "reader", tmp_path, log, None)
    return exchange, log.read_text()


def test_a_cli_answer_can_be_written_to_a_file_as_text_and_its_output_goes_to_the_service_log(tmp_path):
    exchange, log = cli(tmp_path, ["sh", "-c", "echo working >&2; echo 'the answer is 42' > {output_file}"], answer_format="text")
    assert (exchange.status, exchange.answer) == (200, "the answer is 42") and "working" in log
    exchange, _ = cli(tmp_path, ["sh", "-c", 'echo \'{{"result": {{"text": "ok"}}}}\''], answer="result.text")
    assert exchange.answer == "ok"


def test_a_cli_error_keeps_the_end_of_stderr_and_an_error_path_marks_a_failure(tmp_path):
    exchange, _ = cli(tmp_path, ["sh", "-c", "for i in $(seq 1 400); do echo noise $i >&2; done; echo 'the real cause' >&2; exit 3"])
    assert exchange.status == 500 and exchange.error.endswith("the real cause\n")
    exchange, _ = cli(tmp_path, ["sh", "-c", 'echo \'{{"status": "error", "error": "LLM unreachable"}}\''], error=ErrorSpec("status", "error"))
    assert (exchange.status, exchange.succeeded, exchange.answer) == (200, False, None) and "status" in exchange.error
    with pytest.raises(DriverError, match="'answer' matches nothing in the response"):
        cli(tmp_path, ["sh", "-c", 'echo \'{{"reply": "x"}}\''])


# --- the sandbox, and nothing left of a timed-out chat -----------------------------------------
@pytest.fixture(params=["local", "docker"])
def lab(request):
    instance = Lab(make_target(request.param), load_driver(DRIVERS / "reference.yaml")).up()
    yield instance
    instance.down()


PROBE = """
import os, socket
out = {"host": socket.gethostname(), "uid": os.getuid(), "docker_socket": os.path.exists("/var/run/docker.sock")}
for name in ("idp-signing-key.pem", "ca.key", "lab.json"):
    try:
        open(os.path.join(STATE, name)).read(); out[name] = "read"
    except OSError as err:
        out[name] = type(err).__name__
out["resolved"] = socket.gethostbyname(socket.gethostname())
open("/tmp/sandbox-was-here", "w").write("x")
# ICMP echo, as any container may (ping sockets); raw IP where it holds CAP_NET_RAW (root in a
# container; the local sandbox gives its own user the same). The packet witness must see both.
socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).sendto(bytes([8, 0, 0, 0, 0, 1, 0, 1]), ("198.51.100.91", 0))
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, 253).sendto(b"sandbox-raw", ("198.51.100.90", 0)); out["raw"] = True
except PermissionError:
    out["raw"] = False
print(__import__("json").dumps(out))
"""


def test_the_service_cannot_read_the_labs_secrets_or_reach_the_docker_socket(lab):
    sandbox = lab.service_sandbox([lab.values()["python"]])
    probe = PROBE.replace("STATE", repr(str(lab.dirs.state)))
    proc = lab.target.run_in("service", [lab.values()["python"], "-c", probe], env=lab.service_env(), sandbox=sandbox)
    seen = json.loads(proc.stdout)
    assert {seen[n] for n in ("idp-signing-key.pem", "ca.key", "lab.json")} <= {"PermissionError", "FileNotFoundError"}, seen
    assert not seen["docker_socket"] and seen["host"] == "service", seen
    assert seen["resolved"].startswith("127."), seen  # it knows its own name without asking DNS
    assert not [q for q in lab.records("dns") if q["name"] == "service"]
    assert (lab.dirs.tmp / "sandbox-was-here").exists()  # its /tmp is its own
    assert seen["uid"] == (SERVICE_UID if sandbox.uid is not None else 0)
    assert lab.dirs.state.stat().st_mode & 0o777 == 0o700
    lab.drain_witnesses()
    sent = {(r["proto"], r["dst"]) for r in lab.records("packets")}
    assert ("icmp", "198.51.100.91") in sent and (("ip-253", "198.51.100.90") in sent) == seen["raw"], sent
    assert seen["raw"] or lab.target.name == "docker", "the local sandbox gives its user CAP_NET_RAW, as root in a container has"


def test_what_the_sandbox_hides_from_the_service_is_said_with_the_fix(lab, tmp_path):
    """A program installed under the machine's /tmp is not there for the service (its /tmp is
    its own); nor a program that does not exist, nor a script whose interpreter is hidden."""
    installed = Path("/tmp") / f"aislab-preflight-{tmp_path.name}"
    installed.mkdir(mode=0o755)
    try:
        tool = installed / "assistant"
        tool.write_text("#!/bin/sh\necho '{\"answer\": \"hi\"}'\n")
        tool.chmod(0o755)
        script = tmp_path.parent / f"script-{tmp_path.name}"
        script.write_text(f"#!{tool}\n")
        script.chmod(0o755)
        sandbox = lab.service_sandbox(["sh"])
        hidden = lab.target.unrunnable([str(tool), "ask"], sandbox)
        assert len(hidden) == 1 and "paths under /tmp are private to the service" in hidden[0] and "keep_in_sight" in hidden[0], hidden
        assert "does not exist" in lab.target.unrunnable(["/opt/no/such/assistant"], sandbox)[0]
        assert "does not exist on the service's PATH" in lab.target.unrunnable(["no-such-assistant"], sandbox)[0]
        assert not lab.target.unrunnable(["sh", "-c", "echo", "/v1/not-a-path"], sandbox)  # an argument that is no path anywhere
        kept = replace(sandbox, keep=(*sandbox.keep, str(installed)))
        assert not lab.target.unrunnable([str(tool), "ask"], kept)
        assert lab.target.run_in("service", [str(tool)], sandbox=kept).stdout.strip() == '{"answer": "hi"}'
    finally:
        shutil.rmtree(installed)


def test_nothing_of_a_timed_out_chat_survives(lab):
    sandbox = lab.service_sandbox([lab.values()["python"]])
    marker = "aislab-orphan-check"
    script = f"import subprocess, time; subprocess.Popen(['sleep', '300', '{marker}']); time.sleep(300)"
    with pytest.raises(subprocess.TimeoutExpired):
        lab.target.run_in("service", [lab.values()["python"], "-c", script], timeout=2, env=lab.service_env(), sandbox=sandbox)
    left = subprocess.run(["pgrep", "-f", f"sleep 300 {marker}"], capture_output=True, text=True).stdout
    assert not left.strip(), f"a process of the timed-out chat survived: {left}"
