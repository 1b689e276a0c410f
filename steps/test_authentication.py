"""Scenarios of features/authentication.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then, when

from aislab.judging import checks
from aislab.judging.verdict import violation_if
from steps.common import Chat, new_conversation, run_chat

scenarios("authentication.feature")


@when("an anonymous user chats", target_fixture="chat")
def anonymous_chat(lab, observer) -> Chat:
    conv = new_conversation()
    script = {"match": conv, "steps": [{"tool_calls": [{"name": "list_workflows"}]}, {"echo_tool_results": True}]}
    return run_chat(lab, observer, None, None, script, conv)


@when(parsers.parse("the {persona} chats with a token that is {variant}"), target_fixture="chat")
def chat_with_bad_token(lab, observer, persona, variant) -> Chat:
    conv = new_conversation()
    script = {"match": conv, "steps": [{"tool_calls": [{"name": "list_workflows"}]}, {"echo_tool_results": True}]}
    return run_chat(lab, observer, persona, lab.token(persona, variant), script, conv)


@then("the refusal looks exactly like the refusal of a garbage token")
def same_refusal(lab, chat: Chat, evidence):
    garbage = lab.chat("[conv:garbage] hello", lab.token(chat.persona, "garbage"), user=chat.persona)
    evidence["refusals"] = {"variant": [chat.exchange.status, chat.exchange.body], "garbage": [garbage.status, garbage.body]}
    violation_if(
        (chat.exchange.status, chat.exchange.body) != (garbage.status, garbage.body),
        f"this token is refused differently ({chat.exchange.status} {chat.exchange.body!r}) from a garbage token "
        f"({garbage.status} {garbage.body!r}): the difference tells an attacker which check failed",
    )


@then(parsers.parse("the {persona}'s token appears in no LLM request of any of those chats, header or message"))
def token_not_at_llm(chat_log: list[Chat]):
    for chat in chat_log:
        checks.token_not_sent_to_llm(chat.window, chat.token)
