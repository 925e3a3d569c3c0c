"""The Model Registry OpenAPI spec, as used by the fake server and by the tests that check it.

The spec (vendored as ``tests/data/model-registry/model-registry.yaml``, ``info.version: v1alpha3``; source in
``tests/data/SOURCE.txt``) describes
``/api/model_registry/v1alpha3/``. The pinned client (model-registry 0.3.18) calls ``/api/model_registry/v1/``,
whose only differences are the prefix, snake_case path-parameter *names* and dropped experiment endpoints
(kubeflow/hub #2992); no v1 spec file exists. So a ``/v1/`` path is checked against the same operation of the
v1alpha3 spec: path templates match by position, so the parameter names do not matter.
"""

import copy
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

SPEC_PATH = Path(os.environ.get("MODEL_REGISTRY_SPEC",
                                str(Path(__file__).parent / "data" / "model-registry" / "model-registry.yaml")))
SPEC_PREFIX = "/api/model_registry/v1alpha3"
PREFIXES = ("/api/model_registry/v1", "/api/model_registry/v1alpha3")
METHODS = ("get", "post", "patch", "put", "delete", "head", "options", "trace")


@dataclass(frozen=True)
class Operation:
    """One spec operation matched for an actual request."""

    template: str  # spec path without the prefix, e.g. /model_versions/{modelversionId}/artifacts
    method: str
    op: dict[str, Any]
    path_params: dict[str, str]
    params: tuple[dict[str, Any], ...]  # path-level + operation-level, $refs resolved

    def documents(self, status: int) -> bool:
        return str(status) in self.op.get("responses", {})

    def body_schema(self) -> dict[str, Any] | None:
        rb = resolve(self.op.get("requestBody", {}))
        return rb.get("content", {}).get("application/json", {}).get("schema")

    def response_schema(self, status: int) -> dict[str, Any] | None:
        resp = resolve(self.op.get("responses", {}).get(str(status), {}))
        return resp.get("content", {}).get("application/json", {}).get("schema")


@functools.cache
def spec() -> dict[str, Any]:
    """The parsed spec document."""
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (responses, parameters, request bodies) to the node they name."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@functools.cache
def _routes() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for full in spec()["paths"]:
        template = full.removeprefix(SPEC_PREFIX)
        regex = re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template))
        out.append((re.compile(f"^{regex}$"), template))
    return out


def split_prefix(path: str) -> tuple[str, str] | None:
    """(prefix, rest) for a path under one of the served API prefixes."""
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if path.startswith(prefix + "/"):
            return prefix, path[len(prefix):]
    return None


def match(method: str, rest: str) -> tuple[str, dict[str, Any] | None, dict[str, str]] | None:
    """(template, operation or None when the method is not allowed, path params) for a prefix-less path."""
    for regex, template in _routes():
        m = regex.match(rest)
        if m:
            item = spec()["paths"][SPEC_PREFIX + template]
            names = re.findall(r"\{([^/]+?)\}", template)
            return template, item.get(method.lower()), dict(zip(names, m.groups(), strict=True))
    return None


def allowed_methods(template: str) -> list[str]:
    item = spec()["paths"][SPEC_PREFIX + template]
    return [m.upper() for m in METHODS if m in item]


def operation(method: str, path: str) -> Operation | None:
    """The spec operation an actual ``/api/model_registry/{v1,v1alpha3}/...`` request maps to."""
    split = split_prefix(path)
    if not split:
        return None
    found = match(method, split[1])
    if not found or found[1] is None:
        return None
    template, op, path_params = found
    item = spec()["paths"][SPEC_PREFIX + template]
    params = tuple(resolve(p) for p in [*item.get("parameters", []), *op.get("parameters", [])])
    return Operation(template, method.lower(), op, path_params, params)


def _with_components(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "components": spec()["components"]}


@functools.cache
def _formats(cls: type) -> FormatChecker:
    """The validator's format checker plus ``uri`` (its check needs rfc3987, which is not installed)."""
    checker = copy.deepcopy(cls.FORMAT_CHECKER)

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and (parts.netloc or parts.path)) and not any(c.isspace() for c in value)

    return checker


@functools.cache
def _validator(response: bool, schema_json: str) -> Any:
    cls = OAS30ReadValidator if response else OAS30WriteValidator
    return cls(_with_components(json.loads(schema_json)), format_checker=_formats(cls))


def body_errors(schema: dict[str, Any], body: Any, *, response: bool = False) -> list[str]:
    """Schema errors of a request (write) or response (read) body."""
    validator = _validator(response, json.dumps(schema, sort_keys=True))
    try:
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in validator.iter_errors(body)]
    except TypeError as exc:  # a non-string discriminator value (e.g. a list) trips the validator itself
        return [f"<body>: invalid discriminator value ({exc})"]


def param_errors(op: Operation, query: dict[str, list[str]]) -> list[str]:
    """Errors of the query and path parameters (all are strings in this spec, or enums of strings)."""
    errors = []
    for p in op.params:
        where, name = p.get("in"), p.get("name")
        if where == "query":
            values = query.get(name, [])
        elif where == "path":
            values = [op.path_params[name]] if name in op.path_params else []
        else:
            continue
        if not values:
            if p.get("required"):
                errors.append(f"missing required {where} parameter {name}")
            continue
        for v in values:
            errors += [f"{where} parameter {name}: {e}" for e in body_errors(p.get("schema", {}), v)]
    return errors
