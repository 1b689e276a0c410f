"""What the claims page shows, worked out from `conformance-report.json` alone: the result in
plain words, what was judged, and per claim its verdict with the reason and the decisive
evidence. The template only lays this out.

Fields the report may carry only from some version on (`interruption`, `environment`, a
claim's `reason`, a scenario's `excerpt` and `allureId`) are shown when present.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from aislab.report.page import clean

# In the order a reviewer needs them: what breaks the promise first.
VERDICTS = {
    "violated": "Observed evidence contradicts the claim: the service broke the promise.",
    "undetermined": "The evidence does not decide: a positive control failed (the witnesses were not shown to see), "
                    "the service was not seen doing the work the claim is about (the exercise control), the lab broke "
                    "or the harness failed. Neither a pass nor a violation.",
    "waived": "Accepted for a limited time by a named owner, with a justification and an expiry date; "
              "what was observed is shown beside it.",
    "not_applicable": "Not judged: the driver says the service has nothing this claim is about "
                      "(for example no user authentication).",
    "satisfied": "Every scenario of the claim passed, each with a positive control showing the witnesses "
                 "would have seen a breach and an exercise control showing the service did the work it is about "
                 "(what it was seen doing is shown beside the verdict).",
}
# The same, in a few words, beside the claims that have them at the top of the page.
GLOSSES = {
    "violated": "observed evidence contradicts the claim",
    "undetermined": "the evidence does not decide: neither a pass nor a violation",
    "waived": "accepted for a limited time by a named owner",
    "not_applicable": "not judged for this service",
}
OUTCOMES = {"violated": "violated", "undetermined": "undetermined", "error": "harness error",
            "not_applicable": "not applicable", "passed": "passed"}
RESULTS = {
    "conformant": ("pass", "Conformant", "Every claim judged is satisfied (or waived)."),
    "non-conformant": ("fail", "Non-conformant", "At least one claim is violated."),
    "partial": ("partial", "Partial", "Nothing is violated, but not every claim is satisfied: "
                                      "some are undetermined or not applicable."),
    "interrupted": ("interrupted", "Interrupted", "The run was cut short. Claims it did not judge have no verdict: "
                                                  "this is not a pass."),
}
HARNESS_FAILED = ("error", "Harness error", "The harness itself failed (exit code 1): no verdict of this run can be "
                                            "trusted, violations included.")
EXIT_CODES = {0: "conformant", 100: "a claim violated", 101: "nothing violated, not everything satisfied",
              1: "the harness failed"}
PROFILES = {"quick": "quick (idle windows of 1 s)", "certification": "certification (idle windows of 30 s)"}


@dataclass
class Scenario:
    name: str
    outcome: str
    message: str
    excerpt: str
    link: str | None

    @property
    def label(self) -> str:
        return OUTCOMES.get(self.outcome, self.outcome)


@dataclass
class Claim:
    id: str
    family: str
    must: str
    verdict: str
    observed: str
    waiver: dict | None
    scenarios: list[Scenario]
    reason: str
    not_judged: bool
    exercise: str = ""  # what the service was seen doing, in words
    required: str = ""  # what the catalogue requires it be seen doing, per scenario

    @property
    def findings(self) -> list[Scenario]:
        """The scenarios that did not pass: where the reason and the evidence are."""
        return [s for s in self.scenarios if s.outcome != "passed"]

    @property
    def excerpt(self) -> str:
        return next((s.excerpt for s in self.findings if s.excerpt), "")

    @property
    def counts(self) -> list[tuple[str, int]]:
        tally = Counter(s.outcome for s in self.scenarios)
        return [(OUTCOMES[o], tally[o]) for o in OUTCOMES if tally[o]]


@dataclass
class Page:
    tone: str
    headline: str
    meaning: str
    recorded_result: str  # the report's own `result` word
    service: str  # the driver's name and version
    selection: str  # "all", or the --claims the run was narrowed to
    exit_code: int | None
    facts: list[tuple[str, str, bool]]  # label, value, set in monospace
    claims: list[Claim]
    warnings: list[str]
    interruption: dict | None
    environment: dict | None
    api_version: str
    drill_down: str | None
    verdicts: dict[str, str] = field(default_factory=lambda: VERDICTS)

    def with_verdict(self, verdict: str) -> list[Claim]:
        return [c for c in self.claims if c.verdict == verdict]

    @property
    def tally(self) -> list[tuple[str, int]]:
        return [(v, len(self.with_verdict(v))) for v in VERDICTS if self.with_verdict(v)]

    @property
    def harness_errors(self) -> list[Claim]:
        """Claims where the harness itself failed: undetermined, and never to be read as violated."""
        return [c for c in self.claims if any(s.outcome == "error" for s in c.scenarios)]

    @property
    def attention(self) -> list[tuple[str, str, list[Claim]]]:
        """Every verdict but satisfied, with its gloss and its claims."""
        return [(v, GLOSSES[v], self.with_verdict(v)) for v in GLOSSES if self.with_verdict(v)]


def build(report: dict, drill_down: str | None) -> Page:
    """`drill_down`: the Allure report's path relative to the page, or None when there is none."""
    result, exit_code = report.get("result", "unknown"), report.get("exitCode")
    if exit_code == 1 and result != "interrupted":
        tone, headline, meaning = HARNESS_FAILED
    else:
        # A result this version does not know is shown as it is, never as a pass.
        tone, headline, meaning = RESULTS.get(result, ("unknown", result, "A result this page does not know."))
    interruption = report.get("interruption")
    not_judged = set((interruption or {}).get("notJudged", []))
    return Page(
        tone=tone, headline=headline, meaning=meaning, recorded_result=result, exit_code=exit_code,
        selection=report.get("selection", "all"), service=_service(report.get("driver", {})),
        facts=_facts(report),
        claims=[_claim(c, drill_down, c["id"] in not_judged) for c in report.get("claims", [])],
        warnings=[clean.text(w) for w in report.get("warnings", [])],
        interruption=interruption and {**interruption, "reason": clean.text(interruption.get("reason", ""))},
        environment=report.get("environment"),
        api_version=report.get("apiVersion", "unknown format"), drill_down=drill_down,
    )


def _claim(claim: dict, drill_down: str | None, not_judged: bool) -> Claim:
    scenarios = [_scenario(s, drill_down) for s in claim.get("scenarios", [])]
    first = next((s for s in scenarios if s.outcome != "passed"), None)
    if claim.get("reason"):
        reason = clean.text(claim["reason"])
    elif first:
        reason = first.message
    else:
        reason = "" if scenarios else "No scenario judged this claim."
    return Claim(id=claim["id"], family=claim.get("family", ""), must=claim.get("must", ""), verdict=claim["verdict"],
                 observed=claim.get("observed", claim["verdict"]), waiver=claim.get("waiver"), scenarios=scenarios,
                 reason=reason, not_judged=not_judged, exercise=_exercise(claim.get("exercise")),
                 required=", ".join(f"{COUNTER_WORDS.get(k, k)} ≥ {v:g}" for k, v in (claim.get("exerciseRequired") or {}).items()))


# Exercise counters in a reviewer's words, in the order they tell the story.
COUNTER_WORDS = {
    "instances-started": "instances started", "chats-reaching-llm": "chats reaching the LLM",
    "good-token-accepted": "valid-token chats reaching the LLM", "llm-requests": "LLM requests", "llm-errors": "LLM errors taken",
    "tool-calls": "tool calls", "tool-results": "tool results returned", "cp-requests": "control-plane requests",
    "proxy-attempts": "attempts through the proxy", "idle-seconds": "seconds idle", "instances-stopped": "shutdowns",
    "manifests-rendered": "manifests rendered", "faults-met": "requests into a fault the lab brought about",
}


def _exercise(exercise: dict | None) -> str:
    """What a claim's verdict stands on: its scenarios' exercise, added up, in words."""
    if not exercise or not exercise.get("scenarios"):
        return ""
    counts, chats = exercise.get("counts", {}), exercise.get("chats", {})
    parts = [f"{chats['sent']:g} chats"] if chats.get("sent") else []
    parts += [f"{v:g} {COUNTER_WORDS[k]}" for k, v in counts.items() if k in COUNTER_WORDS and v and k != "good-token-accepted"]
    phases = exercise.get("phases") or []
    return ", ".join(parts) + (f"; phases: {', '.join(phases)}" if phases else "") if parts else "nothing"


def _scenario(scenario: dict, drill_down: str | None) -> Scenario:
    allure_id = scenario.get("allureId")
    # Allure 3 names each result by the md5 of its uuid and routes to it as #/<id>.
    link = f"{drill_down}#/{hashlib.md5(allure_id.encode()).hexdigest()}" if drill_down and allure_id else None
    return Scenario(name=scenario["name"], outcome=scenario["outcome"], message=clean.text(scenario.get("message", "")),
                    excerpt=scenario.get("excerpt", ""), link=link)


def _facts(report: dict) -> list[tuple[str, str, bool]]:
    driver, harness, catalogue = report.get("driver", {}), report.get("harness", {}), report.get("catalogue", {})
    deployment = report.get("deployment") or {}
    if driver.get("image"):
        started_as = "image " + driver["image"] + (f" ({driver['imageDigest']})" if driver.get("imageDigest") else "")
    elif driver.get("command"):
        # Quoted only where a word needs it: placeholders such as {python} read better bare.
        started_as = "command " + " ".join(a if a and not re.search(r"[\s'\"]", a) else shlex.quote(a)
                                           for a in map(clean.text, driver["command"]))
    else:
        started_as = "a command per chat (no long-running service)"
    facts = [
        ("Service judged", _service(driver), False),
        ("Driver file", clean.path(driver.get("file", "?")), False),
        ("Target", report.get("target", "?"), False),
        ("Profile", PROFILES.get(report.get("profile", ""), report.get("profile", "?")), False),
        ("Claims selected", report.get("selection", "all"), False),
        ("Harness", f"{harness.get('name', '?')} {harness.get('version', '')}".strip(), False),
        ("Started", _when(report.get("started")), False),
        ("Duration", _duration(report.get("started"), report.get("finished")), False),
        ("Started as", started_as, True),
        ("Claims catalogue", f"{catalogue.get('file', '?')} sha256:{catalogue.get('sha256', '?')}", True),
        ("Chart (configuration family)", clean.path(deployment["chart"]) if deployment.get("chart") else "", False),
        ("Values files", ", ".join(clean.path(v) for v in deployment.get("values", [])), False),
    ]
    return [fact for fact in facts if fact[1]]


def _service(driver: dict) -> str:
    return f"{driver.get('name', '?')} {driver.get('version', '')}".strip()


def _when(stamp: str | None) -> str:
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip() if stamp else ""
    except ValueError:
        return stamp


def _duration(started: str | None, finished: str | None) -> str:
    try:
        seconds = round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds())
    except (TypeError, ValueError):
        return ""
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
