"""Run state: what each task did and what the run's ``run.json`` holds."""

import datetime as _dt
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.common.secrets import scrub
from steps.common.workspace import write_json
from workflows.local.template import RunError

RUN_JSON = "run.json"
LOGS = "logs"
TERMINAL = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


@dataclass
class TaskState:
    """One DAG task (or the exit handler) and what happened to it."""

    name: str
    template: str
    phase: str = "Pending"
    kind: str = "pod"  # "dag" for a nested DAG task (its steps are listed under "<name>.")
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    message: str = ""
    reused: bool = False
    peak_rss_mb: float | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)  # container main's, as the cluster would get them
    progress: str = ""
    log: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return round((self.finished or time.time()) - self.started, 3)

    def to_json(self, secrets: tuple[str, ...]) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "progress"}
        d["duration_s"] = self.duration_s
        d["started"] = _iso(self.started)
        d["finished"] = _iso(self.finished)
        d["parameters"] = {k: scrub(v, secrets) for k, v in self.parameters.items()}
        d["outputs"] = {k: scrub(v, secrets) for k, v in self.outputs.items()}
        d["result"] = scrub(self.result, secrets) if self.result is not None else None
        d["message"] = scrub(self.message, secrets)
        return d


def claim_fate(claim: Mapping[str, Any]) -> dict[str, Any]:
    """A workspace claim's record in run.json: whether the workflow owns it, which task deleted it, and what is
    left of it once the run's cleanup is done on a cluster (exit handler, then the workflow deleted by its TTL)."""
    if claim.get("deleted_by"):
        fate = f"deleted by task {claim['deleted_by']}"
    elif claim.get("owned"):
        fate = "deleted with the workflow (ownerReference), when its ttlStrategy deletes it"
    else:
        fate = "kept (no ownerReference; delete it yourself when it is no longer needed)"
    return {"owned": bool(claim.get("owned")), "deleted_by": claim.get("deleted_by"),
            "kept_after_cleanup": not claim.get("deleted_by") and not claim.get("owned"), "fate": fate,
            **({"manifest": claim["manifest"]} if claim.get("manifest") else {})}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="milliseconds")


def _from_iso(text: str | None) -> float | None:
    return None if not text else _dt.datetime.fromisoformat(text).timestamp()


@dataclass
class RunState:
    """The whole run: what run.json holds."""

    name: str
    uid: str
    namespace: str
    template_path: str
    template_sha256: str
    workspace: Path
    parameters: dict[str, str]
    secret_params: set[str]
    overrides: dict[str, str]
    tasks: dict[str, TaskState]
    order: list[str]
    phase: str = "Running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str = ""
    failed_task: str = ""
    from_step: str = ""
    exit_handler: TaskState | None = None
    notes: list[str] = field(default_factory=list)
    # workspace claim -> what a cluster would do with it: owned (by the workflow), deleted_by (a task), manifest
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for k, v in self.parameters.items() if k in self.secret_params and v)

    def masked_parameters(self) -> dict[str, str]:
        return {k: ("***" if k in self.secret_params and v else scrub(v, self.secrets()))
                for k, v in self.parameters.items()}

    def to_json(self) -> dict[str, Any]:
        secrets = self.secrets()
        total = (self.finished or time.time()) - self.started
        return {
            "workflow": {
                "name": self.name, "uid": self.uid, "namespace": self.namespace, "phase": self.phase,
                "template": self.template_path, "template_sha256": self.template_sha256,
                "started": _iso(self.started), "finished": _iso(self.finished), "duration_s": round(total, 3),
                "error": scrub(self.error, secrets), "failed_task": self.failed_task, "from_step": self.from_step,
                "workspace": str(self.workspace),
            },
            "parameters": self.masked_parameters(),
            "overrides": sorted(self.overrides),
            "secret_parameters": sorted(self.secret_params),
            "order": self.order,
            "tasks": {n: t.to_json(secrets) for n, t in self.tasks.items()},
            "exit_handler": self.exit_handler.to_json(secrets) if self.exit_handler else None,
            "notes": self.notes,
            "claims": {n: claim_fate(c) for n, c in self.claims.items()},
        }

    def save(self) -> None:
        write_json(self.workspace / RUN_JSON, self.to_json())


def read_run(workspace: str | os.PathLike[str]) -> dict[str, Any]:
    """The run.json of an earlier run in ``workspace``."""
    path = Path(workspace) / RUN_JSON
    if not path.is_file():
        raise RunError(f"no earlier run in {workspace} ({RUN_JSON} missing): run without --from-step first")
    return json.loads(path.read_text(encoding="utf-8"))


def _reused(name: str, old: Mapping[str, Any]) -> TaskState:
    """A task state copied from the previous run's run.json."""
    t = TaskState(name, old.get("template", ""), phase=old.get("phase", "Succeeded"), kind=old.get("kind", "pod"),
                  reused=True, exit_code=old.get("exit_code"), peak_rss_mb=old.get("peak_rss_mb"),
                  message="reused from the previous run", log=old.get("log", ""), result=old.get("result"))
    t.started, t.finished = _from_iso(old.get("started")), _from_iso(old.get("finished"))
    t.parameters, t.outputs = dict(old.get("parameters", {})), dict(old.get("outputs", {}))
    t.artifacts = dict(old.get("artifacts", {}))
    t.resources = dict(old.get("resources", {}))
    return t


def _insert(state: RunState, t: TaskState, prefix: str) -> None:
    """Add a nested DAG's step right after its group (and the group's earlier steps) in the display order."""
    state.tasks[t.name] = t
    parent = prefix[:-1]
    spots = [i for i, n in enumerate(state.order) if n == parent or (prefix and n.startswith(prefix))]
    state.order.insert(spots[-1] + 1 if spots else len(state.order), t.name)
