"""The WorkflowTemplate document: loading, workflow arguments, their validators and which ones are secret."""

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from steps.common.errors import StepError
from workflows.argo import goyaml
from workflows.argo.expr import render

Validator = Callable[[dict[str, str]], dict[str, str]]


class RunError(StepError):
    """The local run could not start, or a task failed."""



def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a compiled WorkflowTemplate (or Workflow) YAML file."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"template {p} not found: run `make compile` (or pass --template PATH)")
    try:  # read as the Kubernetes API server reads YAML (an unquoted 5e-06 is a float there)
        docs = [d for d in goyaml.load_all(p.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as exc:
        raise RunError(f"template {p} is not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in ("WorkflowTemplate", "Workflow", "ClusterWorkflowTemplate"):
            return doc
    raise RunError(f"{p} holds no WorkflowTemplate or Workflow document")


def template_arguments(doc: Mapping[str, Any]) -> dict[str, str | None]:
    """The workflow arguments and their values (None: no value in the template)."""
    out: dict[str, str | None] = {}
    for p in doc.get("spec", {}).get("arguments", {}).get("parameters", []) or []:
        value = p.get("value", p.get("default"))
        out[p["name"]] = None if value is None else render(value)
    return out


def generic_validator(doc: Mapping[str, Any]) -> Validator:
    """Overrides must name declared arguments; every argument needs a value; enums are honoured."""
    declared = {p["name"]: p for p in doc.get("spec", {}).get("arguments", {}).get("parameters", []) or []}

    def check(values: dict[str, str]) -> dict[str, str]:
        for name, value in values.items():
            if name not in declared:
                close = difflib.get_close_matches(name, declared, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise RunError(f"unknown parameter {name!r}{hint}: the template declares {', '.join(declared)}")
            enum = declared[name].get("enum")
            if enum and value not in [render(e) for e in enum]:
                raise RunError(f"{name}={value!r}: must be one of {', '.join(render(e) for e in enum)}")
        return values

    return check


def pipeline_validator(values: dict[str, str], template: str = "osft-minimal-pipeline") -> dict[str, str]:
    """Check with the pipeline's own parameter rules (workflows/params.py) for ``template``; values pass on
    unchanged, as Argo's."""
    from workflows import params

    params.validate(values, template)
    return values


def default_validator(doc: Mapping[str, Any]) -> Validator:
    """The pipeline's rules when every argument is one of a pipeline template's parameters (that template: the
    one the document is named after, else the first whose parameters hold them all), else the generic check."""
    from workflows import params

    generic = generic_validator(doc)
    names = set(template_arguments(doc))
    named = (doc.get("metadata") or {}).get("name")
    order = [named] if named in params.TEMPLATES else list(params.TEMPLATES)
    template = next((t for t in order if names <= params.names_for(t)), None)
    if names and template is not None:
        return lambda values: pipeline_validator(generic(values), template)
    return generic


def secret_param_names(doc: Mapping[str, Any]) -> set[str]:
    """Workflow arguments whose values must be masked (params' ``secret`` flag, or a secret-looking name)."""
    from workflows import params

    out = {p.name for p in params.PARAMS if p.secret}
    for name in template_arguments(doc):
        # whole name parts only: `hf_token` is a secret, `train_tokens` (a count) is not
        if re.search(r"(^|_)(token|secret|password|credentials?|api_?key)($|_)", name, re.I):
            out.add(name)
    return out
