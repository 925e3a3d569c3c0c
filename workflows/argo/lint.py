"""Offline checks of the generated Argo objects that see what a cluster sees. No ``argo`` binary is needed.

Rules (each has a mutation test that puts a defect back and sees it caught):

1. **Full CRDs, as written** (``crd.py``): every object against the API server's structural schema of Argo
   v3.7.18 and v4.0.10 *before* any ``{{…}}`` is substituted (quantities, int-or-string, unknown fields,
   the v4 CEL rules), with scalars typed as Go's YAML reader types them (``5e-06`` is a float there).
2. **Template engine** (``fasttemplate.py``): every string cut as Argo's engine cuts it (a tag ends at the
   first ``}}``); every tag is a variable known in its scope or an expression that parses, calls known
   functions and reads known variables.
3. **Pods and resources**: every Pod the templates create, rendered for several parameter sets (GPUs 0, 1, 8;
   workers 1, 4) with ``podSpecPatch`` merged as Argo merges it, passes ``kubernetes-validate --strict`` and
   the extended-resource rules; every ``resource`` manifest renders and validates; the TrainJob the
   multi-node step creates validates against the Kubeflow Trainer CRD.
4. **Retries and deadlines**: no ``backoff.maxDuration`` (it counts from the first attempt), the waits bounded
   (no ``backoff.cap``: Argo 3.6 does not have it), every pod deadline leaves room for a cold image pull, every
   pod has a retry, and the workflow's deadline holds every attempt on the longest path (a retried train has
   room to resume).
5. **Output parameters**: only bounded summaries (``steps/common/summary.py``), within a total budget.
6. **Security**: pods run non-root with ``fsGroup`` so an NFS RWX workspace is writable.
8. **No dangling URI** (``retention.py``): the run's cleanup (exit handler, then the workflow's deletion taking
   what it owns) simulated for every registry/storage combination: a registered ``pvc://`` workspace URI must
   survive it, and a failed run that registered nothing must leave no unowned claim. A ``merge`` patch of a
   resource is validated as the object it leaves (merged into what the run created).
7. Argo's JSON schema (v4.1.2, v4.0.5, strict), ``argo lint``-like references, install manifests with
   ``kubernetes-validate``.

:func:`cluster_errors` is the subset a cluster itself enforces (1-3); the local runner runs it before the
first task, with the run's own parameter values, plus :func:`policy_errors` (4-7) on the pipeline's template.
"""

import copy
import functools
import gzip
import importlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from steps.common.errors import StepError
from workflows.argo import crd, fasttemplate, podspec
from workflows.params import BY_NAME, TEMPLATES, params_for

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
VERSIONS = ("v4.1.2", "v4.0.5")  # Argo JSON schema (schema.json) versions
ARGO_KINDS = {"WorkflowTemplate", "CronWorkflow", "Workflow", "ClusterWorkflowTemplate"}
_GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid", "workflow.serviceAccountName",
            "workflow.creationTimestamp", "workflow.mainEntrypoint", "workflow.priority", "workflow.duration",
            "workflow.scheduledTime"}
_EXIT_ONLY = {"workflow.status", "workflow.failures"}
_POD_LOCALS = {"pod.name", "retries", "node.name", "lastRetry.exitCode", "lastRetry.status", "lastRetry.duration",
               "lastRetry.message"}
# The parameter sets every podSpecPatch is rendered with (only the names a template declares are used).
PARAMETER_MATRIX: dict[str, tuple[str, ...]] = {
    "phase_02_train_man_train_gpu": ("0", "1", "8"),
    "phase_03_eval_opt_gpu": ("0", "1", "8"),
    "phase_02_train_man_train_workers": ("1", "4"),
}
# Sets that shape the pods beyond the matrix (restricted to the parameters a template declares): pod labels and
# annotations (every slot of the single train pod's metadata filled), millicores, env vars, the TrainJob path.
SHAPE_SETS: tuple[dict[str, str], ...] = (
    {"phase_02_train_opt_labels": "team=ml, cost-center=c42",
     "phase_02_train_opt_annotations": "sidecar.istio.io/inject=false", "phase_02_train_opt_cpu": "500m",
     "phase_02_train_opt_env_vars": "NCCL_DEBUG=INFO"},
    {"phase_02_train_opt_labels": ",".join(f"example.com/l{i}=v{i}" for i in range(8)),
     "phase_02_train_opt_annotations": ",".join(f"example.com/a{i}=a note; {i}" for i in range(8)),
     "phase_02_train_man_train_workers": "4", "phase_02_train_opt_num_procs": "1"},
)
# Runner entries that must not mount the workspace: the task that waits for its volume to bind (a pod that mounts
# an unbound claim stays Pending, so it could never report why).
UNMOUNTED = frozenset({"steps.volume:wait_for_workspace"})
PULL_ALLOWANCE_S = 1800  # the least a pod's activeDeadlineSeconds may be: it counts from before the image pull
MAX_RETRY_WAIT_S = 15 * 60  # the most a step may spend waiting between its attempts, all waits together
OUTPUT_BUDGET = 64 * 1024  # all output parameters of a run together (Argo keeps them in the Workflow object)
HERA_OUTPUTS = "/tmp/hera-outputs/"  # runner return values: one small value each (Hera)
EXIT_OUTPUTS_DIR = "/tmp/outputs/"  # the exit handler's key numbers (steps/finish.py caps each)
WORKSPACE = "/workspace"


# ---------------------------------------------------------------------------------------------- JSON schema


@functools.cache
def load_schema(version: str = VERSIONS[0], kind: str = "schema") -> dict[str, Any]:
    """Argo's ``schema.json`` or ``swagger.json`` of a version (vendored, gzipped)."""
    with gzip.open(SCHEMA_DIR / f"argo-{version}.{kind}.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def strict_definitions(definitions: dict[str, Any], int_or_string: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``definitions`` with IntOrString fixed and ``additionalProperties: false`` on object types."""
    defs = copy.deepcopy(definitions)
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = int_or_string
    for d in defs.values():
        if isinstance(d, dict) and "properties" in d and "additionalProperties" not in d:
            d["additionalProperties"] = False
    return defs


@functools.cache
def _validator(version: str, kind: str) -> Any:
    from jsonschema import Draft202012Validator

    root = load_schema(version)
    defs = strict_definitions(root["definitions"], {"anyOf": [{"type": "integer"}, {"type": "string"}]})
    return Draft202012Validator({"definitions": defs, "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}"})


def schema_errors(doc: dict[str, Any], version: str = VERSIONS[0]) -> list[str]:
    """Strict JSON-schema errors of one Argo object (``path -> message``)."""
    kind = doc.get("kind", "")
    if kind not in ARGO_KINDS:
        return [f"kind {kind!r} is not an Argo workflow kind"]
    errs = sorted(_validator(version, kind).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'} -> {e.message}" for e in errs]


@functools.cache
def _swagger_validator(version: str, definition: str) -> Any:
    from jsonschema import Draft4Validator

    sw = load_schema(version, "swagger")
    defs = strict_definitions(sw["definitions"], {"type": ["integer", "string"]})
    return Draft4Validator({"definitions": defs, "$ref": f"#/definitions/{definition}"})


def request_errors(body: Any, definition: str, version: str = VERSIONS[0]) -> list[str]:
    """Errors of an Argo Server request body against its swagger definition (strict)."""
    v = _swagger_validator(version, definition)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'} -> {e.message}" for e in v.iter_errors(body)]


def crd_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Errors of an Argo object against the full CRD of Argo ``version``, as written (see ``crd.py``)."""
    return [f"{doc.get('kind')}: {e}" for e in crd.argo_errors(doc, version)]


# ---------------------------------------------------------------------------------------------- scopes


def _depends_targets(expr: str) -> set[str]:
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9_.-]*", expr or "")
    return {w.split(".")[0] for w in words if w not in ("&&", "||")}


def _deps(task: Mapping[str, Any]) -> set[str]:
    return _depends_targets(task.get("depends", "")) | set(task.get("dependencies") or [])


def _ancestors(tasks: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(_deps(tasks[name]))
    while stack:
        t = stack.pop()
        if t in seen or t not in tasks:
            continue
        seen.add(t)
        stack.extend(_deps(tasks[t]))
    return seen


def _names(items: list[dict[str, Any]] | None) -> set[str]:
    return {i["name"] for i in items or []}


def _reachable(templates: dict[str, dict[str, Any]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in templates:
            continue
        seen.add(name)
        t = templates[name]
        for task in (t.get("dag") or {}).get("tasks") or []:
            stack.append(task.get("template", ""))
        for group in t.get("steps") or []:
            stack.extend(s.get("template", "") for s in group)
    return seen


def _global_check(name: str, params: set[str], exit_scope: bool) -> str | None:
    if name.startswith("workflow.parameters."):
        p = name.removeprefix("workflow.parameters.")
        return None if p in params else f"no workflow parameter {p!r}"
    if name in _GLOBALS or name.startswith(("workflow.labels.", "workflow.annotations.")):
        return None
    if name in _EXIT_ONLY:
        return None if exit_scope else "is only set in the onExit handler"
    return "does not resolve"


class _Scopes:
    """Which variable names resolve where in one WorkflowTemplate."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        spec = doc.get("spec") or {}
        self.templates = {t.get("name", ""): t for t in spec.get("templates") or []}
        self.params = _names((spec.get("arguments") or {}).get("parameters"))
        self.exit_scope = _reachable(self.templates, spec.get("onExit", "")) if spec.get("onExit") else set()

    def spec_check(self, name: str) -> str | None:
        return _global_check(name, self.params, exit_scope=False)

    def template_check(self, tmpl: Mapping[str, Any]) -> fasttemplate.Check:
        inputs = _names((tmpl.get("inputs") or {}).get("parameters"))
        artifacts = _names((tmpl.get("inputs") or {}).get("artifacts"))
        in_exit = tmpl.get("name") in self.exit_scope
        own_tasks = {t["name"]: t for t in (tmpl.get("dag") or {}).get("tasks") or []}

        def check(name: str) -> str | None:
            if name == "inputs.parameters":
                return None
            if name.startswith("tasks.") and own_tasks:  # a DAG template's outputs read its own tasks' outputs
                m = re.fullmatch(r"tasks\.([\w-]+)\.outputs\.(parameters\.([\w-]+)|result)", name)
                if not m or m.group(1) not in own_tasks:
                    return f"no task {name.split('.')[1]!r} in dag {tmpl.get('name')}"
                src = self.templates.get(own_tasks[m.group(1)].get("template", ""), {})
                if m.group(3) and m.group(3) not in _names((src.get("outputs") or {}).get("parameters")):
                    return f"template {src.get('name')} has no output {m.group(3)!r}"
                return None
            if name.startswith("inputs.parameters."):
                p = name.removeprefix("inputs.parameters.")
                return None if p in inputs else f"no input parameter {p!r}"
            if name.startswith("inputs.artifacts."):
                a = name.removeprefix("inputs.artifacts.").split(".")[0]
                return None if a in artifacts else f"no input artifact {a!r}"
            if name in _POD_LOCALS or name.startswith("outputs."):
                return None
            return _global_check(name, self.params, in_exit)

        return check

    def task_check(self, dag_tmpl: Mapping[str, Any], tasks: dict[str, dict[str, Any]],
                   task: Mapping[str, Any]) -> fasttemplate.Check:
        inputs = _names((dag_tmpl.get("inputs") or {}).get("parameters"))
        in_exit = dag_tmpl.get("name") in self.exit_scope
        ancestors = _ancestors(tasks, task["name"])
        loops = any(k in task for k in ("withItems", "withParam", "withSequence"))

        def check(name: str) -> str | None:
            if name.startswith("tasks."):
                m = re.fullmatch(r"tasks\.([\w-]+)\.(outputs\.(parameters\.([\w-]+)|result)|status|id|startedAt|"
                                 r"finishedAt|exitCode|ip|hostNodeName)", name)
                if not m:
                    return "is not a task output reference"
                if m.group(1) not in tasks:
                    return f"no task {m.group(1)!r}"
                if m.group(1) not in ancestors:
                    return f"task {m.group(1)} is not an ancestor (add it to depends)"
                if m.group(4):
                    src = self.templates.get(tasks[m.group(1)].get("template", ""), {})
                    if m.group(4) not in _names((src.get("outputs") or {}).get("parameters")):
                        return f"template {src.get('name')} has no output {m.group(4)!r}"
                return None
            if name.startswith("inputs.parameters."):
                p = name.removeprefix("inputs.parameters.")
                return None if p in inputs else f"no input parameter {p!r} of dag {dag_tmpl.get('name')}"
            if name == "item" or name.startswith("item."):
                return None if loops else "is only set in a loop (withItems/withParam)"
            return _global_check(name, self.params, in_exit)

        return check


def _scan(obj: Any, base: str, check: fasttemplate.Check) -> list[str]:
    out = []
    for path, text in fasttemplate.strings(obj, base):
        out += [f"{path}: {p}" for p in fasttemplate.tag_problems(text, check)]
    return out


def template_engine_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every string of the object cut as Argo's template engine cuts it; every tag must resolve in its scope."""
    spec = doc.get("spec") or {}
    scopes = _Scopes(doc)
    errors = _scan({k: v for k, v in spec.items() if k != "templates"}, "spec", scopes.spec_check)
    for i, t in enumerate(spec.get("templates") or []):
        where = f"spec.templates[{i}]({t.get('name')})"
        errors += _scan({k: v for k, v in t.items() if k != "dag"}, where, scopes.template_check(t))
        dag = {task["name"]: task for task in (t.get("dag") or {}).get("tasks") or []}
        for j, task in enumerate((t.get("dag") or {}).get("tasks") or []):
            errors += _scan({k: v for k, v in task.items() if k not in ("name", "template", "depends")},
                            f"{where}.dag.tasks[{j}]({task['name']})", scopes.task_check(t, dag, task))
    return errors


# ---------------------------------------------------------------------------------------------- references


def _when_errors(when: str, where: str) -> list[str]:
    out = []
    try:
        tags = fasttemplate.tags(when)
    except fasttemplate.TemplateError:
        return []  # reported by the template-engine rule
    for tag in tags:
        before, after = when[: tag.start], when[tag.end:]
        if not (before.endswith("'") and after.startswith("'")):
            text = f"{{{{{tag.text}}}}}"
            out.append(f"{where}: when: quote {text} as '{text}' (govaluate compares strings)")
    return out


def _runner_entry(tmpl: dict[str, Any]) -> str | None:
    args = (tmpl.get("script") or {}).get("args") or []
    if "hera.workflows.runner" in args and "-e" in args:
        return args[args.index("-e") + 1]
    return None


def _secret_errors(tmpl: dict[str, Any], where: str, secrets: dict[str, tuple[str, ...]]) -> list[str]:
    out = []
    body = tmpl.get("script") or tmpl.get("container") or {}
    for env in body.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            continue
        name, key = ref.get("name"), ref.get("key")
        if name not in secrets:
            out.append(f"{where}: env {env['name']}: secret {name!r} is not one of the README's {sorted(secrets)}")
        elif key not in secrets[name]:
            out.append(f"{where}: env {env['name']}: secret {name} has no key {key!r} (README: {secrets[name]})")
        elif env["name"] != key:
            out.append(f"{where}: env {env['name']} should be named after its key {key}")
        if ref.get("optional") is not True:
            out.append(f"{where}: env {env['name']}: secret {name} must be optional (a missing secret would block "
                       "the pod instead of reaching the preflight's clear error)")
    return out


def _argument_errors(params: list[dict[str, Any]], where: str) -> list[str]:
    out = []
    for p in params:
        if "value" not in p and "valueFrom" not in p:
            out.append(f"{where}: argument {p['name']} has no value (argo submit --from needs value, not default)")
        if p.get("enum") and str(p.get("value")) not in [str(e) for e in p["enum"]]:
            out.append(f"{where}: argument {p['name']}={p.get('value')!r} is not in its enum {p['enum']}")
    return out


def workspace_volumes(spec: Mapping[str, Any]) -> set[str]:
    """Names of the volumes that are the workspace: volumeClaimTemplates, or a workflow volume named workspace."""
    claims = {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates") or []}
    return claims | ({"workspace"} & _names(spec.get("volumes")))


def template_reference_errors(doc: dict[str, Any], secrets: dict[str, tuple[str, ...]], workspace: str = WORKSPACE,
                              check_imports: bool = True) -> list[str]:
    """``argo lint``-like reference errors of a WorkflowTemplate (or Workflow), tags included."""
    errors: list[str] = []
    spec = doc.get("spec") or {}
    templates = {t.get("name", ""): t for t in spec.get("templates") or []}
    args = (spec.get("arguments") or {}).get("parameters") or []
    errors += _argument_errors(args, "spec.arguments")
    for ref in ("entrypoint", "onExit"):
        if spec.get(ref) and spec[ref] not in templates:
            errors.append(f"spec.{ref}: no template named {spec[ref]!r}")
    ws_volumes = workspace_volumes(spec)
    volumes = ws_volumes | _names(spec.get("volumes"))
    images = set()
    for name, t in templates.items():
        where = f"template {name}"
        body = t.get("script") or t.get("container")
        if body is not None:
            images.add(body.get("image"))
            mounts = {vm["name"]: vm["mountPath"] for vm in body.get("volumeMounts") or []}
            errors += [f"{where}: volumeMount {v!r} is not a declared volume" for v in mounts
                       if v not in volumes | _names(t.get("volumes"))]
            if not any(mounts.get(c) == workspace for c in ws_volumes) and _runner_entry(t) not in UNMOUNTED:
                errors.append(f"{where}: does not mount the workspace volume at {workspace}")
            errors += _secret_errors(t, where, secrets)
            if check_imports and (entry := _runner_entry(t)):
                module, _, func = entry.partition(":")
                try:
                    if not callable(getattr(importlib.import_module(module), func, None)):
                        errors.append(f"{where}: runner entry {entry}: no such function")
                except ImportError as exc:
                    errors.append(f"{where}: runner entry {entry}: {exc}")
        dag_tasks = {task["name"]: task for task in (t.get("dag") or {}).get("tasks") or []}
        for tname, task in dag_tasks.items():
            tw = f"{where} task {tname}"
            target = templates.get(task.get("template", ""))
            if target is None:
                errors.append(f"{tw}: no template named {task.get('template')!r}")
                continue
            for dep in _deps(task):
                if dep not in dag_tasks:
                    errors.append(f"{tw}: depends on unknown task {dep!r}")
            if tname in _ancestors(dag_tasks, tname):
                errors.append(f"{tw}: dependency cycle")
            given = _names((task.get("arguments") or {}).get("parameters"))
            declared = (target.get("inputs") or {}).get("parameters") or []
            errors += [f"{tw}: argument {a!r} is not an input of template {target['name']}"
                       for a in sorted(given - _names(declared))]
            errors += [f"{tw}: input {p['name']!r} of template {target['name']} has no argument and no default"
                       for p in declared if p["name"] not in given and "default" not in p and "value" not in p]
            if task.get("when"):
                errors += _when_errors(task["when"], tw)
    errors += template_engine_errors(doc)
    if len(images) > 1:
        errors.append(f"templates use {len(images)} images {sorted(map(str, images))}: use one image setting")
    return errors


def cron_reference_errors(doc: dict[str, Any], template: dict[str, Any]) -> list[str]:
    """A CronWorkflow refers to the template, overrides only its parameters (inside enums), never suspends runs."""
    errors: list[str] = []
    spec = doc.get("spec") or {}
    wspec = spec.get("workflowSpec") or {}
    ref = (wspec.get("workflowTemplateRef") or {}).get("name")
    if ref != template["metadata"]["name"]:
        errors.append(f"cron: workflowTemplateRef {ref!r} is not {template['metadata']['name']!r}")
    if "suspend" in wspec:
        errors.append("cron: workflowSpec.suspend would suspend every run; suspend the cron with spec.suspend")
    declared = {p["name"]: p for p in (template["spec"].get("arguments") or {}).get("parameters") or []}
    for p in (wspec.get("arguments") or {}).get("parameters") or []:
        if p["name"] not in declared:
            errors.append(f"cron: argument {p['name']!r} is not a parameter of the template")
        elif declared[p["name"]].get("enum") and p.get("value") not in declared[p["name"]]["enum"]:
            errors.append(f"cron: argument {p['name']}={p.get('value')!r} is not in {declared[p['name']]['enum']}")
    if not spec.get("schedules"):
        errors.append("cron: spec.schedules is empty")
    return errors


# ---------------------------------------------------------------------------------------------- pods, resources


def parameter_sets(doc: Mapping[str, Any], matrix: Mapping[str, tuple[str, ...]] = PARAMETER_MATRIX,
                   extra: tuple[Mapping[str, str], ...] | None = None) -> list[dict[str, str]]:
    """Every combination of the matrix's values for the parameters ``doc`` declares ([{}] when none), then the
    ``extra`` sets (default: the documented parameter files, e.g. the laptop cluster's) restricted to them."""
    declared = _names(((doc.get("spec") or {}).get("arguments") or {}).get("parameters"))
    names = [n for n in matrix if n in declared]
    sets = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(matrix[n] for n in names))]
    for values in extra if extra is not None else (*documented_sets(), *SHAPE_SETS):
        sets.append({k: v for k, v in values.items() if k in declared})
    return sets


def documented_sets() -> tuple[dict[str, str], ...]:
    """The parameter files the docs tell users to submit (``examples/*-params.yaml``), as Argo text."""
    from workflows.paramfile import EXAMPLES_DIR, load_parameter_file

    if not EXAMPLES_DIR.is_dir():
        return ()
    return tuple(load_parameter_file(p) for p in sorted(EXAMPLES_DIR.glob("*-params.yaml")))


def _task_invocations(doc: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(template, arguments) for every template a DAG task (or the entrypoint/onExit) runs."""
    spec = doc.get("spec") or {}
    templates = {t.get("name", ""): t for t in spec.get("templates") or []}
    out: list[tuple[dict[str, Any], dict[str, str]]] = []
    seen: set[str] = set()
    for t in templates.values():
        for task in (t.get("dag") or {}).get("tasks") or []:
            target = templates.get(task.get("template", ""))
            if target is not None:
                args = {p["name"]: str(p.get("value", "")) for p in
                        (task.get("arguments") or {}).get("parameters") or []}
                out.append((target, args))
                seen.add(target["name"])
    for name in (spec.get("entrypoint"), spec.get("onExit")):
        if name in templates and name not in seen:
            out.append((templates[name], {}))
    return out


def rendered_objects(doc: Mapping[str, Any], values: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The Pods and resource manifests a run with ``values`` (workflow parameters) creates, and render errors."""
    gv = podspec.workflow_values(doc, values)
    objs: list[dict[str, Any]] = []
    errors: list[str] = []
    created: dict[tuple[str, str], dict[str, Any]] = {}
    patches: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for tmpl, args in _task_invocations(doc):
        if not any(k in tmpl for k in ("script", "container", "resource")):
            continue
        try:
            inputs = podspec.template_inputs(tmpl, args, gv, f"template {tmpl['name']}")
            if "resource" in tmpl:
                manifest = podspec.resource_manifest(tmpl, gv, inputs)
                res = tmpl["resource"]
                if not isinstance(manifest, dict):
                    errors.append(f"template {tmpl['name']}: resource.manifest does not render to an object")
                elif res.get("action") == "patch":
                    patches.append((tmpl, manifest))  # validated as the object it produces, below
                else:
                    if res.get("action") in ("create", "apply"):
                        key = (str(manifest.get("kind")), str((manifest.get("metadata") or {}).get("name")))
                        created[key] = podspec.merge_patch(manifest, {"metadata": {"ownerReferences": [
                            podspec.owner_reference(gv)]}}) if res.get("setOwnerReference") else manifest
                    objs.append(manifest)
            else:
                objs.append(podspec.pod_for(doc, tmpl, gv, inputs))
        except podspec.RenderError as exc:
            errors.append(str(exc))
    for tmpl, patch in patches:
        res = tmpl["resource"]
        key = (str(patch.get("kind")), str((patch.get("metadata") or {}).get("name")))
        if res.get("mergeStrategy") != "merge":
            errors.append(f"template {tmpl['name']}: resource patch with mergeStrategy "
                          f"{res.get('mergeStrategy', 'strategic')!r}: only 'merge' (RFC 7386) is checked; use it")
        elif key not in created:
            errors.append(f"template {tmpl['name']}: patches {key[0]} {key[1]!r}, which no task of the workflow "
                          "creates (kubectl patch fails: NotFound)")
        else:
            objs.append(podspec.merge_patch(created[key], patch))  # the object as the patch leaves it
    return objs, errors


def _label(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "template values"


def pod_errors(doc: Mapping[str, Any], sets: list[dict[str, str]] | None = None,
               versions: tuple[str, ...] = podspec.K8S_VERSIONS) -> list[str]:
    """Render every Pod/resource for each parameter set (podSpecPatch merged) and validate it (strict)."""
    errors: list[str] = []
    checked: dict[str, list[str]] = {}
    for values in sets if sets is not None else parameter_sets(doc):
        objs, render_errors = rendered_objects(doc, values)
        errors += [f"{e} (with {_label(values)})" for e in render_errors if f"{e} (with" not in " ".join(errors)]
        for obj in objs:
            key = json.dumps(obj, sort_keys=True)
            if key not in checked:
                checked[key] = podspec.k8s_errors(obj, versions)
                errors += [f"{e} (with {_label(values)})" for e in checked[key]]
    return errors


def trainjob_errors(doc: Mapping[str, Any], sets: list[dict[str, str]] | None = None) -> list[str]:
    """The TrainJob the multi-node step would create, for each parameter set with workers > 1, against the
    vendored Kubeflow Trainer CRD (structural + CEL)."""
    from steps.train.trainjob_launch import job_manifest

    errors: list[str] = []
    for tmpl, args in _task_invocations(doc):
        if _runner_entry(tmpl) != "steps.train.trainjob_launch:launch_trainjob":
            continue
        for values in sets if sets is not None else parameter_sets(doc):
            gv = podspec.workflow_values(doc, values)
            try:
                inputs = podspec.template_inputs(tmpl, args, gv, f"template {tmpl['name']}")
            except podspec.RenderError as exc:
                errors.append(str(exc))
                continue
            if int(inputs.get("workers", "1") or 1) < 2 or int(inputs.get("gpus_per_worker", "1") or 0) < 1:
                continue  # the step refuses these (preflight too): no TrainJob is created
            try:
                manifest = job_manifest(**{k: v for k, v in inputs.items() if k in _JOB_ARGS})
            except Exception as exc:
                errors.append(f"template {tmpl['name']}: the TrainJob cannot be built with {_label(values)}: {exc}")
                continue
            errors += [f"TrainJob from template {tmpl['name']} (with {_label(values)}): {e}"
                       for e in crd.trainjob_errors(manifest)]
            for job in (manifest["spec"].get("runtimePatches") or []):  # the nodes' pod metadata, as the server
                for rj in (((job.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {}).get(
                        "replicatedJobs") or []:
                    pod = ((rj.get("template") or {}).get("spec") or {}).get("template") or {}
                    errors += [f"TrainJob from template {tmpl['name']} (with {_label(values)}): {e}" for e in
                               podspec.metadata_errors({"kind": "Pod", "metadata": {
                                   "name": f"{rj.get('name')}-pod", **(pod.get("metadata") or {})}})]
    return sorted(set(errors), key=errors.index)


POD_METADATA_PARAMS = {"labels": "phase_02_train_opt_labels", "annotations": "phase_02_train_opt_annotations"}
TRAIN_ENTRY = "steps.train:train_model"


def pod_metadata_errors(doc: Mapping[str, Any], sets: list[dict[str, str]] | None = None) -> list[str]:
    """The single train pod carries, when Argo creates it, exactly the labels and annotations its parameters ask for
    (as the train step's parser reads them) besides the template's own: nothing dropped (a missing slot), nothing
    changed, for every parameter set that sets them."""
    from steps.train.pod_settings import parse_annotations, parse_labels

    declared = _names(((doc.get("spec") or {}).get("arguments") or {}).get("parameters"))
    wanted = {k: p for k, p in POD_METADATA_PARAMS.items() if p in declared}
    if not wanted:
        return []
    templates = [t for t, _ in _task_invocations(doc) if _runner_entry(t) == TRAIN_ENTRY]
    parsers = {"labels": parse_labels, "annotations": parse_annotations}
    errors: list[str] = []
    for values in sets if sets is not None else parameter_sets(doc):
        asked = {k: values.get(p, "") for k, p in wanted.items()}
        if not any(asked.values()):
            continue
        objs, _ = rendered_objects(doc, values)  # render errors are the pod rule's
        for tmpl in templates:
            pod = next((o for o in objs if o.get("kind") == "Pod" and str(o["metadata"].get("name", "")).endswith(
                f"-{tmpl['name']}")), None)
            if pod is None:
                continue
            for key, text in asked.items():
                own = {k: v for k, v in ((tmpl.get("metadata") or {}).get(key) or {}).items() if "{{" not in k}
                want = {**own, **parsers[key](text)}
                got = pod["metadata"].get(key) or {}
                if got != want:
                    errors.append(f"template {tmpl['name']}: metadata.{key} renders {got} for {wanted[key]}="
                                  f"{text!r}; the pod must carry {want}")
    return sorted(set(errors), key=errors.index)


def _job_args() -> set[str]:
    import inspect

    from steps.train.trainjob_launch import job_manifest

    return set(inspect.signature(job_manifest).parameters)


_JOB_ARGS = _job_args()


# ---------------------------------------------------------------------------------------------- policies


def _is_pod_template(t: Mapping[str, Any]) -> bool:
    return any(k in t for k in ("script", "container", "resource", "containerSet", "data", "http"))


def _duration_s(text: Any) -> float:
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?", str(text).strip())
    if not m or not any(m.groups()):
        try:
            return float(text)
        except ValueError:
            return 0.0
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def _waits_s(rs: Mapping[str, Any]) -> float:
    """All backoff waits of a retry strategy together (each ``duration * factor^i``, capped by ``cap`` if set)."""
    limit = int(rs.get("limit") or 0) if rs else 0
    backoff = rs.get("backoff") or {}
    if not backoff:
        return 0.0
    d, factor = _duration_s(backoff.get("duration", 0)), float(backoff.get("factor", 1) or 1)
    cap = _duration_s(backoff["cap"]) if "cap" in backoff else float("inf")
    return sum(min(d * factor ** i, cap) for i in range(limit))


def _attempts_s(t: Mapping[str, Any]) -> float:
    """Worst case of one step: every attempt runs to its deadline, plus every backoff wait."""
    deadline = float(t.get("activeDeadlineSeconds") or 0)
    rs = t.get("retryStrategy") or {}
    limit = int(rs.get("limit") or 0) if rs else 0
    return deadline * (limit + 1) + _waits_s(rs)


def _longest_path_s(doc: Mapping[str, Any], dag_name: str) -> float:
    spec = doc.get("spec") or {}
    templates = {t.get("name", ""): t for t in spec.get("templates") or []}
    tasks = {t["name"]: t for t in (templates.get(dag_name, {}).get("dag") or {}).get("tasks") or []}
    memo: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in memo:
            t = templates.get(tasks[name].get("template", ""), {})
            own = _longest_path_s(doc, t["name"]) if "dag" in t else _attempts_s(t)
            memo[name] = own + max((finish(d) for d in _deps(tasks[name]) if d in tasks), default=0.0)
        return memo[name]

    return max((finish(n) for n in tasks), default=0.0)


def retry_errors(doc: Mapping[str, Any], pull_allowance: int = PULL_ALLOWANCE_S) -> list[str]:
    """Retry and deadline rules (see the module doc)."""
    spec = doc.get("spec") or {}
    errors: list[str] = []
    for t in spec.get("templates") or []:
        where = f"template {t.get('name')}"
        rs = t.get("retryStrategy") or {}
        backoff = rs.get("backoff") or {}
        if "maxDuration" in backoff:
            errors.append(f"{where}: retryStrategy.backoff.maxDuration counts from the first attempt's start (Argo): "
                          "a step that fails after running longer is never retried, and a retry is cut at that "
                          "limit; bound the waits with backoff.cap instead")
        if "cap" in backoff:
            errors.append(f"{where}: retryStrategy.backoff.cap does not exist in Argo 3.6 (its full CRD refuses the "
                          "template); bound the waits with a small limit instead")
        elif backoff and _waits_s(rs) > MAX_RETRY_WAIT_S:
            errors.append(f"{where}: retryStrategy.backoff waits {int(_waits_s(rs))} s in all (duration x factor^n "
                          f"over limit {rs.get('limit')}), more than {MAX_RETRY_WAIT_S} s: lower the limit, duration "
                          "or factor")
        if not _is_pod_template(t):
            continue
        if not rs:
            errors.append(f"{where}: no retryStrategy: an evicted pod or a lost node fails the whole run (use "
                          "retryPolicy OnError at least)")
        deadline = t.get("activeDeadlineSeconds")
        if deadline is None:
            errors.append(f"{where}: no activeDeadlineSeconds: a hung step holds its node until the workflow's "
                          "deadline")
        elif int(deadline) < pull_allowance:
            errors.append(f"{where}: activeDeadlineSeconds={deadline} counts from the pod's start, before a cold "
                          f"pull of the image: give it at least {pull_allowance} s")
        if t.get("timeout") and _duration_s(t["timeout"]) < pull_allowance:
            errors.append(f"{where}: timeout={t['timeout']} counts from before the image pull: at least "
                          f"{pull_allowance} s")
    entry = spec.get("entrypoint")
    need = _longest_path_s(doc, entry) if entry else 0.0
    have = spec.get("activeDeadlineSeconds")
    if need and (have is None or float(have) < need):
        errors.append(f"spec.activeDeadlineSeconds={have} is shorter than every attempt of every step on the longest "
                      f"path ({int(need)} s): a retried step (train resuming from its checkpoint) could be cut off")
    return errors


def output_errors(doc: Mapping[str, Any], bounded: Mapping[str, int] | None = None,
                  budget: int = OUTPUT_BUDGET, workspace: str = WORKSPACE) -> list[str]:
    """Output parameters read only bounded summaries, and all of them fit the budget."""
    from steps.common.summary import BOUNDED_OUTPUTS

    bounded = BOUNDED_OUTPUTS if bounded is None else bounded
    errors: list[str] = []
    total = 0
    for t in (doc.get("spec") or {}).get("templates") or []:
        for p in (t.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            path = vf.get("path")
            where = f"template {t.get('name')}: outputs.parameters[{p['name']}].valueFrom.path"
            if path is None:
                continue
            if path.startswith(workspace + "/"):
                rel = path.removeprefix(workspace + "/")
                if rel not in bounded:
                    errors.append(f"{where}={path} is not a bounded summary ({', '.join(sorted(bounded))}): Argo "
                                  "keeps output parameters in the Workflow object (about 1 MiB in all)")
                else:
                    total += bounded[rel]
            elif not path.startswith((HERA_OUTPUTS, EXIT_OUTPUTS_DIR)):
                errors.append(f"{where}={path}: not a known bounded output")
    if total > budget:
        errors.append(f"output parameters may hold {total} bytes together, more than the budget {budget}")
    return errors


def security_errors(doc: Mapping[str, Any]) -> list[str]:
    """Pods that mount the workspace run non-root, with fsGroup so an NFS RWX volume is writable."""
    spec = doc.get("spec") or {}
    errors: list[str] = []
    for t in spec.get("templates") or []:
        if not (t.get("script") or t.get("container")):
            continue
        sc = t.get("securityContext") or spec.get("securityContext") or {}
        where = f"template {t.get('name')}: securityContext"
        if sc.get("runAsNonRoot") is not True:
            errors.append(f"{where}.runAsNonRoot must be true")
        if not sc.get("runAsUser"):
            errors.append(f"{where}.runAsUser must name the image's non-root user")
        if not sc.get("fsGroup"):
            errors.append(f"{where}.fsGroup is missing: an NFS-backed RWX workspace is created root-owned 0755 "
                          "and the non-root step could not write it")
        elif sc.get("fsGroupChangePolicy") != "OnRootMismatch":
            errors.append(f"{where}.fsGroupChangePolicy should be OnRootMismatch (a full recursive chown of a "
                          "large workspace on every pod start is slow)")
    return errors


# ---------------------------------------------------------------------------------------------- entry points


def cluster_errors(doc: dict[str, Any], values: Mapping[str, str] | None = None,
                   versions: tuple[str, ...] = crd.ARGO_VERSIONS) -> list[str]:
    """What a cluster itself refuses: the full CRDs (as written), the template engine, and the Pods/resources
    of a run (``values``: its parameters; default: the lint's parameter matrix)."""
    errors = [e for v in versions for e in crd_errors(doc, v)]
    errors = sorted(set(errors), key=errors.index)
    errors += template_engine_errors(doc)
    sets = [dict(values)] if values is not None else None
    errors += pod_errors(doc, sets)
    errors += trainjob_errors(doc, sets)
    return errors


def volume_errors(doc: Mapping[str, Any]) -> list[str]:
    """A workspace volume that never binds must fail the run, not leave it Pending: a task that waits for the
    volume (mounting nothing) runs before the first pod that mounts it, and every pod that may be the first to
    mount it (the first in the DAG, those of the exit handler) has a ``timeout``, which Argo counts from before
    the pod is scheduled (``activeDeadlineSeconds`` starts only once it runs)."""
    spec = doc.get("spec") or {}
    templates = {t.get("name", ""): t for t in spec.get("templates") or []}
    ws = workspace_volumes(spec)

    def mounts(name: str) -> bool:
        body = templates.get(name, {}).get("script") or templates.get(name, {}).get("container") or {}
        return any(vm.get("name") in ws for vm in body.get("volumeMounts") or [])

    def waits(name: str) -> bool:
        return _runner_entry(templates.get(name, {})) in UNMOUNTED

    errors = [f"template {n}: waits for the workspace volume to bind, so it must not mount it (a pod that mounts "
              "an unbound claim stays Pending)" for n in templates if waits(n) and mounts(n)]
    creates_pvc = any("kind: PersistentVolumeClaim" in str((t.get("resource") or {}).get("manifest", ""))
                      and (t.get("resource") or {}).get("action") in ("create", "apply") for t in templates.values())
    for dag_name, exit_handler in ((spec.get("entrypoint"), False), (spec.get("onExit"), True)):
        tasks = {t["name"]: t for t in (templates.get(dag_name or "", {}).get("dag") or {}).get("tasks") or []}
        for name, task in tasks.items():
            target = task.get("template", "")
            if not mounts(target):
                continue
            before = _ancestors(tasks, name)
            first = exit_handler or not any(mounts(tasks[a].get("template", "")) for a in before)
            if first and not templates[target].get("timeout"):
                errors.append(f"template {target}: may be the first pod to mount the workspace volume: give it a "
                              "`timeout` (Argo counts Pending time in it), or a run whose volume never binds waits "
                              "until the workflow's deadline")
            if first and not exit_handler and creates_pvc and not any(waits(tasks[a].get("template", ""))
                                                                      for a in before):
                errors.append(f"task {name}: mounts the workspace volume with no task before it that waits for the "
                              "volume to bind (steps.volume:wait_for_workspace)")
    return errors


def policy_errors(doc: dict[str, Any], secrets: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """The pipeline's own rules beyond what a cluster enforces: references (tags, secrets, one image), retries
    and deadlines, a bounded wait for the workspace volume, output sizes, non-root + fsGroup."""
    from workflows.argo.pipeline import SECRET_KEYS
    from workflows.argo.retention import retention_errors

    errors = template_reference_errors(doc, secrets or SECRET_KEYS, check_imports=False)
    return (errors + retry_errors(doc) + volume_errors(doc) + output_errors(doc) + security_errors(doc)
            + retention_errors(doc))


def core_objects(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The Pods and resource manifests of a run with the template's own values (for kubernetes-validate)."""
    objs, _ = rendered_objects(template, {})
    return objs


def k8s_errors(docs: Iterable[dict[str, Any]]) -> list[str] | None:
    """kubernetes-validate (strict) errors of core objects; None when the package is not installed."""
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return None
    return [e for doc in docs for e in podspec.k8s_errors(doc, podspec.K8S_VERSIONS[-1:])]


def lint_template(wt: dict[str, Any], cron: dict[str, Any] | None = None,
                  secrets: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """Every rule on a WorkflowTemplate (and its CronWorkflow); check name -> errors (empty lists = clean)."""
    from workflows.argo.pipeline import SECRET_KEYS

    secrets = secrets or SECRET_KEYS
    docs = [wt] + ([cron] if cron else [])
    report: dict[str, list[str]] = {}
    for version in crd.ARGO_VERSIONS:
        report[f"CRD {version} (as written)"] = [e for d in docs for e in crd_errors(d, version)]
    if not crd.cel_available():
        report["CRD CEL rules"] = ["cel-python is not installed: x-kubernetes-validations were not checked "
                                   "(pip install cel-python==0.5.0)"]
    for version in VERSIONS:
        report[f"schema {version}"] = [f"{d['kind']}: {e}" for d in docs for e in schema_errors(d, version)]
    report["references and tags"] = template_reference_errors(wt, secrets) + (
        cron_reference_errors(cron, wt) if cron else [])
    declared = (wt["spec"].get("arguments") or {}).get("parameters") or []
    report["references and tags"] += [f"spec.arguments: {p['name']!r} is not in workflows/params.py"
                                      for p in declared if p["name"] not in BY_NAME]
    name = (wt.get("metadata") or {}).get("name")
    if name in TEMPLATES:  # one of ours: exactly its parameters, in its order
        want = [p.name for p in params_for(name)]
        if [p["name"] for p in declared] != want:
            report["references and tags"].append(f"spec.arguments: not {name}'s parameters in their order "
                                                 "(workflows/params.py params_for)")
    report["pods and resources (podSpecPatch x parameter sets)"] = pod_errors(wt)
    report["pods and resources (podSpecPatch x parameter sets)"] += pod_metadata_errors(wt)
    report["TrainJob (Kubeflow Trainer CRD v2.3.0)"] = trainjob_errors(wt)
    report["retries and deadlines"] = retry_errors(wt)
    report["workspace volume (bounded wait)"] = volume_errors(wt)
    report["output parameters (size)"] = output_errors(wt)
    report["security (non-root, fsGroup)"] = security_errors(wt)
    from workflows.argo.retention import retention_errors

    report["registered model outlives the run (cleanup simulated)"] = retention_errors(wt)
    return report


class LintInputError(StepError):
    """A path the lint cannot read: missing, not YAML, or holding nothing it checks."""


_ARGO_KINDS = ("WorkflowTemplate", "ClusterWorkflowTemplate", "Workflow")
_CORE_KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap", "PersistentVolumeClaim")
_IGNORED_KINDS = ("Kustomization",)


def _load(path: Path) -> list[dict[str, Any]]:
    from workflows.argo.compile import load_docs

    try:
        return [d for d in load_docs(path) if isinstance(d, dict)]
    except OSError as exc:
        raise LintInputError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise LintInputError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', '') or exc}") from None


def cron_schedule_errors(cron: Mapping[str, Any]) -> list[str]:
    """Every schedule and the timezone, as Argo's validation parses them (robfig/cron, time.LoadLocation)."""
    from workflows.argo.cron import CronError, check_schedule, check_timezone

    spec = cron.get("spec") or {}
    errors = []
    for sched in list(spec.get("schedules") or []) + ([spec["schedule"]] if spec.get("schedule") else []):
        try:
            check_schedule(str(sched))
        except CronError as exc:
            errors.append(f"cron: {exc}")
    try:
        check_timezone(str(spec.get("timezone") or ""))
    except CronError as exc:
        errors.append(f"cron: {exc}")
    return errors


def lint_docs(docs: list[dict[str, Any]], secrets: dict[str, tuple[str, ...]] | None = None,
              where: str = "") -> dict[str, list[str]]:
    """Every rule on a set of objects: each WorkflowTemplate (with the CronWorkflows that refer to it), lone
    CronWorkflows (CRDs, schema, schedule) and core manifests (kubernetes-validate)."""
    templates = [d for d in docs if d.get("kind") in _ARGO_KINDS]
    crons = [d for d in docs if d.get("kind") == "CronWorkflow"]
    core = [d for d in docs if d.get("kind") in _CORE_KINDS]
    unknown = sorted({str(d.get("kind")) for d in docs} - set(_ARGO_KINDS + _CORE_KINDS + _IGNORED_KINDS +
                                                              ("CronWorkflow",)))
    if not templates and not crons and not core:
        raise LintInputError(f"{where or 'input'}: no WorkflowTemplate, CronWorkflow or install manifest to check"
                             + (f" (found {', '.join(unknown)})" if unknown else ""))
    report: dict[str, list[str]] = {}

    def merge(part: dict[str, list[str]], label: str) -> None:
        for check, errors in part.items():
            report.setdefault(check, []).extend(f"{label}: {e}" if label else e for e in errors)

    used: set[int] = set()
    for wt in templates:
        name = (wt.get("metadata") or {}).get("name")
        cron = next((c for c in crons if ((c.get("spec") or {}).get("workflowSpec") or {}).get(
            "workflowTemplateRef", {}).get("name") == name), None)
        if cron is not None:
            used.add(id(cron))
        merge(lint_template(wt, cron, secrets), f"{wt.get('kind')}/{name}" if len(templates) > 1 else "")
        if cron is not None:
            merge({"references and tags": cron_schedule_errors(cron)}, "")
    for cron in crons:
        if id(cron) in used:
            continue
        label = f"CronWorkflow/{(cron.get('metadata') or {}).get('name')}"
        part = {f"CRD {v} (as written)": crd_errors(cron, v) for v in crd.ARGO_VERSIONS}
        part.update({f"schema {v}": schema_errors(cron, v) for v in VERSIONS})
        part["references and tags"] = cron_schedule_errors(cron)
        merge(part, label)
    if core:
        k8s = k8s_errors(core)
        if k8s is not None:
            report["install manifests (kubernetes-validate, strict)"] = k8s
    return report


def lint_dir(path: Path, secrets: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """Check every generated file in ``path`` (read as the API server reads YAML); check name -> errors."""
    from workflows.argo.compile import FILES

    wanted = [f for f in FILES if f.endswith(".yaml") and not f.startswith("kustomiz")]
    missing = [f for f in wanted[:1] if not (path / f).is_file()]
    if missing:
        raise LintInputError(f"{path}: no {missing[0]} (write one with `osft-pipeline compile --out {path}`)")
    docs = [d for f in wanted if (path / f).is_file() for d in _load(path / f)]
    return lint_docs(docs, secrets, str(path))


def lint_paths(paths: list[Path], secrets: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """Folders (the files ``compile`` writes) and single files (every object in them), like ``argo lint``."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir():
            from workflows.argo.compile import FILES

            first = path / FILES[0]
            if not first.is_file():
                yamls = sorted(p for p in path.glob("*.y*ml") if p.is_file())
                if not yamls:
                    raise LintInputError(f"{path}: no YAML files (write them with `osft-pipeline compile --out "
                                         f"{path}`)")
                docs += [d for p in yamls for d in _load(p)]
            else:
                docs += [d for f in FILES if not f.startswith("kustomiz") and (path / f).is_file()
                         for d in _load(path / f)]
        elif path.exists():
            docs += _load(path)
        else:
            raise LintInputError(f"{path}: no such file or directory")
    return lint_docs(docs, secrets, ", ".join(map(str, paths)))
