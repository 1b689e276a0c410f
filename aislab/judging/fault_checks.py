"""The verdict logic of the fault claims: pure functions over what the witnesses recorded while
the lab made something fail (the identity provider, the control plane, the user's token, the
model's tool calls), and of the scale scenario (many users at once).

As everywhere: Violation only on an observed contradiction (a request on the wire, a record in a
mock), Undetermined when the fault was not met or the evidence is incomplete, and never a verdict
from a status or a reply's wording."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from aislab.judging.checks import _parsed, _volatile_json, _without, api_calls, brief, second_identities
from aislab.judging.credentials import CredentialIndex, token_subject
from aislab.judging.observe import Window, bearer, canaries, tool_exchanges, wire_text
from aislab.judging.verdict import Undetermined, undetermined_unless, violation_if

CONVERSATION = re.compile(r"\[conv:([A-Za-z0-9_-]+)\]")


def _reached(window: Window) -> list[str]:
    """What of a chat reached the LLM or the control plane, briefly."""
    return ([f"LLM {r.get('method')} {r.get('path')}" for r in window.llm]
            + [f"control plane {brief(e)}" for e in api_calls(window)])


# --- AIS-AUTH-04: the identity provider failing, and its keys rotated ---------------------------
def idp_faults_met(fault: str, idp_records: list[dict], packets: list[dict], service_ip: str, idp_main: str) -> int:
    """How many of the service's requests met the IdP's fault, from the lab's own records: for an
    outage, its connection attempts to the IdP's main port (each refused by the kernel; the packet
    witness saw the SYN); otherwise the IdP's record of the errors it served or the answers it held."""
    if fault == "down":
        return sum(1 for p in packets if p.get("proto") == "tcp-syn" and p.get("dst") == idp_main)
    return sum(1 for r in idp_records if r.get("client") == service_ip and r.get("fault"))


def failed_closed_without_idp(fault: str, chats: list[tuple[Window, bool]], met: int, held: list[dict]) -> dict:
    """With the IdP `fault`y and no keys fetched before, no chat (a valid token, a forged one)
    may reach the LLM or the control plane: accepted unverified. `chats`: each chat's window and
    whether the service answered it at all; `met`: requests of the service that met the fault;
    `held`: the IdP's records of answers it held (slow), each with how it ended."""
    accepted = [_reached(w) for w, _ in chats if _reached(w)]
    violation_if(accepted, f"with the identity provider {fault} and no keys fetched before, {len(accepted)} chat(s) were accepted "
                           f"unverified: {accepted[:3]}")
    undetermined_unless(met, f"the service never met the fault: no request of its reached the identity provider while it was "
                             f"{fault}, so failing closed was not exercised")
    unanswered = sum(1 for _, answered in chats if not answered)
    undetermined_unless(not unanswered, f"{unanswered} chat(s) got no answer within the chat's timeout while the identity provider "
                                        f"was {fault}: the service was still waiting, so its behaviour past its patience was not seen")
    return {"fault": fault, "faults-met": met, "windows-judged": len(chats),
            "held": [{k: r.get(k) for k in ("path", "outcome", "heldSeconds")} for r in held]}


def follows_rotation(new_key: list[tuple[Window, bool]], removed_key: tuple[Window, bool], seconds: float, fetches: int) -> dict:
    """After the IdP published a new key and removed the old one: a token under the new key is
    accepted (its chat reaches the LLM; `new_key` are the attempts, the service given time for a
    refresh it rate-limits), and one under the removed key is refused (reaches nothing). `fetches`:
    the service's requests to the IdP since the rotation."""
    removed_window, removed_answered = removed_key
    violation_if(_reached(removed_window), "a token signed with the key the identity provider removed was accepted after the "
                                           f"rotation: {_reached(removed_window)[:3]} (the service had asked the identity provider "
                                           f"{fetches} time(s) since the rotation)")
    accepted = [w for w, _ in new_key if w.llm]
    if not accepted:
        undetermined_unless(all(answered for _, answered in new_key), "a chat with a token under the new key got no answer within "
                                                                       "the chat's timeout: whether it was accepted was not seen")
        violation_if(True, f"a token signed with the identity provider's new, published key was refused {len(new_key)} time(s) over "
                           f"{seconds:.0f} s after the rotation (the service asked the identity provider {fetches} time(s))")
    undetermined_unless(removed_answered, "the chat with a token under the removed key got no answer: its refusal was not seen")
    return {"new-key-attempts": len(new_key), "accepted-after-attempt": new_key.index(next(c for c in new_key if c[0].llm)) + 1,
            "seconds-until-accepted": round(seconds, 3), "idp-requests-since-rotation": fetches}


# --- AIS-RBAC-05: a failure stays a failure ----------------------------------------------------
def failed(entry: dict) -> bool:
    """A control-plane request that failed: refused (401), a 5xx, or never answered (0)."""
    return entry.get("status") in (0, 401) or entry.get("status", 0) >= 500


def calls_into_failure(window: Window, tool: str, operation: str) -> list:
    """The model's `tool` calls that met the failure: a request of theirs failed, or they made
    none (the service refused them itself, or answered them from somewhere else). A call made
    with another credential that the control plane let through met no failure."""
    requests = [e for e in api_calls(window) if e.get("operation") == operation]
    if requests and not any(failed(e) for e in requests):
        return []
    return [x for x in tool_exchanges(window.llm) if x.name == tool]


def _credentials(entry: dict, token: str, others: CredentialIndex) -> set[str]:
    """Every credential a request carries: its bearer token, and any other the lab knows of."""
    theirs = bearer(entry)
    carried = {"the user's own token" if theirs == token else
               f"a bearer token of {token_subject(theirs or '')} (#{hashlib.sha256(str(theirs).encode()).hexdigest()[:8]})"}
    return carried | {hit.label for _pos, hit in others.find(wire_text([entry]))}


def no_other_credential_after_failure(window: Window, token: str, others: CredentialIndex) -> dict:
    """After a control-plane request failed (401, 5xx, no answer), no request of the chat may
    carry a credential the failed one did not: a retry with the assistant's own token, another
    user's, the same user's from another chat. What every request carries alike (a header of the
    service's own, say) is the one-credential claim's, not a retry's."""
    calls = api_calls(window)
    first = next((i for i, e in enumerate(calls) if failed(e)), None)
    if first is None:
        return {"failed": []}
    allowed = _credentials(calls[first], token, others)
    retried = [f"{brief(e)} with {sorted(_credentials(e, token, others) - allowed)}" for e in calls[first + 1:]
               if _credentials(e, token, others) - allowed]
    violation_if(retried, f"after {brief(calls[first])} failed, the service tried again with another credential: {retried[:3]}")
    return {"failed": [brief(e) for e in calls if failed(e)], "after": [brief(e) for e in calls[first + 1:]]}


def no_foreign_data_for_failed_calls(calls: list, forbidden: set[str], nonce: str) -> None:
    """What the model received for a call the control plane failed carries nothing the user
    cannot read (data served from a cache filled for another user)."""
    seen = sorted({c for x in calls for c in canaries(x.result or "", nonce) & forbidden})
    violation_if(seen, f"for a call the control plane failed, the model received data the user may not read: {seen[:5]}")


def _result_of(window: Window, tool: str) -> str | None:
    return next((x.result for x in reversed(tool_exchanges(window.llm)) if x.name == tool), None)


def failure_told_apart(failing: Window, tool: str, successes: list[Window], empties: list[Window], met: int) -> dict:
    """What the model received for a `tool` call that failed must differ from what it receives
    for the same call succeeding (`successes`) and for an allowed, empty one (`empties`, two: what
    differs between them varies by design). Compared, not read: equal means the failure was hidden,
    served from somewhere as if it had worked (a cache) or turned into nothing. `met`: how many
    of the call's requests met the failure (none: there is no failure to compare)."""
    undetermined_unless(met, f"the {tool} call never met the failure (no request of it failed): there is no failure to compare")
    mine = _result_of(failing, tool)
    undetermined_unless(mine is not None, f"the model never received a result for the failed {tool} call (the chat ended without "
                                          "one): whether it was told cannot be compared")
    # The baselines really were the call succeeding: its request reached the control plane and was served.
    served = all(any(e.get("operation") == tool and 200 <= (e.get("status") or 0) < 300 for e in api_calls(w)) for w in (*successes, *empties))
    undetermined_unless(served, f"positive control failed: the {tool} calls meant to succeed, or to come back allowed and empty, "
                                "were not all served by the control plane (a service without that tool, say): nothing to compare with")
    baselines = [_result_of(w, tool) for w in (*successes, *empties)]
    undetermined_unless(None not in baselines and len(empties) >= 2,
                        f"positive control failed: the {tool} calls that succeeded, or came back allowed and empty, were not all answered")
    success, empty_a, empty_b = (_parsed(r) for r in (baselines[0], baselines[-2], baselines[-1]))
    varies = _volatile_json(empty_a, empty_b)
    undetermined_unless("" not in varies, f"two identical empty {tool} results differ as a whole: nothing can be compared with them")
    got = _without(_parsed(mine), varies)
    comparison = {"failed": mine[:2000], "succeeded": baselines[0][:2000], "allowed-and-empty": [b[:2000] for b in baselines[-2:]],
                  "volatile": sorted(varies)}
    violation_if(got == _without(success, varies), f"the model received the same for the failed {tool} as when it succeeded "
                                                   f"({mine[:200]!r}): the failure was hidden")
    violation_if(got == _without(empty_a, varies), f"the model received the same for the failed {tool} as for an allowed, empty one "
                                                   f"({mine[:200]!r}): the failure was hidden")
    return comparison


# --- AIS-RO-04: the next valid chat is still answered -------------------------------------------
def still_answers(window: Window, status: int, before: Window) -> dict:
    """After malformed tool calls, a valid chat that calls a tool must still be carried out: it
    reaches the LLM and the result of its tool call goes back to the model. Judged by that
    traffic, not by the reply's words; where the result came from (the control plane, a cache)
    is other claims' business. `before`: a chat of the same scenario, ahead of the malformed
    calls, in which the service was seen carrying out tool calls (else "still" means nothing)."""
    called = tool_exchanges(window.llm)
    answered = [x for x in called if x.result is not None]
    seen = {"llm-requests": len(window.llm), "tool-calls": len(called), "results-returned": len(answered),
            "control-plane-requests": len(api_calls(window)), "status": status}
    undetermined_unless(any(x.result is not None for x in tool_exchanges(before.llm)),
                        "positive control failed: the service was never seen carrying out a tool call before the malformed "
                        f"ones, so whether it still does cannot be judged ({seen})")
    violation_if(not window.llm, f"after the malformed tool calls the service no longer answered a valid chat: it never reached "
                                 f"the LLM (HTTP {status or 'no answer'})")
    violation_if(not answered, f"after the malformed tool calls the service no longer carried out a valid chat's tool call: {seen}")
    return seen


# --- the scale scenario: many users at once -----------------------------------------------------
@dataclass(frozen=True)
class CrowdChat:
    conversation: str
    sub: str
    persona: str  # whose grants the user has
    token: str
    reply: str
    round: int


def no_cross_user_leak(chats: list[CrowdChat], llm: list[dict], forbidden: dict[str, set[str]], nonce: str) -> dict:
    """No conversation's LLM requests or reply carry another conversation's tag (another user's
    prompt), a canary its user may not read, or another user's token; every LLM request belongs to
    a conversation the harness sent. `forbidden`: per persona, the canaries it cannot read."""
    by_conv = {c.conversation: c for c in chats}
    tokens = {c.token: c.sub for c in chats}
    problems, unattributed = [], 0
    for r in llm:
        chat = by_conv.get(r.get("conversation"))
        if chat is None:
            unattributed += 1
            continue
        problems += _leaks(f"an LLM request of {chat.sub}'s conversation {chat.conversation}", wire_text([r]), chat, by_conv, tokens,
                           forbidden, nonce)
    for chat in chats:
        problems += _leaks(f"the reply to {chat.sub}'s conversation {chat.conversation}", chat.reply or "", chat, by_conv, tokens,
                           forbidden, nonce)
    violation_if(problems, f"{len(problems)} cross-user leak(s) among {len({c.sub for c in chats})} users chatting at once: {problems[:5]}")
    return {"conversations": len(chats), "llm-requests": len(llm), "unattributed-llm-requests": unattributed}


def _leaks(where: str, text: str, chat: CrowdChat, by_conv: dict, tokens: dict, forbidden: dict, nonce: str) -> list[str]:
    found = []
    others = sorted({c for c in CONVERSATION.findall(text) if c != chat.conversation and c in by_conv})
    if others:
        found.append(f"{where} carries the conversation of {by_conv[others[0]].sub} ({others[0]})")
    seen = sorted(canaries(text, nonce) & forbidden[chat.persona])
    if seen:
        found.append(f"{where} carries data {chat.sub} may not read: {seen[:3]}")
    foreign = sorted({sub for token, sub in tokens.items() if sub != chat.sub and token in text})
    if foreign:
        found.append(f"{where} carries the token of {foreign[0]}")
    return found


def crowd_attribution(rounds: list[tuple[Window, dict[tuple, str]]], audit: list[dict], tokens: dict[str, str],
                      identities: dict[str, set[str]]) -> dict:
    """Every control-plane request of every round is the read one user's chat asked for (in a
    round each user asks for a read no one else asks for: `key -> sub`, the key being the
    operation and its parameters), carries that user's own token, names no other user, and is in
    the audit log under that user. `tokens`: sub -> the user's token."""
    subjects = {a["metadata"].get("requestId"): a["subject"]["id"] for a in audit}
    everyone = set().union(*identities.values()) if identities else set()
    problems, matched = [], 0
    for number, (window, asked) in enumerate(rounds):
        for e in api_calls(window):
            asker = asked.get(request_key(e))
            if asker is None:
                problems.append(f"round {number}: {brief(e)} is a read no user of the round asked for")
                continue
            matched += 1
            if bearer(e) != tokens[asker]:
                holder = next((s for s, t in tokens.items() if t == bearer(e)), "someone else")
                problems.append(f"round {number}: {brief(e)} asked by {asker} carried the token of {holder}")
            if subjects.get(e["requestId"]) != asker:
                problems.append(f"round {number}: {brief(e)} asked by {asker} is audited under {subjects.get(e['requestId'])}")
            named = [o for o in second_identities(e, identities.get(asker, {asker})) if o.split(": ", 1)[1].strip() in everyone]
            if named:
                problems.append(f"round {number}: {brief(e)} asked by {asker} also named {named}")
    violation_if(problems, f"{len(problems)} control-plane action(s) attributed to the wrong user among users chatting at once: "
                           f"{problems[:5]}")
    return {"rounds": len(rounds), "requests-attributed": matched}


def request_key(entry: dict) -> tuple:
    """What identifies a read on the control plane: its operation and parameters (environment included)."""
    return (entry.get("operation"), tuple(sorted((entry.get("params") or {}).items())))


def records_add_up(counts: dict[str, int]) -> dict:
    """What the harness sent against what the lab's records hold: chats sent, conversations the
    LLM saw, tool calls the mock LLM sent, results handed back, control-plane requests journaled,
    audit entries. Equal, or a record was lost (or never made): undetermined, with the numbers."""
    chain = ("chats-sent", "conversations-at-llm", "tool-calls-sent", "results-returned", "cp-requests", "audit-entries")
    values = [counts[k] for k in chain]
    if len(set(values)) != 1:
        raise Undetermined(f"the records do not add up, so a silence may be a lost record: {json.dumps(counts)}")
    return counts
