"""Objects checked as the Kubernetes API server checks them: against the full CRD, as written.

The API server validates a custom resource against its CRD's structural ``openAPIV3Schema`` *before*
Argo substitutes any ``{{…}}``: a quantity field holding ``{{workflow.parameters.gpu}}`` is refused on
``kubectl apply``. This module turns a vendored CRD (``schemas/crds/``) into a JSON Schema that refuses
what the server refuses:

- ``x-kubernetes-int-or-string`` fields take an integer or a string (and a string keeps its ``pattern``:
  that is how quantities are checked);
- objects with ``properties`` refuse unknown fields (``kubectl`` validates with ``--validate=strict`` by
  default), unless ``x-kubernetes-preserve-unknown-fields``;
- ``nullable`` admits null;
- ``x-kubernetes-validations`` (CEL) rules are evaluated with ``cel-python`` where it is installed
  (the v4 CRDs carry them: one template type per template, no deadline on a DAG, ...).
"""

import copy
import functools
import gzip
import json
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parent / "schemas" / "crds"
ARGO_VERSIONS = ("v3.7.18", "v4.0.10")
TRAINER_VERSION = "v2.3.0"
_ARGO_FILES = {"WorkflowTemplate": "workflowtemplates", "CronWorkflow": "cronworkflows"}
QUANTITY_HINT = ("a Kubernetes quantity (e.g. 1, 500m, 50Gi); a {{…}} tag is not allowed in a quantity field: "
                 "the API server checks the object before Argo substitutes it (set it through podSpecPatch, or "
                 "a resource template's manifest string)")


@functools.cache
def load_crd(name: str) -> dict[str, Any]:
    """A vendored CRD by file stem (``argo-v4.0.10-workflowtemplates``, ``trainer-v2.3.0-trainjobs``)."""
    with gzip.open(CRD_DIR / f"{name}.yaml.gz", "rt", encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 6x faster


def crd_name(kind: str, version: str) -> str:
    """The vendored file stem holding ``kind`` at Argo ``version`` (or the Trainer's TrainJob)."""
    if kind == "TrainJob":
        return f"trainer-{version}-trainjobs"
    if kind not in _ARGO_FILES:
        raise KeyError(f"no vendored CRD for kind {kind!r}")
    return f"argo-{version}-{_ARGO_FILES[kind]}"


def served_schema(crd: dict[str, Any], api_version: str | None = None) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served storage version (or of ``api_version``'s version)."""
    versions = crd["spec"]["versions"]
    wanted = api_version.rpartition("/")[2] if api_version else None
    for v in versions:
        if (wanted and v["name"] == wanted) or (not wanted and v.get("served") and v.get("storage")):
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"CRD {crd['metadata']['name']} serves no version {wanted!r}")


def structural(schema: Any) -> Any:
    """A JSON-Schema copy of a CRD schema that is as strict as the API server (see module doc)."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _validator(name: str, api_version: str | None) -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(structural(copy.deepcopy(served_schema(load_crd(name), api_version))))


def _path(parts: list[Any], doc: Any) -> str:
    """``spec.templates[3](train).script.resources`` from a jsonschema path (list items named when they have one)."""
    out = ""
    node = doc
    for p in parts:
        if isinstance(p, int):
            name = node[p].get("name") if isinstance(node, list) and isinstance(node[p], dict) else None
            out += f"[{p}]" + (f"({name})" if isinstance(name, str) else "")
        else:
            out += ("." if out else "") + str(p)
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            node = None
    return out or "<root>"


def _message(err: Any) -> str:
    if err.validator == "pattern" and "[KMGTPE]i" in str(err.validator_value):
        return f"{err.instance!r} is not {QUANTITY_HINT}"
    if err.validator == "additionalProperties" and err.validator_value is False:
        return err.message + " (unknown field)"
    return err.message


def schema_errors(doc: dict[str, Any], name: str) -> list[str]:
    """``path: message`` for every way ``doc`` breaks the CRD ``name``'s schema (structural + CEL)."""
    validator = _validator(name, doc.get("apiVersion"))
    errs = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    out = [f"{_path(list(e.absolute_path), doc)}: {_message(e)}" for e in errs]
    return out + cel_errors(doc, name)


# ---------------------------------------------------------------------------------------------- CEL rules


@functools.cache
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_available() -> bool:
    """Whether ``cel-python`` is installed (the CEL rules are skipped, and said so, without it)."""
    try:
        import celpy  # noqa: F401
    except ImportError:
        return False
    return True


def _walk_cel(schema: Any, inst: Any, path: list[Any], doc: Any, out: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        import celpy

        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: evaluated on updates only, never on create
        try:
            ok = _cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(json.loads(json.dumps(inst)))})
        except Exception as exc:  # a rule cel-python cannot evaluate is reported, never passed silently
            out.append(f"{_path(path, doc)}: CEL rule {rule['rule']!r} could not be evaluated "
                       f"({type(exc).__name__}: {str(exc)[:120]})")
            continue
        if not bool(ok):
            out.append(f"{_path(path, doc)}: {rule.get('message') or 'failed rule ' + repr(rule['rule'])}")
    if isinstance(inst, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in inst.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            _walk_cel(sub, v, path + [k], doc, out)
    elif isinstance(inst, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(inst):
            _walk_cel(schema["items"], v, path + [i], doc, out)


def cel_errors(doc: dict[str, Any], name: str) -> list[str]:
    """Failed ``x-kubernetes-validations`` rules (empty when cel-python is missing; see :func:`cel_available`)."""
    if not cel_available():
        return []
    out: list[str] = []
    _walk_cel(served_schema(load_crd(name), doc.get("apiVersion")), doc, [], doc, out)
    return out


def argo_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Errors of an Argo object (WorkflowTemplate, CronWorkflow) against the full CRD of Argo ``version``."""
    kind = doc.get("kind", "")
    if kind not in _ARGO_FILES:
        return [f"kind {kind!r} has no vendored Argo CRD"]
    return schema_errors(doc, crd_name(kind, version))


def trainjob_errors(doc: dict[str, Any], version: str = TRAINER_VERSION) -> list[str]:
    """Errors of a TrainJob against the vendored Kubeflow Trainer CRD."""
    return schema_errors(doc, crd_name("TrainJob", version))
