"""Scenarios of features/read_only.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import given, parsers, scenarios, then, when

from aislab.judging import checks, fault_checks
from aislab.world.lab import ORG_ID
from aislab.judging.testkube import operation_path
from aislab.judging.verdict import undetermined_unless
from steps.common import Chat, scripted_chat

scenarios("read_only.feature")


@given("the control-plane witness is shown to see a mutation")
def witness_sees_mutation(lab, evidence):
    """Positive control: a real mutation, made directly, is classified as one and changes the
    state digest; then the lab is reset so the scenario starts from the seed."""
    before = lab.cp_digest()
    run_path = operation_path("run_workflow", ORG_ID, "env-prod", workflow="checkout-e2e")
    response = lab.cp_get(run_path, lab.token("owner"), method="POST", json={})
    seen = [e for e in lab.cp_journal() if e["rawPath"] == run_path and e["meaning"] == "mutate" and e.get("changedState")]
    changed = lab.cp_digest() != before
    evidence["positive-control"] = {"status": response.status_code, "journal_saw_mutation": bool(seen), "state_changed": changed}
    undetermined_unless(response.status_code == 200 and seen and changed, "positive control failed: a direct run_workflow was not observed as a mutation")
    lab.reset()


@then("no tool advertised to the LLM is a mutating tool")
def none_mutating(chat: Chat, evidence):
    evidence["advertised-tools"] = checks.no_mutating_tool_advertised(chat.window)


@then("no request that changes anything reached the control plane")
def nothing_changed(chat: Chat):
    checks.no_mutation_reached(chat.window)


@then("every control-plane request of the chat is a read the called tools stand for, in the chat's environment")
def confined(chat: Chat):
    checks.confined(chat.window, ORG_ID, chat.environment)


# --- AIS-RO-04: malformed tool calls ---------------------------------------------------------------
@when(parsers.parse('the LLM answers the {persona}\'s chat with the malformed tool calls of "{script_name}"'), target_fixture="chat")
def malformed_calls(lab, observer, script_book, persona, script_name, chat_log) -> Chat:
    chat_log.append(scripted_chat(lab, observer, script_book, persona, script_name))
    return chat_log[-1]


@when(parsers.parse('a valid chat of the {persona} follows, on the LLM script "{script_name}"'), target_fixture="next_chat")
def valid_chat_after(lab, observer, script_book, persona, script_name, chat_log) -> Chat:
    chat_log.append(scripted_chat(lab, observer, script_book, persona, script_name))
    return chat_log[-1]


@then("the service still carried out the valid chat that followed")
def still_answers(next_chat: Chat, warmup: Chat, evidence):
    evidence["valid-chat-after"] = fault_checks.still_answers(next_chat.window, next_chat.exchange.status, warmup.window)
