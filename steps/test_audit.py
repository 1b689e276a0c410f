"""Scenarios of features/audit.feature and the steps only they use."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pytest_bdd import parsers, scenarios, then, when

from aislab.judging import checks
from aislab.judging.exercise import chat_counts
from aislab.judging.observe import Window
from aislab.judging.verdict import undetermined_unless
from steps.common import Chat, new_conversation

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
