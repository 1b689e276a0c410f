"""Scenarios of features/authorization.feature and the steps only they use."""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from aislab.judging import checks
from aislab.judging.credentials import CredentialIndex, token_subject
from aislab.judging.direct import DirectReader
from aislab.judging.observe import canaries, everything_sent_to_llm, tool_exchanges
from aislab.judging.testkube import READ_TOOLS
from aislab.judging.verdict import undetermined_unless
from steps.common import Chat, scripted_chat

scenarios("authorization.feature")


@given("the admin has just been shown every resource by the assistant", target_fixture="warmup")
def admin_warmup(lab, observer, script_book) -> Chat:
    """Fills any cache a service might share between users, and proves canaries are detectable."""
    return scripted_chat(lab, observer, script_book, "admin", "every-tool-every-resource", role="control")


@then(parsers.parse("every control-plane request of the chat carried the {persona}'s own token"))
def own_token(lab, chat: Chat):
    # Every other credential the lab knows of: the assistant's own token, the LLM key, every
    # other token minted so far (other users', and this user's other sessions).
    others = {"the assistant's own API token": lab.service_token, "the LLM API key": lab.llm_api_key,
              **{f"a token of {token_subject(t)} from another chat (#{i})": t
                 for i, t in enumerate(lab.tokens.minted) if t not in (chat.token, lab.service_token)}}
    checks.calls_carry_token(chat.window, chat.token, CredentialIndex(others), lab.identity(chat.persona))


@then(parsers.parse("every tool result equals, in canary data, the same read made directly by the {persona}"))
def parity(lab, chat: Chat, persona, evidence):
    reader = DirectReader(lab, persona)
    reader.read_all([(x.name, x.arguments, "env-prod") for x in tool_exchanges(chat.window.llm)
                     if x.name in READ_TOOLS and isinstance(x.arguments, dict)])  # all at once; parity reads them back
    evidence["parity"] = checks.parity(chat.window, reader.read, lab.nonce)


@pytest.fixture(scope="session")
def readable_canaries(lab) -> dict[str, set[str]]:
    """Per persona, every canary it can read directly: the seed is the same in every scenario,
    so each persona's direct reads are made once."""
    return {}


@then(parsers.parse("no canary the {persona} cannot read directly appears in a reply or in anything sent to the LLM"))
def nothing_forbidden(lab, persona, warmup: Chat, chat_log: list[Chat], evidence, readable_canaries):
    if persona not in readable_canaries:
        readable_canaries[persona] = DirectReader(lab, persona).readable_canaries(lab.seed)
    readable = readable_canaries[persona]
    forbidden = lab.cp_canaries() - readable
    shown_to_admin = canaries(everything_sent_to_llm(warmup.window.llm), lab.nonce)
    evidence["forbidden-canaries"] = sorted(forbidden)
    # Positive control: the detector does find forbidden data when it IS sent (to the admin's LLM).
    undetermined_unless(forbidden & shown_to_admin, "positive control failed: no data forbidden to this user was seen in the admin's chat")
    for chat in chat_log:
        checks.no_forbidden_canary(chat.window, str(chat.exchange.body), forbidden, lab.nonce)


@then(parsers.parse('in every one of those chats the denial of "{workflow}" reached the model as a denial, and was not retried with other credentials'))
def denial(chat_log: list[Chat], workflow):
    for chat in chat_log:
        checks.denial_reported_not_retried(chat.window, chat.token, workflow)


@when(parsers.re(r'the (?P<persona>.+?) chats following the LLM script "(?P<script_name>[^"]+)" in (?P<env>env-[a-z]+), '
                 r"where the list is denied to them$"), target_fixture="denied_chat")
def denied_list(lab, observer, script_book, persona, script_name, env) -> Chat:
    return scripted_chat(lab, observer, script_book, persona, script_name, env)


@when(parsers.re(r'the (?P<persona>.+?) chats following the LLM script "(?P<script_name>[^"]+)" in (?P<env>env-[a-z]+), '
                 r"where it is allowed and empty, twice$"), target_fixture="empty_chats")
def empty_list(lab, observer, script_book, persona, script_name, env) -> list[Chat]:
    # Twice: what differs between two identical empty results varies by design (an id, a time).
    return [scripted_chat(lab, observer, script_book, persona, script_name, env) for _ in range(2)]


@then("the model could tell the denial from the empty result")
def told_apart(denied_chat: Chat, empty_chats: list[Chat], evidence):
    evidence["results"] = checks.denial_told_apart(denied_chat.window, [c.window for c in empty_chats], "list_workflows")
