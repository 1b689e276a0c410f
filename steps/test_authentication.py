"""Scenarios of features/authentication.feature and the steps only they use."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pytest_bdd import parsers, scenarios, then, when

from aislab.judging import checks, fault_checks
from aislab.judging.credentials import CredentialIndex, token_subject
from aislab.judging.exercise import chat_counts
from aislab.judging.lifetime import Period
from aislab.judging.observe import bearer
from aislab.judging.verdict import Undetermined, undetermined_unless, violation_if
from aislab.world.faults import Faults, Rotation
from aislab.world.targets.base import PORTS, LabError
from steps.common import Chat, new_conversation, run_chat

# How long after a rotation a token under the new key may still be refused: a service may rate-limit
# its key refreshes (a few seconds is usual); past this, a refusal is one.
ROTATION_GRACE = 30.0

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


# --- AIS-AUTH-04: the identity provider failing, and its keys rotated ------------------------------
@when(parsers.parse("the identity provider is {fault} and the service has just started afresh"), target_fixture="outage")
def idp_fails_fresh_service(lab, fault, request, exercise_scope) -> dict:
    """A fresh instance (no keys fetched before) started while the IdP fails: the fault is real
    (its main port closed, a 5xx, an answer held until the harness lets it go)."""
    lab.settle_idle_instances()  # the instance kept idle meets no outage meant for this one
    request.addfinalizer(lambda: Faults(lab).idp("none"))
    marks = lab.witnesses.heads(("idp", "packets"))
    Faults(lab).idp(fault)
    try:
        lab.restart_service(lab.service_overrides, new_window=False)
    except LabError as err:
        raise Undetermined(f"the service did not start while the identity provider was {fault}, so no token could be tried: {err}") from None
    exercise_scope.provoke("faults-met", 1)
    exercise_scope.provoke("chats-reaching-llm", 1)  # a valid token accepted once the IdP is back
    return {"fault": fault, "marks": marks, "chats": []}


@when("the reader chats, and so does a token signed with a key the issuer never published")
def chats_during_outage(lab, observer, outage: dict):
    """Both at once, in one window: a service that waits out its patience with the IdP waits once."""
    tokens = {"the reader's": lab.token("reader"), "a forged": lab.token("reader", "unknown-key")}
    convs = {kind: new_conversation() for kind in tokens}
    lab.register_scripts([_list_workflows_script(conv) for conv in convs.values()])
    mark = observer.mark()
    with ThreadPoolExecutor(len(tokens)) as pool:
        sent = dict(zip(tokens, pool.map(lambda kind: lab.converse(f"[conv:{convs[kind]}] What can you tell me?", tokens[kind],
                                                                   user="reader"), tokens)))
    window = observer.since(mark)
    for kind, (exchange, record) in sent.items():
        record.counts = chat_counts([r for r in window.llm if r.get("conversation") == convs[kind]],
                                    [e for e in checks.api_calls(window) if bearer(e) == tokens[kind]])
    outage["chats"] = [(window, all(exchange.answered for exchange, _ in sent.values()))]
    outage["statuses"] = {f"{kind} token": exchange.status for kind, (exchange, _) in sent.items()}


@when("the identity provider is back")
def idp_back(lab, outage: dict, exercise_scope, evidence):
    lab.drain_witnesses()  # every attempt the service made at the IdP is in the records
    packets = lab.witnesses.since("packets", outage["marks"]["packets"])
    outage["ended"] = Faults(lab).idp("none")
    idp = lab.witnesses.since("idp", outage["marks"]["idp"])  # held answers are recorded once released
    service_ip = lab.target.address("service")
    outage["met"] = fault_checks.idp_faults_met(outage["fault"], idp, packets, service_ip, f"{lab.target.address('idp')}:{PORTS['idp']}")
    outage["held"] = [r for r in idp if r.get("client") == service_ip and r.get("fault") == "held"]
    exercise_scope.observe("faults-met", outage["met"])


@then(parsers.parse("no chat reached the LLM or the control plane while the identity provider was {fault}"))
def failed_closed(outage: dict, evidence):
    evidence["identity-provider-outage"] = {"statuses": outage.get("statuses"), **fault_checks.failed_closed_without_idp(
        outage["fault"], outage["chats"], outage.get("met", 0), outage.get("held", []))}


@then("the reader's token was accepted once the identity provider was back")
def accepted_after(chat: Chat):
    undetermined_unless(chat.window.llm, f"the service did not accept a valid token once the identity provider was back "
                                         f"(HTTP {chat.exchange.status}): the outage's verdict stands on no accepted chat")


@when("the identity provider publishes a new signing key and removes the old one", target_fixture="rotation")
def rotate(lab, request) -> Rotation:
    lab.settle_idle_instances()

    def restore():  # the lab's own key again, and a service that caches no rotated key set
        Faults(lab).restore_idp_keys()
        lab.restart_service(lab.service_overrides, new_window=False)

    request.addfinalizer(restore)
    mark = lab.witnesses.head("idp")
    rotation = Faults(lab).rotate_idp_keys()
    rotation.mark = mark
    return rotation


@when("the reader chats with a token signed with the new key", target_fixture="new_key_chats")
def new_key_chat(lab, observer, rotation: Rotation) -> list[Chat]:
    """Accepted at once, or after a key refresh the service rate-limits: tried again, backing off,
    for up to ROTATION_GRACE seconds after the rotation."""
    attempts, pause = [], 0.25
    while True:
        conv = new_conversation()
        attempts.append(run_chat(lab, observer, "reader", rotation.new.mint(lab.user("reader")), _list_workflows_script(conv), conv))
        rotation.elapsed = time.time() - rotation.at
        if attempts[-1].window.llm or rotation.elapsed > ROTATION_GRACE or not attempts[-1].exchange.answered:
            return attempts
        threading.Event().wait(pause)  # back-off between attempts
        pause = min(pause * 2, 4.0)


@when("the reader chats with a token signed with the removed key", target_fixture="removed_key_chat")
def removed_key_chat(lab, observer, rotation: Rotation) -> Chat:
    conv = new_conversation()
    return run_chat(lab, observer, "reader", rotation.old.mint(lab.user("reader")), _list_workflows_script(conv), conv)


@then("the token signed with the removed key was refused, and the one signed with the new key accepted")
def rotation_followed(lab, rotation: Rotation, new_key_chats: list[Chat], removed_key_chat: Chat, evidence):
    service_ip = lab.target.address("service")
    fetches = sum(1 for r in lab.witnesses.since("idp", rotation.mark) if r.get("client") == service_ip)
    evidence["key-rotation"] = fault_checks.follows_rotation(
        [(c.window, c.exchange.answered) for c in new_key_chats], (removed_key_chat.window, removed_key_chat.exchange.answered),
        rotation.elapsed, fetches)
