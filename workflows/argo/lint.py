"""Offline checks of the generated Argo objects: Argo's JSON schema (strict) and ``argo lint``-like references.

No ``argo`` binary is needed. Three layers:
1. JSON schema: each object against its definition in Argo's ``schema.json`` (v4.1.2 and v4.0.5), with
   ``additionalProperties: false`` imposed on every object definition (typos fail) and ``IntOrString``
   patched to int|string (the schema types it as string; the API accepts both).
2. Core objects (ServiceAccount, Role, Secret, the workspace PVC, each step's pod) with
   ``kubernetes-validate`` in strict mode, when that package is installed.
3. References, mirroring argo's ``workflow/validate``: templates, tasks and ``depends`` targets exist,
   every ``{{…}}`` resolves in its scope, task arguments match template inputs, workflow arguments carry a
   value inside their enum, ``when`` quotes its strings, secrets match the README, the workspace is
   mounted everywhere, runner entry points import.
"""

import copy
import functools
import gzip
import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workflows.params import BY_NAME

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
VERSIONS = ("v4.1.2", "v4.0.5")
ARGO_KINDS = {"WorkflowTemplate", "CronWorkflow", "Workflow", "ClusterWorkflowTemplate"}
_TAG = re.compile(r"{{\s*([^{}]*?)\s*}}")
_GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid", "workflow.serviceAccountName",
            "workflow.creationTimestamp", "workflow.mainEntrypoint", "workflow.priority", "workflow.duration"}
_EXIT_ONLY = {"workflow.status", "workflow.failures"}


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


# ---------------------------------------------------------------------------------------------- references


def _tags(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield from (m.group(1) for m in _TAG.finditer(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tags(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _tags(v)


def _depends_targets(expr: str) -> set[str]:
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9_.-]*", expr or "")
    return {w.split(".")[0] for w in words if w not in ("&&", "||")}


def _ancestors(tasks: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(_depends_targets(tasks[name].get("depends", "")) | set(tasks[name].get("dependencies") or []))
    while stack:
        t = stack.pop()
        if t in seen or t not in tasks:
            continue
        seen.add(t)
        stack.extend(_depends_targets(tasks[t].get("depends", "")) | set(tasks[t].get("dependencies") or []))
    return seen


def _names(items: list[dict[str, Any]] | None) -> set[str]:
    return {i["name"] for i in items or []}


def _check_global_tag(tag: str, params: set[str], where: str, exit_scope: bool) -> str | None:
    if tag.startswith("="):
        return f"{where}: expression tag {{{{{tag}}}}} is not checked; avoid it or extend the linter"
    if tag.startswith("workflow.parameters."):
        name = tag.removeprefix("workflow.parameters.")
        return None if name in params else f"{where}: {{{{{tag}}}}}: no workflow parameter {name!r}"
    if tag in _GLOBALS:
        return None
    if tag in _EXIT_ONLY:
        return None if exit_scope else f"{where}: {{{{{tag}}}}} is only set in the onExit handler"
    return f"{where}: {{{{{tag}}}}} does not resolve"


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


def _when_errors(when: str, where: str) -> list[str]:
    out = []
    for m in _TAG.finditer(when):
        before, after = when[: m.start()], when[m.end():]
        if not (before.endswith("'") and after.startswith("'")):
            out.append(f"{where}: when: quote {m.group(0)} as '{m.group(0)}' (govaluate compares strings)")
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


def template_reference_errors(doc: dict[str, Any], secrets: dict[str, tuple[str, ...]], workspace: str = "/workspace",
                              check_imports: bool = True) -> list[str]:
    """``argo lint``-like reference errors of a WorkflowTemplate (or Workflow)."""
    errors: list[str] = []
    spec = doc.get("spec") or {}
    templates = {t.get("name", ""): t for t in spec.get("templates") or []}
    args = (spec.get("arguments") or {}).get("parameters") or []
    params = _names(args)
    errors += _argument_errors(args, "spec.arguments")
    for tag in _tags({k: v for k, v in spec.items() if k != "templates"}):
        if err := _check_global_tag(tag, params, "spec", exit_scope=False):
            errors.append(err)
    for ref in ("entrypoint", "onExit"):
        if spec.get(ref) and spec[ref] not in templates:
            errors.append(f"spec.{ref}: no template named {spec[ref]!r}")
    exit_scope = _reachable(templates, spec.get("onExit", "")) if spec.get("onExit") else set()
    claims = {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates") or []}
    volumes = claims | _names(spec.get("volumes"))
    images = set()
    for name, t in templates.items():
        where = f"template {name}"
        inputs = _names((t.get("inputs") or {}).get("parameters"))
        body = t.get("script") or t.get("container")
        if body is not None:
            images.add(body.get("image"))
            mounts = {vm["name"]: vm["mountPath"] for vm in body.get("volumeMounts") or []}
            errors += [f"{where}: volumeMount {v!r} is not a declared volume" for v in mounts if v not in volumes]
            if not any(mounts.get(c) == workspace for c in claims):
                errors.append(f"{where}: does not mount the workspace volume at {workspace}")
            errors += _secret_errors(t, where, secrets)
            if check_imports and (entry := _runner_entry(t)):
                module, _, func = entry.partition(":")
                try:
                    if not callable(getattr(importlib.import_module(module), func, None)):
                        errors.append(f"{where}: runner entry {entry}: no such function")
                except ImportError as exc:
                    errors.append(f"{where}: runner entry {entry}: {exc}")
        in_exit = name in exit_scope
        local = {k: v for k, v in t.items() if k != "dag"}
        for tag in _tags(local):
            if tag == "inputs.parameters" or tag.startswith("inputs.parameters."):
                pname = tag.removeprefix("inputs.parameters").lstrip(".")
                if pname and pname not in inputs:
                    errors.append(f"{where}: {{{{{tag}}}}}: no input parameter {pname!r}")
            elif err := _check_global_tag(tag, params, where, in_exit):
                errors.append(err)
        dag_tasks = {task["name"]: task for task in (t.get("dag") or {}).get("tasks") or []}
        for tname, task in dag_tasks.items():
            tw = f"{where} task {tname}"
            target = templates.get(task.get("template", ""))
            if target is None:
                errors.append(f"{tw}: no template named {task.get('template')!r}")
                continue
            for dep in _depends_targets(task.get("depends", "")) | set(task.get("dependencies") or []):
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
            ancestors = _ancestors(dag_tasks, tname)
            for tag in _tags({k: v for k, v in task.items() if k not in ("name", "template", "depends")}):
                m = re.fullmatch(r"tasks\.([\w-]+)\.outputs\.(parameters\.([\w-]+)|result)", tag)
                if tag.startswith("tasks."):
                    if not m:
                        errors.append(f"{tw}: {{{{{tag}}}}} is not a task output reference")
                    elif m.group(1) not in dag_tasks:
                        errors.append(f"{tw}: {{{{{tag}}}}}: no task {m.group(1)!r}")
                    elif m.group(1) not in ancestors:
                        errors.append(f"{tw}: {{{{{tag}}}}}: task {m.group(1)} is not an ancestor (add it to depends)")
                    elif m.group(3):
                        src = templates.get(dag_tasks[m.group(1)].get("template", ""), {})
                        if m.group(3) not in _names((src.get("outputs") or {}).get("parameters")):
                            errors.append(f"{tw}: {{{{{tag}}}}}: template {src.get('name')} has no output "
                                          f"{m.group(3)!r}")
                elif err := _check_global_tag(tag, params, tw, in_exit):
                    errors.append(err)
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


# ---------------------------------------------------------------------------------------------- core objects


def _sample(doc: Any, values: dict[str, str]) -> Any:
    """Replace ``{{workflow.parameters.X}}`` by X's value and other tags by a dummy, recursively."""
    if isinstance(doc, str):
        return _TAG.sub(lambda mm: values.get(mm.group(1).removeprefix("workflow.parameters."), "sample"), doc)
    if isinstance(doc, dict):
        return {k: _sample(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_sample(v, values) for v in doc]
    return doc


def core_objects(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The PVC and one Pod per script template, as Kubernetes would receive them (sample parameter values)."""
    spec = template["spec"]
    values = {p["name"]: str(p.get("value", "")) or "x" for p in (spec.get("arguments") or {}).get("parameters") or []}
    out: list[dict[str, Any]] = []
    for pvc in spec.get("volumeClaimTemplates") or []:
        out.append(_sample({"apiVersion": "v1", "kind": "PersistentVolumeClaim", **pvc}, values))
    volumes = [{"name": c["metadata"]["name"], "persistentVolumeClaim": {"claimName": "wf-" + c["metadata"]["name"]}}
               for c in spec.get("volumeClaimTemplates") or []] + list(spec.get("volumes") or [])
    for t in spec.get("templates") or []:
        body = t.get("script") or t.get("container")
        if body is None:
            continue
        container = {k: v for k, v in body.items() if k != "source"} | {"name": "main"}
        pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes, "restartPolicy": "Never",
                                    "serviceAccountName": spec.get("serviceAccountName", "default")}
        for key in ("nodeSelector", "tolerations", "activeDeadlineSeconds"):
            if key in t:
                pod_spec[key] = t[key]
        out.append(_sample({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": t["name"]}, "spec": pod_spec},
                           values))
    return out


def k8s_errors(docs: Iterable[dict[str, Any]]) -> list[str] | None:
    """kubernetes-validate (strict) errors of core objects; None when the package is not installed."""
    try:
        import kubernetes_validate as kv
    except ImportError:
        return None
    errors = []
    version = kv.latest_version()
    for doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    return errors


# ---------------------------------------------------------------------------------------------- all files


def lint_dir(path: Path, secrets: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """Check every generated file in ``path``; returns check name -> errors (empty lists = clean)."""
    from workflows.argo.compile import load_docs
    from workflows.argo.pipeline import SECRET_KEYS

    secrets = secrets or SECRET_KEYS
    report: dict[str, list[str]] = {}
    wt = load_docs(path / "osft-minimal-pipeline.yaml")[0]
    cron = load_docs(path / "osft-minimal-pipeline-retrain.yaml")[0]
    for version in VERSIONS:
        report[f"schema {version}"] = [f"{d['kind']}: {e}" for d in (wt, cron) for e in schema_errors(d, version)]
    report["references"] = template_reference_errors(wt, secrets) + cron_reference_errors(cron, wt)
    declared = (wt["spec"].get("arguments") or {}).get("parameters") or []
    unknown = [p["name"] for p in declared if p["name"] not in BY_NAME]
    report["references"] += [f"spec.arguments: {n!r} is not in workflows/params.py" for n in unknown]
    core = load_docs(path / "rbac.yaml") + load_docs(path / "secrets.example.yaml") + core_objects(wt)
    k8s = k8s_errors(core)
    if k8s is not None:
        report["kubernetes-validate (strict)"] = k8s
    return report
