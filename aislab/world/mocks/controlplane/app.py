"""The control-plane host: bearer auth against the lab IdP, RBAC, RFC 7807 errors, an audit
log served as the real API serves it, and a journal of every request for the steps to read."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from aislab.world.mocks.controlplane.rbac import Directory, Principal
from aislab.world.mocks.controlplane.routes import Route, effective_method, match, meaning_of
from aislab.world.mocks.controlplane.store import Store
from aislab.world.mocks.holding import Holds
from aislab.world.mocks.idp.tokens import AUDIENCE
from aislab.world.witnesses.records import ADMIN_HEADER, Recorder


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ControlPlane:
    def __init__(self, state_dir: Path, issuer: str, admin_secret: str, directory: Directory, store: Store):
        self.issuer = issuer
        self.admin_secret = admin_secret
        self.directory = directory
        self.store = store
        jwks = json.loads((state_dir / "jwks.json").read_text())
        self.original_keys = self.keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
        self.journal = Recorder(admin_secret)  # every request, for the lab's whole life
        self.audit: list[dict] = []
        self._storage_secret = uuid.uuid4().bytes
        self.faults: list[dict] = []  # injected by the lab: which requests fail, and how (see _fault_for)
        self.holds = Holds()

    # --- ASGI entry --------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0]
        if raw_path.startswith("/_lab/"):
            response = await self._admin(request, raw_path)
        else:
            response = await self._serve(request, raw_path)
        await response(scope, receive, send)

    # --- the API -----------------------------------------------------------------------
    async def _serve(self, request: Request, raw_path: str) -> Response:
        started = time.monotonic()
        body = await request.body()
        raw_headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw]
        method = effective_method(request.method, dict(request.headers), parse_qs(request.url.query))
        entry = {
            "requestId": uuid.uuid4().hex,
            "time": _now(),
            "client": request.client.host if request.client else None,
            "method": method,
            "wireMethod": request.method,
            "rawPath": raw_path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "rawHeaders": raw_headers,
            "body": body.decode("utf-8", "replace")[:4096],
            "meaning": meaning_of(method, raw_path),
        }
        route, params = match(method, raw_path)
        entry["operation"] = route.operation if route else None
        entry["params"] = params
        principal = None
        held = None
        # A request that could change state (any but a read's method, as the mock executes it) says
        # in the journal whether it did: the state digest around it, so no one need ask between chats.
        before = self.store.digest() if method not in ("GET", "HEAD", "OPTIONS") else None
        try:
            if raw_path.startswith("/storage/"):
                response = self._download(raw_path, request)
            else:
                principal = self._authenticate(request)
                entry["principal"] = principal.sub
                fault = self._fault_for(entry)
                if fault == 401:  # as if the token were refused (revoked): no principal, no audit
                    principal = None
                if fault == "no answer":
                    held = self.holds.enter()
                    entry["outcome"] = await self.holds.wait(request)
                    response = Response(status_code=504)  # sent only if released: the client is gone otherwise
                elif fault is not None:
                    raise Problem(fault, "Unauthorized" if fault == 401 else "Service Unavailable" if fault == 503 else "Internal Server Error",
                                  "lab fault")
                elif raw_path == f"/organizations/{self.store.org['id']}/audit" and request.method == "GET":
                    entry["operation"] = "audit"
                    response = self._list_audit(principal, request)
                elif route is None:
                    raise Problem(404, "Not Found", f"no such endpoint: {request.method} {raw_path}")
                else:
                    response = self._dispatch(route, params, principal, request, body)
        except Problem as problem:
            response = self._problem(problem, raw_path, route)
        try:
            # A request held until its client gave up got no answer at all.
            entry["status"] = 0 if entry.get("outcome") == "abandoned" else response.status_code
            entry["changedState"] = before is not None and self.store.digest() != before
            entry["responseBody"] = response.body.decode("utf-8", "replace")[:65536]
            entry["durationMs"] = round((time.monotonic() - started) * 1000, 2)
            self.journal.add(entry)
            if principal is not None and entry["operation"] != "audit":
                self._record_audit(entry, principal, route, params)
        finally:
            if held is not None:
                self.holds.leave(held)
        return response

    # --- faults the lab injects ----------------------------------------------------------
    def _fault_for(self, entry: dict):
        """The fault a rule injects into this request (401, a 5xx, or "no answer"), if any: a
        rule names an operation and a subject (either may be left out) and how many requests it
        fails (all, if it does not say)."""
        for rule in self.faults:
            if rule.get("operation") not in (None, entry["operation"]) or rule.get("sub") not in (None, entry["principal"]):
                continue
            if rule.get("times") is not None and rule["used"] >= rule["times"]:
                continue
            rule["used"] += 1
            entry["fault"] = rule["respond"] if rule["respond"] == "no answer" else f"answered {rule['respond']}"
            return rule["respond"]
        return None

    @staticmethod
    def _rule(doc: dict) -> dict:
        respond = doc.get("respond")
        if respond != "no answer" and not (respond == 401 or isinstance(respond, int) and 500 <= respond <= 599):
            raise ValueError(f"respond must be 401, a 5xx status or 'no answer', not {respond!r}")
        unknown = set(doc) - {"operation", "sub", "respond", "times"}
        if unknown:
            raise ValueError(f"unknown fault rule keys {sorted(unknown)}")
        return {**doc, "used": 0}

    def verdict_on(self, token: str) -> dict:
        """Whether this control plane would accept the token now, and why not."""
        try:
            self._verify(token)
            return {"accepted": True}
        except (jwt.InvalidTokenError, Problem) as err:
            return {"accepted": False, "why": str(err)}

    def _authenticate(self, request: Request) -> Principal:
        given = request.headers.getlist("authorization")
        if len(given) > 1:  # which one would count is up to each server: refuse the ambiguity
            raise Problem(400, "Bad Request", f"{len(given)} Authorization headers")
        header = given[0] if given else ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "Unauthorized", "missing bearer token")
        try:
            return self._verify(token)
        except jwt.InvalidTokenError as err:
            raise Problem(401, "Unauthorized", f"invalid token: {err}") from None

    def _verify(self, token: str) -> Principal:
        kid = jwt.get_unverified_header(token).get("kid")
        key = self.keys.get(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown signing key")
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=self.issuer,
                            options={"require": ["exp", "iss", "aud", "sub"]})
        principal = self.directory.principal(claims["sub"])
        if principal is None:
            raise Problem(401, "Unauthorized", "unknown subject")
        return principal

    def _problem(self, problem: Problem, raw_path: str, route: Route | None) -> Response:
        doc = {
            "type": f"https://docs.testkube.io/problems/{problem.status}",
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
            "instance": raw_path,
        }
        # The spec declares agent-API problems as arrays and org-API problems as one object.
        as_array = route is not None and "/agent/" in route.pattern and problem.status not in (401, 403)
        return JSONResponse([doc] if as_array else doc, problem.status, media_type="application/problem+json")

    # --- authorization and handlers -----------------------------------------------------
    def _env(self, params: dict, principal: Principal, need: str) -> str:
        if params.get("org") != self.store.org["id"]:
            raise Problem(404, "Not Found", "no such organization")
        env = params.get("env")
        if env is None:
            return ""
        if env not in self.store.environments:
            raise Problem(404, "Not Found", f"no such environment: {env}")
        if not principal.can("read", env):  # the resource's own check applies the real need
            raise Problem(403, "Forbidden", f"no access to environment {env}")
        return env

    def _check(self, principal: Principal, need: str, env: str, group: str | None, what: str):
        if not principal.can(need, env, group):
            raise Problem(403, "Forbidden", f"{need} access to {what} denied")

    def _resource(self, principal, need, env, found: dict | None, what: str) -> dict:
        """404 if it is not in this environment, 403 if the user's role on it is too low."""
        if found is None or found["environment"] != env:
            raise Problem(404, "Not Found", f"{what} not found")
        self._check(principal, need, env, found["group"], what)
        return found

    def _workflow(self, principal, need, env, name) -> dict:
        return self._resource(principal, need, env, self.store.workflows.get((env, name)), f"test workflow {name}")

    def _execution(self, principal, need, env, ident) -> dict:
        return self._resource(principal, need, env, self.store.executions.get(ident), f"execution {ident}")

    def _template(self, principal, need, env, name) -> dict:
        return self._resource(principal, need, env, self.store.templates.get((env, name)), f"template {name}")

    def _readable(self, principal, env, items):
        return [i for i in items if i["environment"] == env and principal.can("read", env, i["group"])]

    def _dispatch(self, route: Route, p: dict, principal: Principal, request: Request, body: bytes) -> Response:
        s = self.store
        env = self._env(p, principal, route.need)
        op = route.operation
        q = parse_qs(request.url.query)
        if op == "list_workflows":
            wfs = self._readable(principal, env, s.workflows.values())
            return JSONResponse([self._with_latest(w) for w in wfs])
        if op == "get_workflow":
            return JSONResponse(self._with_latest(self._workflow(principal, "read", env, p["workflow"]), full=True))
        if op == "list_workflow_definitions":
            return JSONResponse([s.workflow_doc(w) for w in self._readable(principal, env, s.workflows.values())])
        if op == "get_workflow_definition":
            return JSONResponse(s.workflow_doc(self._workflow(principal, "read", env, p["workflow"])))
        if op == "get_workflow_metrics":
            return JSONResponse(s.metrics_doc(self._workflow(principal, "read", env, p["workflow"])))
        if op in ("list_executions", "list_workflow_executions"):
            runs = self._readable(principal, env, s.executions.values())
            if op == "list_workflow_executions":
                self._workflow(principal, "read", env, p["workflow"])
                runs = [e for e in runs if e["workflow"] == p["workflow"]]
            text = (q.get("textSearch") or [""])[0]
            runs = [e for e in runs if text in e["name"] or text in e["id"]]
            return JSONResponse([s.executions_result(runs)])
        if op == "get_workflow_execution":
            e = self._execution(principal, "read", env, p["execution"])
            if e["workflow"] != p["workflow"]:
                raise Problem(404, "Not Found", f"execution {p['execution']} not found")
            return JSONResponse(s.execution_doc(e))
        if op == "get_execution_info":
            return JSONResponse(s.execution_doc(self._execution(principal, "read", env, p["execution"])))
        if op == "fetch_execution_logs":
            e = self._execution(principal, "read", env, p["execution"])
            return PlainTextResponse("\n".join(e["logs"]) + "\n")
        if op == "list_artifacts":
            e = self._execution(principal, "read", env, p["execution"])
            return JSONResponse(
                [{"name": f, "size": len(c), "executionName": e["name"], "status": "ready"} for f, c in e["files"].items()]
            )
        if op == "read_artifact":
            e = self._execution(principal, "read", env, p["execution"])
            try:
                file_name = json.loads(body or b"{}")["artifactID"]
            except (ValueError, KeyError, TypeError):
                raise Problem(400, "Bad Request", "body must be {\"artifactID\": ...}") from None
            if file_name not in e["files"]:
                raise Problem(404, "Not Found", f"artifact {file_name} not found")
            return JSONResponse({"url": self._presign(request, e["id"], file_name)})
        if op == "list_workflowtemplates":
            return JSONResponse([s.template_doc(t) for t in self._readable(principal, env, s.templates.values())])
        if op == "get_workflowtemplate":
            return JSONResponse(s.template_doc(self._template(principal, "read", env, p["template"])))
        if op == "list_labels":
            labels: dict[str, set] = {}
            for w in self._readable(principal, env, s.workflows.values()):
                for k, v in w.get("labels", {}).items():
                    labels.setdefault(k, set()).add(v)
            return JSONResponse({k: sorted(v) for k, v in labels.items()})
        if op == "list_resource_groups":
            return JSONResponse(
                [
                    {**{k: g[k] for k in ("id", "slug", "name", "description")}, "createdAt": "2026-11-01T09:00:00Z",
                     "updatedAt": "2026-11-01T09:00:00Z", "collaboratorCount": 1,
                     "role": principal.group_roles.get(g["id"], "admin")}
                    for g in s.groups.values()
                    if principal.sees_group(g["id"])
                ]
            )
        if op == "list_agents":
            envs = [e for e in s.environments if principal.can("read", e)]
            if not envs:
                raise Problem(403, "Forbidden", "no access to agents")
            visible = [a for a in s.agents.values() if set(a["environments"]) & set(envs)]
            return JSONResponse({"elements": [
                {"id": a["id"], "name": a["name"], "labels": a["labels"], "disabled": False, "floating": False,
                 "createdAt": "2026-11-01T09:00:00Z"} for a in visible
            ]})
        return self._mutate(route, p, principal, env, body)

    def _with_latest(self, w: dict, full: bool = False) -> dict:
        latest = self.store.latest_execution(w)
        doc = {"workflow": self.store.workflow_doc(w)}
        if latest:
            doc["latestExecution"] = (self.store.execution_doc if full else self.store.execution_summary)(latest)
        return doc

    def _mutate(self, route: Route, p: dict, principal: Principal, env: str, body: bytes) -> Response:
        """Mutations really change state, so a leaked mutation is visible in the state digest."""
        s, op = self.store, route.operation
        if "execution" in p:
            e = self._execution(principal, route.need, env, p["execution"])
            if op == "update_execution_tags":
                e["tags"] = {**e["tags"], "patched": "true"}
            else:
                e["status"] = "aborted" if "abort" in op else e["status"]
                if "rerun" in op:
                    self._new_execution(principal, e["workflow"], env, e["group"])
            return JSONResponse(s.execution_doc(e))
        if "workflow" in p:
            w = self._workflow(principal, route.need, env, p["workflow"])
            if op == "run_workflow":
                return JSONResponse(s.execution_doc(self._new_execution(principal, w["name"], env, w["group"])))
            if op == "delete_workflow":
                del s.workflows[(env, w["name"])]
                return Response(status_code=204)
            w["description"] += " (updated)"
            return JSONResponse(s.workflow_doc(w))
        if "template" in p:
            t = self._template(principal, route.need, env, p["template"])
            if op == "delete_workflowtemplate":
                del s.templates[(env, t["name"])]
                return Response(status_code=204)
            t["description"] += " (updated)"
            return JSONResponse(s.template_doc(t))
        self._check(principal, route.need, env, None, f"environment {env}")
        if op == "delete_workflows":
            for key in [k for k in s.workflows if k[0] == env]:
                del s.workflows[key]
            return Response(status_code=204)
        name = f"created-{uuid.uuid4().hex[:8]}"
        table = s.workflows if op == "create_workflow" else s.templates
        table[(env, name)] = {"name": name, "environment": env, "group": None, "labels": {}, "description": body.decode()[:200]}
        return JSONResponse((s.workflow_doc if op == "create_workflow" else s.template_doc)(table[(env, name)]))

    def _new_execution(self, principal: Principal, workflow: str, env: str, group: str | None) -> dict:
        s = self.store
        number = 1 + max((e["number"] for e in s.executions.values() if e["workflow"] == workflow), default=0)
        ident = uuid.uuid4().hex[:24]
        s.executions[ident] = {
            "id": ident, "workflow": workflow, "number": number, "status": "queued", "artifacts": [],
            "environment": env, "group": group, "name": f"{workflow}-{number}", "scheduledAt": _now()[:19] + "Z",
            "tags": {}, "logs": [], "files": {},
            # as the real API does: nothing marks the run as AI-initiated
            "actor": {"type": "user", "name": principal.sub, "email": principal.email},
        }
        return s.executions[ident]

    # --- presigned artifact storage (not an API call: no bearer, like object storage) ----
    def _presign(self, request: Request, execution: str, file_name: str) -> str:
        expires = str(int(time.time()) + 300)
        msg = f"{execution}/{file_name}/{expires}".encode()
        sig = hmac.new(self._storage_secret, msg, hashlib.sha256).hexdigest()[:32]
        return f"{request.base_url}storage/{execution}/{file_name}?expires={expires}&sig={sig}"

    def _download(self, raw_path: str, request: Request) -> Response:
        parts = raw_path.split("/")
        expires, sig = request.query_params.get("expires", "0"), request.query_params.get("sig", "")
        if len(parts) != 4 or not expires.isdigit() or int(expires) < time.time():
            raise Problem(403, "Forbidden", "presigned URL malformed or expired")
        execution, file_name = parts[2], parts[3]
        msg = f"{execution}/{file_name}/{expires}".encode()
        if not hmac.compare_digest(hmac.new(self._storage_secret, msg, hashlib.sha256).hexdigest()[:32], sig):
            raise Problem(403, "Forbidden", "presigned URL signature mismatch")
        return PlainTextResponse(self.store.executions[execution]["files"][file_name] + "\n")

    # --- audit -------------------------------------------------------------------------
    def _record_audit(self, entry: dict, principal: Principal, route: Route | None, params: dict) -> None:
        status = entry["status"]
        outcome = "allowed" if status < 400 else "denied" if status in (401, 403) else "failed"
        obj_type, obj_id = "endpoint", entry["rawPath"]
        for key, kind in (("execution", "testworkflowexecution"), ("template", "testworkflowtemplate"), ("workflow", "testworkflow")):
            if key in params:
                obj_type, obj_id = kind, params[key]
                break
        operation = route.operation if route else "unknown"
        self.audit.append({
            "id": str(uuid.uuid4()),
            "createdAt": entry["time"],
            "eventType": f"{obj_type}.{operation}",
            "objects": [{"id": obj_id, "name": obj_id, "uri": entry["rawPath"], "entityType": obj_type}],
            "subject": {
                "id": principal.sub, "name": principal.email,
                "uri": f"/organizations/{self.store.org['id']}/members/{principal.email}",
                "entityType": "apitoken" if principal.kind == "api-token" else "user",
            },
            "source": "api",
            "scope": "environment" if "env" in params else "organization",
            "action": operation,
            "metadata": {
                "requestId": entry["requestId"], "method": entry["method"], "path": entry["rawPath"],
                "status": str(status), "outcome": outcome, "environmentId": params.get("env", ""),
            },
        })

    def _list_audit(self, principal: Principal, request: Request) -> Response:
        if not principal.is_org_admin():
            raise Problem(403, "Forbidden", "audit log needs organization admin")
        q = request.query_params
        items = [
            a for a in self.audit
            if (not q.get("subject") or a["subject"]["id"] == q["subject"])
            and (not q.get("environmentId") or a["metadata"]["environmentId"] == q["environmentId"])
            and (not q.get("event") or a["eventType"] == q["event"])
            and (not q.get("startDate") or a["createdAt"] >= q["startDate"])
            and (not q.get("endDate") or a["createdAt"] <= q["endDate"])
        ]
        page_size = int(q.get("pageSize") or q.get("limit") or 100)
        page = int(q.get("page") or 0)
        total_pages = max(1, -(-len(items) // page_size))
        return JSONResponse({
            "items": items[page * page_size:(page + 1) * page_size],
            "pageSize": page_size, "pageIndex": page, "totalPages": total_pages, "totalItems": len(items),
        })

    # --- lab admin (harness only; a random secret keeps the service from tampering) ------
    async def _admin(self, request: Request, raw_path: str) -> Response:
        if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), self.admin_secret):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        if raw_path == "/_lab/records":
            return await self.journal.endpoint(request)
        if raw_path == "/_lab/reset" and request.method == "POST":
            # A fresh control plane per scenario (no faults, the IdP's own keys); its journal is the lab's and stays.
            self.audit.clear()
            self.store.reset()
            self.faults, self.keys = [], self.original_keys
            await self.holds.release()
            return JSONResponse({"digest": self.store.digest()})
        if raw_path in ("/_lab/faults", "/_lab/keys", "/_lab/verify") and request.method == "POST":
            try:
                doc = json.loads(await request.body() or b"{}")
                if raw_path == "/_lab/faults":
                    self.faults = [self._rule(r) for r in doc["rules"]]
                    return JSONResponse({"rules": len(self.faults)})
                if raw_path == "/_lab/keys":  # trust the key set the IdP now publishes (a rotation)
                    self.keys = {k["kid"]: jwt.PyJWK(k).key for k in doc["keys"]}
                    return JSONResponse({"kids": sorted(self.keys)})
                return JSONResponse(self.verdict_on(doc["token"]))
            except (ValueError, KeyError, TypeError, jwt.PyJWKError) as err:
                return JSONResponse({"error": str(err)}, 400)
        if raw_path == "/_lab/release" and request.method == "POST":
            return JSONResponse({"released": await self.holds.release()})
        if raw_path == "/_lab/state":
            return JSONResponse({"digest": self.store.digest()})
        if raw_path == "/_lab/canaries":
            return JSONResponse(sorted(self.store.all_canaries()))
        return JSONResponse({"error": "no such lab endpoint"}, 404)
