"""The Argo preflight task: every pipeline parameter through every step's rules, then the secret checks.

Why here and not in ``steps/``: the parameter rules live once in ``workflows/params.py`` and steps
never import workflows. So the secret/cluster checks are a plain step (``steps.preflight``) and
this thin runner entry point joins the two. Each template has its own entry (``preflight`` for
osft-minimal-pipeline, ``preflight_full`` for osft-pipeline) whose inputs are generated from that template's
parameters (one Argo input each, all carried as raw text so *our* rules, not pydantic, judge them);
its outputs are the normalised values later tasks consume.
"""

import json
from typing import Annotated, Any

from hera.workflows import Parameter
from hera.workflows.io import Input
from pydantic import create_model

from steps.common.errors import StepError
from steps.common.secrets import add_secret
from steps.preflight import check_environment
from workflows.params import FULL, MINIMAL, ParamError, environment_rules, params_for, to_text, validate

WORKSPACE = "/workspace"


def inputs_model(template: str = MINIMAL) -> Any:
    """The preflight's inputs for ``template``: one raw-text input per parameter of it, plus the workspace."""
    return create_model(
        "PreflightInputs" if template == MINIMAL else "PreflightInputsFull",
        __base__=Input,
        __doc__=f"One raw-text input per parameter of {template}, plus the workspace path.",
        **{p.name: (str, "" if p.required else to_text(p.default_for(template))) for p in params_for(template)},
        workspace=(str, WORKSPACE),
        workflow_name=(str, ""),
    )


PreflightInputs = inputs_model(MINIMAL)
PreflightInputsFull = inputs_model(FULL)


def resolve(raw: dict[str, str], template: str = MINIMAL) -> tuple[dict[str, str], dict[str, Any]]:
    """Validate raw parameter text of ``template`` (an empty required one counts as missing) with every rule of
    every step, including those that need this environment (a local model folder, the eval task registry and its
    data).

    Returns the normalised outputs later tasks take, and every parameter's typed value.
    """
    required = {p.name for p in params_for(template) if p.required}
    given = {k: v for k, v in raw.items()
             if k not in ("workspace", "workflow_name") and not (k in required and not str(v).strip())}
    values = validate(given, template)
    for rule in environment_rules(str(raw.get("workspace") or WORKSPACE)):
        rule.apply(values)
    outputs = {
        "train_mode": "trainjob" if values["phase_02_train_man_train_workers"] > 1 else "single",
        "base_model": values["phase_02_train_man_train_model"] if values["phase_03_eval_opt_compare_base"] else "",
        "eval_tasks": json.dumps(values["phase_03_eval_man_eval_tasks"]),
        **routing(values),
    }
    return outputs, values


def routing(values: dict[str, Any]) -> dict[str, str]:
    """Where the final model goes: ``publish_mode`` (s3, pvc or none: which publish template runs) and
    ``models_claim`` (the pvc:// claim the publish-pvc pod mounts; '' otherwise)."""
    from steps.publish import models_claim

    storage = str(values.get("phase_04_registry_opt_storage_uri") or "").strip()
    return {"publish_mode": storage.split("://", 1)[0] if storage else "none", "models_claim": models_claim(storage)}


def model_home(values: dict[str, Any], workflow: str = "{{workflow.name}}") -> tuple[str, str]:
    """(level, line) saying where this run's model will live after the run, and what the run keeps."""
    storage = str(values.get("phase_04_registry_opt_storage_uri") or "").strip()
    registry = str(values.get("phase_04_registry_man_address") or "").strip()
    version = values.get("phase_04_registry_man_reg_version", "1.0.0")
    leaf = "<workflow name>" if version == "auto" else version
    name = values.get("phase_04_registry_man_reg_name", "osft-model")
    if storage:
        where = f"{storage.rstrip('/')}/{name}/{leaf}"
        then = "then registered with that URI" if registry else "not registered (no registry address)"
        return "ok", (f"model home: published to {where} (manifest last), {then}; the workspace volume is deleted "
                      "when the run succeeds")
    if registry:
        return "ok", (f"model home: no storage URI, so the model is registered as pvc://{workflow}-workspace/<path "
                      "of train/model>: the workspace volume is kept after the run (keep-workspace removes its "
                      f"ownerReference); delete it when that version is retired: kubectl delete pvc "
                      f"{workflow}-workspace")
    return "warning", ("no storage URI and no registry address: the fine-tuned model lives only in the workspace "
                       "volume, which is deleted when the run succeeds; set phase_04_registry_opt_storage_uri to "
                       "keep it")


Outputs = tuple[
    Annotated[str, Parameter(name="train_mode", description="single (one pod) or trainjob (workers > 1)")],
    Annotated[str, Parameter(name="base_model", description="model to compare against ('' = no comparison)")],
    Annotated[str, Parameter(name="eval_tasks", description="lm-eval tasks as a JSON list")],
    Annotated[str, Parameter(name="publish_mode", description="s3, pvc or none: which publish task runs")],
    Annotated[str, Parameter(name="models_claim", description="the pvc:// storage URI's claim ('' otherwise)")],
]


def _preflight(raw: dict[str, Any], template: str) -> tuple[str, str, str, str, str]:
    add_secret(str(raw.get("phase_01_dataset_opt_hf_token") or ""))  # masked in every message of this task
    workspace = raw.get("workspace") or WORKSPACE
    try:
        out, values = resolve(raw, template)
    except ParamError as exc:
        from steps.common.workspace import Workspace

        Workspace.at(workspace).log("preflight", f"error: {exc}")
        raise
    try:
        check_environment(
            workspace,
            data_uri=values["phase_01_dataset_man_data_uri"],
            model=values["phase_02_train_man_train_model"],
            workers=values["phase_02_train_man_train_workers"],
            hf_token=values["phase_01_dataset_opt_hf_token"],
            storage_uri=values["phase_04_registry_opt_storage_uri"],
        )
    except StepError as exc:
        from steps.common.workspace import Workspace

        Workspace.at(workspace).log("preflight", f"error: {exc}")
        raise
    from steps.common.workspace import Workspace

    level, line = model_home(values, str(raw.get("workflow_name") or "") or "<workflow>")
    Workspace.at(workspace).log("preflight", f"{level}: {line}" if level != "ok" else line)
    return out["train_mode"], out["base_model"], out["eval_tasks"], out["publish_mode"], out["models_claim"]


def preflight(inputs: PreflightInputs) -> Outputs:  # type: ignore[valid-type]
    """Fail in seconds on a bad parameter or a missing secret, before any GPU pod starts (osft-minimal-pipeline)."""
    return _preflight(inputs.model_dump(), MINIMAL)  # type: ignore[attr-defined]


def preflight_full(inputs: PreflightInputsFull) -> Outputs:  # type: ignore[valid-type]
    """Fail in seconds on a bad parameter or a missing secret, before any GPU pod starts (osft-pipeline)."""
    return _preflight(inputs.model_dump(), FULL)  # type: ignore[attr-defined]


PREFLIGHT = {MINIMAL: preflight, FULL: preflight_full}  # the preflight task's function of each template
