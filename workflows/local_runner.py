"""Run a compiled Argo WorkflowTemplate (the YAML Argo runs) on this machine, without a cluster.

The runner executes the subset of Argo features the pipeline uses, with Argo's semantics:

- workflow ``arguments`` (template values + ``-p`` overrides, validated by a pluggable validator);
- a DAG entrypoint: ``depends`` / ``dependencies``, ``when``, ``continueOn``, fail-fast; tasks run one
  at a time in dependency order (Argo runs independent tasks in parallel; results are the same);
- ``{{workflow.*}}``, ``{{inputs.parameters.*}}``, ``{{tasks.X.outputs.*}}`` and ``{{= … }}`` tags;
- ``script`` templates (Hera's runner: ``python -m hera.workflows.runner -e mod:fn`` + the source
  written to a file whose path is appended, exactly as Argo's executor does) and ``container``
  templates, as subprocesses; outputs from ``valueFrom.path`` and stdout (``outputs.result``);
- ``onExit`` with ``{{workflow.status}}`` / ``{{workflow.failures}}``.

**Volumes.** Every mounted volume is a local folder: the workspace volume (the first
``volumeClaimTemplates`` entry, else a volume named ``workspace``, else the first volume) is
``--workspace DIR``; others live under ``DIR/.volumes/<name>``. Mount paths are *rewritten* to those
folders in every string the pod would see (parameter values, env values, command/args, output paths),
at path boundaries only (``/workspace`` and ``/workspace/x``, not ``/workspaces``). Rewriting needs no
cooperation from the steps and keeps them identical to what runs in the pod. Paths outside any mount
(``hera__outputs_directory``, ``/tmp/…`` outputs) are mapped under ``DIR/.pods/<task>/``.

**Secrets.** ``secretKeyRef`` env values come from the local environment variable of the same
name (``HF_TOKEN``…); missing + ``optional`` → omitted, missing + required → a clear error. The
local environment's secret variables are *not* inherited otherwise, so only what the template maps
reaches a step.

Features that cannot run here (resource, suspend, steps, http, plugin templates; withItems; input
artifacts; sidecars…) fail with an error naming the feature, or are skipped when a ``when`` says so.
Scheduling fields (resources, nodeSelector, tolerations, retryStrategy, podGC, …) are ignored.
"""

import contextlib
import datetime as _dt
import difflib
import hashlib
import json
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steps.errors import StepError
from steps.secrets import SECRET_ENV_VARS, scrub
from steps.workspace import write_json
from workflows.argo_expr import ExprError, depends_targets, eval_depends, eval_expression, eval_when, render

RUN_JSON = "run.json"
LOGS = "logs"
TERMINAL = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")
_PLACEHOLDER = re.compile(r"\{\{\s*(=?)\s*(.*?)\s*\}\}", re.S)
_UNSUPPORTED_TEMPLATE = ("resource", "suspend", "steps", "http", "plugin", "data", "containerSet")
_UNSUPPORTED_TASK = ("withItems", "withParam", "withSequence", "hooks", "onExit", "inline")
_UNSUPPORTED_POD = ("initContainers", "sidecars")

Validator = Callable[[dict[str, str]], dict[str, str]]
Listener = Callable[["RunState", str], None]


class RunError(StepError):
    """The local run could not start, or a task failed."""


# --------------------------------------------------------------------------------------------- loading


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a compiled WorkflowTemplate (or Workflow) YAML file."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"template {p} not found: run `make compile` (or pass --template PATH)")
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]
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


def pipeline_validator(values: dict[str, str]) -> dict[str, str]:
    """Check with the pipeline's own parameter rules (workflows/params.py); values pass on unchanged, as Argo's."""
    from workflows import params

    params.validate(values)
    return values


def default_validator(doc: Mapping[str, Any]) -> Validator:
    """The pipeline's rules when every argument is one of the pipeline's parameters, else the generic check."""
    from workflows import params

    generic = generic_validator(doc)
    names = set(template_arguments(doc))
    if names and names <= set(params.BY_NAME):
        return lambda values: pipeline_validator(generic(values))
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


# ---------------------------------------------------------------------------------------------- state


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
        }

    def save(self) -> None:
        write_json(self.workspace / RUN_JSON, self.to_json())


def read_run(workspace: str | os.PathLike[str]) -> dict[str, Any]:
    """The run.json of an earlier run in ``workspace``."""
    path = Path(workspace) / RUN_JSON
    if not path.is_file():
        raise RunError(f"no earlier run in {workspace} ({RUN_JSON} missing): run without --from-step first")
    return json.loads(path.read_text(encoding="utf-8"))


# -------------------------------------------------------------------------------------------- the pod


@dataclass
class _Pod:
    """Everything a template's container would see, mapped to this machine."""

    mounts: list[tuple[str, Path]]  # (mount path, local dir), longest mount path first
    root: Path  # DIR/.pods/<task>: stand-in for the container's own filesystem

    def rewrite(self, text: str) -> str:
        for mount, local in self.mounts:
            text = re.sub(rf"(?<![\w.\-/]){re.escape(mount.rstrip('/'))}(?=/|$|[\s\"',;:\]\)}}])", str(local), text)
        return text

    def local_path(self, path: str) -> Path:
        mapped = self.rewrite(path)
        if mapped != path:
            return Path(mapped)
        return self.root / path.lstrip("/")


class LocalRunner:
    """Executes one WorkflowTemplate document locally; see the module docstring for the feature set."""

    def __init__(self, doc: Mapping[str, Any], workspace: str | os.PathLike[str], *, template_path: str = "",
                 overrides: Mapping[str, str] | None = None, validator: Validator | None = None,
                 from_step: str = "", listener: Listener | None = None, python: str = sys.executable) -> None:
        self.doc = doc
        self.spec: Mapping[str, Any] = doc.get("spec") or {}
        self.templates: dict[str, Mapping[str, Any]] = {t["name"]: t for t in self.spec.get("templates") or []}
        self.workspace = Path(workspace).expanduser().resolve()
        self.python = python
        self.listener = listener or (lambda state, event: None)
        self.from_step = from_step
        self.overrides = dict(overrides or {})
        self.validator = validator if validator is not None else default_validator(doc)
        self.template_path = template_path
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ set-up

    def _entry_dag(self) -> tuple[str, list[dict[str, Any]]]:
        entry = self.spec.get("entrypoint")
        if not entry or entry not in self.templates:
            raise RunError(f"entrypoint {entry!r} is not a template of this WorkflowTemplate")
        tmpl = self.templates[entry]
        if "dag" not in tmpl:
            return entry, [{"name": entry, "template": entry}]
        return entry, self._check_dag(tmpl)

    def _check_dag(self, tmpl: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The DAG's tasks with templateRef resolved; unknown templates/tasks and loops fail clearly."""
        tasks = [dict(t) for t in tmpl["dag"].get("tasks") or []]
        names = [t["name"] for t in tasks]
        for t in tasks:
            for feature in _UNSUPPORTED_TASK:
                if feature in t:
                    raise RunError(f"task {t['name']!r} uses {feature}, which the local runner does not support")
            ref = t.get("templateRef")
            if ref:
                if ref.get("name") != self.doc.get("metadata", {}).get("name") or ref.get("clusterScope"):
                    raise RunError(f"task {t['name']!r} uses templateRef to {ref.get('name')!r}: only references "
                                   "to this same WorkflowTemplate can run locally")
                t["template"] = ref.get("template")
            if t.get("template") not in self.templates:
                raise RunError(f"task {t['name']!r} refers to unknown template {t.get('template')!r}")
            for dep in self._deps(t):
                if dep not in names:
                    raise RunError(f"task {t['name']!r} depends on unknown task {dep!r}")
        self._order(tasks)  # cycles fail before anything runs
        return tasks

    @staticmethod
    def _deps(task: Mapping[str, Any]) -> list[str]:
        if task.get("depends"):
            return depends_targets(str(task["depends"]))
        return list(task.get("dependencies") or [])

    @staticmethod
    def _order(tasks: list[Mapping[str, Any]]) -> list[str]:
        """Topological order, keeping the template's order among ready tasks (Kahn's algorithm)."""
        deps = {t["name"]: LocalRunner._deps(t) for t in tasks}
        done: list[str] = []
        while len(done) < len(tasks):
            ready = [n for n in deps if n not in done and all(d in done for d in deps[n])]
            if not ready:
                cycle = [n for n in deps if n not in done]
                raise RunError(f"the DAG has a dependency cycle among tasks {', '.join(cycle)}")
            done.append(ready[0])
        return done

    def _resolve_arguments(self, previous: Mapping[str, Any] | None) -> dict[str, str]:
        values: dict[str, str | None] = template_arguments(self.doc)
        if previous:
            secret = set(previous.get("secret_parameters", []))
            for k, v in previous.get("parameters", {}).items():
                if k in values and k not in secret:
                    values[k] = v
        for k, v in self.overrides.items():
            values[k] = v
        unknown = {k: v for k, v in self.overrides.items() if k not in template_arguments(self.doc)}
        checked = self.validator({**{k: v for k, v in values.items() if v is not None}, **unknown})
        values.update(checked)
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise RunError(f"parameter {missing[0]} has no value: pass -p {missing[0]}=<value>")
        return {k: str(v) for k, v in values.items()}

    def _volumes(self) -> dict[str, Path]:
        names = [v["metadata"]["name"] for v in self.spec.get("volumeClaimTemplates") or []]
        names += [v["name"] for v in self.spec.get("volumes") or []]
        if not names:
            return {}
        ws = names[0] if self.spec.get("volumeClaimTemplates") else ("workspace" if "workspace" in names else names[0])
        return {n: self.workspace if n == ws else self.workspace / ".volumes" / n for n in names}

    # -------------------------------------------------------------------- run

    def run(self) -> RunState:
        """Run the DAG and the exit handler; return the final state (also in DIR/run.json)."""
        entry, tasks = self._entry_dag()
        order = self._order(tasks)
        by_name = {t["name"]: t for t in tasks}
        previous = None
        if self.from_step:
            if self.from_step not in by_name:
                close = difflib.get_close_matches(self.from_step, by_name, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise RunError(f"--from-step {self.from_step!r} is not a task of {entry}{hint}: "
                               f"tasks are {', '.join(order)}")
            previous = read_run(self.workspace)
        params = self._resolve_arguments(previous)
        if not previous:
            self._fresh_workspace()
        self.workspace.mkdir(parents=True, exist_ok=True)
        (self.workspace / LOGS).mkdir(exist_ok=True)
        meta = self.doc.get("metadata") or {}
        base = meta.get("name") or meta.get("generateName", "workflow").rstrip("-")
        name = (previous or {}).get("workflow", {}).get("name") or f"{base}-local-{uuid.uuid4().hex[:5]}"
        sha = hashlib.sha256(json.dumps(self.doc, sort_keys=True).encode()).hexdigest()
        state = RunState(
            name=name, uid=str(uuid.uuid4()), namespace=meta.get("namespace", "local"),
            template_path=self.template_path, template_sha256=sha, workspace=self.workspace, parameters=params,
            secret_params=secret_param_names(self.doc), overrides=dict(self.overrides),
            tasks={n: TaskState(n, by_name[n]["template"]) for n in order},
            order=list(order), from_step=self.from_step,
        )
        self.volumes = self._volumes()
        if previous:
            self._mark_reused(state, previous, by_name)
        state.notes += self._ignored_notes()
        state.save()
        self.listener(state, "start")
        interrupted = False
        try:
            self._run_dag(state, entry, tasks, prefix="", inputs={})
        except KeyboardInterrupt:
            interrupted = True
            state.error = state.error or "interrupted"
            for t in state.tasks.values():
                if t.phase == "Running" and t.kind == "pod":
                    state.failed_task = state.failed_task or t.name.split(".")[0]
                if t.phase in ("Pending", "Running"):
                    t.phase, t.message = "Failed" if t.phase == "Running" else "Omitted", "interrupted"
                    t.finished = t.finished or time.time()
        failed = [state.tasks[n] for n in order
                  if state.tasks[n].phase in ("Failed", "Error") and not self._continues(by_name[n], state.tasks[n])]
        state.phase = "Failed" if failed or interrupted else "Succeeded"
        if failed and not state.error:
            first = failed[0]
            state.failed_task = first.name
            state.error = f"step {first.name!r} failed" + (f" (exit {first.exit_code})" if first.exit_code else "") + \
                (f": {first.message}" if first.message else "")
        if self.spec.get("onExit") and not interrupted:
            self._run_exit_handler(state)
        state.finished = time.time()
        state.save()
        self.listener(state, "end")
        if interrupted:
            raise KeyboardInterrupt
        return state

    def _fresh_workspace(self) -> None:
        """A new run gets an empty workspace, as Argo gives each workflow a new volume.

        A folder holding an earlier local run (run.json) is cleared; any other non-empty folder is refused,
        so a mistyped --workspace never deletes unrelated files.
        """
        ws = self.workspace
        if not ws.exists() or not any(ws.iterdir()):
            return
        if not ws.is_dir() or not (ws / RUN_JSON).is_file():
            raise RunError(f"workspace {ws} is not empty and holds no earlier local run: pass an empty or new "
                           "folder to --workspace (or --from-step to resume a run)")
        for child in ws.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _ignored_notes(self) -> list[str]:
        ignored_spec = [k for k in ("serviceAccountName", "podGC", "ttlStrategy", "activeDeadlineSeconds",
                                    "volumeClaimGC", "parallelism", "nodeSelector", "tolerations", "affinity",
                                    "podMetadata", "artifactRepositoryRef", "retryStrategy") if k in self.spec]
        notes = [f"ignored locally (cluster-only settings): spec.{', spec.'.join(ignored_spec)}"] * bool(ignored_spec)
        ignored_tmpl = sorted({k for t in self.templates.values() for k in t if k in (
            "nodeSelector", "tolerations", "affinity", "retryStrategy", "podSpecPatch", "metadata",
            "serviceAccountName", "securityContext", "synchronization", "priorityClassName", "memoize")} |
            {"resources" for t in self.templates.values()
             if (t.get("script") or t.get("container") or {}).get("resources")})
        if ignored_tmpl:
            notes.append(f"ignored locally (scheduling settings): templates' {', '.join(ignored_tmpl)}")
        return notes

    def _mark_reused(self, state: RunState, previous: Mapping[str, Any], by_name: Mapping[str, Any]) -> None:
        """--from-step: tasks outside the resumed step's downstream keep their previous result."""
        top = list(state.order)
        downstream = {self.from_step}
        for n in top:
            if any(d in downstream for d in self._deps(by_name[n])):
                downstream.add(n)
        prev_tasks = previous.get("tasks", {})
        ancestors = self._ancestors(self.from_step, by_name)
        for n in top:
            if n in downstream:
                continue
            old = prev_tasks.get(n)
            if old and old.get("phase") in ("Succeeded", "Skipped"):
                state.tasks[n] = _reused(n, old)
                for sub, sub_old in prev_tasks.items():
                    if sub.startswith(n + ".") and sub not in state.tasks:
                        _insert(state, _reused(sub, sub_old), n + ".")
            elif n in ancestors:
                phase = old.get("phase") if old else "not run"
                raise RunError(f"cannot resume from {self.from_step!r}: earlier step {n!r} did not succeed in the "
                               f"previous run ({phase}); resume from {n!r} instead")

    def _ancestors(self, name: str, by_name: Mapping[str, Any]) -> set[str]:
        out: set[str] = set()
        todo = list(self._deps(by_name[name]))
        while todo:
            d = todo.pop()
            if d not in out:
                out.add(d)
                todo += self._deps(by_name[d])
        return out

    @staticmethod
    def _continues(task: Mapping[str, Any], t: TaskState) -> bool:
        cont = task.get("continueOn") or {}
        return bool(cont.get("failed") and t.phase == "Failed" or cont.get("error") and t.phase == "Error")

    def _run_dag(self, state: RunState, tmpl_name: str, tasks: list[dict[str, Any]], prefix: str,
                 inputs: Mapping[str, str]) -> TaskState | None:
        """Run one DAG's tasks in dependency order; return its first failed task (None: the DAG succeeded)."""
        fail_fast = self.templates[tmpl_name].get("dag", {}).get("failFast", True)
        by_name = {t["name"]: t for t in tasks}
        stopped = False
        first_failed: TaskState | None = None
        for n in self._order(tasks):
            task = by_name[n]
            t = state.tasks.get(prefix + n)
            if t is None:
                t = TaskState(prefix + n, task["template"])
                _insert(state, t, prefix)
            if t.reused:
                self.listener(state, t.name)
                continue
            deps = self._deps(task)
            phases = {d: state.tasks[prefix + d].phase for d in deps}
            expr = str(task.get("depends") or " && ".join(deps))
            if stopped:
                t.phase, t.message = "Omitted", "not started: an earlier step failed"
            elif deps and not eval_depends(expr, phases):
                t.phase, t.message = "Omitted", f"not started: depends {expr!r} is false"
            else:
                self._run_task(state, t, task, prefix, inputs)
                if t.phase in ("Failed", "Error") and not self._continues(task, t):
                    first_failed = first_failed or t
                    stopped = stopped or fail_fast
            state.save()
            self.listener(state, t.name)
        return first_failed

    def _run_task(self, state: RunState, t: TaskState, task: Mapping[str, Any], prefix: str,
                  dag_inputs: Mapping[str, str]) -> None:
        ctx = self._context(state, dag_inputs, prefix)
        try:
            if task.get("when") is not None:
                cond = self._substitute(str(task["when"]), ctx, f"task {t.name} when")
                if not eval_when(cond):
                    t.phase, t.message = "Skipped", f"when {cond!r} is false"
                    return
            tmpl = self.templates[t.template]
            args = {p["name"]: p for p in (task.get("arguments") or {}).get("parameters") or []}
            if (task.get("arguments") or {}).get("artifacts"):
                raise RunError(f"task {t.name!r} passes artifacts, which the local runner does not support")
            given = {k: self._substitute(render(v.get("value", "")), ctx, f"task {t.name} argument {k}")
                     for k, v in args.items()}
            inputs = self._inputs(tmpl, given, t.name, state)
        except StepError as exc:
            t.phase, t.message = "Error", str(exc)
            return
        t.parameters = inputs
        if "dag" in tmpl:
            self._run_group(state, t, tmpl, inputs)
        else:
            self._execute(state, t, tmpl, inputs)

    def _run_group(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any], inputs: dict[str, str]) -> None:
        """A task whose template is itself a DAG: its steps run as ``<task>.<step>``."""
        t.kind, t.phase, t.started = "dag", "Running", time.time()
        self.listener(state, t.name)
        try:
            failed = self._run_dag(state, tmpl["name"], self._check_dag(tmpl), t.name + ".", inputs)
        except StepError as exc:
            t.phase, t.message, t.finished = "Error", str(exc), time.time()
            return
        t.finished = time.time()
        if failed is not None:
            t.phase, t.exit_code = "Failed", failed.exit_code
            t.message = f"step {failed.name!r}: {failed.message}"
            return
        ctx = self._context(state, inputs, t.name + ".")
        try:
            for p in (tmpl.get("outputs") or {}).get("parameters") or []:
                vf = p.get("valueFrom") or {}
                if "parameter" not in vf:
                    raise RunError(f"dag template {tmpl['name']!r}: output {p['name']!r} needs valueFrom.parameter")
                t.outputs[p["name"]] = self._substitute(vf["parameter"], ctx, f"task {t.name} output {p['name']}")
        except StepError as exc:
            t.phase, t.message = "Failed", str(exc)
            return
        t.phase = "Succeeded"

    def _run_exit_handler(self, state: RunState) -> None:
        name = self.spec["onExit"]
        t = TaskState(name=name, template=name)
        state.exit_handler = t
        if name not in self.templates:
            t.phase, t.message = "Error", f"onExit template {name!r} does not exist"
        else:
            tmpl = self.templates[name]
            try:
                inputs = self._inputs(tmpl, {}, name, state)
            except StepError as exc:
                t.phase, t.message = "Error", str(exc)
            else:
                t.parameters = inputs
                if "dag" in tmpl:
                    self._run_group(state, t, tmpl, inputs)
                else:
                    self._execute(state, t, tmpl, inputs)
        if t.phase != "Succeeded":
            state.phase = "Failed"
            state.error = state.error or f"exit handler {name!r} failed: {t.message}"
        state.save()
        self.listener(state, t.name)

    # ---------------------------------------------------------- substitution

    def _context(self, state: RunState, inputs: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
        failures = [{"displayName": t.name, "templateName": t.template, "phase": t.phase, "message": t.message,
                     "exitCode": t.exit_code} for t in state.tasks.values()
                    if t.phase in ("Failed", "Error") and t.kind == "pod"]
        return {"state": state, "inputs": inputs, "failures": failures, "prefix": prefix}

    def _lookup(self, path: list[str], ctx: Mapping[str, Any], where: str) -> str:
        state: RunState = ctx["state"]
        joined = ".".join(path)
        wf = {"name": state.name, "uid": state.uid, "namespace": state.namespace,
              "creationTimestamp": _iso(state.started), "serviceAccountName": self.spec.get("serviceAccountName", ""),
              "mainEntrypoint": self.spec.get("entrypoint", "")}
        if path[0] == "workflow":
            if len(path) == 3 and path[1] == "parameters" and path[2] in state.parameters:
                return state.parameters[path[2]]
            if len(path) == 2 and path[1] in wf:
                return str(wf[path[1]])
            if path[1:] == ["status"]:
                return state.phase
            if path[1:] == ["failures"]:
                return json.dumps(ctx["failures"])
            if path[1:] == ["duration"]:
                return f"{time.time() - state.started:.3f}"
        if path[:2] == ["inputs", "parameters"]:
            if len(path) == 2:
                return json.dumps([{"name": k, "value": v} for k, v in ctx["inputs"].items()])
            if len(path) == 3 and path[2] in ctx["inputs"]:
                return ctx["inputs"][path[2]]
        if path[0] == "tasks" and len(path) >= 4 and path[2] == "outputs":
            t = state.tasks.get(ctx.get("prefix", "") + path[1])
            if t is None:
                raise RunError(f"{where}: {{{{{joined}}}}} refers to unknown task {path[1]!r}")
            if t.phase != "Succeeded":
                raise RunError(f"{where}: {{{{{joined}}}}} is unavailable: task {path[1]!r} is {t.phase}")
            if path[3] == "result" and len(path) == 4 and t.result is not None:
                return t.result
            if path[3] == "parameters" and len(path) == 5 and path[4] in t.outputs:
                return t.outputs[path[4]]
            if path[3] == "artifacts":
                raise RunError(f"{where}: {{{{{joined}}}}}: artifact passing is not supported locally")
        if path[0] == "pod" and path[1:] == ["name"]:
            return f"{state.name}-{ctx.get('task', 'pod')}"
        raise RunError(f"{where}: cannot resolve {{{{{joined}}}}}")

    def _substitute(self, text: str, ctx: Mapping[str, Any], where: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1) == "=":
                try:
                    return render(eval_expression(m.group(2), lambda p: _typed(self._lookup(p, ctx, where))))
                except ExprError as exc:
                    raise RunError(f"{where}: {exc}") from None
            return self._lookup(m.group(2).split("."), ctx, where)

        return _PLACEHOLDER.sub(one, text)

    def _inputs(self, tmpl: Mapping[str, Any], given: Mapping[str, str], task: str,
                state: RunState | None = None) -> dict[str, str]:
        declared = (tmpl.get("inputs") or {}).get("parameters") or []
        if (tmpl.get("inputs") or {}).get("artifacts"):
            raise RunError(f"template {tmpl['name']!r} (task {task}) declares input artifacts, which the local "
                           "runner does not support")
        out: dict[str, str] = {}
        for p in declared:
            n = p["name"]
            if n in given:
                value = given[n]
            elif "value" in p or "default" in p:
                value = render(p["value"] if "value" in p else p["default"])
                if state is not None:  # template-level values may use globals ({{workflow.status}} in onExit)
                    value = self._substitute(value, self._context(state, {}), f"task {task} input {n}")
            else:
                raise RunError(f"task {task}: input parameter {n!r} of template {tmpl['name']!r} has no value")
            enum = p.get("enum")
            if enum and value not in [render(e) for e in enum]:
                raise RunError(f"task {task}: {n}={value!r} must be one of {', '.join(render(e) for e in enum)}")
            out[n] = value
        return out

    # -------------------------------------------------------------- execute

    def _execute(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any], inputs: dict[str, str]) -> None:
        t.started = time.time()
        t.phase = "Running"
        t.log = f"{LOGS}/{t.name}.log"
        state.save()
        self.listener(state, t.name)
        try:
            cmd, env, cwd, pod = self._prepare(state, t, tmpl, inputs)
        except StepError as exc:
            t.phase, t.message, t.finished = "Error", str(exc), time.time()
            (self.workspace / t.log).write_text(f"error: {exc}\n", encoding="utf-8")
            return
        deadline = tmpl.get("activeDeadlineSeconds") or tmpl.get("timeout")
        timeout = _seconds(deadline)
        secrets = state.secrets() + tuple(v for k, v in env.items() if k in SECRET_ENV_VARS and v)
        code, stdout, last_err, rss = self._spawn(state, t, cmd, env, cwd, secrets, timeout)
        t.exit_code, t.peak_rss_mb = code, rss
        t.finished = time.time()
        if code != 0:
            t.phase = "Failed"
            t.message = scrub(last_err, secrets) if code != -9 or not timeout else \
                f"exceeded activeDeadlineSeconds={deadline}"
            return
        try:
            self._collect(t, tmpl, pod, stdout, self._context(state, inputs))
        except StepError as exc:
            t.phase, t.message = "Failed", str(exc)
            return
        t.phase = "Succeeded"

    def _prepare(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any],
                 inputs: dict[str, str]) -> tuple[list[str], dict[str, str], str, _Pod]:
        for feature in _UNSUPPORTED_TEMPLATE:
            if feature in tmpl:
                what = {"resource": "resource templates (Kubernetes objects such as a TrainJob) need a cluster",
                        "steps": "steps templates are not supported locally (use a dag)"}.get(
                    feature, f"{feature} templates are not supported locally")
                raise RunError(f"task {t.name!r} uses template {tmpl['name']!r}: {what}")
        if "dag" in tmpl:
            raise RunError(f"task {t.name!r}: nested dag template {tmpl['name']!r} is not supported locally")
        for feature in _UNSUPPORTED_POD:
            if tmpl.get(feature):
                raise RunError(f"template {tmpl['name']!r} uses {feature}, which the local runner does not support")
        body = tmpl.get("script") or tmpl.get("container")
        if body is None:
            raise RunError(f"template {tmpl['name']!r} has no script or container, so it cannot run locally")
        ctx = {**self._context(state, inputs, t.name.rpartition(".")[0] + "." if "." in t.name else ""),
               "task": t.name}
        where = f"task {t.name}"
        pod_root = self.workspace / ".pods" / t.name
        shutil.rmtree(pod_root, ignore_errors=True)
        pod_root.mkdir(parents=True)
        mounts: list[tuple[str, Path]] = []
        local_vols = {v["name"]: pod_root / "volumes" / v["name"] for v in tmpl.get("volumes") or []}
        for vm in body.get("volumeMounts") or []:
            base = local_vols.get(vm["name"]) or self.volumes.get(vm["name"])
            if base is None:
                raise RunError(f"template {tmpl['name']!r} mounts unknown volume {vm['name']!r}")
            local = base / vm["subPath"] if vm.get("subPath") else base
            local.mkdir(parents=True, exist_ok=True)
            mounts.append((vm["mountPath"], local))
        mounts += self._output_dirs(tmpl, body, mounts, pod_root)
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        pod = _Pod(mounts, pod_root)
        sub = lambda s, what: pod.rewrite(self._substitute(render(s), ctx, f"{where} {what}"))  # noqa: E731
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH", "")] if p])
        for e in body.get("env") or []:
            value = self._env_value(e, tmpl, t, sub)
            if value is not None:
                env[e["name"]] = value
        for ef in body.get("envFrom") or []:
            ref = ef.get("secretRef") or ef.get("configMapRef") or {}
            if not ref.get("optional"):
                raise RunError(f"template {tmpl['name']!r} takes envFrom {ref.get('name')!r}, which the local runner "
                               "cannot map; set the variables in env with secretKeyRef, or mark it optional")
            state.notes.append(f"{t.name}: optional envFrom {ref.get('name')!r} skipped locally")
        cmd = [sub(c, "command") for c in body.get("command") or []] + [sub(a, "args") for a in body.get("args") or []]
        if "source" in body:
            script = pod_root / "argo" / "staging" / "script"
            script.parent.mkdir(parents=True)
            script.write_text(sub(body["source"], "source"), encoding="utf-8")
            cmd.append(str(script))
        if not cmd:
            raise RunError(f"template {tmpl['name']!r} has no command: the image's entrypoint is unknown locally")
        if cmd[0] in ("python", "python3") or re.fullmatch(r"(/usr(/local)?/bin/)?python3?(\.\d+)?", cmd[0]):
            cmd[0] = self.python
        cwd = sub(body["workingDir"], "workingDir") if body.get("workingDir") else os.getcwd()
        if body.get("workingDir") and not Path(cwd).is_dir():
            cwd = str(pod.local_path(body["workingDir"]))
            Path(cwd).mkdir(parents=True, exist_ok=True)
        return cmd, env, cwd, pod

    @staticmethod
    def _output_dirs(tmpl: Mapping[str, Any], body: Mapping[str, Any], mounts: list[tuple[str, Path]],
                     pod_root: Path) -> list[tuple[str, Path]]:
        """Folders the template writes outputs to outside its volumes (``/tmp/hera-outputs``, ``/tmp/outputs``):
        mapped under the pod root, so parameter values and env naming them are rewritten too."""
        outputs = tmpl.get("outputs") or {}
        paths = [(p.get("valueFrom") or {}).get("path") for p in outputs.get("parameters") or []]
        paths = [posixpath.dirname(str(x)) for x in paths + [a.get("path") for a in outputs.get("artifacts") or []]
                 if x and "{{" not in str(x)]
        paths += [str(e.get("value")) for e in body.get("env") or [] if e.get("name") == "hera__outputs_directory"]
        out: list[tuple[str, Path]] = []
        for d in sorted(set(paths)):
            d = d.rstrip("/")
            under_mount = any(d == m.rstrip("/") or d.startswith(m.rstrip("/") + "/") for m, _ in mounts)
            if d.count("/") >= 2 and d.startswith("/") and not under_mount:  # never map / or /tmp wholesale
                local = pod_root / d.lstrip("/")
                local.mkdir(parents=True, exist_ok=True)
                out.append((d, local))
        return out

    def _env_value(self, e: Mapping[str, Any], tmpl: Mapping[str, Any], t: TaskState,
                   sub: Callable[[Any, str], str]) -> str | None:
        name = e["name"]
        if "valueFrom" not in e:
            return sub(e.get("value", ""), f"env {name}")
        vf = e["valueFrom"]
        ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
        if ref is not None:
            kind = "secret" if "secretKeyRef" in vf else "configmap"
            if os.environ.get(name):
                return os.environ[name]
            if ref.get("optional"):
                return None
            raise RunError(f"task {t.name!r} needs env {name} from {kind} {ref.get('name')!r} (key {ref.get('key')!r}):"
                           f" export {name}=… locally, or make the {kind} reference optional")
        if "fieldRef" in vf:
            fp = vf["fieldRef"].get("fieldPath")
            values = {"metadata.name": f"local-{t.name}", "metadata.namespace": "local", "spec.nodeName": "localhost",
                      "status.podIP": "127.0.0.1", "spec.serviceAccountName": self.spec.get("serviceAccountName", "")}
            if fp in values:
                return values[fp]
            raise RunError(f"template {tmpl['name']!r}: env {name} fieldRef {fp!r} is not supported locally")
        raise RunError(f"template {tmpl['name']!r}: env {name} valueFrom {list(vf)} is not supported locally")

    def _spawn(self, state: RunState, t: TaskState, cmd: list[str], env: dict[str, str], cwd: str,
               secrets: tuple[str, ...], timeout: float | None) -> tuple[int, str, str, float | None]:
        log_path = self.workspace / t.log
        out_lines: list[str] = []
        err_tail: list[str] = []
        lock = threading.Lock()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                        start_new_session=True)
            except OSError as exc:
                log.write(f"error: {exc}\n")
                return 127, "", f"cannot start {cmd[0]!r}: {exc.strerror}", None
            self._proc = proc

            def pump(stream: Any, is_out: bool) -> None:
                for raw in iter(stream.readline, b""):
                    line = raw.decode("utf-8", "replace")
                    if is_out:
                        out_lines.append(line)
                    clean = scrub(line.rstrip("\n"), secrets)
                    with lock:
                        log.write(clean + "\n")
                        log.flush()
                    if not is_out and clean.strip():
                        err_tail.append(clean)
                        del err_tail[:-40]
                    progress = parse_progress(clean)
                    if progress:
                        t.progress = progress
                        self.listener(state, t.name)
                stream.close()

            threads = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
                       threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
            for th in threads:
                th.start()
            done = threading.Event()
            threading.Thread(target=self._watch_metrics, args=(state, t, done), daemon=True).start()
            timer = threading.Timer(timeout, self._kill, args=(proc,)) if timeout else None
            if timer:
                timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                self._kill(proc)
                with contextlib.suppress(ChildProcessError):
                    os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise
            finally:
                if timer:
                    timer.cancel()
            done.set()
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            for th in threads:
                th.join(timeout=10)
            self._proc = None
            log.write(f"# exit code {code}\n")
        return code, "".join(out_lines), one_line_error(err_tail, code), round(usage.ru_maxrss / 1024, 1)

    def _watch_metrics(self, state: RunState, t: TaskState, done: threading.Event) -> None:
        """Training progress from a ``training_metrics_*.jsonl`` the running step writes in the workspace
        (mini-trainer's workers log there, not to the step's own stderr)."""
        started = t.started or time.time()
        while not done.wait(1.0):
            files = [f for f in self.workspace.glob("*/training_metrics_*.jsonl") if f.stat().st_mtime >= started]
            if not files:
                continue
            with contextlib.suppress(OSError), open(max(files, key=lambda f: f.stat().st_mtime), "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                lines = fh.read().decode("utf-8", "replace").splitlines()
                progress = next((p for p in map(parse_progress, reversed(lines)) if p), "")
                if progress and progress != t.progress:
                    t.progress = progress
                    self.listener(state, t.name)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _collect(self, t: TaskState, tmpl: Mapping[str, Any], pod: _Pod, stdout: str, ctx: Mapping[str, Any]) -> None:
        t.result = stdout.rstrip("\n")
        outputs = tmpl.get("outputs") or {}
        for p in outputs.get("parameters") or []:
            n = p["name"]
            vf = p.get("valueFrom") or {}
            if "value" in p:
                t.outputs[n] = self._substitute(render(p["value"]), ctx, f"task {t.name} output {n}")
                continue
            if "path" not in vf:
                raise RunError(f"template {tmpl['name']!r}: output parameter {n!r} uses valueFrom {list(vf)}; only "
                               "path (and default) are supported locally")
            local = pod.local_path(vf["path"])
            if not local.is_file() and pod.rewrite(vf["path"]) == vf["path"] and Path(vf["path"]).is_file():
                local = Path(vf["path"])
            if local.is_file():
                t.outputs[n] = local.read_text(encoding="utf-8").strip()
            elif "default" in vf:
                t.outputs[n] = render(vf["default"])
            else:
                raise RunError(f"output parameter {n!r}: {vf['path']} was not written (looked at {local})")
        for a in outputs.get("artifacts") or []:
            if "path" not in a:
                continue
            local = pod.local_path(a["path"])
            if local.exists():
                t.artifacts[a["name"]] = str(local)
            elif not a.get("optional"):
                raise RunError(f"output artifact {a['name']!r}: {a['path']} was not written (looked at {local})")


def _reused(name: str, old: Mapping[str, Any]) -> TaskState:
    """A task state copied from the previous run's run.json."""
    t = TaskState(name, old.get("template", ""), phase=old.get("phase", "Succeeded"), kind=old.get("kind", "pod"),
                  reused=True, exit_code=old.get("exit_code"), peak_rss_mb=old.get("peak_rss_mb"),
                  message="reused from the previous run", log=old.get("log", ""), result=old.get("result"))
    t.started, t.finished = _from_iso(old.get("started")), _from_iso(old.get("finished"))
    t.parameters, t.outputs = dict(old.get("parameters", {})), dict(old.get("outputs", {}))
    t.artifacts = dict(old.get("artifacts", {}))
    return t


def _insert(state: RunState, t: TaskState, prefix: str) -> None:
    """Add a nested DAG's step right after its group (and the group's earlier steps) in the display order."""
    state.tasks[t.name] = t
    parent = prefix[:-1]
    spots = [i for i, n in enumerate(state.order) if n == parent or (prefix and n.startswith(prefix))]
    state.order.insert(spots[-1] + 1 if spots else len(state.order), t.name)


def _typed(text: str) -> Any:
    """Argo expression variables are strings; numbers stay strings too (use asInt/asFloat)."""
    return text


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))(?:: (.*))?$")


def one_line_error(lines: list[str], code: int) -> str:
    """The one line that says why a step failed: ``error: …`` or the exception line of a traceback."""
    for line in reversed(lines):
        s = line.strip()
        if s.startswith("error: "):
            return s[len("error: "):]
        m = _EXC_LINE.match(s)
        if m:
            name, msg = m.group(1), (m.group(2) or "").strip()
            return msg if name == "StepError" and msg else f"{name}: {msg}" if msg else name
    if code < 0:
        return f"killed by signal {-code}"
    tail = [x.strip() for x in lines if x.strip()]
    return tail[-1][:300] if tail else f"exit code {code}"


_JSON_PROGRESS = re.compile(r"\{.*\"step\"\s*:\s*\d+.*\"loss\"\s*:.*\}")
_TEXT_PROGRESS = re.compile(r"\bstep[\s:=]+(\d+)(?:\s*/\s*(\d+))?\b.*?\bloss[\s:=]+([0-9.]+(?:[eE][-+]?\d+)?)", re.I)


def parse_progress(line: str) -> str:
    """``step N[/M] loss X`` from a training log line (mini-trainer JSON metrics or text), else ''."""
    m = _JSON_PROGRESS.search(line)
    if m:
        try:
            d = json.loads(m.group(0))
            total = d.get("total_steps") or d.get("steps_per_epoch")
            return f"step {d['step']}" + (f"/{total}" if total else "") + f" loss {float(d['loss']):.4f}"
        except (ValueError, KeyError, TypeError):
            pass
    m = _TEXT_PROGRESS.search(line)
    if m:
        return f"step {m.group(1)}" + (f"/{m.group(2)}" if m.group(2) else "") + f" loss {float(m.group(3)):.4f}"
    return ""
