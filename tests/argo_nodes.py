"""Argo-shaped ``status.nodes``, laid out the way the workflow controller lays them out (v3.7/v4.0
``workflow/controller/operator.go``; examples in its operator_test.go):

- the workflow's DAG is a node named after the workflow (type DAG); the exit handler is ``<wf>.onExit`` (DAG);
- a task whose template has a ``retryStrategy`` is a ``Retry`` node ``<boundary>.<task>`` (display name ``task``)
  whose children are the attempts, ``Pod`` nodes ``<boundary>.<task>(N)`` shown as ``task(N)``; once the task is
  done the Retry node carries the last attempt's outputs;
- a task whose ``when`` is false is one ``Skipped`` node.

:func:`workflow_from_run` turns a local run (``run.json``) into such a Workflow object, so the cluster's way of
reading a run can be checked against the local engine's on the very same run.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "osft-minimal-pipeline.yaml"


def _retried_templates() -> set[str]:
    doc = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    return {t["name"] for t in doc["spec"]["templates"] if t.get("retryStrategy")}


class NodeBuilder:
    """Adds nodes to a ``status.nodes`` map with Argo's names, display names, boundaries and children."""

    def __init__(self, workflow: str, clock: str = "2026-01-01T10:00:00Z") -> None:
        self.workflow = workflow
        self.nodes: dict[str, dict[str, Any]] = {}
        self._n = 0
        self._t = 0
        self.clock = clock

    def _time(self) -> str:
        self._t += 1
        return f"2026-01-01T10:{self._t // 60:02d}:{self._t % 60:02d}Z"

    def _add(self, name: str, display: str, kind: str, phase: str, boundary: str, **extra: Any) -> str:
        self._n += 1
        node_id = f"{self.workflow}-{self._n:04d}"
        start = self._time()
        self.nodes[node_id] = {"id": node_id, "name": name, "displayName": display, "type": kind, "phase": phase,
                               "boundaryID": boundary, "startedAt": start, "finishedAt": self._time(), **extra}
        return node_id

    def boundary(self, name: str) -> str:
        return self._add(name, name, "DAG", "Succeeded", "", children=[])

    def task(self, boundary: str, task: str, template: str, phase: str, attempts: Sequence[Mapping[str, Any]] = (),
             retried: bool = True, message: str = "") -> str:
        """A task under ``boundary``; ``attempts``: one mapping per pod (phase, message, outputs) — none for a
        skipped task."""
        parent = self.nodes[boundary]
        full = f"{parent['name']}.{task}"
        if phase in ("Skipped", "Omitted"):
            node_id = self._add(full, task, phase, phase, boundary, templateName=template, message=message)
            parent["children"].append(node_id)
            return node_id
        if not retried:
            a = attempts[0]
            node_id = self._add(full, task, "Pod", a["phase"], boundary, templateName=template,
                                message=a.get("message", ""), outputs=dict(a.get("outputs") or {}))
            parent["children"].append(node_id)
            return node_id
        retry_id = self._add(full, task, "Retry", phase, boundary, templateName=template, children=[],
                             message="" if phase == "Succeeded" else "No more retries left")
        for i, a in enumerate(attempts):
            pod = self._add(f"{full}({i})", f"{task}({i})", "Pod", a["phase"], boundary, templateName=template,
                            message=a.get("message", ""), outputs=dict(a.get("outputs") or {}))
            self.nodes[retry_id]["children"].append(pod)
        if attempts and phase in ("Succeeded", "Failed", "Error"):
            self.nodes[retry_id]["outputs"] = dict(attempts[-1].get("outputs") or {})
        parent["children"].append(retry_id)
        return retry_id


def _outputs(task: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": str(task.get("exit_code") if task.get("exit_code") is not None else 0)}
    if task.get("outputs"):
        out["parameters"] = [{"name": k, "value": v} for k, v in task["outputs"].items()]
    if task.get("result"):
        out["result"] = task["result"]
    return out


def workflow_from_run(run: Mapping[str, Any], failed_attempts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The Workflow object a cluster would return for the local run ``run`` (run.json); ``failed_attempts``: task
    -> how many failed attempts came before the one that succeeded (Argo retried them)."""
    name = run["workflow"]["name"]
    retried = _retried_templates()
    b = NodeBuilder(name)
    root = b.boundary(name)
    on_exit = None
    for task_name, t in run["tasks"].items():
        boundary = root
        short = task_name
        if task_name.startswith("exit-handler."):
            if on_exit is None:
                on_exit = b.boundary(f"{name}.onExit")
            boundary, short = on_exit, task_name.removeprefix("exit-handler.")
        template = t.get("template") or short
        if t["phase"] in ("Skipped", "Omitted"):
            b.task(boundary, short, template, t["phase"], message=t.get("message", ""))
            continue
        failures = [{"phase": "Failed", "message": "Error (exit code 1)"}] * (failed_attempts or {}).get(short, 0)
        last = {"phase": t["phase"], "message": t.get("message", "") if t["phase"] != "Succeeded" else "",
                "outputs": _outputs(t)}
        b.task(boundary, short, template, t["phase"], [*failures, last], retried=template in retried)
    params = [{"name": k, "value": v} for k, v in run["parameters"].items()]
    return {"metadata": {"name": name, "namespace": "osft-e2e", "uid": "u-" + name},
            "spec": {"workflowTemplateRef": {"name": "osft-minimal-pipeline"}, "arguments": {"parameters": params}},
            "status": {"phase": run["workflow"]["phase"], "nodes": b.nodes,
                       "startedAt": "2026-01-01T10:00:00Z", "finishedAt": "2026-01-01T11:00:00Z"}}


def load_run(ws: Path) -> dict[str, Any]:
    return json.loads((ws / "run.json").read_text(encoding="utf-8"))
