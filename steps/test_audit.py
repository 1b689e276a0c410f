"""Scenarios of features/audit.feature and the steps only they use."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from pytest_bdd import parsers, scenarios, then, when

from aislab.judging import checks, fault_checks
from aislab.judging.exercise import chat_counts
from aislab.judging.observe import Window
from aislab.judging.testkube import direct_request
from aislab.judging.verdict import undetermined_unless
from aislab.world.lab import ORG_ID
from aislab.world.mocks.controlplane.routes import match
from steps.common import Chat, forbidden_canaries, new_conversation

scenarios("audit.feature")


@then(parsers.parse("every control-plane request of the chat is in the audit log exactly once, under the {persona}"))
def audited_once(lab, chat: Chat):
    checks.audited_once_under(chat.window, lab.audit_log(), chat.sub, lab.identity(chat.persona))


@then("every tool result the model received stands on its own control-plane request")
def results_backed(chat: Chat):
    checks.every_tool_result_backed(chat.window)


@when("these users ask about their own workflow at the same moment:", target_fixture="concurrent")
def concurrent_chats(lab, observer, datatable, evidence) -> dict:
    rows = [dict(zip(datatable[0], row)) for row in datatable[1:]]
    barrier = {"name": new_conversation(), "parties": len(rows), "timeout": 10}
    scripts, asked = [], {}
    for row in rows:
        conv = new_conversation()
        row["conversation"] = conv
        asked[row["workflow"]] = lab.user(row["persona"])["sub"]
        # Every chat is held at the barrier until all have reached the model, then each calls
        # its tool: the interleaving a shared-credential bug needs is forced, not hoped for.
        scripts.append({"match": conv, "steps": [
            {"tool_calls": [{"name": "get_workflow", "arguments": {"workflowName": row["workflow"]}}], "barrier": barrier},
            {"echo_tool_results": True},
        ]})
    lab.register_scripts(scripts)
    mark = observer.mark()
    with ThreadPoolExecutor(len(rows)) as pool:
        chats = list(pool.map(
            lambda r: lab.converse(f"[conv:{r['conversation']}] tell me about {r['workflow']}", lab.token(r["persona"]), user=r["persona"]),
            rows,
        ))
    window: Window = observer.since(mark)
    for row, (_exchange, record) in zip(rows, chats):  # each chat's share of the window: its conversation, its workflow
        record.counts = chat_counts([r for r in window.llm if r.get("conversation") == row["conversation"]],
                                    [e for e in checks.api_calls(window) if e.get("params", {}).get("workflow") == row["workflow"]])
    exchanges = [exchange for exchange, _record in chats]
    met = [r.get("barrierMet") for r in window.llm if "barrierMet" in r]
    evidence["concurrency"] = {"statuses": [e.status for e in exchanges], "barrier_met": met}
    undetermined_unless(len(met) == len(rows) and all(met), f"the chats did not overlap as planned (barrier: {met})")
    return {"window": window, "asked": asked, "identities": lab.people()}


@then("each of those actions is in the audit log under the user who asked")
def attributed(lab, concurrent: dict):
    checks.attributed_to_askers(concurrent["window"], lab.audit_log(), concurrent["asked"], concurrent["identities"])


# --- the scale scenario (certification profile) --------------------------------------------------
def distinct_reads(seed: dict) -> list[tuple[str, dict, str, tuple]]:
    """Every read of the seed a Testkube tool makes, once per control-plane request it stands for:
    (tool, arguments, environment of the chat, the request's key). In a round each user asks for
    a different one, so every request of the round names its asker."""
    reads, seen = [], set()

    def add(tool: str, args: dict, env: str) -> None:
        method, path, _query, _body = direct_request(tool, args, ORG_ID, env)
        route, params = match(method, path)
        key = fault_checks.request_key({"operation": route.operation, "params": params})
        if key not in seen:
            seen.add(key)
            reads.append((tool, args, env, key))

    for env in ("env-prod", "env-stage"):
        for tool in ("list_workflows", "list_executions", "list_workflowtemplates", "list_labels"):
            add(tool, {}, env)
        for w in (w["name"] for w in seed["workflows"] if w["environment"] == env):
            for tool in ("get_workflow", "get_workflow_definition", "get_workflow_metrics", "list_executions"):
                add(tool, {"workflowName": w}, env)
        for e in seed["executions"]:
            if next(w for w in seed["workflows"] if w["name"] == e["workflow"])["environment"] == env:
                for tool in ("get_execution_info", "fetch_execution_logs", "list_artifacts"):
                    add(tool, {"executionId": e["id"]}, env)
                if e["artifacts"]:
                    add("read_artifact", {"executionId": e["id"], "fileName": e["artifacts"][0]}, env)
    for tool in ("list_resource_groups", "list_agents"):
        add(tool, {}, "env-prod")
    return reads


# Chats of a round are let go by the mock LLM this many at a time, in the order they reach it:
# forced to interleave, and within reach of a service that runs fewer than all at once.
COHORT = 10


# The crowd's chats, once per lab: its two scenarios (one per claim) judge the same chats, and a
# scenario's reset empties the audit log, so what they judge is taken as the chats end.
CROWD_RUNS: dict[tuple[int, int, int], dict] = {}


@when(parsers.parse("{users:d} users of mixed roles and resource groups chat {chats:d} times each, all at once"), target_fixture="crowd")
def crowd_chats(lab, observer, users, chats, exercise_scope, evidence) -> dict:
    """Round after round, every user's chat at once (held at a barrier of the mock LLM and let
    go in cohorts), each asking for a read no other user of the round asks for. Made once per
    lab; a second scenario judging them is shown what the first saw the service do."""
    exercise_scope.provoke("chats-reaching-llm", users * chats)
    exercise_scope.provoke("tool-results", users * chats)
    exercise_scope.provoke("cp-requests", users * chats)
    key = (id(lab), users, chats)
    if key in CROWD_RUNS:
        crowd = CROWD_RUNS[key]
        for counter, count in crowd["exercise"].items():
            exercise_scope.observe(counter, count)
        evidence["crowd"] = {**crowd["summary"], "judged-again": "the chats of the scenario that made them, earlier in this lab"}
    else:
        crowd = CROWD_RUNS[key] = run_crowd(lab, observer, users, chats)
        evidence["crowd"] = crowd["summary"]
    summary = crowd["summary"]
    undetermined_unless(summary["barrier-arrivals"] == users * chats and summary["barriers-met"] == users * chats,
                        f"the chats did not all overlap as planned (the service runs fewer than {summary['cohort']} chats at once?): {summary}")
    return crowd


def run_crowd(lab, observer, users: int, chats: int) -> dict:
    crowd = lab.directory.crowd()[:users]
    undetermined_unless(len(crowd) == users, f"the lab's crowd has {len(crowd)} users, not {users} (fixtures/lab/users.yaml)")
    reads = distinct_reads(lab.seed)
    undetermined_unless(len(reads) >= users, f"only {len(reads)} distinct reads for {users} users in a round")
    tokens = {user["sub"]: lab.tokens.mint(user) for user, _ in crowd}
    started, rounds, sent, barriers, records = time.monotonic(), [], [], [], []
    cohort = COHORT if users % COHORT == 0 else users
    for number in range(chats):
        barrier = {"name": f"crowd-{number}-{new_conversation()}", "parties": cohort, "cohorts": True, "timeout": 60}
        plan = {}
        for i, (user, persona) in enumerate(crowd):
            tool, args, env, key = reads[(i + 7 * number) % len(reads)]
            plan[new_conversation()] = {"sub": user["sub"], "persona": persona, "tool": tool, "args": args, "env": env, "key": key}
        lab.register_scripts([{"match": conv, "steps": [{"tool_calls": [{"name": p["tool"], "arguments": p["args"]}], "barrier": barrier},
                                                        {"echo_tool_results": True}]} for conv, p in plan.items()])
        mark = observer.mark()
        with ThreadPoolExecutor(users) as pool:
            answers = dict(zip(plan, pool.map(lambda conv: lab.converse(f"[conv:{conv}] {plan[conv]['sub']} asks about {plan[conv]['tool']}",
                                                                        tokens[plan[conv]["sub"]], plan[conv]["env"], user=plan[conv]["sub"]),
                                              plan)))
        window = observer.since(mark)
        calls = checks.api_calls(window)
        for conv, (exchange, record) in answers.items():
            record.counts = chat_counts([r for r in window.llm if r.get("conversation") == conv],
                                        [e for e in calls if fault_checks.request_key(e) == plan[conv]["key"]])
            records.append(record)
            sent.append(fault_checks.CrowdChat(conv, plan[conv]["sub"], plan[conv]["persona"], tokens[plan[conv]["sub"]],
                                               json.dumps(exchange.body), number))
        barriers += [r.get("barrierMet") for r in window.llm if "barrierMet" in r]
        rounds.append((window, {p["key"]: p["sub"] for p in plan.values()}))
        if len(barriers) < users * len(rounds) or not all(barriers):
            break  # not at once as planned: no use in going on
    summary = {"users": users, "chats-each": chats, "rounds": len(rounds), "seconds": round(time.monotonic() - started, 1),
               "cohort": cohort, "barriers-met": sum(1 for b in barriers if b), "barrier-arrivals": len(barriers)}
    exercise = {counter: sum(r.counts.get(counter, 0) for r in records) for counter in ("llm-requests", "tool-calls", "tool-results", "cp-requests")}
    exercise["chats-reaching-llm"] = sum(1 for r in records if r.reached_llm)
    return {"chats": sent, "rounds": rounds, "tokens": tokens, "audit": lab.audit_log(), "summary": summary, "exercise": exercise}


@then("no reply or LLM request of any user carries another user's conversation, token or data they may not read")
def no_cross_user_leak(lab, crowd: dict, evidence, readable_canaries):
    forbidden = {persona: forbidden_canaries(lab, persona, readable_canaries) for persona in {c.persona for c in crowd["chats"]}}
    llm = [r for window, _ in crowd["rounds"] for r in window.llm]
    evidence["cross-user-leaks"] = fault_checks.no_cross_user_leak(crowd["chats"], llm, forbidden, lab.nonce)


@then("every control-plane action is in the audit log under the user whose chat asked for it")
def crowd_audited(lab, crowd: dict, evidence):
    evidence["attribution"] = fault_checks.crowd_attribution(crowd["rounds"], crowd["audit"], crowd["tokens"], lab.people())


@then("the witnesses and the mocks kept up: every chat, tool call, result and audit entry is in their records")
def kept_up(crowd: dict, evidence):
    llm = [r for window, _ in crowd["rounds"] for r in window.llm]
    calls = [e for window, _ in crowd["rounds"] for e in checks.api_calls(window)]
    ids = {e["requestId"] for e in calls}
    counts = chat_counts(llm, calls)
    evidence["records"] = fault_checks.records_add_up({
        "chats-sent": len(crowd["chats"]),
        "conversations-at-llm": len({r.get("conversation") for r in llm} & {c.conversation for c in crowd["chats"]}),
        "tool-calls-sent": counts["tool-calls"],
        "results-returned": counts["tool-results"],
        "cp-requests": len(calls),
        "audit-entries": sum(1 for a in crowd["audit"] if a["metadata"].get("requestId") in ids),
    })
