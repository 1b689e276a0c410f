"""Scenarios of features/authorization.feature and the steps only they use."""

from __future__ import annotations

import time

from pytest_bdd import given, parsers, scenarios, then, when

from aislab.judging import checks, fault_checks
from aislab.judging.credentials import CredentialIndex, token_subject
from aislab.judging.direct import DirectReader
from aislab.judging.observe import tool_exchanges
from aislab.judging.testkube import READ_TOOLS
from aislab.judging.verdict import Undetermined, undetermined_unless, violations_first
from aislab.world.faults import Faults
from steps.common import Chat, forbidden_canaries, forbidden_data_detectable, new_conversation, run_chat, scripted_chat

scenarios("authorization.feature")


@then(parsers.parse("every control-plane request of the chat carried the {persona}'s own token"))
def own_token(lab, chat: Chat):
    own_token_only(lab, chat)


def own_token_only(lab, chat: Chat) -> None:
    checks.calls_carry_token(chat.window, chat.token, other_credentials(lab, chat), lab.identity(chat.persona))


def other_credentials(lab, chat: Chat) -> CredentialIndex:
    """Every other credential the lab knows of: the assistant's own token, the LLM key, every
    other token minted so far (other users', and this user's other sessions)."""
    return CredentialIndex({"the assistant's own API token": lab.service_token, "the LLM API key": lab.llm_api_key,
                            **{f"a token of {token_subject(t)} from another chat (#{i})": t
                               for i, t in enumerate(lab.tokens.minted) if t not in (chat.token, lab.service_token)}})


@then(parsers.parse("every tool result equals, in canary data, the same read made directly by the {persona}"))
def parity(lab, chat: Chat, persona, evidence):
    reader = DirectReader(lab, persona)
    reader.read_all([(x.name, x.arguments, "env-prod") for x in tool_exchanges(chat.window.llm)
                     if x.name in READ_TOOLS and isinstance(x.arguments, dict)])  # all at once; parity reads them back
    evidence["parity"] = checks.parity(chat.window, reader.read, lab.nonce)


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


# --- AIS-RBAC-05: a failure stays a failure, under the user's own credential ------------------------
# How much longer than the driver's chat timeout a chat into a control plane that does not answer
# may take: the service's own patience with the control plane is its business.
NO_ANSWER_PATIENCE = 60.0
FIRST_TOKEN_LIFE = 2  # seconds; doubled when the chat's first tool call came too late for it


@given(parsers.parse("the model has been shown the {persona}'s workflow list, and an allowed, empty one"), target_fixture="baselines")
def list_baselines(lab, observer, script_book, persona, evidence) -> dict:
    """What the service hands the model for list_workflows when it works: the user's own list,
    and (twice, for what varies by design) the team member's allowed, empty list in env-sandbox."""
    success = scripted_chat(lab, observer, script_book, persona, "list-workflows", role="control")
    empties = [scripted_chat(lab, observer, script_book, "team member", "list-workflows", "env-sandbox", role="control") for _ in range(2)]
    statuses = {"succeeded": [e["status"] for e in checks.api_calls(success.window)],
                "allowed-and-empty": [[e["status"] for e in checks.api_calls(c.window)] for c in empties]}
    evidence["baselines"] = statuses
    # (A service may answer them from a cache of its own: no request at all is no failure.)
    undetermined_unless(all(s < 400 for s in statuses["succeeded"] + sum(statuses["allowed-and-empty"], [])),
                        f"positive control failed: the workflow lists did not succeed as planned (statuses: {statuses})")
    return {"successes": [success.window], "empties": [c.window for c in empties]}


@when(parsers.parse("the {persona}'s token expires between two tool calls of a chat"), target_fixture="chat")
def token_expires_mid_chat(lab, observer, persona, chat_log, exercise_scope, evidence) -> Chat:
    """A token with a short life; the mock LLM holds the reply that asks for the second tool call
    until the control plane refuses the token as expired (an event the harness awaits, not a
    time it guesses); then lets it go. A first call that came too late for the token is tried
    again with a longer life."""
    faults, user, life = Faults(lab), lab.user(persona), FIRST_TOKEN_LIFE
    for _attempt in range(3):
        conv = new_conversation()
        lab.register_scripts([{"match": conv, "steps": [
            {"tool_calls": [{"name": "get_workflow", "arguments": {"workflowName": "checkout-e2e"}}]},
            {"tool_calls": [{"name": "list_workflows"}], "hold": {"name": conv, "timeout": 120}},
            {"echo_tool_results": True}]}])
        now = int(time.time())
        token = lab.tokens.mint(user, iat=now, nbf=now - 5, exp=now + life)
        expired, in_time = {}, False

        def between_the_calls(mark, running):
            nonlocal in_time
            try:
                held = await_hold(faults, conv, running, lab.driver.chat.timeout)
                first = [e for e in checks.api_calls(observer.since(mark)) if e["operation"] == "get_workflow"]
                # Made with the token still valid (or answered without the control plane at all).
                in_time = held and not (first and first[0]["status"] == 401)
                if in_time:  # the first call was made with a valid token: now let it expire
                    expired["seen"] = lab.await_condition(lambda: not faults.cp_accepts(token)[0], life + 30)
            finally:
                faults.release_llm_hold(conv)

        chat = run_chat(lab, observer, persona, token, None, conv, during=between_the_calls)
        chat_log.append(chat)
        if in_time:
            break
        life *= 2
    else:
        raise Undetermined("the token expired before the chat's first tool call reached the control plane, three times over: "
                           "no call could be made with it valid and then with it expired")
    undetermined_unless(expired.get("seen"), "the control plane never refused the token as expired: the expiry was not brought about")
    met = len(fault_checks.calls_into_failure(chat.window, "list_workflows", "list_workflows"))
    exercise_scope.observe("faults-met", met)
    exercise_scope.provoke("faults-met", 1)
    evidence["token-expiry"] = {"life-seconds": life, "expired-at-the-control-plane": expired.get("seen"),
                                "calls-into-the-failure": met,
                                "requests-after-expiry": [checks.brief(e) for e in checks.api_calls(chat.window) if e["operation"] != "get_workflow"]}
    return chat


def await_hold(faults: Faults, name: str, running, timeout: float) -> bool:
    """Whether the mock LLM came to hold the chat's reply, awaited (long polls of a second each)
    while the chat still runs: a service that ended the chat without asking for it is not waited for."""
    deadline = time.monotonic() + timeout
    while not running.done() and time.monotonic() < deadline:
        if faults.await_llm_hold(name, 1.0):
            return True
    return faults.await_llm_hold(name, 0)


@when(parsers.parse("the control plane answers {fault} to the {persona}'s workflow lists in a chat"), target_fixture="chat")
def cp_fails(lab, observer, script_book, fault, persona, chat_log, exercise_scope, evidence, readable_canaries) -> Chat:
    # The persona's direct reads first: under the fault they would fail (or wait) like the service's.
    forbidden_canaries(lab, persona, readable_canaries)
    faults = Faults(lab)
    faults.fail_cp(fault, operation="list_workflows", sub=lab.user(persona)["sub"])
    chat = scripted_chat(lab, observer, script_book, persona, "list-workflows",
                         patience=NO_ANSWER_PATIENCE if fault == "no answer" else 0.0, settle=faults.release_cp)
    chat_log.append(chat)
    exercise_scope.observe("faults-met", len(fault_checks.calls_into_failure(chat.window, "list_workflows", "list_workflows")))
    exercise_scope.provoke("faults-met", 1)
    evidence["control-plane-faults"] = [{"request": checks.brief(e), "fault": e["fault"], "outcome": e.get("outcome")}
                                        for e in checks.api_calls(chat.window) if e.get("fault")]
    return chat


@then(parsers.parse("no request after the failure carried a credential the failed one did not, and nothing the {persona} "
                   "cannot read directly reached the model for the failed call"))
def failure_kept(lab, persona, chat: Chat, warmup: Chat, evidence, readable_canaries):
    """Judged on the failure alone: what every request carries alike, or a call the control plane
    let through, is other claims' business. Both checks run before either may say undetermined."""
    forbidden = forbidden_canaries(lab, persona, readable_canaries)
    failed_calls = fault_checks.calls_into_failure(chat.window, "list_workflows", "list_workflows")

    def credentials():
        evidence["credentials-after-failure"] = fault_checks.no_other_credential_after_failure(chat.window, chat.token,
                                                                                               other_credentials(lab, chat))

    violations_first(credentials, lambda: fault_checks.no_foreign_data_for_failed_calls(failed_calls, forbidden, lab.nonce),
                     lambda: forbidden_data_detectable(lab, warmup, forbidden))


@then("the failed workflow list reached the model as a failure, unlike its success and an allowed, empty list")
def failure_told(chat: Chat, baselines: dict, evidence, exercise_scope):
    evidence["failure-comparison"] = fault_checks.failure_told_apart(chat.window, "list_workflows", baselines["successes"],
                                                                    baselines["empties"], exercise_scope.observed.get("faults-met", 0))
