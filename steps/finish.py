"""Pipeline-level task (not a step), the exit handler: record the run's final status in the workspace log
(runs whether the run passed or not).

It also lifts the run's key numbers out of the workspace (final loss, steps, eval gate, registration)
into one small file each under ``outputs_dir``, which Argo shows as the handler's output parameters.
"""

import contextlib
import json
from pathlib import Path
from typing import Any

from steps.common.workspace import Workspace

STEP = "exit"
_STATUSES = ("Succeeded", "Failed", "Error")
# output name -> (workspace file, key in it)
KEY_NUMBERS: dict[str, tuple[str, str]] = {
    "final_loss": ("train/metrics.json", "final_loss"),
    "train_steps": ("train/metrics.json", "steps"),
    "eval_gate": ("eval/comparison.json", "gate"),
    "registration_status": ("registry/registration.json", "status"),
    "registered_version": ("registry/registration.json", "version"),
    "data_status": ("dataset/summary.json", "status"),  # "new" or "nothing new to learn" (since=last)
    "accepted_version": ("publish/lineage.json", "version"),  # the version accepted into the lineage
}


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value.startswith("{{") else value  # a variable the engine left unresolved


def key_numbers(ws: Workspace) -> dict[str, str]:
    """The run's key numbers as text ("" where the step did not run or wrote no such key)."""
    cache: dict[str, Any] = {}
    out: dict[str, str] = {}
    for name, (rel, key) in KEY_NUMBERS.items():
        if rel not in cache:
            try:
                cache[rel] = json.loads((ws.root / rel).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                cache[rel] = {}
        value = cache[rel].get(key, "") if isinstance(cache[rel], dict) else ""
        out[name] = "" if value is None or isinstance(value, dict | list) else str(value)[:200]  # bounded output
    lineage = cache.get("publish/lineage.json")
    if isinstance(lineage, dict) and not lineage.get("accepted"):
        out["accepted_version"] = ""  # published with --force after a failed gate: not accepted
    if not out["registration_status"] and (ws.root / "registry" / "attempt.json").is_file():
        out["registration_status"] = "registering"  # register reached the registry, then failed: keep the model
    return out


def record_status(workspace: str, status: str, workflow: str = "", duration: str = "",
                  outputs_dir: str = "") -> dict[str, Any]:
    """Append the final status line to pipeline_log.txt and export the key numbers.

    Args:
        workspace: workspace directory (the per-run volume in Argo).
        status: the workflow's final status (Succeeded, Failed or Error).
        workflow: the workflow's name.
        duration: the run's duration in seconds.
        outputs_dir: where to write one file per key number ("" = do not write them).

    Returns:
        status, workflow, duration, the last error line logged by a step, and the key numbers.
    """
    ws = Workspace.at(workspace)
    status = _clean(status) or "Unknown"
    workflow = _clean(workflow)
    duration = _clean(duration)
    last_error = ""
    if status != "Succeeded" and ws.log_path.is_file():
        errors = [ln for ln in ws.log_path.read_text(encoding="utf-8").splitlines() if "] error:" in ln]
        last_error = errors[-1] if errors else ""
    took = ""
    with contextlib.suppress(ValueError):
        took = f" after {float(duration):.0f}s" if duration else ""
    numbers = key_numbers(ws)
    if outputs_dir:
        out = Path(outputs_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, value in numbers.items():
            (out / name).write_text(value, encoding="utf-8")
    name = f"workflow {workflow}" if workflow else "workflow"
    shown = ", ".join(f"{k} {v}" for k, v in numbers.items() if v)
    ws.log(STEP, f"{name} finished: {status}{took}" + (f" ({shown})" if shown else "")
           + ("" if status in _STATUSES else " (unrecognised status)"))
    return {"status": status, "workflow": workflow, "duration": duration, "last_error": last_error, **numbers}
