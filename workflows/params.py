"""The pipeline's parameters, defined once, and every rule they must satisfy.

Two WorkflowTemplates are built from this one list: ``osft-minimal-pipeline`` (the contract of the original
``osft_minimal_pipeline``) and ``osft-pipeline`` (every input of upstream's full ``osft`` pipeline). Each
parameter says which template(s) it belongs to (``templates``) and may carry a default per template where
upstream's full pipeline differs from ours (``defaults``). Every binding reads this list: the Hera
WorkflowTemplates and CronWorkflows, the KFP pipelines, the CLI's ``-p name=value`` overrides, the preflight
check and the tables in docs/parameters.md.

Order and names: the minimal template takes upstream osft_minimal's current 20 inputs in its order, plus the
seed's ``phase_01_dataset_opt_hf_token`` (``upstream=False``, dropped upstream), then this port's additions;
the full template takes upstream osft's 44 inputs in its order (:data:`FULL_UPSTREAM_ORDER`), then the additions
both templates share.

Rules live in one place each. A parameter that a step consumes is checked by *that step's own*
validation function (:func:`step_rules`), called with the values the step will get, so a value the step
would refuse after training is refused here first, with the step's own message. Rules only the
pipeline has (a port range, a Kubernetes quantity) are the ``rule`` of the parameter. Checks that need
the run's environment (a local model folder, the eval task registry, benchmark data) run in the preflight
task (``workflows/argo/preflight.py``), not on the machine that submits.
"""

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
# Kubernetes' resource.Quantity (the pattern of every quantity field in the API's and Argo's CRDs)
_K8S_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                           r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


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


def _version(v: str) -> str | None:
    if v == "auto" or _SEMVER.match(v):
        return None
    return "must be a semantic version major.minor.patch (e.g. 1.0.0) or 'auto'"


def quantity_value(text: str) -> float | None:
    """The number a Kubernetes quantity stands for (``"32Gi"`` -> 34359738368.0, ``"500m"`` -> 0.5), or None when
    ``text`` is not a quantity the API server accepts."""
    text = text.strip()
    if not _K8S_QUANTITY.match(text):
        return None
    m = re.match(r"^([+-]?[0-9.]+)(.*)$", text)
    assert m is not None
    number, suffix = m.groups()
    if suffix in _BINARY:
        return float(number) * _BINARY[suffix]
    if suffix in _DECIMAL:
        return float(number) * _DECIMAL[suffix]
    return float(number + suffix)  # an exponent: 1e9, 5E-3


def _size_hint(v: str) -> str:
    """The unit a user most likely meant (``32GB`` -> ``32Gi``), as a suggestion."""
    m = re.match(r"^\s*([0-9.]+)\s*([KkMmGgTtPp])(i?[Bb]?|[Bb]ytes?)?\s*$", v)
    return f" (did you mean {m.group(1)}{m.group(2).upper()}i?)" if m else ""


def _bytes_quantity(v: str, least: float, what: str) -> str | None:
    value = quantity_value(v)
    if value is None:
        return (f"must be a Kubernetes quantity in bytes such as 32Gi (binary units Ki Mi Gi Ti, or decimal k M G T; "
                f"there is no 'GB'){_size_hint(v)}")
    if re.search(r"[0-9.]m$", v.strip()):
        return f"'m' means thousandths (millibytes); write Mi for mebibytes, e.g. {v.strip()[:-1]}Mi"
    if value < least:
        return f"is {value:g} bytes; {what} needs at least {least / 2 ** 20:g}Mi (write e.g. 32Gi)"
    return None


def _quantity(v: str) -> str | None:
    """A volume size (at least 1Mi)."""
    return _bytes_quantity(v, 2 ** 20, "a volume")


def _memory(v: str) -> str | None:
    """A pod's memory (at least 64Mi)."""
    return _bytes_quantity(v, 64 * 2 ** 20, "a step's pod")


def _cpu(v: str) -> str | None:
    value = quantity_value(v)
    m = re.match(r"^\s*([0-9.]+)", v)
    hint = f" (did you mean {m.group(1)}?)" if m and value is None else ""
    if value is None or re.search(r"[KMGTPE]i$|[kMGTPEnu]$", v.strip()):
        return f"must be a CPU quantity: cores (4, 0.5) or millicores (500m){hint}"
    if value < 0.01:
        return "must be at least 10m (0.01 cores)"
    return None


ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce")


def _storage_class(v: str) -> str | None:
    return None if v == "" or _DNS_NAME.match(v) else "must be a storage class name (or empty for the default)"


MINIMAL = "osft-minimal-pipeline"  # the original osft_minimal contract
FULL = "osft-pipeline"  # every input of upstream's full osft pipeline
TEMPLATES = (MINIMAL, FULL)


@dataclass(frozen=True, eq=False)
class Param:
    """One pipeline parameter: name, type, default, description, its validation rule, and its templates."""

    name: str
    type: type
    default: Any
    description: str
    rule: Rule | None = None
    enum: tuple[str, ...] | None = None
    secret: bool = False
    original: bool = True  # (minimal) an input of the original pipeline (upstream's 20 or the seed's list)
    upstream: bool = True  # (original only) among upstream osft_minimal's current 20 inputs
    templates: tuple[str, ...] = TEMPLATES  # the WorkflowTemplates (and KFP twins) that take it
    defaults: Mapping[str, Any] = field(default_factory=dict)  # template -> its default, where it differs

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_for(self, template: str) -> Any:
        """This parameter's default in ``template`` (upstream's full pipeline differs in a few)."""
        return self.defaults.get(template, self.default)

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
    if kind is dict:
        from steps.common.kv import parse_typed

        try:
            return parse_typed(raw, "value")
        except StepError as exc:
            raise ValueError(str(exc).removeprefix("value: ").removeprefix("value ")) from None
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
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


PARAMS: tuple[Param, ...] = (
    # --- the original pipeline's inputs: upstream osft_minimal's 20, in its order, plus the seed's hf_token -----
    Param("phase_01_dataset_man_data_uri", str, REQUIRED,
          "[REQUIRED] Dataset location (hf://dataset, s3://bucket/path, https://url, pvc://path)"),
    Param("phase_01_dataset_man_data_split", float, 0.9,
          "Train/eval split ratio (0.9 = 90% train, 10% eval; 1.0 = no eval split)"),
    Param("phase_02_train_man_train_batch", int, 128, "Effective batch size (samples per optimizer step)"),
    Param("phase_02_train_man_train_epochs", int, 1, "Number of training epochs. OSFT typically needs 1-2"),
    Param("phase_02_train_man_train_gpu", int, 1, "GPUs per worker. OSFT handles multi-GPU well (0 = CPU)",
          _at_least(0)),
    Param("phase_02_train_man_train_model", str, "Qwen/Qwen2.5-1.5B-Instruct",
          "Base model (HuggingFace ID, hf://, oci:// or path)"),
    Param("phase_02_train_man_train_tokens", int, 64000, "Max tokens per GPU (memory cap). 64000 for OSFT"),
    Param("phase_02_train_man_train_unfreeze", float, 0.25,
          "[OSFT] Fraction to unfreeze (0.1=minimal, 0.25=balanced, 0.5=strong)"),
    Param("phase_02_train_man_train_workers", int, 1,
          "Number of training pods. OSFT efficient single-node (1); > 1 runs a Kubeflow Trainer TrainJob",
          _at_least(1)),
    Param("phase_03_eval_man_eval_tasks", list, ["arc_easy"],
          "lm-eval tasks (arc_easy, mmlu, gsm8k, hellaswag, etc.)"),
    Param("phase_04_registry_man_address", str, "", "Model Registry address (empty = skip registration)"),
    Param("phase_04_registry_man_reg_name", str, "osft-model", "Model name in registry"),
    Param("phase_04_registry_man_reg_version", str, "1.0.0",
          "Semantic version (major.minor.patch); 'auto' bumps past the latest registered", _version),
    Param("phase_01_dataset_opt_hf_token", str, "",
          "HuggingFace token for gated/private datasets. Prefer the hf-token secret: a parameter's value is stored "
          "in clear in the Workflow object (kubectl/argo get shows it); only this project's logs and reports mask it",
          secret=True, upstream=False),
    Param("phase_01_dataset_opt_subset", int, 0, "Limit to first N examples (0 = all)"),
    Param("phase_02_train_opt_learning_rate", float, 5e-06, "Learning rate (1e-6 to 1e-4). 5e-6 recommended"),
    Param("phase_02_train_opt_max_seq_len", int, 8192, "Max sequence length in tokens"),
    Param("phase_02_train_opt_use_liger", bool, True,
          "[OSFT] Enable Liger kernel optimizations (GPU only; ignored on CPU). Recommended"),
    Param("phase_02_train_opt_runtime", str, "training-hub",
          "Name of the ClusterTrainingRuntime to use (when workers > 1)"),
    Param("phase_04_registry_opt_port", int, 8080, "Model registry server port", _range(1, 65535)),
    Param("phase_04_registry_opt_format_version", str, "2.9", "Model format version for registry",
          defaults={FULL: "1.0"}),
    # --- added by this port -----------------------------------------------------------------------------------
    Param("phase_00_workspace_opt_size", str, "50Gi", "Size of the per-run workspace volume (e.g. 50Gi)", _quantity,
          original=False),
    Param("phase_00_workspace_opt_storage_class", str, "nfs-csi",
          "Storage class of the workspace volume; must give the access mode below (empty = pre-provisioned PVs "
          "only)", _storage_class, original=False),
    Param("phase_00_workspace_opt_access_mode", str, "ReadWriteMany",
          "Access mode of the workspace volume: ReadWriteMany (pods may land on different nodes), or ReadWriteOnce "
          "on a single-node cluster whose storage class cannot share a volume (kind, k3d, minikube)",
          enum=ACCESS_MODES, original=False),
    Param("phase_01_dataset_opt_seed", int, 42, "Seed of the train/eval split (only the split)", original=False),
    Param("phase_02_train_opt_seed", int, 42, "Seed of training (upstream osft pipeline's name)", original=False),
    Param("phase_02_train_opt_cpu", str, "4",
          "CPU request of each training pod: cores (4, 0.5) or millicores (500m); no CPU limit (upstream osft "
          "pipeline's name)", _cpu, original=False, defaults={FULL: "8"}),
    Param("phase_02_train_opt_memory", str, "32Gi",
          "Memory of each training pod, request = limit (e.g. 32Gi; upstream osft pipeline's name)", _memory,
          original=False),
    Param("phase_03_eval_opt_limit", int, -1,
          "Max documents per eval task (-1 = all, upstream's value; 0 also means all)", original=False),
    Param("phase_03_eval_opt_batch", str, "auto",
          "Eval batch size ('auto' or an integer; on CPU 'auto' is a fixed 8) (upstream osft pipeline's name)",
          original=False),
    Param("phase_03_eval_opt_gpu", int, 1,
          "GPUs for the evaluate pod (0 = CPU, e.g. a kind/k3d cluster; then no GPU node selector)", _at_least(0),
          original=False),
    Param("phase_03_eval_opt_cpu", str, "4",
          "CPU request of the evaluate pod: cores (4, 0.5) or millicores (500m); no CPU limit", _cpu,
          original=False),
    Param("phase_03_eval_opt_memory", str, "32Gi", "Memory of the evaluate pod, request = limit (e.g. 32Gi)",
          _memory, original=False),
    Param("phase_03_eval_opt_compare_base", bool, True,
          "Also score the base model and report gains and forgetting", original=False),
    Param("phase_03_eval_opt_max_regression", float, 0.02,
          "Largest allowed drop on a benchmark metric before the eval gate fails", original=False),
    Param("phase_04_registry_opt_force", bool, False, "Register even when the eval gate failed",
          original=False),
    Param("phase_04_registry_opt_storage_uri", str, "",
          "Durable storage the final model is published to before registration: s3://bucket/prefix or "
          "pvc://claim/path (files under <prefix>/<name>/<version or run>/, manifest last); empty = register the "
          "workspace copy and keep the workspace volume (docs/publishing.md)", original=False),
    # --- continual learning (docs/continual-learning.md) ------------------------------------------------------
    Param("phase_02_train_opt_continue_from", str, "",
          "Continual learning: '' = train phase_02_train_man_train_model; 'latest' = continue from the newest "
          "accepted version in the lineage next to the storage URI (the base model on the first run); or an "
          "explicit published version", original=False),
    Param("phase_01_dataset_opt_since", str, "",
          "Incremental data: '' = all of it; 'last' = only the files (s3:// prefix or folder) newer than the "
          "parent version's data watermark; nothing new ends the run early as 'nothing new to learn' (needs "
          "continue_from)", original=False),
    Param("phase_03_eval_opt_max_forgetting", float, 0.1,
          "Continual learning gate: largest allowed rise of the held-out loss (nats/token) on any earlier accepted "
          "version's held-out set, tuned vs parent; a version past it is not accepted", original=False),
    # --- only in the full template (osft-pipeline): upstream osft's inputs beyond osft_minimal's -----------------
    Param("phase_04_registry_man_reg_author", str, "pipeline",
          "Author (and owner) recorded for the registered model", templates=(FULL,)),
    Param("phase_02_train_opt_annotations", str, "",
          "Annotations of the training pods, key=val,... (at most 8; set when the pods are created)",
          templates=(FULL,)),
    Param("phase_02_train_opt_env_vars", str, "",
          "Env vars of the training processes, KEY=VAL,... (names that look like secrets are refused: use the "
          "secrets)", templates=(FULL,)),
    Param("phase_02_train_opt_labels", str, "",
          "Labels of the training pods, key=val,... (at most 8; set when the pods are created)", templates=(FULL,)),
    Param("phase_02_train_opt_lr_scheduler", str, "cosine",
          "[OSFT] LR schedule (cosine, linear, constant, constant_with_warmup, cosine_with_restarts, polynomial, "
          "inverse_sqrt)", templates=(FULL,)),
    Param("phase_02_train_opt_lr_scheduler_kwargs", str, "",
          "[OSFT] Extra scheduler params, key=val,... or a JSON object; numbers and true/false arrive typed "
          "(e.g. num_cycles=2)", templates=(FULL,)),
    Param("phase_02_train_opt_lr_warmup", int, 0, "Warmup steps before full LR", templates=(FULL,)),
    Param("phase_02_train_opt_num_procs", str, "auto",
          "Processes per training pod ('auto' = one per GPU, or at most the GPU count)", templates=(FULL,)),
    Param("phase_02_train_opt_processed_data", bool, False,
          "[OSFT] The dataset is pre-tokenised: rows of input_ids and labels (token ids, -100 = masked), checked "
          "by the dataset step and trained on as they are", templates=(FULL,)),
    Param("phase_02_train_opt_save_epoch", bool, False, "Save a checkpoint at each epoch. Usually false for OSFT",
          templates=(FULL,)),
    Param("phase_02_train_opt_save_final", bool, True, "[OSFT] Save the final checkpoint after all epochs",
          templates=(FULL,)),
    Param("phase_02_train_opt_target_patterns", str, "",
          "[OSFT] Module name patterns to unfreeze, comma-separated (empty = the library's defaults for the model)",
          templates=(FULL,)),
    Param("phase_02_train_opt_unmask", bool, False,
          "[OSFT] Train on every token of each conversation (false = the assistant's turns only)",
          templates=(FULL,)),
    Param("phase_03_eval_opt_gen_kwargs", dict, {},
          "Generation params for generative tasks, a JSON object or key=val,... (e.g. max_gen_toks, temperature)",
          templates=(FULL,)),
    Param("phase_03_eval_opt_log_samples", bool, True,
          "Write every scored document and the model's answer to eval/samples.jsonl on the workspace",
          templates=(FULL,)),
    Param("phase_03_eval_opt_model_args", dict, {},
          "lm-eval model init args, a JSON object or key=val,... (e.g. dtype, max_length)", templates=(FULL,)),
    Param("phase_03_eval_opt_verbosity", str, "INFO", "lm-eval logging level (DEBUG, INFO, WARNING, ERROR)",
          templates=(FULL,)),
    Param("phase_04_registry_opt_description", str, "",
          "Model version description (empty = one naming the base model and the run)", templates=(FULL,)),
    Param("phase_04_registry_opt_format_name", str, "pytorch", "Model format (pytorch, onnx, tensorflow)",
          templates=(FULL,)),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
ORIGINAL: tuple[Param, ...] = tuple(p for p in PARAMS if p.original and MINIMAL in p.templates)
UPSTREAM: tuple[Param, ...] = tuple(p for p in ORIGINAL if p.upstream)
# upstream osft pipeline's 44 inputs in its signature order (tests/data/spec/upstream-osft-inputs.json)
FULL_UPSTREAM_ORDER: tuple[str, ...] = (
    "phase_01_dataset_man_data_uri", "phase_01_dataset_man_data_split", "phase_02_train_man_train_batch",
    "phase_02_train_man_train_epochs", "phase_02_train_man_train_gpu", "phase_02_train_man_train_model",
    "phase_02_train_man_train_tokens", "phase_02_train_man_train_unfreeze", "phase_02_train_man_train_workers",
    "phase_03_eval_man_eval_tasks", "phase_04_registry_man_address", "phase_04_registry_man_reg_author",
    "phase_04_registry_man_reg_name", "phase_04_registry_man_reg_version", "phase_01_dataset_opt_subset",
    "phase_02_train_opt_annotations", "phase_02_train_opt_cpu", "phase_02_train_opt_env_vars",
    "phase_02_train_opt_labels", "phase_02_train_opt_learning_rate", "phase_02_train_opt_lr_scheduler",
    "phase_02_train_opt_lr_scheduler_kwargs", "phase_02_train_opt_lr_warmup", "phase_02_train_opt_max_seq_len",
    "phase_02_train_opt_memory", "phase_02_train_opt_num_procs", "phase_02_train_opt_processed_data",
    "phase_02_train_opt_save_epoch", "phase_02_train_opt_save_final", "phase_02_train_opt_seed",
    "phase_02_train_opt_target_patterns", "phase_02_train_opt_unmask", "phase_02_train_opt_use_liger",
    "phase_02_train_opt_runtime", "phase_03_eval_opt_batch", "phase_03_eval_opt_gen_kwargs",
    "phase_03_eval_opt_limit", "phase_03_eval_opt_log_samples", "phase_03_eval_opt_model_args",
    "phase_03_eval_opt_verbosity", "phase_04_registry_opt_description", "phase_04_registry_opt_format_name",
    "phase_04_registry_opt_format_version", "phase_04_registry_opt_port",
)


def params_for(template: str = MINIMAL) -> tuple[Param, ...]:
    """The parameters of ``template`` in its order: the minimal's as listed in PARAMS; the full's upstream osft's
    44 in upstream's order, then the additions both templates share."""
    if template not in TEMPLATES:
        raise ParamError(f"unknown pipeline template {template!r}: use {' or '.join(TEMPLATES)}")
    members = [p for p in PARAMS if template in p.templates]
    if template == MINIMAL:
        return tuple(members)
    first = [BY_NAME[n] for n in FULL_UPSTREAM_ORDER]
    return tuple(first + [p for p in members if p.name not in FULL_UPSTREAM_ORDER])


def names_for(template: str = MINIMAL) -> set[str]:
    """The parameter names ``template`` takes."""
    return {p.name for p in params_for(template)}


def template_of(name: str) -> str | None:
    """Which pipeline template a WorkflowTemplate/KFP pipeline name is (None: not one of ours)."""
    return name if name in TEMPLATES else None


# ----------------------------------------------------------------------------- step inputs and step rules

# Each step function's arguments that come straight from a pipeline parameter: the templates pass exactly these
# (an argument whose parameter a template does not take keeps the step's own default), and the step's own
# validation function, which takes the same argument names, checks them in the preflight (step_rules).
STEP_INPUTS: dict[str, dict[str, str]] = {
    "dataset": {"data_uri": "phase_01_dataset_man_data_uri", "split": "phase_01_dataset_man_data_split",
                "subset": "phase_01_dataset_opt_subset", "seed": "phase_01_dataset_opt_seed",
                "hf_token": "phase_01_dataset_opt_hf_token", "processed_data": "phase_02_train_opt_processed_data",
                "since": "phase_01_dataset_opt_since"},
    "train": {
        "model": "phase_02_train_man_train_model", "effective_batch_size": "phase_02_train_man_train_batch",
        "epochs": "phase_02_train_man_train_epochs", "max_tokens_per_gpu": "phase_02_train_man_train_tokens",
        "max_seq_len": "phase_02_train_opt_max_seq_len", "learning_rate": "phase_02_train_opt_learning_rate",
        "unfreeze_rank_ratio": "phase_02_train_man_train_unfreeze", "use_liger": "phase_02_train_opt_use_liger",
        "seed": "phase_02_train_opt_seed", "lr_scheduler": "phase_02_train_opt_lr_scheduler",
        "warmup_steps": "phase_02_train_opt_lr_warmup", "checkpoint_at_epoch": "phase_02_train_opt_save_epoch",
        "save_final_checkpoint": "phase_02_train_opt_save_final", "nproc_per_node": "phase_02_train_opt_num_procs",
        "lr_scheduler_kwargs": "phase_02_train_opt_lr_scheduler_kwargs",
        "target_patterns": "phase_02_train_opt_target_patterns", "unmask_messages": "phase_02_train_opt_unmask",
        "use_processed_dataset": "phase_02_train_opt_processed_data", "env_vars": "phase_02_train_opt_env_vars",
        "continue_from": "phase_02_train_opt_continue_from"},
    # the TrainJob's own settings, beyond the train step's
    "train-trainjob": {"workers": "phase_02_train_man_train_workers", "gpus_per_worker": "phase_02_train_man_train_gpu",
                       "runtime": "phase_02_train_opt_runtime", "cpu_per_worker": "phase_02_train_opt_cpu",
                       "memory_per_worker": "phase_02_train_opt_memory", "labels": "phase_02_train_opt_labels",
                       "annotations": "phase_02_train_opt_annotations"},
    "evaluate": {"limit": "phase_03_eval_opt_limit", "batch_size": "phase_03_eval_opt_batch",
                 "max_regression": "phase_03_eval_opt_max_regression", "model_args": "phase_03_eval_opt_model_args",
                 "gen_kwargs": "phase_03_eval_opt_gen_kwargs", "log_samples": "phase_03_eval_opt_log_samples",
                 "verbosity": "phase_03_eval_opt_verbosity", "continue_from": "phase_02_train_opt_continue_from",
                 "max_forgetting": "phase_03_eval_opt_max_forgetting"},
    "publish": {"storage_uri": "phase_04_registry_opt_storage_uri", "name": "phase_04_registry_man_reg_name",
                "version": "phase_04_registry_man_reg_version", "force": "phase_04_registry_opt_force",
                "continue_from": "phase_02_train_opt_continue_from"},
    "lineage": {"storage_uri": "phase_04_registry_opt_storage_uri", "name": "phase_04_registry_man_reg_name",
                "continue_from": "phase_02_train_opt_continue_from", "data_uri": "phase_01_dataset_man_data_uri",
                "since": "phase_01_dataset_opt_since"},
    "register": {"address": "phase_04_registry_man_address", "port": "phase_04_registry_opt_port",
                 "name": "phase_04_registry_man_reg_name", "version": "phase_04_registry_man_reg_version",
                 "format_version": "phase_04_registry_opt_format_version",
                 "format_name": "phase_04_registry_opt_format_name", "author": "phase_04_registry_man_reg_author",
                 "description": "phase_04_registry_opt_description", "force": "phase_04_registry_opt_force",
                 "storage_uri": "phase_04_registry_opt_storage_uri"},
}


def step_inputs(step: str, template: str = MINIMAL) -> dict[str, str]:
    """The arguments of ``step`` that ``template``'s parameters feed (argument -> parameter)."""
    names = names_for(template)
    return {arg: name for arg, name in STEP_INPUTS[step].items() if name in names}


def _only(step: str, *args: str) -> dict[str, str]:
    return {a: STEP_INPUTS[step][a] for a in args}



@dataclass(frozen=True)
class StepRule:
    """A step's own validation function, applied to the pipeline parameters that feed it.

    ``args`` maps the function's argument names to pipeline parameters (or to a callable computing the argument
    from all values). A StepError is re-raised as a ParamError naming the parameter its message is about
    (the argument the message starts with, or ``topics``), followed by the step's message unchanged.
    """

    step: str
    check: Callable[..., Any]
    args: Mapping[str, str | Callable[[Mapping[str, Any]], Any]]
    when: Callable[[Mapping[str, Any]], bool] = lambda values: True
    topics: Mapping[str, str] = field(default_factory=dict)  # message prefix -> pipeline parameter

    def params(self) -> list[str]:
        return [v for v in self.args.values() if isinstance(v, str)]

    def about(self, message: str) -> str:
        """The pipeline parameter a step message is about."""
        for prefix, param in self.topics.items():
            if message.startswith(prefix):
                return param
        m = re.match(r"[A-Za-z_]\w*", message)
        if m and isinstance(self.args.get(m.group(0)), str):
            return str(self.args[m.group(0)])
        return ", ".join(self.params())

    def apply(self, values: Mapping[str, Any]) -> None:
        """Run the check on ``values``; an argument whose parameter the template does not take is left out, so
        the step's own default applies (as it does in that template's pods)."""
        if not self.when(values):
            return
        kwargs = {arg: (values[src] if isinstance(src, str) else src(values)) for arg, src in self.args.items()
                  if not isinstance(src, str) or src in values}
        try:
            self.check(**kwargs)
        except ParamError:
            raise
        except StepError as exc:
            raise ParamError(f"{self.about(str(exc))}: {exc} ({self.step} step)") from None


def environment_rules(workspace: str) -> tuple[StepRule, ...]:
    """The steps' checks that need the run's environment: applied by the preflight task (in the run's image, on
    its ``workspace``), never on the machine that submits. A local model folder must exist and be a checkpoint
    (offline, a Hub model must be in the local cache); the eval tasks must be in the registry the evaluate step
    will use (lm-eval's, or offline its local variants) and their local data present."""
    from pathlib import Path

    from steps.evaluate.task_plan import plan_tasks
    from steps.train.model_source import check_model_available

    return (
        StepRule("train", lambda ref: check_model_available(ref, Path(workspace)),
                 {"ref": "phase_02_train_man_train_model"}, topics={"": "phase_02_train_man_train_model"}),
        StepRule("evaluate", plan_tasks, {"tasks": "phase_03_eval_man_eval_tasks"},
                 topics={"": "phase_03_eval_man_eval_tasks"}),
    )


def _registering(values: Mapping[str, Any]) -> bool:
    return bool(str(values["phase_04_registry_man_address"]).strip())


def _publishing(values: Mapping[str, Any]) -> bool:
    return bool(str(values["phase_04_registry_opt_storage_uri"]).strip())


def step_rules() -> tuple[StepRule, ...]:
    """Every step's parameter checks that need nothing but the values (imported lazily: steps never import
    workflows, and the CLI should not pay for the step packages until it validates)."""
    from steps.dataset import validate_args as dataset_args
    from steps.dataset.sources import parse_source
    from steps.evaluate import validate_args as eval_args
    from steps.evaluate.task_plan import check_task_list
    from steps.lineage import validate_lineage
    from steps.publish import validate_inputs as publish_inputs
    from steps.register import validate_inputs as register_inputs
    from steps.train import check_nproc
    from steps.train import validate_params as train_params
    from steps.train.model_source import check_model_ref
    from steps.train.pod_settings import validate_pod_settings
    from steps.train.trainjob import validate_trainjob

    train = {k: v for k, v in STEP_INPUTS["train"].items() if k != "continue_from"}
    return (
        StepRule("dataset", parse_source, {"uri": "phase_01_dataset_man_data_uri"},
                 topics={"": "phase_01_dataset_man_data_uri"}),
        StepRule("dataset", dataset_args, _only("dataset", "split", "subset", "seed")),
        StepRule("train", check_model_ref, {"ref": "phase_02_train_man_train_model"},
                 topics={"": "phase_02_train_man_train_model"}),
        StepRule("train", train_params, train,
                 topics={"checkpoint_at_epoch and save_final_checkpoint": "phase_02_train_opt_save_final"}),
        StepRule("train", check_nproc, {"nproc_per_node": "phase_02_train_opt_num_procs",
                                        "gpus": "phase_02_train_man_train_gpu"},
                 topics={"": "phase_02_train_opt_num_procs"}),
        StepRule("train", validate_pod_settings, _only("train-trainjob", "labels", "annotations")),
        StepRule("train-trainjob", validate_trainjob, _only("train-trainjob", "workers", "gpus_per_worker", "runtime"),
                 when=lambda values: values["phase_02_train_man_train_workers"] > 1),
        StepRule("evaluate", check_task_list, {"tasks": "phase_03_eval_man_eval_tasks"},
                 topics={"": "phase_03_eval_man_eval_tasks"}),
        StepRule("evaluate", eval_args, {k: v for k, v in STEP_INPUTS["evaluate"].items()
                                         if k not in ("continue_from", "max_forgetting")}),
        StepRule("lineage", validate_lineage, {"continue_from": "phase_02_train_opt_continue_from",
                                               "since": "phase_01_dataset_opt_since",
                                               "storage_uri": "phase_04_registry_opt_storage_uri",
                                               "data_uri": "phase_01_dataset_man_data_uri",
                                               "max_forgetting": "phase_03_eval_opt_max_forgetting"},
                 topics={"continue_from": "phase_02_train_opt_continue_from", "since": "phase_01_dataset_opt_since",
                         "max_forgetting": "phase_03_eval_opt_max_forgetting"}),
        StepRule("register", register_inputs, {k: v for k, v in STEP_INPUTS["register"].items()
                                               if k not in ("force", "storage_uri")},
                 when=_registering, topics={"registry address": "phase_04_registry_man_address",
                                            "registry port": "phase_04_registry_opt_port"}),
        StepRule("publish", publish_inputs, _only("publish", "storage_uri", "name", "version"),
                 when=_publishing, topics={"storage_uri": "phase_04_registry_opt_storage_uri",
                                           "name": "phase_04_registry_man_reg_name"}),
    )


def _unknown(name: str, template: str) -> ParamError:
    others = [t for t in TEMPLATES if t != template and name in names_for(t)]
    if others:
        return ParamError(f"{name} is a parameter of the {others[0]} template, not of {template}: run that one "
                          f"(--template templates/{others[0]}.yaml, or submit --from workflowtemplate/{others[0]}; "
                          "docs/templates.md)")
    close = difflib.get_close_matches(name, names_for(template), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ParamError(f"unknown parameter {name!r}{hint}: see docs/parameters.md")


def problems(values: Mapping[str, Any], template: str = MINIMAL) -> tuple[dict[str, Any], list[ParamError]]:
    """Every problem of ``values`` for ``template`` at once: unknown names, values their own rule refuses,
    missing required ones, then the steps' rules (:func:`step_rules`) whose inputs are all valid. Returns the
    values checked so far (the template's defaults overlaid) and the errors, in parameter order."""
    members = params_for(template)
    known = {p.name for p in members}
    errors: list[ParamError] = [_unknown(name, template) for name in values if name not in known]
    out: dict[str, Any] = {}
    bad: set[str] = set()
    for p in members:
        if p.name in values:
            try:
                out[p.name] = p.coerce(values[p.name])
            except ParamError as exc:
                errors.append(exc)
                bad.add(p.name)
        elif p.required:
            errors.append(ParamError(f"{p.name} is required: pass -p {p.name}=<value> ({p.description})"))
            bad.add(p.name)
        else:
            out[p.name] = p.default_for(template)
    for rule in step_rules():
        if bad & set(rule.params()) or (bad and any(not isinstance(v, str) for v in rule.args.values())):
            continue  # its inputs already failed their own rule
        try:
            rule.apply(out)
        except ParamError as exc:
            errors.append(exc)
    return out, errors


def validate(values: Mapping[str, Any], template: str = MINIMAL) -> dict[str, Any]:
    """``template``'s defaults overlaid with ``values``, every one coerced and checked by its own rule and by the
    steps' rules (:func:`step_rules`); raises ParamError on the first problem (:func:`problems` lists them all)."""
    out, errors = problems(values, template)
    if errors:
        raise errors[0]
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


def _default_cell(p: Param, template: str) -> str:
    if p.required:
        return "required"
    text = to_text(p.default_for(template))
    return f"`{text}`" if text else '`""`'


def _origin(p: Param, template: str) -> str:
    if template == FULL:
        if p.name in FULL_UPSTREAM_ORDER:
            return ""
        return " *(seed's list; dropped upstream)*" if p.original and not p.upstream else " *(added)*"
    return "" if p.original and p.upstream else " *(seed's list; dropped upstream)*" if p.original else " *(added)*"


def readme_table(template: str = MINIMAL) -> str:
    """A parameter table of docs/parameters.md (one per template), rendered from PARAMS."""
    rows = ["| Parameter | Type | Default | Description |", "|-----------|------|---------|-------------|"]
    for p in params_for(template):
        other = [t for t in TEMPLATES if t != template and t in p.templates
                 and to_text(p.default_for(t)) != to_text(p.default_for(template))]
        note = "".join(f" (default `{to_text(p.default_for(t)) or chr(34) * 2}` in {t})" for t in other)
        rows.append(f"| `{p.name}` | `{p.type.__name__}` | {_default_cell(p, template)} | {p.description}{note}"
                    f"{_origin(p, template)} |")
    return "\n".join(rows) + "\n"
