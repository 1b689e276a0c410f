"""Generic steps shared by every feature, grouped Given / When / Then.

Steps are fixtures: a When step hands its Chat on through `target_fixture`; Then steps take
it as an argument and judge it with the checks in aislab.judging.checks.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from dataclasses import dataclass

from pytest_bdd import given, parsers, then, when

from aislab.driver.client import ChatExchange
from aislab.judging import checks
from aislab.judging.checks import api_calls
from aislab.judging.exercise import chat_counts
from aislab.judging.direct import DirectReader
from aislab.judging.observe import Observer, Window, canaries, everything_sent_to_llm, tool_exchanges
from aislab.judging.verdict import Undetermined, undetermined_unless
from aislab.suite.exercising import Scope
from aislab.world.lab import Lab


@dataclass
class Chat:
    persona: str | None
    sub: str | None
    token: str | None
    conversation: str
    environment: str
    exchange: ChatExchange
    window: Window

    def __repr__(self) -> str:
        # A step argument in the Allure drill-down and in tracebacks: never the user's token.
        who = f"{self.persona} ({self.sub})" if self.persona else "anonymous"
        state = "changed" if any(e.get("changedState") for e in self.window.cp) else "unchanged"
        return (f"Chat({who} in {self.environment}, conversation {self.conversation}: HTTP {self.exchange.status}, "
                f"{len(self.window.llm)} LLM requests, {len(self.window.cp)} control-plane requests, state {state})")


def run_chat(lab: Lab, observer: Observer, persona: str | None, token: str | None, script: dict | None,
             conversation: str, environment: str = "env-prod", prompt: str = "What can you tell me?", role: str = "judged",
             patience: float = 0.0, settle=None, during=None) -> Chat:
    """One chat in its own window; its record says what the lab saw the service do for it.
    `patience`: how much longer than the driver's chat timeout it may take; `during(mark, running)`:
    what the harness does while the chat runs (it awaits an event of the chat and acts on it;
    `running` is the chat's future, done once the service answered);
    `settle`: called once the chat has returned, before its window is read (ends what the lab
    still holds, so that it is in the records)."""
    if script:
        lab.register_scripts([script])
    mark = observer.mark()
    converse = partial(lab.converse, f"[conv:{conversation}] {prompt}", token, environment, user=persona, role=role, patience=patience)
    if during is None:
        exchange, record = converse()
    else:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(converse)
            try:
                during(mark, running)
            finally:
                exchange, record = running.result()
    if settle is not None:
        settle()
    window = observer.since(mark)
    record.counts = chat_counts(window.llm + window.provider, api_calls(window))
    sub = lab.user(persona)["sub"] if persona else None
    return Chat(persona, sub, token, conversation, environment, exchange, window)


def new_conversation() -> str:
    return uuid.uuid4().hex[:12]


def scripted_chat(lab, observer, script_book, persona: str, script_name: str, environment: str = "env-prod",
                  scope: Scope | None = None, role: str = "judged", **chat_options) -> Chat:
    conv = new_conversation()
    script = script_book.script(script_name, conv, environment)
    if scope is not None and any("fail" in step for step in script["steps"]):
        scope.provoke("llm-errors", 1)  # the scenario provokes the error path: the service must be seen taking it
    return run_chat(lab, observer, persona, lab.token(persona), script, conv, environment, role=role, **chat_options)


def tool_call_chat(lab, observer, persona: str, tool: str, arguments: str) -> Chat:
    conv = new_conversation()
    script = {"match": conv, "steps": [{"tool_calls": [{"name": tool, "arguments": json.loads(arguments)}]}, {"echo_tool_results": True}]}
    return run_chat(lab, observer, persona, lab.token(persona), script, conv)


@pytest.fixture
def chat_log() -> list[Chat]:
    """Every chat the scenario's When steps made, in order (a scenario may chat several times)."""
    return []


# --- Given -------------------------------------------------------------------------------
@given(parsers.parse("the witnesses are shown to record a {persona}'s chat"), target_fixture="control")
def witnesses_record_a_chat(lab, observer, script_book, persona, evidence) -> Chat:
    """Positive control: a valid chat that calls a tool IS seen by the LLM and control-plane witnesses."""
    chat = scripted_chat(lab, observer, script_book, persona, "one-tool", role="control")
    checks.witnesses_saw_a_chat(chat.window)
    evidence["positive-control"] = {"llm_requests": len(chat.window.llm), "controlplane_requests": len(chat.window.cp)}
    return chat


@given("the admin has just been shown every resource by the assistant", target_fixture="warmup")
def admin_warmup(lab, observer, script_book) -> Chat:
    """Fills any cache a service might share between users, and proves canaries are detectable."""
    return scripted_chat(lab, observer, script_book, "admin", "every-tool-every-resource", role="control")


@given(parsers.parse("the admin has just been shown every resource by the assistant, those the {persona} cannot read last"),
       target_fixture="warmup")
def admin_warmup_forbidden_last(lab, observer, script_book, persona, readable_canaries) -> Chat:
    """As above, each tool's last calls on resources the persona cannot read: a service that
    answers a later call from whatever it fetched last then shows the persona another's data."""
    forbidden = forbidden_canaries(lab, persona, readable_canaries)

    def unreadable(args: dict) -> bool:
        named = [f"CANARY_workflow_{args.get('workflowName')}_{lab.nonce}", f"CANARY_execution_{args.get('executionId')}_{lab.nonce}"]
        return any(n in forbidden for n in named)

    conv = new_conversation()
    script = script_book.script("every-tool-every-resource", conv, "env-prod")
    for step in script["steps"]:
        if "call_every_advertised_tool" in step:
            step["call_every_advertised_tool"]["arg_sets"].sort(key=unreadable)  # stable: the readable first, as they were
    return run_chat(lab, observer, "admin", lab.token("admin"), script, conv, role="control")


# --- When --------------------------------------------------------------------------------
@when(parsers.parse("the {persona} asks the assistant to use every tool on every resource"), target_fixture="chat")
def every_tool_every_resource(lab, observer, script_book, persona, chat_log, evidence) -> Chat:
    chat = scripted_chat(lab, observer, script_book, persona, "every-tool-every-resource")
    chat_log.append(chat)
    # Which of the tools the service advertised the mock LLM did call (arguments from their schemas).
    evidence.setdefault("tools-exercised", []).append(
        {"advertised": checks.advertised_tools(chat.window), "called": sorted({x.name for x in tool_exchanges(chat.window.llm)})})
    return chat


@when(parsers.re(r'the (?P<persona>.+?) chats following the LLM script "(?P<script_name>[^"]+)"$'), target_fixture="chat")
def chat_following_script(lab, observer, script_book, persona, script_name, chat_log, exercise_scope) -> Chat:
    chat_log.append(scripted_chat(lab, observer, script_book, persona, script_name, scope=exercise_scope))
    return chat_log[-1]


@when(parsers.re(r'the (?P<persona>.+?) chats following the LLM script "(?P<script_name>[^"]+)" (?P<times>\d+) times$'),
      target_fixture="chat")
def chat_repeatedly(lab, observer, script_book, persona, script_name, times, chat_log, exercise_scope) -> Chat:
    """Several attempts: a fallback that comes only after N failures shows."""
    for _ in range(int(times)):
        chat_log.append(scripted_chat(lab, observer, script_book, persona, script_name, scope=exercise_scope))
    return chat_log[-1]


@when("the service restarts with the same configuration")
def restart_same(lab):
    """A fallback that comes only with a fresh process (a cleared failure counter) shows."""
    lab.restart_service(lab.service_overrides, new_window=False)


@when(parsers.parse('the LLM asks for the tool "{tool}" with {arguments} in the {persona}\'s chat'), target_fixture="chat")
def llm_asks_for_tool(lab, observer, tool, arguments, persona, chat_log) -> Chat:
    chat_log.append(tool_call_chat(lab, observer, persona, tool, arguments))
    return chat_log[-1]


# --- Then --------------------------------------------------------------------------------
@then("the chat is refused")
def chat_refused(chat: Chat):
    checks.refused(chat.exchange)


@then("the chat reached neither the LLM nor the control plane")
def chat_reached_nothing(chat: Chat):
    checks.nothing_reached(chat.window)


@then("the chat succeeded")
def chat_succeeded(chat: Chat):
    e = chat.exchange
    undetermined_unless(e.succeeded, f"the chat failed (HTTP {e.status}{'; ' + e.error if e.error else ''}): {str(e.body)[:300]}")


@pytest.fixture(scope="session")
def readable_canaries(lab) -> dict[str, set[str]]:
    """Per persona, every canary it can read directly: the seed is the same in every scenario,
    so each persona's direct reads are made once."""
    return {}


def forbidden_canaries(lab, persona: str, readable_canaries: dict[str, set[str]]) -> set[str]:
    """Every canary of the lab the persona cannot read directly."""
    if persona not in readable_canaries:
        readable_canaries[persona] = DirectReader(lab, persona).readable_canaries(lab.seed)
    return lab.cp_canaries() - readable_canaries[persona]


@then(parsers.parse("no canary the {persona} cannot read directly appears in a reply or in anything sent to the LLM"))
def nothing_forbidden(lab, persona, warmup: Chat, chat_log: list[Chat], evidence, readable_canaries):
    if not lab.driver.applies("authorization"):  # one credential for everyone: no data is another user's
        raise Undetermined(f"the service has no users of its own (it declares no authorization family): "
                           f"what the {persona} may not read cannot be told from what it may")
    forbidden = forbidden_canaries(lab, persona, readable_canaries)
    evidence["forbidden-canaries"] = sorted(forbidden)
    # Violations first: an undetermined positive control never hides an observed leak.
    for chat in chat_log:
        checks.no_forbidden_canary(chat.window, str(chat.exchange.body), forbidden, lab.nonce)
    forbidden_data_detectable(lab, warmup, forbidden)


def forbidden_data_detectable(lab, warmup: Chat, forbidden: set[str]) -> None:
    """Positive control: the detector does find forbidden data when it IS sent (to the admin's LLM)."""
    shown_to_admin = canaries(everything_sent_to_llm(warmup.window.llm), lab.nonce)
    undetermined_unless(forbidden & shown_to_admin, "positive control failed: no data forbidden to this user was seen in the admin's chat")
