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

**What a cluster refuses is refused here.** Before the first task the runner checks the template as the
cluster would (``workflows.argo.lint.cluster_errors``): against the full Argo CRDs as written, every string
through Argo's template engine (a tag ends at the first ``}}``), and every Pod and resource manifest
rendered with this run's parameters (``podSpecPatch`` merged, resources, volumes) through
kubernetes-validate; on the pipeline's own template also the lint's other rules (``policy_errors``).
Each task's Pod is rendered and validated again with its real inputs before it runs.

The workspace PVC's ``resource`` templates (create/apply, merge patch, delete) are rendered and validated;
creating it means the local workspace folder, deleting it keeps the folder, and run.json's ``claims`` records
what a cluster would do with the claim (owned by the workflow, patched, deleted by a task) and whether it is
left once the run's cleanup is done. A template's own PersistentVolumeClaim volume is the folder given with
``--pvc CLAIM=DIR`` (without one the task fails, as its pod would stay Pending). Other features that cannot run here
(other resource templates such as a TrainJob, suspend, steps, http, plugin templates; withItems; input
artifacts; sidecars…) fail with an error naming the feature, or are skipped when a ``when`` says so.
Scheduling fields (nodeSelector, tolerations, retryStrategy, podGC, securityContext, …) are validated with
the Pod but not applied.
"""

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from workflows.argo.expr import depends_targets, eval_depends, eval_when, render
from workflows.local.pod import PodExecutor
from workflows.local.render import TagRenderer
from workflows.local.state import LOGS, RUN_JSON, RunState, TaskState, _insert, _reused, read_run
from workflows.local.template import RunError, Validator, default_validator, secret_param_names, template_arguments

_UNSUPPORTED_TASK = ("withItems", "withParam", "withSequence", "hooks", "onExit", "inline")

Listener = Callable[["RunState", str], None]


class LocalRunner(TagRenderer, PodExecutor):
    """Executes one WorkflowTemplate document locally; see the module docstring for the feature set."""

    def __init__(self, doc: Mapping[str, Any], workspace: str | os.PathLike[str], *, template_path: str = "",
                 overrides: Mapping[str, str] | None = None, validator: Validator | None = None,
                 from_step: str = "", listener: Listener | None = None, python: str = sys.executable,
                 check_cluster: bool = True, pvcs: Mapping[str, str] | None = None) -> None:
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
        self.check_cluster = check_cluster
        self.pvcs = {k: str(Path(v).expanduser().resolve()) for k, v in (pvcs or {}).items()}
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
        self._cluster_check(params)
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
            state.claims = {n: {"owned": c.get("owned", False), "deleted_by": None,
                                **({"manifest": c["manifest"]} if c.get("manifest") else {})}
                            for n, c in (previous.get("claims") or {}).items()}
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

    def _cluster_check(self, params: Mapping[str, str]) -> None:
        """Refuse, before anything runs, a template a cluster would refuse (see the module docstring)."""
        if not self.check_cluster:
            return
        from workflows.argo.lint import cluster_errors, policy_errors
        from workflows.params import TEMPLATES

        errors = cluster_errors(dict(self.doc), values=params)
        if (self.doc.get("metadata") or {}).get("name") in TEMPLATES:  # the pipeline's templates: every lint rule
            errors += [e for e in policy_errors(dict(self.doc)) if e not in errors]
        if errors:
            more = f" (and {len(errors) - 1} more: `osft-pipeline lint` lists them)" if len(errors) > 1 else ""
            raise RunError(f"a cluster would refuse this template: {errors[0]}{more}")

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
        validated = sorted({k for t in self.templates.values() for k in t if k in (
            "nodeSelector", "tolerations", "affinity", "podSpecPatch", "securityContext", "priorityClassName")} |
            {"resources" for t in self.templates.values()
             if (t.get("script") or t.get("container") or {}).get("resources")})
        if validated:
            notes.append(f"validated but not applied locally (pod settings): templates' {', '.join(validated)}")
        ignored_tmpl = sorted({k for t in self.templates.values() for k in t if k in (
            "retryStrategy", "serviceAccountName", "synchronization", "memoize")})
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
