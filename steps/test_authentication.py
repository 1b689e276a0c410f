"""Scenarios of features/authentication.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then, when

from aislab.judging import checks
from aislab.judging.credentials import CredentialIndex, token_subject
from aislab.judging.lifetime import Period
from aislab.judging.verdict import undetermined_unless, violation_if
from steps.common import Chat, new_conversation, run_chat

scenarios("authentication.feature")


def _list_workflows_script(conv: str) -> dict:
    return {"match": conv, "steps": [{"tool_calls": [{"name": "list_workflows"}]}, {"echo_tool_results": True}]}


@when("an anonymous user chats", target_fixture="chat")
def anonymous_chat(lab, observer) -> Chat:
    conv = new_conversation()
    return run_chat(lab, observer, None, None, _list_workflows_script(conv), conv)


@when(parsers.parse("the {persona} chats with a token that is {variant}"), target_fixture="chat")
def chat_with_bad_token(lab, observer, persona, variant) -> Chat:
    conv = new_conversation()
    return run_chat(lab, observer, persona, lab.token(persona, variant), _list_workflows_script(conv), conv)


@then("the refusal looks exactly like the refusal of a garbage token")
def same_refusal(lab, chat: Chat, evidence):
    # Two garbage refusals: what differs between them (a request id, a time) varies by design.
    garbage = [lab.chat(f"[conv:garbage-{i}] hello", lab.token(chat.persona, "garbage"), user=chat.persona, role="control")
               for i in (1, 2)]
    evidence["refusals"] = checks.same_refusal(chat.exchange, *garbage)


@then("the chat reached neither the LLM nor the control plane")
def chat_reached_nothing(chat: Chat):
    checks.nothing_reached(chat.window)


@then("the chat reached neither the LLM nor the control plane, nor anything the token names")
def chat_reached_nothing_at_all(lab, chat: Chat):
    checks.nothing_reached(chat.window, lab.records("idp"))


@then(parsers.parse("the {persona}'s token appears in no LLM request of any of those chats, in any form"))
def token_not_at_llm(chat_log: list[Chat]):
    for chat in chat_log:
        checks.token_not_sent_to_llm(chat.window, chat.token)


@then("no token of any user appears in anything the LLM hosts received since the lab started")
def no_token_ever(lab, evidence, exercise_scope):
    """Over the lab's whole life, between and after scenarios too: every token the lab minted
    for a user, in any form, in any request to the lab's LLM or the third-party provider."""
    exercise_scope.periods = [Period(i) for i in lab.life]  # its exercise: every chat of the run
    received = lab.witnesses.whole_life("llm") + lab.witnesses.whole_life("provider")
    from_service = [r for r in received if r.get("client") != lab.target.address("harness")]
    undetermined_unless(from_service, "positive control failed: the LLM hosts recorded no request from the service")
    index = CredentialIndex({f"a token of {token_subject(t)} (#{i})": t for i, t in enumerate(lab.tokens.minted) if t != lab.service_token})
    evidence["lifetime"] = {"llm-requests-judged": len(from_service), "tokens-looked-for": len(index.labels)}
    leaks = checks.tokens_in(from_service, index)
    violation_if(leaks, f"a user's token reached an LLM host: {leaks[:5]}")
