"""The Testkube MCP tools (TESTKUBE.md section 3): only the read tools, each confined to the
chat's organization and environment, always called with the caller's own token."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from reference_service.auth import Identity

NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")  # Kubernetes resource names
EXECUTION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
FILE_NAME = re.compile(r"^(?!/)(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._/-]{1,512}$")
ARG_RULES = {
    "workflowName": NAME,
    "executionName": NAME,
    "executionId": EXECUTION_ID,
    "fileName": FILE_NAME,
    "selector": re.compile(r"^[A-Za-z0-9._/=,!-]{0,256}$"),
}
# How long a tool waits for the control plane before telling the model the call failed.
CONTROL_PLANE_TIMEOUT = 10.0
MUTATING_TOOLS = frozenset({
    "create_workflow", "update_workflow", "run_workflow", "abort_workflow_execution",
    "update_execution_tags", "create_workflowtemplate", "update_workflowtemplate",
})


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def schema(self) -> dict:
        props = {a: {"type": "string", "description": a} for a in self.required + self.optional}
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": list(self.required)},
            },
        }


READ_TOOLS = (
    Tool("list_workflows", "List test workflows with their latest execution", optional=("selector",)),
    Tool("get_workflow", "Get a test workflow with its latest execution", ("workflowName",)),
    Tool("get_workflow_definition", "Get the definition of a test workflow", ("workflowName",)),
    Tool("get_workflow_metrics", "Get execution metrics of a test workflow", ("workflowName",)),
    Tool("list_executions", "List test workflow executions", optional=("workflowName",)),
    Tool("get_execution_info", "Get details of one execution", ("executionId",)),
    Tool("lookup_execution_id", "Find an execution id by execution name", ("executionName",), ("workflowName",)),
    Tool("fetch_execution_logs", "Fetch the logs of an execution", ("executionId",)),
    Tool("list_artifacts", "List the artifacts of an execution", ("executionId",)),
    Tool("read_artifact", "Read one artifact of an execution", ("executionId", "fileName")),
    Tool("list_workflowtemplates", "List test workflow templates"),
    Tool("list_labels", "List the labels used by test workflows"),
    Tool("list_resource_groups", "List resource groups of the organization"),
    Tool("list_agents", "List agents of the organization"),
)


class ToolRefused(Exception):
    """A tool call the assistant will not make; nothing is sent anywhere."""


@dataclass
class ChatContext:
    identity: Identity
    org_id: str
    env_id: str
    tool_log: list[dict] = field(default_factory=list)


class ToolBox:
    def __init__(self, control_plane: str, http: httpx.AsyncClient):
        self.control_plane = control_plane
        self.http = http
        self.tools = {t.name: t for t in READ_TOOLS}

    # --- what the LLM is offered -------------------------------------------------------
    def advertised(self) -> list[dict]:
        return [t.schema() for t in self.tools.values()]

    # --- what a call does --------------------------------------------------------------
    def credentials(self, ctx: ChatContext, tool: str) -> str:
        return ctx.identity.token

    def check_args(self, tool: Tool, args: dict) -> dict[str, str]:
        clean = {}
        for name in tool.required + tool.optional:
            value = args.get(name)
            if value is None:
                if name in tool.required:
                    raise ToolRefused(f"missing argument {name}")
                continue
            if not isinstance(value, str) or not ARG_RULES[name].match(value):
                raise ToolRefused(f"invalid argument {name}")
            clean[name] = value
        return clean  # anything else the model sent (an environmentId, say) is dropped

    def plan(self, tool: str, a: dict, ctx: ChatContext) -> tuple[str, str, dict | None, dict | None]:
        """(method, path, query, json body) for a read tool; every argument one encoded segment."""
        q = {k: quote(v, safe="") for k, v in a.items()}
        org = f"/organizations/{quote(ctx.org_id, safe='')}"
        env = f"{org}/environments/{quote(ctx.env_id, safe='')}"
        wf = q.get("workflowName")
        ex = q.get("executionId")
        return {
            "list_workflows": lambda: ("GET", f"{env}/agent/test-workflow-with-executions", {"selector": a["selector"]} if "selector" in a else None, None),
            "get_workflow": lambda: ("GET", f"{env}/agent/test-workflow-with-executions/{wf}", None, None),
            "get_workflow_definition": lambda: ("GET", f"{env}/agent/test-workflows/{wf}", None, None),
            "get_workflow_metrics": lambda: ("GET", f"{env}/agent/test-workflows/{wf}/metrics", None, None),
            "list_executions": lambda: ("GET", f"{env}/agent/test-workflows/{wf}/executions" if wf else f"{env}/agent/test-workflow-executions", None, None),
            "get_execution_info": lambda: ("GET", f"{env}/agent/test-workflow-executions/{ex}", None, None),
            "lookup_execution_id": lambda: (
                "GET",
                f"{env}/agent/test-workflows/{wf or quote(a['executionName'].rsplit('-', 1)[0], safe='')}/executions",
                {"textSearch": a["executionName"]},
                None,
            ),
            "fetch_execution_logs": lambda: ("GET", f"{env}/agent/test-workflow-executions/{ex}/logs", None, None),
            "list_artifacts": lambda: ("GET", f"{env}/agent/test-workflow-executions/{ex}/artifacts", None, None),
            "read_artifact": lambda: ("POST", f"{env}/test-workflow-executions/{ex}/artifacts", None, {"artifactID": a["fileName"]}),
            "list_workflowtemplates": lambda: ("GET", f"{env}/agent/test-workflow-templates", None, None),
            "list_labels": lambda: ("GET", f"{env}/agent/labels", None, None),
            "list_resource_groups": lambda: ("GET", f"{org}/groups", None, None),
            "list_agents": lambda: ("GET", f"{org}/agents", None, None),
        }[tool]()

    async def execute(self, name: str, raw_args: str, ctx: ChatContext) -> str:
        tool = self.tools.get(name)
        try:
            if tool is None:
                reason = "the assistant is read-only" if name in MUTATING_TOOLS else "no such tool"
                raise ToolRefused(f"tool {name!r} is not available: {reason}")
            try:
                args = json.loads(raw_args or "{}")
            except ValueError:
                raise ToolRefused("arguments are not JSON") from None
            if not isinstance(args, dict):
                raise ToolRefused("arguments must be an object")
            args = self.check_args(tool, args)
        except ToolRefused as refusal:
            ctx.tool_log.append({"name": name, "status": "refused"})
            return json.dumps({"error": str(refusal)})
        method, path, query, body = self.plan(name, args, ctx)
        result = await self.call(method, path, query, body, ctx, name)
        if name == "read_artifact" and isinstance(result.get("data"), dict) and "url" in result["data"]:
            result = await self.fetch_presigned(result["data"]["url"])
        ctx.tool_log.append({"name": name, "status": result.get("status")})
        return json.dumps(result)

    async def call(self, method, path, query, body, ctx: ChatContext, tool: str) -> dict:
        try:
            response = await self.http.request(
                method,
                self.control_plane + path,
                params=query,
                json=body,
                headers={"Authorization": f"Bearer {self.credentials(ctx, tool)}"},
                timeout=CONTROL_PLANE_TIMEOUT,
            )
        except httpx.HTTPError as err:
            return self.unanswered(err)
        return self.result(response)

    async def fetch_presigned(self, url: str) -> dict:
        # A presigned storage URL carries its own authorization: never send the user's token there.
        try:
            return self.result(await self.http.get(url, timeout=CONTROL_PLANE_TIMEOUT))
        except httpx.HTTPError as err:
            return self.unanswered(err)

    @staticmethod
    def unanswered(err: httpx.HTTPError) -> dict:
        """The control plane did not answer (refused, reset, timed out): the model is told so."""
        return {"status": None, "error": f"the control plane did not answer: {type(err).__name__}"}

    @staticmethod
    def result(response: httpx.Response) -> dict:
        ctype = response.headers.get("content-type", "")
        data = response.json() if "json" in ctype else response.text
        if response.status_code >= 400:
            # A denial is reported as a denial, with the control plane's own problem document.
            return {"status": response.status_code, "error": data}
        return {"status": response.status_code, "data": data}
