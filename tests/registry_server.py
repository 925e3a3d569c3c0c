"""An in-process fake Kubeflow Model Registry REST server on 127.0.0.1 (stdlib ``ThreadingHTTPServer``).

It serves the endpoints the ``model-registry`` 0.3.18 client calls (and their neighbours) under both API
prefixes (``/api/model_registry/v1/`` and ``.../v1alpha3/``, or only the ones asked for), with the real
server's semantics: string ids from one counter for models and versions (MLMD contexts) and one for artifacts,
string epoch-millisecond timestamps, LIVE/UNKNOWN default states, customProperties stored verbatim, 404 on a
find miss, 409 on a duplicate name, ``{"code", "message"}`` errors. Request parameters and bodies are validated
against the Model Registry OpenAPI spec in tests/data/model-registry/ (400/422 where the spec documents them)
and every exchange is recorded so tests can validate requests and responses against the spec independently.

    with RegistryServer(token="t") as srv:
        ModelRegistry("http://127.0.0.1", srv.port, author="me", is_secure=False, user_token="t")
"""

import itertools
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests import registry_spec as rs

V1 = "/api/model_registry/v1"
V1ALPHA3 = "/api/model_registry/v1alpha3"


@dataclass
class Exchange:
    """One recorded request and its response."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    response: bytes


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Store:
    """The registry's entities, keyed by id (strings, as on the wire)."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifact_parent: dict[str, str] = field(default_factory=dict)  # artifact id -> model version id
    contexts: itertools.count = field(default_factory=lambda: itertools.count(1))
    artifact_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


def _now() -> str:
    return str(int(time.time() * 1000))


def _new(counter: itertools.count, body: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    now = _now()
    obj = {**defaults, **{k: v for k, v in body.items() if v is not None and not (k == "name" and v == "")}}
    obj.setdefault("customProperties", {})
    obj.update(id=str(next(counter)), createTimeSinceEpoch=now, lastUpdateTimeSinceEpoch=now)
    return obj


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    size = int(query.get("pageSize", ["100"])[0])
    order = query.get("orderBy", ["ID"])[0]
    key = {"ID": lambda o: int(o["id"]), "CREATE_TIME": lambda o: (int(o["createTimeSinceEpoch"]), int(o["id"])),
           "LAST_UPDATE_TIME": lambda o: (int(o["lastUpdateTimeSinceEpoch"]), int(o["id"]))}[order]
    items = sorted(items, key=key, reverse=query.get("sortOrder", ["ASC"])[0] == "DESC")
    token = query.get("nextPageToken", [""])[0]
    start = int(token) if token.isdigit() else 0
    chunk = items[start:start + size]
    nxt = str(start + size) if start + size < len(items) else ""
    return {"items": chunk, "nextPageToken": nxt, "pageSize": size, "size": len(chunk)}


class Registry:
    """Operation handlers: (method, spec template) → function(path params, query, body) → (status, object)."""

    def __init__(self) -> None:
        self.s = Store()

    def _get(self, table: dict[str, dict[str, Any]], id_: str, kind: str) -> dict[str, Any]:
        if id_ not in table:
            raise ApiError(404, f"no {kind} found for id {id_}")
        return table[id_]

    def _find(self, items: list[dict[str, Any]], query: dict[str, list[str]], kind: str,
              parent_key: str | None = None, parent_ok: Any = None) -> dict[str, Any]:
        name = query.get("name", [None])[0]
        ext = query.get("externalId", [None])[0]
        parent = query.get("parentResourceId", [None])[0]
        if not name and not ext:
            raise ApiError(404, f"no {kind} found: give name or externalId")
        if name and parent_key and not parent and not ext:  # names are unique only under a parent
            raise ApiError(404, f"no {kind} found: give parentResourceId with name")
        for o in items:
            if ext and o.get("externalId") != ext:
                continue
            if name and o.get("name") != name:
                continue
            if parent and parent_ok is not None and not parent_ok(o, parent):
                continue
            return o
        raise ApiError(404, f"no {kind} found")

    def _unique(self, items: list[dict[str, Any]], body: dict[str, Any], kind: str, same_scope: Any = None) -> None:
        for o in items:
            if body.get("externalId") and o.get("externalId") == body["externalId"]:
                raise ApiError(409, f"{kind} with externalId {body['externalId']} already exists")
            if o.get("name") == body.get("name") and (same_scope is None or same_scope(o)):
                raise ApiError(409, f"{kind} with name {body.get('name')} already exists")

    # registered models
    def list_models(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, _page(list(self.s.models.values()), q)

    def create_model(self, p: dict, q: dict, b: dict) -> tuple[int, Any]:
        self._unique(list(self.s.models.values()), b, "registered model")
        obj = _new(self.s.contexts, b, state="LIVE")
        self.s.models[obj["id"]] = obj
        return 201, obj

    def find_model(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, self._find(list(self.s.models.values()), q, "registered model")

    def get_model(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, self._get(self.s.models, p["id"], "registered model")

    def patch(self, table: str, kind: str) -> Any:
        def handler(p: dict, q: dict, b: dict) -> tuple[int, Any]:
            obj = self._get(getattr(self.s, table), p["id"], kind)
            fixed = ("id", "createTimeSinceEpoch", "name")
            obj.update({k: v for k, v in b.items() if k not in fixed and v is not None})
            obj["lastUpdateTimeSinceEpoch"] = _now()
            return 200, obj
        return handler

    # model versions
    def list_versions(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, _page(list(self.s.versions.values()), q)

    def list_model_versions(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        self._get(self.s.models, p["id"], "registered model")
        items = [v for v in self.s.versions.values() if v["registeredModelId"] == p["id"]]
        if q.get("name"):
            items = [v for v in items if v["name"] == q["name"][0]]
        return 200, _page(items, q)

    def create_version(self, p: dict, q: dict, b: dict) -> tuple[int, Any]:
        rm_id = p.get("id") or b.get("registeredModelId")
        if not rm_id:
            raise ApiError(422, "registeredModelId is required")
        self._get(self.s.models, rm_id, "registered model")
        self._unique(list(self.s.versions.values()), b, "model version",
                     lambda o: o["registeredModelId"] == rm_id)
        obj = _new(self.s.contexts, {**b, "registeredModelId": rm_id}, state="LIVE")
        self.s.versions[obj["id"]] = obj
        return 201, obj

    def find_version(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, self._find(list(self.s.versions.values()), q, "model version", "registeredModelId",
                               lambda o, parent: o["registeredModelId"] == parent)

    def get_version(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, self._get(self.s.versions, p["id"], "model version")

    # artifacts
    def _artifact(self, b: dict, parent: str | None) -> tuple[int, Any]:
        if b.get("id"):  # upsert of an existing artifact
            obj = self._get(self.s.artifacts, str(b["id"]), "artifact")
            obj.update({k: v for k, v in b.items() if k not in ("id", "createTimeSinceEpoch") and v not in (None, "")})
            obj["lastUpdateTimeSinceEpoch"] = _now()
            if parent:
                self.s.artifact_parent[obj["id"]] = parent
            return 200, obj
        siblings = [a for i, a in self.s.artifacts.items() if self.s.artifact_parent.get(i) == parent]
        self._unique(siblings if parent else [], b, "artifact")
        b.setdefault("artifactType", "model-artifact")
        obj = _new(self.s.artifact_ids, b, state="UNKNOWN")
        self.s.artifacts[obj["id"]] = obj
        if parent:
            self.s.artifact_parent[obj["id"]] = parent
        return 201, obj

    def create_version_artifact(self, p: dict, q: dict, b: dict) -> tuple[int, Any]:
        self._get(self.s.versions, p["id"], "model version")
        return self._artifact(b, p["id"])

    def list_version_artifacts(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        self._get(self.s.versions, p["id"], "model version")
        items = [a for i, a in self.s.artifacts.items() if self.s.artifact_parent.get(i) == p["id"]]
        for key in ("name", "externalId", "artifactType"):
            if q.get(key):
                items = [a for a in items if a.get(key) == q[key][0]]
        return 200, _page(items, q)

    def list_model_artifacts(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        return 200, _page([a for a in self.s.artifacts.values() if a["artifactType"] == "model-artifact"], q)

    def create_model_artifact(self, p: dict, q: dict, b: dict) -> tuple[int, Any]:
        return self._artifact({**b, "artifactType": "model-artifact"}, None)

    def find_model_artifact(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        items = [a for a in self.s.artifacts.values() if a["artifactType"] == "model-artifact"]
        return 200, self._find(items, q, "model artifact", "parentResourceId",
                               lambda o, parent: self.s.artifact_parent.get(o["id"]) == parent)

    def get_model_artifact(self, p: dict, q: dict, b: Any) -> tuple[int, Any]:
        obj = self._get(self.s.artifacts, p["id"], "model artifact")
        if obj["artifactType"] != "model-artifact":
            raise ApiError(404, f"no model artifact found for id {p['id']}")
        return 200, obj

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("get", "/registered_models"): self.list_models,
            ("post", "/registered_models"): self.create_model,
            ("get", "/registered_model"): self.find_model,
            ("get", "/registered_models/{registeredmodelId}"): self.get_model,
            ("patch", "/registered_models/{registeredmodelId}"): self.patch("models", "registered model"),
            ("get", "/registered_models/{registeredmodelId}/versions"): self.list_model_versions,
            ("post", "/registered_models/{registeredmodelId}/versions"): self.create_version,
            ("get", "/model_versions"): self.list_versions,
            ("post", "/model_versions"): self.create_version,
            ("get", "/model_version"): self.find_version,
            ("get", "/model_versions/{modelversionId}"): self.get_version,
            ("patch", "/model_versions/{modelversionId}"): self.patch("versions", "model version"),
            ("get", "/model_versions/{modelversionId}/artifacts"): self.list_version_artifacts,
            ("post", "/model_versions/{modelversionId}/artifacts"): self.create_version_artifact,
            ("get", "/model_artifacts"): self.list_model_artifacts,
            ("post", "/model_artifacts"): self.create_model_artifact,
            ("get", "/model_artifact"): self.find_model_artifact,
            ("get", "/model_artifacts/{modelartifactId}"): self.get_model_artifact,
            ("patch", "/model_artifacts/{modelartifactId}"): self.patch("artifacts", "model artifact"),
        }


class RegistryServer:
    """Run the fake on 127.0.0.1 in a thread; ``prefixes`` picks the API generations it serves."""

    def __init__(self, prefixes: tuple[str, ...] = (V1, V1ALPHA3), token: str | None = None,
                 tls: tuple[str, str] | None = None) -> None:
        self.prefixes = prefixes
        self.scheme = "https" if tls else "http"
        self.token = token
        self.registry = Registry()
        self.exchanges: list[Exchange] = []
        self._routes = self.registry.routes()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # TLS handshakes refused by tests
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> "RegistryServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def calls(self, method: str | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if method is None or e.method == method.upper()]

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        """(status, extra headers, JSON body) for one request."""
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        split = rs.split_prefix(parts.path)
        if not split or split[0] not in self.prefixes:
            return 404, {}, {"code": "Not Found", "message": f"404 page not found: {parts.path}"}
        found = rs.match(method, split[1])
        if not found:
            return 404, {}, {"code": "Not Found", "message": f"no such path {parts.path}"}
        template, op_def, _ = found
        if op_def is None or (method.lower(), template) not in self._routes:
            allow = ", ".join(m for m in rs.allowed_methods(template) if (m.lower(), template) in self._routes)
            return 405, {"Allow": allow}, {"code": "Method Not Allowed", "message": f"{method} not allowed"}
        op = rs.operation(method, parts.path)
        assert op is not None
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"code": "Unauthorized", "message": "missing or invalid bearer token"}
        try:
            errors = rs.param_errors(op, query)
            if errors:
                raise ApiError(400, "; ".join(dict.fromkeys(errors)))
            parsed = None
            schema = op.body_schema()
            if schema is not None:
                try:
                    parsed = json.loads(body or b"null")
                except ValueError:
                    raise ApiError(400, "request body is not valid JSON") from None
                if not isinstance(parsed, dict):
                    raise ApiError(400, "request body must be a JSON object")
                errors = rs.body_errors(schema, parsed)
                if errors:
                    raise ApiError(422 if op.documents(422) else 400, "; ".join(dict.fromkeys(errors)))
            params = {"id": next(iter(op.path_params.values()))} if op.path_params else {}
            with self.registry.s.lock:
                status, obj = self._routes[(op.method, op.template)](params, query, parsed)
            return status, {}, obj
        except ApiError as exc:
            status = exc.status
            # statuses the spec omits but the real server sends (400 for a malformed list parameter, 404 for an
            # unknown parent on POST /model_versions) are kept: see test_schemathesis_bounded_run
            return status, {}, {"code": HTTPStatus(status).phrase, "message": str(exc)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, extra, obj = server.handle(self.command, self.path, headers, body)
                except Exception as exc:  # a bug in the fake: still answer like the real server would
                    status, extra, obj = 500, {}, {"code": "Internal Server Error", "message": repr(exc)}
                data = json.dumps(obj).encode()
                server.exchanges.append(Exchange(self.command, urlsplit(self.path).path,
                                                 parse_qs(urlsplit(self.path).query, keep_blank_values=True),
                                                 headers, body, status, data))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:  # every method (QUERY, TRACE, ...): 405 unless in the spec
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        return Handler
