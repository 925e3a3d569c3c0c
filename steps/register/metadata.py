"""What the register step records about a run: custom properties read from the workspace.

Inputs (all optional; missing files just mean fewer properties):
    train/metrics.json     {"final_loss", "min_loss", "steps", ..., "hyper_parameters": {...}}
    eval/metrics.json      flat rows [{"task", "metric", "filter", "value", "stderr", "n", "role": tuned|base}]
                           (a list, or {"rows"|"metrics": [...]})
    eval/comparison.json   {"gate": "pass"|"fail"|"n/a" (or {"status"|"verdict"|"passed": ...}),
                            "rows"|"comparison"|"metrics": [{"task", "metric", "base", "tuned", "delta", ...}]}
    dataset/summary.json   {"source": <redacted data URI>, ...}

Property keys are namespaced once (``train.``, ``eval.``, ``dataset.``, ``workflow.``); a source key that
already starts with the namespace (``training_final_loss``) is not prefixed twice. Values are scalars only
(str/int/bool/finite float); keys that name secrets are dropped and every string is scrubbed.
"""

import json
import math
import re
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import redact_uri, scrub
from steps.common.workspace import Workspace

Scalar = str | int | float | bool
_SECRET_KEY = re.compile(r"(secret|password|passwd|credential|api_?key|access_?key|auth|(^|[._-])token$)", re.I)
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_TRAIN_SCALARS = ("final_loss", "min_loss", "first_loss", "steps", "epochs_seen", "samples", "loss_tokens",
                  "samples_per_second", "wall_time_s")
MAX_STRING = 1000


def read_json(path: Path) -> Any:
    """Parsed JSON, ``None`` when the file is absent; a StepError naming the file when it is corrupt."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StepError(f"{path} is not valid JSON ({exc}); re-run the step that writes it") from None


def _key(*parts: str) -> str:
    """Join key parts with dots, each part cleaned of odd characters and of a repeated namespace."""
    out: list[str] = []
    for part in parts:
        clean = _KEY_CHARS.sub("_", str(part)).strip("._")
        if out and clean:
            for prefix in (out[0] + "_", out[0] + ".", "training_", "train_", "eval_"):
                if clean.lower().startswith(prefix):
                    clean = clean[len(prefix):]
                    break
        if clean:
            out.append(clean)
    return ".".join(out)


def _scalar(value: Any) -> Scalar | None:
    if isinstance(value, bool | int | str):
        return value if not isinstance(value, str) else scrub(redact_uri(value))[:MAX_STRING]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _put(props: dict[str, Scalar], key: str, value: Any) -> None:
    if not key or _SECRET_KEY.search(key):
        return
    v = _scalar(value)
    if v is not None and v != "":
        props[key] = v


def train_properties(ws: Workspace) -> dict[str, Scalar]:
    """Final/min loss, steps, throughput and every scalar hyper-parameter from ``train/metrics.json``."""
    data = read_json(ws.train_dir / "metrics.json")
    props: dict[str, Scalar] = {}
    if not isinstance(data, dict):
        return props
    for name in _TRAIN_SCALARS:
        _put(props, _key("train", name), data.get(name))
    hp = data.get("hyper_parameters") or data.get("hyperparameters") or {}
    if isinstance(hp, dict):
        for name, value in hp.items():
            _put(props, _key("train", name), value)
    return props


def _rows(data: Any, *keys: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for k in keys:
            if isinstance(data.get(k), list):
                data = data[k]
                break
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def _metric_key(row: dict[str, Any]) -> str | None:
    task, metric = row.get("task"), row.get("metric")
    if not task or not metric:
        return None
    metric, _, flt = str(metric).partition(",")
    flt = str(row.get("filter") or flt or "none")
    return _key("eval", str(task), metric, *([] if flt == "none" else [flt]))


def gate_of(data: Any) -> str:
    """``pass``/``fail``/``n/a`` from comparison.json's gate (a string or a small dict)."""
    gate = data.get("gate") if isinstance(data, dict) else None
    if isinstance(gate, dict):
        gate = gate.get("status", gate.get("verdict", gate.get("result", gate.get("passed"))))
    if gate is True:
        return "pass"
    if gate is False:
        return "fail"
    text = str(gate or "n/a").strip().lower()
    return {"passed": "pass", "failed": "fail", "none": "n/a", "": "n/a"}.get(text, text)


def eval_properties(ws: Workspace) -> tuple[dict[str, Scalar], str]:
    """Every eval metric (tuned, base, delta) and the gate, from eval/metrics.json and eval/comparison.json."""
    props: dict[str, Scalar] = {}
    for row in _rows(read_json(ws.eval_dir / "metrics.json"), "rows", "metrics"):
        key = _metric_key(row)
        role = str(row.get("role") or row.get("model") or "tuned").lower()
        if key and role in ("tuned", "base") and not str(row.get("metric", "")).endswith("_stderr"):
            _put(props, f"{key}.{role}", row.get("value"))
    comparison = read_json(ws.eval_dir / "comparison.json")
    for row in _rows(comparison, "rows", "comparison", "metrics"):
        key = _metric_key(row)
        if key:
            for role in ("tuned", "base", "delta"):
                _put(props, f"{key}.{role}", row.get(role, row.get(f"{role}_value")))
    gate = gate_of(comparison)
    _put(props, "eval.gate", gate)
    return props, gate


def summary_dataset_uri(ws: Workspace) -> str:
    """The dataset source recorded by the dataset step (already redacted there; redacted again here)."""
    data = read_json(ws.dataset_summary)
    src = data.get("source", "") if isinstance(data, dict) else ""
    return redact_uri(str(src)) if src else ""


def base_model_of(ws: Workspace) -> str:
    """The base model the train step started from, when train/metrics.json records it."""
    data = read_json(ws.train_dir / "metrics.json")
    if not isinstance(data, dict):
        return ""
    hp = data.get("hyper_parameters") or {}
    for source in (data, hp if isinstance(hp, dict) else {}):
        for k in ("base_model", "model", "model_path"):
            if isinstance(source.get(k), str) and source[k].strip():
                return redact_uri(source[k].strip())
    return ""


def build_properties(ws: Workspace, provenance: dict[str, str]) -> tuple[dict[str, Scalar], str]:
    """All custom properties for the model version, and the eval gate."""
    props = train_properties(ws)
    eval_props, gate = eval_properties(ws)
    props.update(eval_props)
    for key, value in provenance.items():
        _put(props, key, value)
    return dict(sorted(props.items())), gate
