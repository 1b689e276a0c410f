"""What the harness knows of the Testkube MCP tools (TESTKUBE.md section 3): which are reads,
which mutate, and which control-plane operation each read tool stands for. The harness uses it
to replay a tool call directly as the user and to tell whether a request was the tool's own."""

from __future__ import annotations

from urllib.parse import quote

from aislab.world.mocks.controlplane.routes import OPERATIONS

# read tool -> (operation, {route param: tool argument}); list_executions/lookup depend on args.
READ_TOOLS = {
    "list_workflows": ("list_workflows", {}),
    "get_workflow": ("get_workflow", {"workflow": "workflowName"}),
    "get_workflow_definition": ("get_workflow_definition", {"workflow": "workflowName"}),
    "get_workflow_metrics": ("get_workflow_metrics", {"workflow": "workflowName"}),
    "list_executions": ("list_executions", {}),
    "get_execution_info": ("get_execution_info", {"execution": "executionId"}),
    "lookup_execution_id": ("list_workflow_executions", {"workflow": "workflowName"}),
    "fetch_execution_logs": ("fetch_execution_logs", {"execution": "executionId"}),
    "list_artifacts": ("list_artifacts", {"execution": "executionId"}),
    "read_artifact": ("read_artifact", {"execution": "executionId"}),
    "list_workflowtemplates": ("list_workflowtemplates", {}),
    "list_labels": ("list_labels", {}),
    "list_resource_groups": ("list_resource_groups", {}),
    "list_agents": ("list_agents", {}),
}
MUTATING_TOOLS = frozenset({
    "create_workflow", "update_workflow", "run_workflow", "abort_workflow_execution",
    "update_execution_tags", "create_workflowtemplate", "update_workflowtemplate",
})
# The query parameters a read tool may legitimately send.
ALLOWED_QUERY = {"list_workflows": {"selector"}, "list_workflow_executions": {"textSearch"}}


def tool_operation(tool: str, args: dict) -> tuple[str, dict[str, str]]:
    """The control-plane operation and route params a read tool call stands for."""
    operation, mapping = READ_TOOLS[tool]
    args = {**args}
    if tool == "list_executions" and args.get("workflowName"):
        operation, mapping = "list_workflow_executions", {"workflow": "workflowName"}
    if tool == "lookup_execution_id" and not args.get("workflowName"):
        args["workflowName"] = str(args.get("executionName", "")).rsplit("-", 1)[0]
    return operation, {param: str(args.get(arg, "")) for param, arg in mapping.items()}


def operation_path(operation: str, org: str, env: str, **params: str) -> str:
    """The path of a control-plane operation, every parameter one encoded segment."""
    path = OPERATIONS[operation].pattern
    for name, value in {"org": org, "env": env, **params}.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def direct_request(tool: str, args: dict, org: str, env: str) -> tuple[str, str, dict | None, dict | None]:
    """How the user would make the same read directly: (method, path, query, json)."""
    operation, params = tool_operation(tool, args)
    path = operation_path(operation, org, env, **params)
    query = {"textSearch": args["executionName"]} if tool == "lookup_execution_id" else None
    body = {"artifactID": args.get("fileName")} if tool == "read_artifact" else None
    return OPERATIONS[operation].method, path, query, body
