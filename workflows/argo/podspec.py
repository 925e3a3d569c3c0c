"""The Pods and objects Argo would create from a template, rendered with parameter values and checked.

Argo builds each step's Pod from the template (container ``main``, the workflow's and template's volumes,
``nodeSelector``, ``tolerations``, ``securityContext``, ``activeDeadlineSeconds``), substitutes the tags,
then applies ``podSpecPatch`` as a strategic merge patch on the Pod spec (``workflow/util.ApplyPodSpecPatch``:
the patch must be YAML/JSON that parses into a ``PodSpec``; containers merge by name). This module does the
same offline for one set of parameter values, so a patch that does not parse, or a Pod the API server
would refuse (kubernetes-validate, strict, plus the extended-resource rules the server adds), is caught
before any cluster sees it. Resource templates' manifests are rendered the same way.
"""

import copy
import json
from collections.abc import Mapping
from typing import Any

import yaml

from workflows.argo import fasttemplate
from workflows.argo.expr import ExprError, eval_expression

K8S_VERSIONS = ("1.29", "1.31", "1.33", "1.35", "1.37")  # kubernetes-validate's bundled schemas checked
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
               "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name"}
_STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage"}


class RenderError(fasttemplate.TemplateError):
    """A template field that does not render with the given values."""


def workflow_values(doc: Mapping[str, Any], overrides: Mapping[str, str] | None = None,
                    name: str = "osft-minimal-pipeline-abcde") -> dict[str, str]:
    """Global variables of a run of ``doc`` with its argument values (``overrides`` win)."""
    spec = doc.get("spec") or {}
    values = {f"workflow.parameters.{p['name']}": str(p.get("value", "")) for p in
              (spec.get("arguments") or {}).get("parameters") or []}
    values.update({f"workflow.parameters.{k}": v for k, v in (overrides or {}).items()})
    values.update({"workflow.name": name, "workflow.namespace": "ml", "workflow.uid": "0f1e2d3c-uid",
                   "workflow.serviceAccountName": spec.get("serviceAccountName", "default"),
                   "workflow.creationTimestamp": "2026-01-01T00:00:00Z", "workflow.mainEntrypoint":
                   spec.get("entrypoint", ""), "workflow.status": "Succeeded", "workflow.failures": "[]",
                   "workflow.duration": "1.0", "pod.name": f"{name}-pod", "retries": "0"})
    return values


def render_value(text: str, values: Mapping[str, str], where: str) -> str:
    """``text`` with its tags substituted from ``values`` (a dotted name -> string)."""
    def lookup(name: str) -> str:
        if name in values:
            return values[name]
        raise RenderError(f"{where}: {{{{{name}}}}} does not resolve")

    def evaluate(expr: str) -> Any:
        try:
            return eval_expression(expr, lambda path: lookup(".".join(path)))
        except ExprError as exc:
            raise RenderError(f"{where}: {exc}") from None

    try:
        return fasttemplate.render(text, lookup, evaluate)
    except fasttemplate.TemplateError as exc:
        if isinstance(exc, RenderError):
            raise
        raise RenderError(f"{where}: {exc}") from None


def render_doc(obj: Any, values: Mapping[str, str], where: str) -> Any:
    """Every string in ``obj`` rendered (see :func:`render_value`)."""
    if isinstance(obj, str):
        return render_value(obj, values, where)
    if isinstance(obj, dict):  # keys too: Argo substitutes the template's JSON text (duplicate keys: the last wins)
        return {(render_value(k, values, f"{where}.{k} (key)") if isinstance(k, str) else k):
                render_doc(v, values, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [render_doc(v, values, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def strategic_merge(base: Any, patch: Any) -> Any:
    """Kubernetes strategic merge of ``patch`` into ``base`` for Pod specs (lists merged by their merge key)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in _MERGE_KEYS and isinstance(v, list) and isinstance(out.get(k), list):
                key = _MERGE_KEYS[k]
                merged = copy.deepcopy(out[k])
                for item in v:
                    idx = next((i for i, b in enumerate(merged) if isinstance(b, dict) and isinstance(item, dict)
                                and b.get(key) == item.get(key)), None)
                    if idx is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[idx] = strategic_merge(merged[idx], item)
                out[k] = merged
            else:
                out[k] = strategic_merge(out.get(k), v) if isinstance(v, dict) else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``kubectl patch --type merge``): objects merge, null removes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def owner_reference(values: Mapping[str, str]) -> dict[str, Any]:
    """The ownerReference Argo's controller adds to a ``setOwnerReference`` resource (``NewControllerRef``)."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": values.get("workflow.name", "wf"),
            "uid": values.get("workflow.uid", "uid"), "controller": True, "blockOwnerDeletion": True}


def parse_patch(text: str, where: str) -> dict[str, Any]:
    """A rendered ``podSpecPatch`` as Argo reads it (YAML or JSON, a mapping); raises :class:`RenderError`."""
    try:
        patch = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise RenderError(f"{where}: podSpecPatch is not YAML/JSON ({' '.join(str(exc).split())[:160]}): "
                          f"{text[:160]!r}") from None
    if not isinstance(patch, dict):
        raise RenderError(f"{where}: podSpecPatch must be a mapping (a PodSpec), got {type(patch).__name__}: "
                          f"{text[:160]!r}")
    return patch


def template_inputs(tmpl: Mapping[str, Any], arguments: Mapping[str, str], values: Mapping[str, str],
                    where: str) -> dict[str, str]:
    """The template's input values: the task's arguments rendered (task outputs become samples), else defaults."""
    out: dict[str, str] = {}
    for p in (tmpl.get("inputs") or {}).get("parameters") or []:
        raw = arguments.get(p["name"], p.get("value", p.get("default")))
        if raw is None:
            continue
        sample = {**values, **{k: "sample" for k in _task_refs(str(raw))}}
        out[p["name"]] = render_value(str(raw), sample, f"{where} input {p['name']}")
    return out


def _task_refs(text: str) -> list[str]:
    """Task output names a string reads (simple tags and expressions): unknown before the run, so sampled."""
    from workflows.argo.expr import identifiers, parse_expression

    out: list[str] = []
    try:
        for tag in fasttemplate.tags(text):
            if not tag.is_expression:
                out.append(tag.name)
                continue
            try:
                out += identifiers(parse_expression(tag.name))
            except ExprError:
                continue
    except fasttemplate.TemplateError:
        return []
    return [n for n in out if n.startswith(("tasks.", "steps."))]


def pod_for(doc: Mapping[str, Any], tmpl: Mapping[str, Any], values: Mapping[str, str],
            inputs: Mapping[str, str]) -> dict[str, Any]:
    """The Pod Argo would create for a script/container template (tags rendered, podSpecPatch applied)."""
    spec = doc.get("spec") or {}
    body = tmpl.get("script") or tmpl.get("container") or {}
    local = {**values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()},
             "inputs.parameters": json.dumps([{"name": k, "value": v} for k, v in inputs.items()])}
    where = f"template {tmpl['name']}"
    container = {k: v for k, v in body.items() if k != "source"} | {"name": "main"}
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": list(spec.get("volumes") or []) + list(tmpl.get("volumes") or []),
        "restartPolicy": "Never",
        "serviceAccountName": tmpl.get("serviceAccountName") or spec.get("serviceAccountName", "default"),
    }
    for key in ("nodeSelector", "tolerations", "affinity", "securityContext", "activeDeadlineSeconds",
                "priorityClassName", "schedulerName", "hostAliases", "automountServiceAccountToken"):
        if key in tmpl:
            pod_spec[key] = tmpl[key]
        elif key in ("nodeSelector", "tolerations", "affinity", "securityContext") and key in spec:
            pod_spec[key] = spec[key]
    if not pod_spec["volumes"]:
        del pod_spec["volumes"]
    pod_spec = render_doc(pod_spec, local, where)
    if isinstance(pod_spec.get("activeDeadlineSeconds"), str):
        pod_spec["activeDeadlineSeconds"] = int(pod_spec["activeDeadlineSeconds"])
    for patch_text in (spec.get("podSpecPatch"), tmpl.get("podSpecPatch")):
        if patch_text:
            rendered = render_value(patch_text, local, f"{where} podSpecPatch")
            pod_spec = strategic_merge(pod_spec, parse_patch(rendered, where))
    metadata: dict[str, Any] = {"name": f"{values.get('workflow.name', 'wf')}-{tmpl['name']}"}
    for key in ("labels", "annotations"):  # workflow podMetadata, then the template's (workflowpod.addMetadata)
        merged = {**((spec.get("podMetadata") or {}).get(key) or {}), **((tmpl.get("metadata") or {}).get(key) or {})}
        if merged:
            metadata[key] = render_doc(merged, local, f"{where} metadata.{key}")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def resource_manifest(tmpl: Mapping[str, Any], values: Mapping[str, str], inputs: Mapping[str, str]) -> Any:
    """A resource template's manifest, rendered and parsed as argoexec would ``kubectl`` it."""
    local = {**values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
    where = f"template {tmpl['name']} resource.manifest"
    text = render_value((tmpl.get("resource") or {}).get("manifest") or "", local, where)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"{where}: not YAML after rendering ({' '.join(str(exc).split())[:160]})") from None


def k8s_errors(obj: Mapping[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> list[str]:
    """kubernetes-validate (strict) errors of a core object for each Kubernetes version, plus the API server's
    extended-resource rules (integer counts, requests equal to limits). None-safe: [] when the package is missing."""
    try:
        import kubernetes_validate as kv
    except ImportError:
        return []
    out: list[str] = []
    name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    missing = [k for k in ("apiVersion", "kind", "metadata") if not obj.get(k)]
    if missing:
        return [f"{name}: the object has no {', '.join(missing)} (kubectl refuses it)"]
    if obj.get("kind") == "TrainJob":
        from workflows.argo import crd

        return [f"{name}: {e}" for e in crd.trainjob_errors(dict(obj))]
    for version in versions:
        try:
            kv.validate(dict(obj), version, strict=True)
        except kv.SchemaNotFoundError:
            return []  # a custom resource without a vendored CRD: the cluster's CRD decides
        except kv.ValidationError as exc:
            msg = f"{name}: {exc.message} at {'.'.join(str(p) for p in exc.path) or '<root>'} (Kubernetes {version})"
            if msg.rsplit(" (", 1)[0] not in [m.rsplit(" (", 1)[0] for m in out]:
                out.append(msg)
    out += metadata_errors(obj)
    if obj.get("kind") == "Pod":
        out += extended_resource_errors(obj) + quantity_errors(obj)
    if obj.get("kind") == "PersistentVolumeClaim":
        out += quantity_errors(obj)
    return out


def metadata_errors(obj: Mapping[str, Any]) -> list[str]:
    """The API server's rules for labels and annotations (``ValidateLabels``/``ValidateAnnotations``), which
    kubernetes-validate's schemas do not carry: qualified-name keys, label values, 256 KiB of annotations."""
    from steps.train.pod_settings import label_value_problem, qualified_name_problem

    name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    meta = obj.get("metadata") or {}
    out: list[str] = []
    for key, value in (meta.get("labels") or {}).items():
        if (why := qualified_name_problem(str(key))) is not None:
            out.append(f"{name}: metadata.labels: key {key!r} is not a qualified name: {why}")
        if (why := label_value_problem(str(value))) is not None:
            out.append(f"{name}: metadata.labels[{key!r}]={value!r}: a label value {why}")
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if (why := qualified_name_problem(str(key).lower())) is not None:
            out.append(f"{name}: metadata.annotations: key {key!r} is not a qualified name: {why}")
    if sum(len(str(k)) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        out.append(f"{name}: metadata.annotations: larger than 256 KiB together")
    return out


def quantity_errors(obj: Mapping[str, Any]) -> list[str]:
    """The API server's quantity rules, which kubernetes-validate's schemas do not carry: every resource value
    parses as a ``resource.Quantity``, and a container's request is at most its limit."""
    from workflows.params import quantity_value

    name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    spec = obj.get("spec") or {}
    out: list[str] = []
    if obj.get("kind") == "PersistentVolumeClaim":
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if size is not None and quantity_value(str(size)) is None:
            out.append(f"{name}: spec.resources.requests.storage={size!r} is not a quantity (e.g. 50Gi)")
        return out
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for what, values in (("requests", req), ("limits", lim)):
            for key, v in values.items():
                if quantity_value(str(v)) is None:
                    out.append(f"{name}: container {c.get('name')}: resources.{what}.{key}={v!r} is not a quantity")
        for key in set(req) & set(lim):
            r, li = quantity_value(str(req[key])), quantity_value(str(lim[key]))
            if r is not None and li is not None and r > li:
                out.append(f"{name}: container {c.get('name')}: resources.requests.{key}={req[key]!r} must be less "
                           f"than or equal to the limit {lim[key]!r}")
    return out


def _quantity_int(value: Any) -> int | None:
    text = str(value)
    return int(text) if text.isdigit() else None


def extended_resource_errors(pod: Mapping[str, Any]) -> list[str]:
    """The API server's rules for extended resources such as ``nvidia.com/gpu``: whole numbers, and a request
    only together with an equal limit."""
    out: list[str] = []
    name = (pod.get("metadata") or {}).get("name")
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for key in sorted(set(req) | set(lim)):
            if key in _STANDARD_RESOURCES or key.startswith(("hugepages-", "requests.")) or "/" not in key:
                continue
            for what, v in (("requests", req.get(key)), ("limits", lim.get(key))):
                if v is not None and _quantity_int(v) is None:
                    out.append(f"Pod/{name}: container {c.get('name')}: resources.{what}.{key}={v!r} must be a whole "
                               "number (extended resource)")
            if key in req and key not in lim:
                out.append(f"Pod/{name}: container {c.get('name')}: resources.requests.{key} needs an equal limit")
            elif key in req and str(req[key]) != str(lim[key]):
                out.append(f"Pod/{name}: container {c.get('name')}: resources.requests.{key}={req[key]!r} must equal "
                           f"the limit {lim[key]!r}")
    return out
