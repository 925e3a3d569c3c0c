"""``osft-pipeline report --from-argo NAME``: the run report of a cluster run, built like a local run's.

The Workflow object (from the Argo Server, as ``argo get NAME -o json``) gives the steps, their states,
times, messages and the small summary output parameters (train, evaluate, register); they are written into
the report folder in the layout the report reads (``run.json``, ``train/metrics.json``, ``eval/comparison.json``,
``registry/registration.json``). With ``--workspace-copy DIR`` (a copy of the run's workspace volume, see
docs/troubleshooting.md) the full files are used instead: dataset summary, loss and eval plots, every metric.
Log links point at the Argo UI.
"""

import datetime as _dt
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from workflows.argo.nodes import output_parameters, task_nodes
from workflows.argo.pipeline import WORKSPACE_CLAIM
from workflows.params import BY_NAME

# small workspace files the report reads (never the model or the dataset splits)
COPIED = ("dataset/summary.json", "train/metrics.json", "train/loss.png", "train/summary.json",
          "eval/comparison.json", "eval/eval.png", "eval/summary.json", "registry/registration.json",
          "publish/publish.json", "pipeline_log.txt")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = _dt.datetime.fromisoformat
    return round((parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_record(wf: Mapping[str, Any], ui: str) -> dict[str, Any]:
    """A run.json-shaped record of a Workflow object (``ui``: the Argo UI's URL of the workflow)."""
    meta, spec, status = wf.get("metadata") or {}, wf.get("spec") or {}, wf.get("status") or {}
    stored = (status.get("storedWorkflowTemplateSpec") or {}).get("arguments") or {}
    defaults = {p["name"]: str(p.get("value", "")) for p in stored.get("parameters") or []}
    given = {p["name"]: str(p.get("value", "")) for p in (spec.get("arguments") or {}).get("parameters") or []}
    params = {**defaults, **given}
    params = {k: ("***" if k in BY_NAME and BY_NAME[k].secret and v else v) for k, v in params.items()}
    tasks: dict[str, Any] = {}
    order: list[str] = []
    exit_handler = None
    for t in task_nodes(status.get("nodes") or {}):
        node, last = t["node"], t["last"]
        name = t["name"]
        exit_code = (last.get("outputs") or {}).get("exitCode")
        task = {"name": name, "template": node.get("templateName", ""), "phase": t["phase"],
                "message": t["message"], "started": node.get("startedAt"), "finished": node.get("finishedAt"),
                "duration_s": _seconds(node.get("startedAt"), node.get("finishedAt")),
                "exit_code": int(exit_code) if exit_code is not None else None,
                "outputs": output_parameters(t), "result": (t["outputs"] or {}).get("result"),
                "attempts": t["attempts"],
                "log_url": f"{ui}?nodeId={t['pod']}&nodePanelView=logs" if t["pod"] else ""}
        if t["exit_handler"] or name in ("record-status", "delete-workspace"):
            exit_handler = exit_handler or task
            continue
        if name not in tasks:
            order.append(name)
        tasks[name] = task
    failed = next((n for n in order if tasks[n]["phase"] in ("Failed", "Error")), "")
    return {
        "workflow": {"name": meta.get("name", ""), "uid": meta.get("uid", ""), "namespace": meta.get("namespace", ""),
                     "phase": status.get("phase", "Pending"), "template": (spec.get("workflowTemplateRef") or {})
                     .get("name", ""), "started": status.get("startedAt"), "finished": status.get("finishedAt"),
                     "duration_s": _seconds(status.get("startedAt"), status.get("finishedAt")) or 0.0,
                     "error": status.get("message", "") if status.get("phase") != "Succeeded" else "",
                     "failed_task": failed, "from_step": "", "ui": ui},
        "parameters": params, "overrides": sorted(given), "order": order, "tasks": tasks,
        "exit_handler": exit_handler, "notes": [],
    }


def _from_outputs(out: Path, run: Mapping[str, Any]) -> None:
    """Workspace-layout files from the steps' summary output parameters (only where no copy provided one)."""
    tasks = run["tasks"]
    train = _json((tasks.get("train") or tasks.get("train-trainjob") or {}).get("outputs", {}).get("summary", ""))
    ev = _json((tasks.get("evaluate") or {}).get("outputs", {}).get("summary", ""))
    reg = _json((tasks.get("register") or {}).get("outputs", {}).get("registration", ""))
    # publish or publish-pvc (the other one is skipped): its summary names the durable URI the model went to
    pub = next((p for p in (_json((tasks.get(t) or {}).get("outputs", {}).get("summary", ""))
                            for t in ("publish", "publish-pvc")) if p.get("uri")), {})
    files = {"train/metrics.json": train or None,
             "publish/publish.json": pub or None,
             "eval/comparison.json": {"gate": ev.get("gate", "n/a"), "max_regression": ev.get("max_regression"),
                                      "rows": ev.get("base_vs_tuned") or []} if ev else None,
             "registry/registration.json": reg or None}
    for rel, data in files.items():
        path = out / rel
        if data is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def report_from_argo(target: Any, name: str, out: str | Path, workspace_copy: str | Path = "") -> tuple[Path, Path]:
    """Write ``out/report.html`` and ``out/report.md`` for the cluster run ``name``; return their paths."""
    from workflows.argo.submit import get_workflow
    from workflows.local.report import build_report

    wf = get_workflow(target, name)
    ui = f"{target.host}/workflows/{target.namespace}/{name}"
    run = run_record(wf, ui)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    if workspace_copy:
        src = Path(workspace_copy)
        if not src.is_dir():
            raise StepError(f"--workspace-copy {workspace_copy}: no such folder (copy the run's workspace first: "
                            "docs/troubleshooting.md)")
        for rel in COPIED:
            if (src / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dest / rel)
        if (src / "train" / "model").exists():
            rel = (src / "train" / "model").resolve().relative_to(src.resolve())
            run["cluster"] = {"model": f"pvc://{name}-workspace/{rel}",
                              "model_note": "on the run's workspace volume (kept only while the failed run is)"}
    if "cluster" not in run:
        claim = WORKSPACE_CLAIM.replace("{{workflow.name}}", name)
        kept = run["workflow"]["phase"] != "Succeeded"
        run["cluster"] = {"model": f"pvc://{claim}/train/model", "model_note": "on the run's workspace volume, "
                          "kept until the workflow is deleted (7 days after a failure)"} if kept else {
            "model": "", "model_note": "not kept: a successful run's workspace volume is deleted by its exit handler; "
                                       "register or publish the model to keep it (docs/publishing.md)"}
    _from_outputs(dest, run)
    (dest / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    return build_report(dest)
