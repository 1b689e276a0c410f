"""The claims page a security reviewer reads first, rendered from hand-made reports of each kind
of run and read back as Chromium lays it out: the result, every claim's MUST sentence and
verdict, the reason and the decisive evidence where a claim is not satisfied; nothing that
could pass for a pass when it is not one; no memory address and no path of the machine."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from aislab.report.page import clean, render
from tests.browser import visible_text
from tests.suite_runs import PROJECT, validate_report

CATALOGUE = {c["id"]: c for c in yaml.safe_load((PROJECT / "claims.yaml").read_text())["claims"]}
MACHINE_PATH = re.compile(r"(?<![\w.:/])/(?:home|root|tmp|work|usr|var|opt|srv|mnt|run|Users)/")
JWT_EXCERPT = ("POST http://10.231.0.12:8000/v1/chat/completions from 10.231.0.20: messages[0].content holds "
               "'Bearer <redacted-jwt sub=u-rita sha256=8e67f0129b>'")
TELEMETRY_EXCERPT = "TCP 10.231.0.20 -> 203.0.113.9:443, SNI telemetry.vendor.example, POST /v1/events HTTP/1.1"


def scenario(name: str, outcome: str, message: str = "", excerpt: str = "", allure_id: str = "") -> dict:
    return {"name": name, "nodeid": "steps/test_x.py::" + re.sub(r"\W+", "_", name), "outcome": outcome, "seconds": 0.2,
            "message": message, "evidence": [{"path": "evidence/x/llm-requests.json", "sha256": "a" * 64}],
            **({"excerpt": excerpt} if excerpt else {}), **({"allureId": allure_id} if allure_id else {})}


def exercise(chats: int, tool_calls: int, phases=("chat",)) -> dict:
    """What a claim's scenarios saw the service do, as a run adds it up."""
    counts = {"chats-reaching-llm": chats, "llm-requests": 2 * chats, "tool-calls": tool_calls, "tool-results": tool_calls,
              "cp-requests": tool_calls, "good-token-accepted": chats, "instances-started": 0, "instances-stopped": 0,
              "idle-seconds": 0, "proxy-attempts": 0, "llm-errors": 0}
    return {"counts": counts, "chats": {"sent": chats, "answered": chats, "failed": 0}, "seen": {}, "instances": [1],
            "phases": list(phases), "scenarios": 1}


def claim(cid: str, verdict: str, *scenarios: dict, observed: str | None = None, seen: dict | None = None, **extra) -> dict:
    c = CATALOGUE[cid]
    return {"id": cid, "family": c["family"], "must": c["must"], "since": str(c.get("since", "")), "tags": c.get("tags", {}),
            "verdict": verdict, "observed": observed or verdict, "exerciseRequired": c["exercise"],
            "exercise": seen or exercise(len(scenarios), 3 * len(scenarios)), "scenarios": list(scenarios), **extra}


def passed(name: str) -> dict:
    return scenario(name, "passed", allure_id=f"uuid-{name}")


def report(result: str, exit_code: int, claims: list[dict]) -> dict:
    return {
        "apiVersion": "ais.conformance/v1alpha2",
        "harness": {"name": "ai-service-conformance", "version": "0.1.0"},
        "catalogue": {"file": "claims.yaml", "sha256": "0f1302622490ec60fc2c884bf0dfd039ac4377d656e11853db4eb5f6a287e40c"},
        # As a run on this machine writes them: the driver file's absolute path.
        "driver": {"name": "reference-ai-service", "version": "0.1.0", "file": str(PROJECT / "fixtures" / "drivers" / "reference.yaml"),
                   "command": ["{python}", "-m", "reference_service"], "image": None},
        "target": "local", "profile": "quick", "selection": "all",
        "started": "2026-11-26T14:41:21+00:00", "finished": "2026-11-26T14:42:02+00:00",
        "timings": {"lab_up": 2.3}, "warnings": [],
        "result": result, "exitCode": exit_code, "claims": claims,
    }


CONFORMANT = report("conformant", 0, [
    claim("AIS-AUTH-01", "satisfied", passed("A chat without a bearer token is refused"), seen=exercise(40, 120, ("chat", "error path"))),
    claim("AIS-RO-01", "satisfied", passed("No mutating tool is advertised [reader]"), passed("No mutating tool is advertised [admin]")),
    claim("AIS-AIRGAP-02", "satisfied", passed("Nothing leaves the infrastructure")),
])
NON_CONFORMANT = report("non-conformant", 100, [
    claim("AIS-AUTH-01", "satisfied", passed("A chat without a bearer token is refused")),
    claim("AIS-AUTH-03", "violated",
          scenario("The reader's token never reaches the LLM", "violated", "the user's JWT was sent to the LLM provider",
                   JWT_EXCERPT, "uuid-auth-03-reader"),
          passed("The admin's token never reaches the LLM")),
    claim("AIS-TELEM-01", "violated",
          scenario("With DO_NOT_TRACK=true nothing is contacted", "violated", "the service contacted telemetry.vendor.example",
                   TELEMETRY_EXCERPT, "uuid-telem"),
          reason="With DO_NOT_TRACK=true the service still sent telemetry during the idle window."),
    # A message a broken lab left: a path of this machine and an object's address.
    claim("AIS-AUDIT-01", "undetermined",
          scenario("Every request of a chat is audited", "undetermined",
                   f"positive control failed: {tempfile.gettempdir()}/aislab-k2j/logs/audit.json is empty "
                   "(<aislab.world.targets.local.LocalTarget object at 0x7f3a2b1c9d40>)", allure_id="uuid-audit")),
])
PARTIAL = report("partial", 101, [
    claim("AIS-RBAC-04", "satisfied", passed("A 403 is reported and never retried")),
    claim("AIS-PROXY-03", "undetermined",
          scenario("Telemetry takes the proxy too [tinyproxy]", "undetermined",
                   "positive control failed: the egress witness did not record the canary TLS connection")),
    claim("AIS-AUDIT-02", "not_applicable",
          scenario("Users chatting at the same moment are each audited", "not_applicable",
                   "not applicable: driver cli-assistant has no user authentication (auth: none), so audit cannot be judged")),
])
WAIVED = report("conformant", 0, [
    claim("AIS-AUTH-01", "satisfied", passed("A chat without a bearer token is refused")),
    claim("AIS-AUTH-02", "waived",
          scenario("A token that is expired is refused like every bad token [expired]", "violated",
                   "an expired token was accepted: HTTP 200", "POST /api/v1/chat with an expired token -> HTTP 200", "uuid-exp"),
          observed="violated",
          waiver={"justification": "vendor ticket TK-1234, fix due in 1.21", "owner": "security-review@example.com", "expires": "2026-12-31"}),
])
RUNS = {"conformant": (CONFORMANT, "Conformant"), "non-conformant": (NON_CONFORMANT, "Non-conformant"),
        "partial": (PARTIAL, "Partial"), "waived": (WAIVED, "Conformant")}


def normal(text: str) -> str:
    return " ".join(text.split())


def headline(page_html: str) -> str:
    return normal(re.search(r'<h1 id="result">(.*?)</h1>', page_html, re.S).group(1))


def assert_machine_free(page_html: str) -> None:
    assert not re.search(r"0x[0-9a-fA-F]", page_html), "a memory address reached the page"
    for local in (str(PROJECT), tempfile.gettempdir() + "/", str(Path.home()) + "/"):
        assert local not in page_html, f"{local} reached the page"
    assert not MACHINE_PATH.search(page_html), MACHINE_PATH.search(page_html).group(0)


@pytest.mark.parametrize("kind", RUNS)
def test_the_page_shows_result_claims_and_evidence_as_chromium_lays_it_out(kind, tmp_path):
    doc, expected = RUNS[kind]
    validate_report(doc)  # the hand-made reports are reports a run could write
    page = tmp_path / "index.html"
    page.write_text(render(copy.deepcopy(doc), drill_down="allure/index.html"))
    page_html = page.read_text()
    assert headline(page_html) == expected
    shown = visible_text(page, tmp_path).casefold()
    assert f"exit code {doc['exitCode']}" in shown
    assert "reference-ai-service 0.1.0" in shown and "fixtures/drivers/reference.yaml" in shown
    for c in doc["claims"]:
        assert normal(c["must"]).casefold() in shown, f"{c['id']}: its MUST sentence is not shown"
        row = re.search(rf'<tr id="{c["id"]}" class="v-{c["verdict"]}">.*?</tr>', page_html, re.S)
        assert row and f">{c['verdict']}</span>" in row.group(0), f"{c['id']}: verdict {c['verdict']} not shown in its row"
        for s in c["scenarios"]:
            if s["outcome"] != "passed":
                reason = c.get("reason") or s["message"]
                assert normal(clean.text(reason)).casefold() in shown, f"{c['id']}: the reason is not shown"
                if s.get("excerpt"):
                    assert normal(s["excerpt"]).casefold() in shown, f"{c['id']}: the evidence excerpt is not shown"
                if s.get("allureId"):
                    assert f'href="allure/index.html#/{hashlib.md5(s["allureId"].encode()).hexdigest()}"' in page_html
    if kind == "waived":
        assert "security-review@example.com" in shown and "2026-12-31" in shown and "observed: violated" in shown
    if kind == "conformant":  # a reviewer sees what `satisfied` stands on, beside it
        row = re.search(r'<tr id="AIS-AUTH-01".*?</tr>', page_html, re.S).group(0)
        assert "seen doing: 40 chats, 40 chats reaching the llm, 80 llm requests, 120 tool calls, 120 tool results returned" in normal(
            visible_text_of(row, tmp_path)).casefold(), row
        assert "phases: chat, error path" in normal(row) and "valid-token chats reaching the LLM ≥ 1" in row
    assert_machine_free(page_html)


def visible_text_of(fragment: str, tmp_path: Path) -> str:
    page = tmp_path / "fragment.html"
    page.write_text(f"<html><body><table>{fragment}</table></body></html>")
    return visible_text(page, tmp_path)


def test_the_verdicts_are_explained_on_the_page(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(render(PARTIAL))
    shown = visible_text(page, tmp_path)
    for verdict in ("satisfied", "violated", "undetermined", "not_applicable", "waived"):
        assert re.search(rf"{verdict} [A-Z][^.]+\.", shown), f"{verdict} is not explained"
    assert "harness error" in shown and "100 a claim violated" in shown


def test_a_harness_error_and_an_interruption_never_look_like_a_verdict_or_a_pass():
    failed = copy.deepcopy(NON_CONFORMANT) | {"exitCode": 1}
    failed["claims"][3]["scenarios"][0]["outcome"] = "error"
    page_html = render(failed)
    assert headline(page_html) == "Harness error"
    assert "no verdict of this run can be trusted" in page_html and "Claims as recorded: non-conformant" in page_html
    assert 'harness error</span> the harness itself failed while judging: <a href="#AIS-AUDIT-01">' in page_html

    # Fields a later report version adds: shown when present.
    interrupted = copy.deepcopy(CONFORMANT) | {
        "result": "interrupted", "exitCode": 1,
        "interruption": {"reason": "SIGTERM from the CI runner after 40 s", "judged": ["AIS-AUTH-01"], "notJudged": ["AIS-RO-01", "AIS-AIRGAP-02"]},
        "environment": {"python": "3.11.2", "kernel": "6.1.0-28-amd64", "packages": {"pytest": "9.2.0"}, "tools": {"squid": "5.7"}},
    }
    for not_judged in interrupted["claims"][1:]:
        not_judged.update(verdict="undetermined", observed="undetermined", scenarios=[])
    page_html = render(interrupted)
    assert headline(page_html) == "Interrupted"
    assert "this is not a pass" in page_html and "SIGTERM from the CI runner after 40 s" in page_html
    assert "Not judged: AIS-RO-01, AIS-AIRGAP-02." in page_html
    assert page_html.count("the run was interrupted before this claim was judged") == 2
    assert "6.1.0-28-amd64" in page_html and "squid 5.7" in page_html

    assert headline(render(copy.deepcopy(CONFORMANT) | {"result": "something-new", "exitCode": 101})) == "something-new"
    narrowed = render(copy.deepcopy(CONFORMANT) | {"selection": "AIS-AUTH-*,audit"})
    assert "Only the claims selected were judged (AIS-AUTH-*,audit), not the whole catalogue." in narrowed


def test_machine_paths_and_addresses_are_cleaned_but_wire_evidence_is_not():
    assert clean.path(str(PROJECT / "fixtures" / "drivers" / "reference.yaml")) == "fixtures/drivers/reference.yaml"
    assert clean.path("/home/ci/elsewhere/my-driver.yaml") == "my-driver.yaml"
    assert clean.path("my-driver.yaml") == "my-driver.yaml"
    assert clean.text(f"log {PROJECT}/reports/x/service.log and /tmp/aislab-1/logs/w.json, <Popen object at 0x7f00>") == \
        "log reports/x/service.log and w.json, <Popen object>"
    for wire in ("POST http://10.231.0.12:8000/tmp/upload HTTP/1.1", "GET /api/v1/chat", "https://outside.example/home/x"):
        assert clean.text(wire) == wire


def test_the_cli_links_the_drill_down_only_when_it_is_there(tmp_path):
    source = tmp_path / "conformance-report.json"
    source.write_text(json.dumps(NON_CONFORMANT))
    out = tmp_path / "html"

    def page() -> str:
        subprocess.run([sys.executable, "-m", "aislab.report.page", str(source), "-o", str(out)], check=True, cwd=PROJECT)
        return (out / "index.html").read_text()

    assert "allure/index.html#/" not in page() and "No Allure drill-down was rendered" in page()
    (out / "allure").mkdir()
    (out / "allure" / "index.html").write_text("<html></html>")
    assert 'href="allure/index.html#/' in page()


def test_the_faults_a_claim_met_are_said_in_words():
    from aislab.report.page.view import _exercise

    seen = exercise(5, 5)
    seen["counts"]["faults-met"] = 8
    assert "8 requests into a fault the lab brought about" in _exercise(seen)
