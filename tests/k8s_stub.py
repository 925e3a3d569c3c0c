"""A Kubernetes API stand-in on 127.0.0.1 whose requests and answers are checked against the API's own shapes.

It serves what ``osft-pipeline doctor``, ``submit --install`` (RBAC) and the workspace-bound task call: version,
namespaces, storage classes, nodes, service accounts, roles and role bindings (create, read, replace), PVCs and
their events, API discovery, (Self)SubjectAccessReviews, and the custom objects named in ``custom``. Every body
the client sends and every object the stub answers is validated against Kubernetes' OpenAPI schemas (strict:
unknown fields fail; kubernetes-validate's 1.35 schemas, meta kinds included); a mismatch is recorded in
``invalid``, so a test that ends with ``invalid == []`` shows both sides spoke the real API.
"""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.json_http import JsonHandler, LoopbackServer

K8S_VERSION = "1.35.0"


def schema_errors(obj: Any, schema_name: str) -> list[str]:
    """Errors of ``obj`` against kubernetes-validate's strict schema file ``<schema_name>.json``."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = utils.schema_contents(f"{folder}/{schema_name}.json", K8S_VERSION)
    defs = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{schema_name}: {e.message} at {'.'.join(map(str, e.path))}" for e in validator.iter_errors(obj)]


class HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def _status(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": status}


def storage_class(name: str, provisioner: str, default: bool = False, binding: str = "Immediate") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": "1"}
    if default:
        meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta, "provisioner": provisioner,
            "reclaimPolicy": "Delete", "volumeBindingMode": binding}


def node(name: str, cpu: str = "4", memory: str = "16Gi", gpus: int = 0) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {}, "status": {"allocatable": alloc, "capacity": alloc}}


class KubeStub(LoopbackServer):
    """State plus routes. ``forbidden``: regexes of paths answered 403; ``denied``: (verb, resource) pairs a
    (Self)SubjectAccessReview answers not allowed."""

    def __init__(self, token: str = "kube-token") -> None:
        self.token = token
        self.namespaces = {"ml", "argo", "default"}
        self.storage_classes = [storage_class("nfs-csi", "nfs.csi.k8s.io")]
        self.nodes = [node("gpu-1", cpu="32", memory="256Gi", gpus=8)]
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        self.groups: dict[str, list[str]] = {"argoproj.io/v1alpha1": ["workflows", "workflowtemplates",
                                                                      "cronworkflows", "workflowtaskresults"]}
        self.custom: dict[tuple[str, str, str], dict[str, Any]] = {}  # (resource, ns or "", name)
        self.pvcs: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.forbidden: list[str] = []
        self.denied: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str, Any]] = []
        self.invalid: list[str] = []
        self._rv = 10
        self.serve(self._handler())

    def kubeconfig(self, path: Path, namespace: str = "ml") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "me", "user": {"token": self.token}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "me", "namespace": namespace}}]}))
        return path

    # -- state helpers ---------------------------------------------------------------------------------------

    def install_pipeline(self, ns: str = "ml", image: str = "quay.io/osft-pipeline/osft-pipeline:0.1.0") -> None:
        """The WorkflowTemplate and the RBAC objects ``kubectl apply -k`` would leave."""
        self.custom[("workflowtemplates", ns, "osft-minimal-pipeline")] = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
            "metadata": {"name": "osft-minimal-pipeline", "namespace": ns},
            "spec": {"templates": [{"name": "train", "script": {"image": image}}]}}
        self.objects[("ServiceAccount", ns, "osft-pipeline")] = {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "osft-pipeline", "namespace": ns}}

    def add_pvc(self, ns: str, name: str, phase: str = "Pending", storage_class: str = "nfs-csi") -> dict[str, Any]:
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "1"},
               "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": storage_class,
                        "resources": {"requests": {"storage": "50Gi"}}},
               "status": {"phase": phase}}
        self.pvcs[(ns, name)] = pvc
        return pvc

    def add_event(self, ns: str, claim: str, reason: str, message: str, kind: str = "Warning") -> None:
        n = len(self.events)
        self.events.append({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{claim}.{n:04x}", "namespace": ns, "uid": f"ev-{n}"},
            "involvedObject": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "apiVersion": "v1"},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": f"2026-01-01T00:00:{n:02d}Z", "lastTimestamp": f"2026-01-01T00:00:{n:02d}Z",
            "source": {"component": "persistentvolume-controller"}})

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- routes ----------------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[Any, str]:
        """(answer, schema name of the answer)."""
        if any(re.fullmatch(f, path) for f in self.forbidden):
            raise HttpError(403, "Forbidden", f'forbidden: User "me" cannot {method.lower()} {path}')
        if path.rstrip("/") == "/version" and method == "GET":  # the client asks for /version/
            return {"major": "1", "minor": "35", "gitVersion": f"v{K8S_VERSION}", "gitCommit": "abc",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                    "compiler": "gc", "platform": "linux/amd64"}, "info-pkg-version"
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if m and method == "GET":
            if m.group(1) not in self.namespaces:
                raise HttpError(404, "NotFound", f'namespaces "{m.group(1)}" not found')
            return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": m.group(1)},
                    "status": {"phase": "Active"}}, "namespace-v1"
        if path == "/apis/storage.k8s.io/v1/storageclasses" and method == "GET":
            return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClassList", "metadata": {},
                    "items": self.storage_classes}, "storageclasslist-storage-v1"
        if path == "/api/v1/nodes" and method == "GET":
            return {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": self.nodes}, "nodelist-v1"
        m = re.fullmatch(r"/apis/(.+)/(v[0-9a-z]+)", path)
        if m and method == "GET" and "/namespaces/" not in path:
            gv = f"{m.group(1)}/{m.group(2)}"
            if gv not in self.groups:
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": r, "singularName": "", "namespaced": True, "kind": r.title(), "verbs": ["get", "list"]}
                for r in self.groups[gv]]}, "apiresourcelist-meta-v1"
        m = re.fullmatch(r"/apis/authorization.k8s.io/v1/(selfsubjectaccessreviews|subjectaccessreviews)", path)
        if m and method == "POST":
            kind = "SelfSubjectAccessReview" if m.group(1).startswith("self") else "SubjectAccessReview"
            schema = f"{kind.lower()}-authorization-v1"
            self._check(body, schema, f"{method} {path}")
            attrs = body["spec"]["resourceAttributes"]
            resource = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
            allowed = (attrs["verb"], resource) not in self.denied
            return {**body, "status": {"allowed": allowed}}, schema
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/persistentvolumeclaims/([^/]+)", path)
        if m and method == "GET":
            if (m.group(1), m.group(2)) not in self.pvcs:
                raise HttpError(404, "NotFound", f'persistentvolumeclaims "{m.group(2)}" not found')
            return self.pvcs[(m.group(1), m.group(2))], "persistentvolumeclaim-v1"
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path)
        if m and method == "GET":
            sel = dict(kv.split("=", 1) for kv in (query.get("fieldSelector") or [""])[0].split(",") if "=" in kv)
            items = [e for e in self.events if e["metadata"]["namespace"] == m.group(1)
                     and all(str(e["involvedObject"].get(k.split(".", 1)[1])) == v for k, v in sel.items())]
            return {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}, "eventlist-v1"
        kinds = {"serviceaccounts": ("ServiceAccount", "/api/v1", "serviceaccount-v1"),
                 "roles": ("Role", "/apis/rbac.authorization.k8s.io/v1", "role-rbac-v1"),
                 "rolebindings": ("RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebinding-rbac-v1")}
        m = re.fullmatch(r"(/api/v1|/apis/rbac.authorization.k8s.io/v1)/namespaces/([^/]+)/(\w+)(?:/([^/]+))?", path)
        if m and m.group(3) in kinds and kinds[m.group(3)][1] == m.group(1):
            kind, _, schema = kinds[m.group(3)]
            ns, name = m.group(2), m.group(4)
            if method == "GET" and name:
                if (kind, ns, name) not in self.objects:
                    raise HttpError(404, "NotFound", f'{m.group(3)} "{name}" not found')
                return self.objects[(kind, ns, name)], schema
            if method in ("POST", "PUT"):
                self._check(body, schema, f"{method} {path}")
                key = (kind, ns, body["metadata"]["name"])
                if method == "POST" and key in self.objects:
                    raise HttpError(409, "AlreadyExists", f'{m.group(3)} "{key[2]}" already exists')
                if method == "PUT":
                    have = self.objects.get(key)
                    if have is None:
                        raise HttpError(404, "NotFound", f'{m.group(3)} "{key[2]}" not found')
                    if body["metadata"].get("resourceVersion") != have["metadata"].get("resourceVersion"):
                        raise HttpError(409, "Conflict", "the object has been modified")
                obj = {**body, "metadata": {**body["metadata"], "namespace": ns, "resourceVersion": self._next_rv()}}
                self.objects[key] = obj
                return obj, schema
        m = re.fullmatch(r"/apis/([^/]+)/([^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?", path)
        if m and method == "GET":
            _, _, ns, resource, name = m.groups()
            if name is None:
                items = [o for (r, n, _), o in self.custom.items() if r == resource and n == (ns or "")]
                return {"apiVersion": f"{m.group(1)}/{m.group(2)}", "kind": "List", "metadata": {}, "items": items}, ""
            if (resource, ns or "", name) not in self.custom:
                raise HttpError(404, "NotFound", f'{resource}.{m.group(1)} "{name}" not found')
            return self.custom[(resource, ns or "", name)], ""
        raise HttpError(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    def _check(self, obj: Any, schema: str, where: str) -> None:
        if errors := schema_errors(obj, schema):
            self.invalid.append(f"{where}: {errors[:3]}")
            raise HttpError(422, "Invalid", f"invalid body: {errors[:3]}")

    def _handler(self) -> type[JsonHandler]:
        stub = self

        class Handler(JsonHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                    stub.requests.append((method, parts.path, body))
                    if self.headers.get("Authorization") != f"Bearer {stub.token}":
                        raise HttpError(401, "Unauthorized", "Unauthorized")
                    answer, schema = stub.route(method, parts.path, parse_qs(parts.query), body)
                    if schema:
                        for e in schema_errors(answer, schema):
                            stub.invalid.append(f"answer to {method} {parts.path}: {e}")
                    self._reply(201 if method == "POST" else 200, answer)
                except HttpError as exc:
                    status = _status(exc.status, exc.reason, str(exc))
                    for e in schema_errors(status, "status-meta-v1"):
                        stub.invalid.append(f"status: {e}")
                    self._reply(exc.status, status)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

        return Handler
