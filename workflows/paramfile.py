"""Parameter files, as ``argo submit --parameter-file`` reads them: a YAML (or JSON) map of name -> value.

Argo (``workflow/util.ReadParametersFile``) reads the file with ``sigs.k8s.io/yaml`` (YAML to JSON) and passes
each value on as text: a string as is, anything else as its JSON (``false``, ``0.0001``, ``["arc_easy"]``).
This module does the same, with Go's scalar rules (``workflows.argo.goyaml``), so the same file gives the same
run through ``argo submit -f``, ``osft-pipeline submit -f`` and ``osft-pipeline run -f``.
"""

import json
import math
from pathlib import Path
from typing import Any

import yaml

from steps.common.errors import StepError
from workflows.argo import goyaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
LAPTOP = EXAMPLES_DIR / "laptop-params.yaml"  # a CPU-only kind/k3d/minikube cluster: docs/parameters.md


class ParameterFileError(StepError):
    """A parameter file that cannot be read as a map of names to values."""


def _text(value: Any) -> str:
    """A YAML value as the text Argo passes on (Go's JSON: compact, integral floats without a fraction)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not (math.isinf(value) or math.isnan(value)):
        return str(int(value)) if value.is_integer() else repr(value)
    return json.dumps(value, separators=(",", ":"))


def load_parameter_file(path: str | Path) -> dict[str, str]:
    """name -> value text of a parameter file, in file order; a clear error when it is not a flat map."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterFileError(f"parameter file {path}: {exc.strerror or exc}") from None
    try:
        doc = goyaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ParameterFileError(f"parameter file {path}: not YAML or JSON{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParameterFileError(f"parameter file {path}: must be a map of parameter names to values "
                                 f"(name: value per line), not a {type(doc).__name__}")
    out: dict[str, str] = {}
    for name, value in doc.items():
        if value is None:
            raise ParameterFileError(f"parameter file {path}: {name} has no value (write {name}: \"\" for empty)")
        out[str(name)] = _text(value)
    return out
