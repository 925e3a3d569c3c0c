"""A small Argo Server stand-in on 127.0.0.1 that checks every request body against Argo's swagger.json.

It implements the endpoints Hera's WorkflowsService calls for our CLI: workflow templates (get, create,
update), submit-from-template, get workflow (the phase advances on each poll), cron workflows (get,
create, update, suspend, resume). Bodies that do not validate (strict: unknown fields fail) get a 400 and
are recorded in ``invalid``; the WorkflowTemplate and CronWorkflow inside them are also checked against
Argo's JSON schema, and submitted parameters against the stored template (names and enums).
"""

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.json_http import JsonHandler, LoopbackServer
from workflows.argo.lint import request_errors, schema_errors

ROUTES = [
    ("GET", r"/api/v1/workflow-templates/(?P<ns>[^/]+)/(?P<name>[^/]+)", "get_template", None),
    ("GET", r"/api/v1/cluster-workflow-templates/(?P<name>[^/]+)", "get_cluster_template", None),
    ("POST", r"/api/v1/workflow-templates/(?P<ns>[^/]+)", "create_template",
     "io.argoproj.workflow.v1alpha1.WorkflowTemplateCreateRequest"),
    ("PUT", r"/api/v1/workflow-templates/(?P<ns>[^/]+)/(?P<name>[^/]+)", "update_template",
     "io.argoproj.workflow.v1alpha1.WorkflowTemplateUpdateRequest"),
    ("POST", r"/api/v1/workflows/(?P<ns>[^/]+)/submit", "submit",
     "io.argoproj.workflow.v1alpha1.WorkflowSubmitRequest"),
    ("GET", r"/api/v1/workflows/(?P<ns>[^/]+)/(?P<name>[^/]+)", "get_workflow", None),
    ("PUT", r"/api/v1/cron-workflows/(?P<ns>[^/]+)/(?P<name>[^/]+)/suspend", "suspend_cron",
     "io.argoproj.workflow.v1alpha1.CronWorkflowSuspendRequest"),
    ("PUT", r"/api/v1/cron-workflows/(?P<ns>[^/]+)/(?P<name>[^/]+)/resume", "resume_cron",
     "io.argoproj.workflow.v1alpha1.CronWorkflowResumeRequest"),
    ("GET", r"/api/v1/cron-workflows/(?P<ns>[^/]+)/(?P<name>[^/]+)", "get_cron", None),
    ("POST", r"/api/v1/cron-workflows/(?P<ns>[^/]+)", "create_cron",
     "io.argoproj.workflow.v1alpha1.CreateCronWorkflowRequest"),
    ("PUT", r"/api/v1/cron-workflows/(?P<ns>[^/]+)/(?P<name>[^/]+)", "update_cron",
     "io.argoproj.workflow.v1alpha1.UpdateCronWorkflowRequest"),
]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ArgoStub(LoopbackServer):
    """State plus behaviour; ``requests`` records (method, path, body) of every call."""

    def __init__(self, token: str = "s3cr3t-token", final_phase: str = "Succeeded", polls_to_finish: int = 2,
                 final_nodes: dict[str, Any] | None = None) -> None:
        self.token = token
        self.final_phase = final_phase
        self.polls_to_finish = polls_to_finish
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.cluster_templates: dict[str, dict[str, Any]] = {}
        self.final_nodes = final_nodes or {}  # status.nodes of a finished workflow (Argo's NodeStatus objects)
        self.crons: dict[tuple[str, str], dict[str, Any]] = {}
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.invalid: list[str] = []
        self._rv = 0
        self.serve(self._handler())

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- handlers --------------------------------------------------------------------------------------------

    def get_template(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        if (ns, name) not in self.templates:
            raise HttpError(404, f'workflowtemplates.argoproj.io "{name}" not found')
        return self.templates[(ns, name)]

    def _store_template(self, ns: str, tmpl: dict[str, Any]) -> dict[str, Any]:
        if errs := schema_errors(tmpl):
            raise HttpError(400, f"invalid WorkflowTemplate: {errs[:3]}")
        tmpl["metadata"] = {**tmpl["metadata"], "namespace": ns, "resourceVersion": self._next_rv()}
        self.templates[(ns, tmpl["metadata"]["name"])] = tmpl
        return tmpl

    def create_template(self, ns: str, body: Any) -> dict[str, Any]:
        if (ns, body["template"]["metadata"]["name"]) in self.templates:
            raise HttpError(409, "already exists")
        return self._store_template(ns, body["template"])

    def update_template(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        cur = self.get_template(ns, name, None)
        if body["template"]["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise HttpError(409, "the object has been modified; resourceVersion mismatch")
        return self._store_template(ns, body["template"])

    def get_cluster_template(self, name: str, body: Any) -> dict[str, Any]:
        if name not in self.cluster_templates:
            raise HttpError(404, f'clusterworkflowtemplates.argoproj.io "{name}" not found')
        return self.cluster_templates[name]

    def submit(self, ns: str, body: Any) -> dict[str, Any]:
        kind = body.get("resourceKind")
        if kind in ("WorkflowTemplate", "workflowtemplate", "wftmpl"):
            tmpl = self.get_template(ns, body["resourceName"], None)
        elif kind in ("ClusterWorkflowTemplate", "clusterworkflowtemplate", "cwft"):
            tmpl = self.get_cluster_template(body["resourceName"], None)
        else:
            raise HttpError(400, f"unsupported resourceKind {kind}")
        declared = {p["name"]: p for p in tmpl["spec"]["arguments"]["parameters"]}
        opts = body.get("submitOptions") or {}
        for pair in opts.get("parameters") or []:
            name, _, value = pair.partition("=")
            if name not in declared:
                raise HttpError(400, f"parameter {name} is not declared")
            if declared[name].get("enum") and value not in declared[name]["enum"]:
                raise HttpError(400, f"value {value} of {name} is not in its enum")
        name = opts.get("generateName", "wf-") + f"{len(self.workflows):05d}"
        ref = {"name": body["resourceName"], **({"clusterScope": True} if kind.lower().startswith("cluster") or
                                                  kind == "cwft" else {})}
        wf = {"metadata": {"name": name, "namespace": ns, "uid": "uid-1"},
              "spec": {"workflowTemplateRef": ref, **({"serviceAccountName": opts["serviceAccount"]}
                                                     if opts.get("serviceAccount") else {}),
                       "arguments": {"parameters": [{"name": p.partition("=")[0], "value": p.partition("=")[2]}
                                                    for p in opts.get("parameters") or []]}},
              "status": {"phase": "Pending"}}
        self.workflows[(ns, name)] = wf
        return wf

    def get_workflow(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        if (ns, name) not in self.workflows:
            raise HttpError(404, f'workflows.argoproj.io "{name}" not found')
        wf = self.workflows[(ns, name)]
        self.polls[name] = self.polls.get(name, 0) + 1
        done = self.polls[name] >= self.polls_to_finish
        wf["status"]["phase"] = self.final_phase if done else "Running"
        if done and self.final_nodes:
            wf["status"]["nodes"] = self.final_nodes
        return wf

    def get_cron(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        if (ns, name) not in self.crons:
            raise HttpError(404, f'cronworkflows.argoproj.io "{name}" not found')
        return self.crons[(ns, name)]

    def _store_cron(self, ns: str, cron: dict[str, Any]) -> dict[str, Any]:
        if errs := schema_errors(cron):
            raise HttpError(400, f"invalid CronWorkflow: {errs[:3]}")
        ref = cron["spec"]["workflowSpec"].get("workflowTemplateRef", {}).get("name")
        if (ns, ref) not in self.templates:
            raise HttpError(400, f"workflowTemplateRef {ref} not found")
        cron["metadata"] = {**cron["metadata"], "namespace": ns, "resourceVersion": self._next_rv()}
        self.crons[(ns, cron["metadata"]["name"])] = cron
        return cron

    def create_cron(self, ns: str, body: Any) -> dict[str, Any]:
        return self._store_cron(ns, body["cronWorkflow"])

    def update_cron(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        cur = self.get_cron(ns, name, None)
        if body["cronWorkflow"]["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise HttpError(409, "resourceVersion mismatch")
        return self._store_cron(ns, body["cronWorkflow"])

    def suspend_cron(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        cron = self.get_cron(ns, name, None)
        cron["spec"]["suspend"] = True
        return cron

    def resume_cron(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        cron = self.get_cron(ns, name, None)
        cron["spec"]["suspend"] = False
        return cron

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(JsonHandler):

            def _serve(self, method: str) -> None:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                    stub.requests.append((method, path, body))
                    if self.headers.get("Authorization") != f"Bearer {stub.token}":
                        raise HttpError(401, "token not valid")
                    for verb, pattern, handler, definition in ROUTES:
                        match = re.fullmatch(pattern, path)
                        if verb == method and match:
                            if definition is not None and (errs := request_errors(body, definition)):
                                stub.invalid.append(f"{method} {path}: {errs[:3]}")
                                raise HttpError(400, f"invalid body: {errs[:3]}")
                            args = match.groupdict()
                            out = getattr(stub, handler)(*args.values(), body)
                            self._reply(200, out)
                            return
                    raise HttpError(404, f"no route {method} {path}")
                except HttpError as exc:
                    self._reply(exc.status, {"code": {401: 16, 404: 5, 409: 6}.get(exc.status, 3),
                                             "message": str(exc)})
                except (ValueError, KeyError) as exc:
                    self._reply(400, {"code": 3, "message": f"bad request: {exc}"})

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

        return Handler
