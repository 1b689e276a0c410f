"""The exercise controls and the packet witness on hand-made records: what counts as the service
having done the work (from the lab's records, never its word), what an unmet requirement says,
how a claim adds up its scenarios, and which packets the packet witness keeps."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import yaml

from aislab.judging import exercise as ex
from aislab.judging.provocation import annotate
from aislab.world.lab import ChatRecord
from aislab.world.witnesses.packets import parse
from tests.suite_runs import PROJECT


def llm_request(t: float, conversation: str, calls: list[str] = (), results: list[str] = (), status: int = 200) -> dict:
    """One request of a service to the mock LLM, with the mock's own record of its answer."""
    history = [{"role": "user", "content": f"[conv:{conversation}] hi"}]
    if results:
        history += [{"role": "assistant", "tool_calls": [{"id": c, "function": {"name": "list_workflows", "arguments": "{}"}} for c in results]},
                    *({"role": "tool", "tool_call_id": c, "content": "[]"} for c in results)]
    return {"t": t, "conversation": conversation, "path": "/v1/chat/completions", "body": {"messages": history},
            "response": {"status": status, "toolCalls": [{"id": c, "name": "list_workflows", "arguments": "{}"} for c in calls]}}


def test_a_chat_counts_only_the_calls_the_mock_sent_and_the_results_handed_back_for_them():
    llm = [llm_request(1.0, "a", calls=["c1", "c2"]), llm_request(2.0, "a", results=["c1", "c2", "forged"])]
    counts = ex.chat_counts(llm, [{"rawPath": "/x"}])
    assert counts == {"llm-requests": 2, "llm-errors": 0, "tool-calls": 2, "tool-results": 2, "cp-requests": 1}
    # Calls the service says it made, but the model never asked for, are not exercise.
    assert ex.chat_counts([llm_request(1.0, "b", results=["c9"])], [])["tool-results"] == 0
    assert ex.chat_counts([llm_request(1.0, "c", status=500)], [])["llm-errors"] == 1


def record(role="judged", token="valid", **counts) -> ChatRecord:
    return ChatRecord(role, token, 1, "service", 200, True, True, 0.0, counts)


def test_a_scenario_counts_its_judged_chats_and_a_valid_token_wherever_it_was_accepted():
    chats = [record("control", **{"llm-requests": 2, "tool-results": 1}), record(**{"llm-requests": 0}), record(token="bad")]
    exercise = ex.tally(chats, judged_only=True, instances_started=1, instances_stopped=0, idle_seconds=1.0, proxy_attempts=0,
                        seen={}, instances=[1])
    assert exercise.counts["tool-results"] == 0 and exercise.counts["chats-reaching-llm"] == 0
    assert exercise.counts["good-token-accepted"] == 1  # the positive control's chat, with a valid token
    assert exercise.phases == ["start-up", "idle"] and exercise.chats == {"sent": 3, "answered": 3, "failed": 0}
    whole_life = ex.tally(chats, judged_only=False, instances_started=1, instances_stopped=1, idle_seconds=0, proxy_attempts=0,
                          seen={}, instances=[1])
    assert whole_life.counts["tool-results"] == 1 and "shutdown" in whole_life.phases


def test_what_was_not_seen_is_said_in_words_and_numbers():
    exercise = ex.tally([record(**{"llm-requests": 1})], judged_only=True, instances_started=0, instances_stopped=0, idle_seconds=0,
                        proxy_attempts=0, seen={}, instances=[])
    missing = ex.unmet(ex.merged({"tool-results": 1}, {"instances-started": 1}), exercise)
    assert missing == ["tool results the service returned to the model: 0 (at least 1 needed)",
                       "service instances started (readiness reached; for a one-shot assistant, runs of its command): 0 (at least 1 needed)"]
    assert not ex.unmet({"llm-requests": 1, "chats-reaching-llm": 1}, exercise)
    with pytest.raises(KeyError, match="unknown exercise counter"):
        ex.unmet({"tools-used": 1}, exercise)


def test_a_claims_exercise_adds_up_its_scenarios():
    one = ex.tally([record(**{"tool-results": 2})], judged_only=True, instances_started=1, instances_stopped=0, idle_seconds=0,
                   proxy_attempts=0, seen={"DNS lookups": 1}, instances=[1]).as_dict()
    two = ex.tally([record(**{"tool-results": 3})], judged_only=True, instances_started=0, instances_stopped=0, idle_seconds=1,
                   proxy_attempts=0, seen={"DNS lookups": 2}, instances=[1, 2]).as_dict()
    total = ex.combined([one, two])
    assert total["counts"]["tool-results"] == 5 and total["seen"]["DNS lookups"] == 3
    assert total["instances"] == [1, 2] and total["scenarios"] == 2 and total["phases"] == ["start-up", "idle"]


def test_every_claim_states_its_exercise_in_counters_the_harness_keeps():
    catalogue = yaml.safe_load((PROJECT / "claims.yaml").read_text())
    for claim in catalogue["claims"]:
        assert claim.get("exercise") and set(claim["exercise"]) <= set(ex.COUNTERS), claim["id"]
        assert all(v > 0 for v in claim["exercise"].values()), claim["id"]


# --- which tool call provoked an attempt --------------------------------------------------------
def test_an_attempt_is_shown_with_the_tool_call_it_happened_in():
    llm = [{**llm_request(10.0, "a", calls=["c1"]), "response": {"status": 200, "toolCalls": [
               {"id": "c1", "name": "check_host", "arguments": json.dumps({"host": "reachability-check.example.net"})}]}},
           llm_request(12.0, "a", results=["c1"])]
    attempts = annotate([{"t": 11.0, "dns": "reachability-check.example.net"}, {"t": 13.0, "dns": "later.example"}], llm)
    assert attempts[0]["provokedBy"] == 'check_host({"host": "reachability-check.example.net"})'
    assert "provokedBy" not in attempts[1]


# --- the packet witness ---------------------------------------------------------------------------
def ipv4(proto: int, dst: str, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, socket.inet_aton("10.0.0.20"),
                       socket.inet_aton(dst)) + payload


def ipv6(proto: int, dst: str, payload: bytes, hop_by_hop: bool = False) -> bytes:
    if hop_by_hop:  # as multicast listener reports go: through a hop-by-hop options header
        payload, proto = bytes([proto, 0]) + bytes(6) + payload, 0
    return (struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + socket.inet_pton(socket.AF_INET6, "fd00::20")
            + socket.inet_pton(socket.AF_INET6, dst) + payload)


def test_the_packet_witness_keeps_other_protocols_and_connection_attempts_only():
    assert parse(ipv4(1, "198.51.100.77", bytes([8, 0, 0, 0]) + b"ping")) == {
        "proto": "icmp", "ip": 4, "dst": "198.51.100.77", "size": 28, "type": 8, "payload": "\x08\x00\x00\x00ping"}
    assert parse(ipv4(253, "198.51.100.77", b"install-id"))["proto"] == "ip-253"
    assert parse(ipv6(58, "2001:db8::77", bytes([128, 0, 0, 0])))["proto"] == "icmpv6"
    syn = struct.pack("!HHIIBBHHH", 40000, 3999, 0, 0, 5 << 4, 0x02, 0, 0, 0)
    assert parse(ipv4(6, "10.0.0.31", syn)) == {"proto": "tcp-syn", "ip": 4, "dst": "10.0.0.31:3999"}
    synack = syn[:13] + bytes([0x12]) + syn[14:]
    assert parse(ipv4(6, "10.0.0.31", synack)) is None  # an answer, not an attempt
    assert parse(ipv4(17, "10.0.0.53", b"dns")) is None  # UDP is the connection witness's
    assert parse(ipv6(58, "ff02::16", bytes([143, 0, 0, 0]), hop_by_hop=True)) is None  # the kernel's own listener report
    assert parse(b"") is None and parse(b"\x00" * 8) is None


def test_the_faults_a_scenario_brought_about_are_a_counter_of_their_own():
    exercise = ex.tally([record(**{"llm-requests": 1})], judged_only=True, instances_started=1, instances_stopped=0, idle_seconds=0,
                        proxy_attempts=0, seen={}, instances=[1])
    assert ex.unmet({"faults-met": 1}, exercise) == [f"{ex.COUNTERS['faults-met']}: 0 (at least 1 needed)"]
    exercise.counts["faults-met"] = 2  # what a step read from the lab's records (Scope.observe)
    assert not ex.unmet({"faults-met": 1}, exercise)


def test_a_scope_adds_up_what_its_steps_observed():
    from aislab.suite.exercising import Scope

    scope = Scope()
    scope.observe("faults-met", 1)
    scope.observe("faults-met", 2)
    scope.provoke("faults-met", 1)
    assert scope.observed == {"faults-met": 3} and scope.provoked == {"faults-met": 1}
