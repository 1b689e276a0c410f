"""Scenarios of features/air_gap.feature and the steps only they use."""

from __future__ import annotations

from pytest_bdd import scenarios, then

from aislab.judging import checks, network_checks
from aislab.judging.network_checks import NetView
from aislab.judging.observe import tool_exchanges
from aislab.judging.verdict import not_applicable_as_observed, undetermined_unless, violation_if
from steps.common import Chat

scenarios("air_gap.feature")


@then("the model received the results of the tools it called")
def tools_answered(lab, chat: Chat, evidence):
    advertised = checks.advertised_tools(chat.window)
    if not advertised:  # a service without tools cannot answer chats that use them
        not_applicable_as_observed("the service advertised no tools to the LLM")
    exchanges = tool_exchanges(chat.window.llm)
    evidence["tools"] = {"advertised": advertised, "called": sorted({x.name for x in exchanges})}
    # No call at all means the harness did not provoke one: that proves nothing either way.
    undetermined_unless(exchanges, f"the mock LLM called none of the advertised tools {advertised}")
    missing = [x.name for x in exchanges if x.result is None]
    violation_if(missing, f"the model called tools and never received their results: {missing[:5]}")


@then("the conversation's content reached the configured LLM and nothing else")
def content_stays(lab, chat: Chat, evidence):
    evidence["canaries-sent-to-llm"] = sorted(network_checks.content_only_to_llm(NetView.of(lab), chat.window.llm, lab.nonce))
