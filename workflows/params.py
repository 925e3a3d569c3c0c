"""The pipeline's parameters, defined once.

Every binding reads this list: the Hera WorkflowTemplate arguments, the KFP pipeline inputs, the
CLI's ``-p name=value`` overrides, the preflight check and the README table. Names, types and
defaults of the original ``osft_minimal_pipeline`` are kept exactly (``original=True``); the
parameters this port adds come after them.
"""

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steps.common.errors import StepError


class ParamError(StepError):
    """A parameter value is missing, unknown or out of range."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
Rule = Callable[[Any], str | None]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_TASK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST = re.compile(r"^(https?://)?[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?(:\d{1,5})?(/[^\s]*)?$")


def _range(lo: float, hi: float, lo_open: bool = False, hint: str = "") -> Rule:
    def check(v: float) -> str | None:
        ok = (v > lo if lo_open else v >= lo) and v <= hi
        if ok:
            return None
        bracket = "(" if lo_open else "["
        return f"must be in {bracket}{lo:g}, {hi:g}]{hint}"

    return check


def _at_least(lo: int, hint: str = "") -> Rule:
    return lambda v: None if v >= lo else f"must be >= {lo}{hint}"


def _unfreeze(v: float) -> str | None:
    if 0.0 < v < 1.0:
        return None
    if v == 1.0:
        return "must be below 1.0 (training-hub 0.11.2 silently turns 1.0 into 0.5); use e.g. 0.99"
    return "must be in (0, 1)"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _data_uri(v: str) -> str | None:
    from steps.dataset.sources import parse_source  # steps never import workflows; the reverse is fine

    try:
        parse_source(v)
    except StepError as exc:
        return str(exc)
    return None


def _model(v: str) -> str | None:
    v = v.strip()
    if not v:
        return "must not be empty (a Hugging Face id, a local path, hf://org/name or oci://registry/repo:tag)"
    if v.startswith("oci://") and not re.match(r"^oci://[^/\s]+/[^\s]+$", v):
        return "an oci:// model must look like oci://registry/repository[:tag|@digest]"
    return None


def _tasks(v: list[str]) -> str | None:
    bad = [t for t in v if not _TASK.match(t)]
    if bad:
        return f"invalid task name(s) {bad}: use lm-eval task names such as arc_easy, mmlu, gsm8k"
    return None


def _address(v: str) -> str | None:
    v = v.strip()
    if not v or _HOST.match(v):
        return None
    return "must be empty (skip registration) or a host such as model-registry.ns.svc or https://host"


def _version(v: str) -> str | None:
    if v == "auto" or _SEMVER.match(v):
        return None
    return "must be a semantic version major.minor.patch (e.g. 1.0.0) or 'auto'"


def _batch_size(v: str) -> str | None:
    if v == "auto" or (v.isdigit() and int(v) > 0):
        return None
    return "must be 'auto' or a positive integer"


def _quantity(v: str) -> str | None:
    return None if _QUANTITY.match(v) else "must be a Kubernetes quantity such as 50Gi"


def _storage_class(v: str) -> str | None:
    return None if v == "" or _DNS_NAME.match(v) else "must be a storage class name (or empty for the default)"


@dataclass(frozen=True)
class Param:
    """One pipeline parameter: name, type, default, description, and its validation rule."""

    name: str
    type: type
    default: Any
    description: str
    rule: Rule | None = None
    enum: tuple[str, ...] | None = None
    secret: bool = False
    original: bool = True

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, raw: Any) -> Any:
        """Turn a CLI/Argo string (or a Python value) into this parameter's type, or raise ParamError."""
        try:
            value = _coerce(self.type, raw)
        except (TypeError, ValueError) as exc:
            raise ParamError(f"{self.name}={_show(self, raw)}: {exc}") from None
        if self.enum is not None and value not in self.enum:
            raise ParamError(f"{self.name}={_show(self, raw)}: must be one of {', '.join(self.enum)}")
        if self.rule is not None and (problem := self.rule(value)):
            raise ParamError(f"{self.name}={_show(self, raw)}: {problem}")
        return value


def _show(p: Param, raw: Any) -> str:
    return "***" if p.secret and raw else repr(raw)


def _coerce(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("must be an integer")
        try:
            return int(str(raw).strip()) if not isinstance(raw, int | float) else int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        try:
            return float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind is list:
        if isinstance(raw, list | tuple):
            items = list(raw)
        else:
            text = str(raw).strip()
            if text.startswith("["):
                try:
                    items = json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError('must be a JSON list such as ["arc_easy"] or a comma-separated list') from None
                if not isinstance(items, list):
                    raise ValueError("must be a list")
            else:
                items = [t for t in text.split(",")]
        return [str(i).strip() for i in items if str(i).strip()]
    return "" if raw is None else str(raw).strip()


def to_text(value: Any) -> str:
    """Render a value the way Argo parameters carry it (lists as JSON, bools lowercase)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


PARAMS: tuple[Param, ...] = (
    # --- the original pipeline's 19 inputs, in its README order -------------------------------------------
    Param("phase_01_dataset_man_data_uri", str, REQUIRED,
          "[REQUIRED] Dataset location (hf://dataset, s3://bucket/path, https://url, pvc://path)", _data_uri),
    Param("phase_01_dataset_man_data_split", float, 0.9,
          "Train/eval split ratio (0.9 = 90% train, 10% eval; 1.0 = no eval split)",
          _range(0.0, 1.0, lo_open=True)),
    Param("phase_02_train_man_train_batch", int, 128, "Effective batch size (samples per optimizer step)",
          _at_least(1)),
    Param("phase_02_train_man_train_epochs", int, 1, "Number of training epochs. OSFT typically needs 1-2",
          _at_least(1)),
    Param("phase_02_train_man_train_gpu", int, 1, "GPUs per worker. OSFT handles multi-GPU well (0 = CPU)",
          _at_least(0)),
    Param("phase_02_train_man_train_model", str, "Qwen/Qwen2.5-1.5B-Instruct",
          "Base model (HuggingFace ID, hf://, oci:// or path)", _model),
    Param("phase_02_train_man_train_tokens", int, 64000, "Max tokens per GPU (memory cap). 64000 for OSFT",
          _at_least(1)),
    Param("phase_02_train_man_train_unfreeze", float, 0.25,
          "[OSFT] Fraction to unfreeze (0.1=minimal, 0.25=balanced, 0.5=strong)", _unfreeze),
    Param("phase_02_train_man_train_workers", int, 1,
          "Number of training pods. OSFT efficient single-node (1); > 1 runs a Kubeflow Trainer TrainJob",
          _at_least(1)),
    Param("phase_03_eval_man_eval_tasks", list, ["arc_easy"],
          "lm-eval tasks (arc_easy, mmlu, gsm8k, hellaswag, etc.)", _tasks),
    Param("phase_04_registry_man_address", str, "", "Model Registry address (empty = skip registration)",
          _address),
    Param("phase_04_registry_man_reg_name", str, "osft-model", "Model name in registry", _non_empty),
    Param("phase_04_registry_man_reg_version", str, "1.0.0",
          "Semantic version (major.minor.patch); 'auto' bumps past the latest registered", _version),
    Param("phase_01_dataset_opt_hf_token", str, "",
          "HuggingFace token for gated/private datasets (prefer the hf-token secret; masked everywhere)",
          secret=True),
    Param("phase_01_dataset_opt_subset", int, 0, "Limit to first N examples (0 = all)", _at_least(0)),
    Param("phase_02_train_opt_learning_rate", float, 5e-06,
          "Learning rate (1e-6 to 1e-4). 5e-6 recommended", _range(1e-7, 1e-2)),
    Param("phase_02_train_opt_max_seq_len", int, 8192, "Max sequence length in tokens", _at_least(16)),
    Param("phase_02_train_opt_use_liger", bool, True,
          "[OSFT] Enable Liger kernel optimizations (GPU only; ignored on CPU). Recommended"),
    Param("phase_04_registry_opt_port", int, 8080, "Model registry server port", _range(1, 65535)),
    # --- added by this port ------------------------------------------------------------------------------
    Param("phase_00_workspace_opt_size", str, "50Gi", "Size of the per-run workspace volume (RWX)", _quantity,
          original=False),
    Param("phase_00_workspace_opt_storage_class", str, "nfs-csi",
          "Storage class of the workspace volume; must support ReadWriteMany (empty = pre-provisioned PVs only)",
          _storage_class, original=False),
    Param("phase_01_dataset_opt_seed", int, 42, "Seed of the train/eval split", _at_least(0), original=False),
    Param("phase_02_train_opt_runtime", str, "training-hub",
          "ClusterTrainingRuntime used when workers > 1", _non_empty, original=False),
    Param("phase_03_eval_opt_limit", int, 0, "Max documents per eval task (0 = all)", _at_least(0),
          original=False),
    Param("phase_03_eval_opt_batch_size", str, "auto",
          "Eval batch size ('auto' on GPU; CPU uses a fixed size)", _batch_size, original=False),
    Param("phase_03_eval_opt_gpu", int, 1,
          "GPUs for the evaluate pod (0 = CPU, e.g. a kind/k3d cluster; then no GPU node selector)", _at_least(0),
          original=False),
    Param("phase_03_eval_opt_compare_base", bool, True,
          "Also score the base model and report gains and forgetting", original=False),
    Param("phase_03_eval_opt_max_regression", float, 0.02,
          "Largest allowed drop on a benchmark metric before the eval gate fails", _range(0.0, 1.0),
          original=False),
    Param("phase_04_registry_opt_force", bool, False, "Register even when the eval gate failed",
          original=False),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
ORIGINAL: tuple[Param, ...] = tuple(p for p in PARAMS if p.original)


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``values``, every one coerced and checked; raises ParamError on the first problem."""
    for name in values:
        if name not in BY_NAME:
            close = difflib.get_close_matches(name, BY_NAME, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ParamError(f"unknown parameter {name!r}{hint}: see the parameter table in README.md")
    out: dict[str, Any] = {}
    for p in PARAMS:
        if p.name in values:
            out[p.name] = p.coerce(values[p.name])
        elif p.required:
            raise ParamError(f"{p.name} is required: pass -p {p.name}=<value> ({p.description})")
        else:
            out[p.name] = p.default
    return out


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse ``name=value`` strings (the ``-p`` flags of the CLI and of ``argo submit``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"bad parameter {pair!r}: write it as name=value")
        out[name.strip()] = value
    return out


def _default_cell(p: Param) -> str:
    if p.required:
        return "required"
    return f"`{to_text(p.default)}`" if to_text(p.default) else '`""`'


def readme_table() -> str:
    """The README's parameter table, rendered from PARAMS."""
    rows = ["| Parameter | Type | Default | Description |", "|-----------|------|---------|-------------|"]
    for p in PARAMS:
        mark = "" if p.original else " *(added)*"
        rows.append(f"| `{p.name}` | `{p.type.__name__}` | {_default_cell(p)} | {p.description}{mark} |")
    return "\n".join(rows) + "\n"
