"""Scenarios of features/air_gap.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import scenarios, then

from aislab.judging import network_checks
from aislab.judging.network_checks import NetView
from aislab.judging.observe import tool_exchanges
from aislab.judging.verdict import violation_if
from steps.common import Chat

scenarios("air_gap.feature")


@then("the model received the results of the tools it called")
def tools_answered(lab, chat: Chat):
    exchanges = tool_exchanges(chat.window.llm)
    missing = [x.name for x in exchanges if not x.result]
    violation_if(not exchanges, "no tool was called: the air-gapped service did not use its tools")
    violation_if(missing, f"tool calls without results: {missing[:5]}")


@then("the conversation's content reached the configured LLM and nothing else")
def content_stays(lab, chat: Chat, evidence):
    evidence["canaries-sent-to-llm"] = sorted(network_checks.content_only_to_llm(NetView.of(lab), chat.window.llm, lab.nonce))
