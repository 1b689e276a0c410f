"""The scripted mock LLM, driven by the official openai SDK (plain and streaming)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from starlette.testclient import TestClient

from aislab.world.mocks.llm.app import MockLLM
from aislab.world.mocks.llm.script import ScriptError, validate

KEY, ADMIN = "sk-test", "admin-secret"
TOOLS = [
    {"type": "function", "function": {"name": "list_workflows", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_workflow", "parameters": {
        "type": "object", "properties": {"workflowName": {"type": "string"}}, "required": ["workflowName"]}}},
]


@pytest.fixture
def mock():
    llm = MockLLM(KEY, ADMIN)
    client = TestClient(llm.app(), base_url="http://llm.lab")
    sdk = OpenAI(base_url="http://llm.lab/v1", api_key=KEY, http_client=client, max_retries=0)
    return llm, client, sdk


def script(client, conv, *steps):
    response = client.post("/_lab/scripts", json=[{"match": conv, "steps": list(steps)}], headers={"x-lab-admin": ADMIN})
    assert response.status_code == 200, response.text


def test_models_and_api_key(mock):
    llm, client, sdk = mock
    assert [m.id for m in sdk.models.list()] == ["lab-model"]
    bad = OpenAI(base_url="http://llm.lab/v1", api_key="wrong", http_client=client, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="lab-model", messages=[{"role": "user", "content": "hi"}])
    assert llm.requests.items[-1]["headers"]["authorization"] == "Bearer wrong"  # refused requests are recorded too


def test_scripted_tool_calls_then_echo(mock):
    llm, client, sdk = mock
    script(client, "c1", {"tool_calls": [{"name": "get_workflow", "arguments": {"workflowName": "wf"}}]}, {"echo_tool_results": True})
    messages = [{"role": "user", "content": "[conv:c1] hello"}]
    first = sdk.chat.completions.create(model="lab-model", messages=messages, tools=TOOLS).choices[0]
    assert first.finish_reason == "tool_calls"
    call = first.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_workflow", {"workflowName": "wf"})
    messages += [first.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "RESULT-123"}]
    second = sdk.chat.completions.create(model="lab-model", messages=messages, tools=TOOLS).choices[0]
    assert second.message.content == "RESULT-123"
    assert [t["function"]["name"] for t in llm.requests.items[0]["body"]["tools"]] == ["list_workflows", "get_workflow"]
    assert llm.requests.items[1]["conversation"] == "c1"


def test_call_every_advertised_tool_fits_arguments_to_each_tool(mock):
    _, client, sdk = mock
    script(client, "c2", {"call_every_advertised_tool": {"arg_sets": [{"workflowName": "a"}, {"workflowName": "b"}, {"executionId": "x"}]}})
    calls = sdk.chat.completions.create(model="lab-model", messages=[{"role": "user", "content": "[conv:c2] go"}], tools=TOOLS).choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("list_workflows", {}), ("get_workflow", {"workflowName": "a"}), ("get_workflow", {"workflowName": "b"})]


def test_streaming_tool_calls_reassemble(mock):
    _, client, sdk = mock
    script(client, "c3", {"tool_calls": [{"name": "run_workflow", "arguments": {"workflowName": "x"}}]})
    stream = sdk.chat.completions.create(model="lab-model", messages=[{"role": "user", "content": "[conv:c3] go"}], tools=TOOLS, stream=True)
    name, args = "", ""
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            name += delta.function.name or ""
            args += delta.function.arguments or ""
    assert (name, json.loads(args)) == ("run_workflow", {"workflowName": "x"})  # not advertised: adversarial on purpose


def test_scripted_failure(mock):
    _, client, sdk = mock
    script(client, "c4", {"fail": 500})
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="lab-model", messages=[{"role": "user", "content": "[conv:c4] go"}])


def test_barrier_releases_only_when_all_parties_arrive():
    llm = MockLLM(KEY, ADMIN)
    barrier = {"name": "b", "parties": 2, "timeout": 5}
    llm.scripts = {c: validate({"match": c, "steps": [{"answer": c, "barrier": barrier}]}) for c in ("x", "y")}

    async def main():
        transport = httpx.ASGITransport(app=llm.app())
        sdk = AsyncOpenAI(base_url="http://llm.lab/v1", api_key=KEY, http_client=httpx.AsyncClient(transport=transport), max_retries=0)
        ask = lambda c: sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": f"[conv:{c}] q"}])  # noqa: E731
        first = asyncio.ensure_future(ask("x"))
        await asyncio.sleep(0)  # let the first request reach the barrier
        assert not first.done()
        second = await ask("y")
        return (await first).choices[0].message.content, second.choices[0].message.content

    assert asyncio.run(main()) == ("x", "y")
    assert [r["barrierMet"] for r in llm.requests.items] == [True, True]


@pytest.mark.parametrize("bad, message", [
    ({"steps": []}, "match"),
    ({"match": "c", "steps": []}, "non-empty"),
    ({"match": "c", "steps": [{"answer": "a", "echo_tool_results": True}]}, "exactly one"),
    ({"match": "c", "steps": [{"tool_calls": [{"arguments": {}}]}]}, "name"),
])
def test_broken_scripts_are_refused_with_a_reason(bad, message):
    with pytest.raises(ScriptError, match=message):
        validate(bad)


def test_malformed_tool_calls_go_on_the_wire_as_written(mock):
    _, client, _sdk = mock
    script(client, "m1", {"tool_calls": [{"name": " Get_Workflow ", "raw_arguments": '{"workflowName": "x"'},
                                         {"name": "get_workflow", "arguments": {"workflowName": "x"}, "pad": {"padding": 1024}},
                                         {"name": "list_workflows", "times": 3}]})
    reply = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "[conv:m1] go"}]},
                        headers={"authorization": f"Bearer {KEY}"}).json()
    calls = reply["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == [" Get_Workflow ", "get_workflow"] + ["list_workflows"] * 3
    assert calls[0]["function"]["arguments"] == '{"workflowName": "x"'  # not JSON: sent as it is
    assert json.loads(calls[1]["function"]["arguments"])["padding"] == "x" * 1024
    assert len({c["id"] for c in calls}) == 5
    with pytest.raises(ScriptError, match="unknown tool-call keys"):
        validate({"match": "m", "steps": [{"tool_calls": [{"name": "x", "argumnets": {}}]}]})


def test_a_held_reply_waits_for_the_harness_which_can_await_it():
    llm = MockLLM(KEY, ADMIN)
    llm.scripts = {"h": validate({"match": "h", "steps": [{"answer": "late", "hold": {"name": "h1", "timeout": 30}}]})}

    async def main():
        transport = httpx.ASGITransport(app=llm.app())
        http = httpx.AsyncClient(transport=transport, base_url="http://llm.lab")
        sdk = AsyncOpenAI(base_url="http://llm.lab/v1", api_key=KEY, http_client=http, max_retries=0)
        chat = asyncio.ensure_future(sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "[conv:h] q"}]))
        held = await http.get("/_lab/holds/h1", params={"timeout": 10}, headers={"x-lab-admin": ADMIN})
        assert held.json() == {"held": True} and not chat.done()
        assert (await http.post("/_lab/holds/h1", headers={"x-lab-admin": "wrong"})).status_code == 403
        await http.post("/_lab/holds/h1", headers={"x-lab-admin": ADMIN})
        return (await chat).choices[0].message.content

    assert asyncio.run(main()) == "late"
    assert llm.requests.items[0]["held"] == "released"


def test_a_barrier_in_cohorts_lets_arrivals_go_a_cohort_at_a_time():
    llm = MockLLM(KEY, ADMIN)
    barrier = {"name": "c", "parties": 2, "cohorts": True, "timeout": 5}
    llm.scripts = {c: validate({"match": c, "steps": [{"answer": c, "barrier": barrier}]}) for c in "wxyz"}

    async def main():
        transport = httpx.ASGITransport(app=llm.app())
        sdk = AsyncOpenAI(base_url="http://llm.lab/v1", api_key=KEY, http_client=httpx.AsyncClient(transport=transport), max_retries=0)
        ask = lambda c: sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": f"[conv:{c}] q"}])  # noqa: E731
        first = asyncio.ensure_future(ask("w"))
        await asyncio.sleep(0)
        await ask("x")  # the first cohort is full: both go
        assert first.done()
        third = asyncio.ensure_future(ask("y"))
        await asyncio.sleep(0.05)
        assert not third.done()  # a new cohort waits for its second
        await ask("z")
        await third

    asyncio.run(main())
    assert [r["barrierMet"] for r in llm.requests.items] == [True] * 4
