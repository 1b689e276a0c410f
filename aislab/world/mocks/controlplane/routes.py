"""The control plane's route table: every endpoint the MCP tools call, plus the mutating ones.

Each route says what it MEANS (read or mutate) so read-only is judged by meaning, not by verb:
`read_artifact`'s POST is a read; a request to an unknown route means a change when its verb
is not safe or its path names a change (see `meaning_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

ENV = "/organizations/{org}/environments/{env}"
ORG = "/organizations/{org}"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    operation: str
    need: str  # role needed: read, run or write
    meaning: str  # "read" or "mutate"
    spec_path: str | None = None  # the OpenAPI path it conforms to; None = the spec lacks it

    @property
    def segments(self) -> list[str]:
        return self.pattern.strip("/").split("/")


def _r(method, pattern, operation, need, spec=True):
    meaning = "read" if need == "read" else "mutate"
    spec_path = None
    if spec:
        spec_path = (
            pattern.replace("{org}", "{id}")
            .replace("{env}", "{environmentId}" if "/agent/" in pattern else "{environmentID}")
            .replace("{workflow}", "{id}")
            .replace("{template}", "{id}")
            .replace("{execution}", "{executionID}")
        )
    return Route(method, pattern, operation, need, meaning, spec_path)


ROUTES: tuple[Route, ...] = (
    # reads the MCP tools use (TESTKUBE.md section 3)
    _r("GET", ENV + "/agent/test-workflow-with-executions", "list_workflows", "read"),
    _r("GET", ENV + "/agent/test-workflow-with-executions/{workflow}", "get_workflow", "read"),
    _r("GET", ENV + "/agent/test-workflows", "list_workflow_definitions", "read"),
    _r("GET", ENV + "/agent/test-workflows/{workflow}", "get_workflow_definition", "read"),
    _r("GET", ENV + "/agent/test-workflows/{workflow}/metrics", "get_workflow_metrics", "read"),
    _r("GET", ENV + "/agent/test-workflow-executions", "list_executions", "read"),
    _r("GET", ENV + "/agent/test-workflows/{workflow}/executions", "list_workflow_executions", "read"),
    _r("GET", ENV + "/agent/test-workflows/{workflow}/executions/{execution}", "get_workflow_execution", "read"),
    _r("GET", ENV + "/agent/test-workflow-executions/{execution}", "get_execution_info", "read"),
    _r("GET", ENV + "/agent/test-workflow-executions/{execution}/logs", "fetch_execution_logs", "read", spec=False),
    _r("GET", ENV + "/agent/test-workflow-executions/{execution}/artifacts", "list_artifacts", "read"),
    _r("POST", ENV + "/test-workflow-executions/{execution}/artifacts", "read_artifact", "read"),
    _r("GET", ENV + "/agent/test-workflow-templates", "list_workflowtemplates", "read"),
    _r("GET", ENV + "/agent/test-workflow-templates/{template}", "get_workflowtemplate", "read"),
    _r("GET", ENV + "/agent/labels", "list_labels", "read", spec=False),
    _r("GET", ORG + "/groups", "list_resource_groups", "read"),
    _r("GET", ORG + "/agents", "list_agents", "read"),
    # mutations no read-only assistant may cause
    _r("POST", ENV + "/agent/test-workflows", "create_workflow", "write"),
    _r("PUT", ENV + "/agent/test-workflows/{workflow}", "update_workflow", "write"),
    _r("DELETE", ENV + "/agent/test-workflows/{workflow}", "delete_workflow", "write"),
    _r("DELETE", ENV + "/agent/test-workflows", "delete_workflows", "write"),
    _r("POST", ENV + "/agent/test-workflows/{workflow}/executions", "run_workflow", "run"),
    _r("POST", ENV + "/agent/test-workflows/{workflow}/abort", "abort_workflow", "run"),
    _r("POST", ENV + "/agent/test-workflows/{workflow}/executions/{execution}/abort", "abort_workflow_execution", "run"),
    _r("POST", ENV + "/agent/test-workflows/{workflow}/executions/{execution}/rerun", "rerun_workflow_execution", "run"),
    _r("POST", ENV + "/agent/test-workflow-executions/{execution}/abort", "abort_execution", "run"),
    _r("POST", ENV + "/agent/test-workflow-executions/{execution}/rerun", "rerun_execution", "run"),
    _r("PATCH", ENV + "/agent/test-workflow-executions/{execution}/tags", "update_execution_tags", "write", spec=False),
    _r("POST", ENV + "/agent/test-workflow-templates", "create_workflowtemplate", "write"),
    _r("PUT", ENV + "/agent/test-workflow-templates/{template}", "update_workflowtemplate", "write"),
    _r("DELETE", ENV + "/agent/test-workflow-templates/{template}", "delete_workflowtemplate", "write"),
)

OPERATIONS = {r.operation: r for r in ROUTES}


def match(method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
    """Match on the RAW path, segment by segment, decoding each segment only after the split.

    An encoded slash therefore stays inside one parameter (and finds nothing) instead of
    silently reaching another endpoint.
    """
    parts = raw_path.strip("/").split("/")
    for route in ROUTES:
        if route.method != method or len(route.segments) != len(parts):
            continue
        params: dict[str, str] = {}
        for want, got in zip(route.segments, parts):
            if want.startswith("{"):
                params[want[1:-1]] = unquote(got)
            elif want != got:
                break
        else:
            return route, params
    return None, {}


# Path words that name a change: a request ending in one means a change whatever its verb.
MUTATING_WORDS = frozenset({"run", "rerun", "abort", "cancel", "delete", "remove", "create", "update", "execute",
                            "trigger", "start", "stop", "restart", "approve", "tags", "patch", "set", "enable", "disable"})
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# How clients smuggle another verb past a proxy or a verb-based read-only check.
OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")


def effective_method(method: str, headers: dict[str, str], query: dict[str, list[str]]) -> str:
    """The verb a request means: an override header or `_method` parameter wins, as many
    frameworks honour them (the mock honours them too, so a smuggled change really happens)."""
    for name in OVERRIDE_HEADERS:
        if headers.get(name):
            return headers[name].strip().upper()
    if query.get("_method"):
        return query["_method"][0].strip().upper()
    return method


def meaning_of(method: str, raw_path: str) -> str:
    """What a request means, by meaning and not by verb: a known route's own meaning; else a
    change if the verb is not safe, if the path is a mutating route's under another verb, or if
    it ends in a word that names a change; else `unknown` (a read of nothing the API has)."""
    route, _ = match(method, raw_path)
    if route:
        return route.meaning
    if method not in SAFE_METHODS:
        return "mutate"
    if any(r.meaning == "mutate" for r in _routes_for_any_method(raw_path)):
        return "mutate"
    last = unquote(raw_path.rstrip("/").rsplit("/", 1)[-1]).lower()
    return "mutate" if last in MUTATING_WORDS or any(last.startswith(w + "-") for w in MUTATING_WORDS) else "unknown"


def _routes_for_any_method(raw_path: str) -> list[Route]:
    return [r for r in {match(m, raw_path)[0] for m in ("GET", "POST", "PUT", "PATCH", "DELETE")} if r]
