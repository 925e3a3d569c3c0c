"""Talk to the Argo Server with Hera's WorkflowsService: install the template, submit runs, manage the cron.

The Python API mirrors the CLI (``osft-pipeline submit`` / ``cron``)::

    from workflows.argo.submit import ArgoTarget, submit_from_template
    run = submit_from_template(ArgoTarget.resolve(namespace="ml"),
                               {"phase_01_dataset_man_data_uri": "s3://bucket/chat.jsonl"}, install=True, wait=True)

``submit_from_template`` sends exactly what ``argo submit --from workflowtemplate/osft-minimal-pipeline
-p k=v`` sends (``POST /api/v1/workflows/{ns}/submit``; :func:`submit_request` is that body, which
``--dry-run`` prints). Parameters are checked with the CLI's rules first, so a typo fails here and not
minutes later in the cluster. ``install=True`` installs what ``osft-pipeline compile`` writes for the same
options: the WorkflowTemplate (through the Argo Server) and its RBAC (through the Kubernetes API).
"""

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from hera import exceptions as hx
from hera.workflows import WorkflowsService
from hera.workflows import models as m

from steps.common.errors import StepError
from workflows import connection
from workflows.argo import pipeline
from workflows.argo.nodes import task_nodes
from workflows.params import MINIMAL, TEMPLATES, ParamError, problems, to_text

T = TypeVar("T")
FINAL_PHASES = ("Succeeded", "Failed", "Error")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# argo submit --from KIND/NAME: the kinds this pipeline can be submitted from, and their API names
FROM_KINDS = {"workflowtemplate": "WorkflowTemplate", "clusterworkflowtemplate": "ClusterWorkflowTemplate"}
DEFAULT_FROM = f"workflowtemplate/{pipeline.NAME}"


class ArgoError(StepError):
    """The Argo Server refused a request or cannot be reached."""


def check_namespace(namespace: str, where: str = "namespace") -> str:
    """``namespace`` if it is a Kubernetes namespace name (an RFC 1123 DNS label), else ArgoError with the fix."""
    if _DNS_LABEL.match(namespace):
        return namespace
    fixed = re.sub(r"[^a-z0-9-]+", "-", namespace.lower()).strip("-")[:63] or "ml"
    raise ArgoError(f"{where} {namespace!r} is not a Kubernetes namespace name: lowercase letters, digits and '-', "
                    f"at most 63, starting and ending with a letter or digit (e.g. {fixed})")


def parse_from(ref: str) -> tuple[str, str]:
    """``workflowtemplate/NAME`` or ``clusterworkflowtemplate/NAME`` -> (API kind, name), like ``argo submit
    --from``; ArgoError otherwise."""
    kind, sep, name = ref.strip().partition("/")
    if not sep or kind.lower() not in FROM_KINDS or not name:
        raise ArgoError(f"--from {ref!r}: write workflowtemplate/NAME or clusterworkflowtemplate/NAME "
                        f"(e.g. {DEFAULT_FROM})")
    if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name):
        raise ArgoError(f"--from {ref!r}: {name!r} is not a Kubernetes object name")
    return FROM_KINDS[kind.lower()], name


@dataclass(frozen=True)
class ArgoTarget:
    """Where the Argo Server is and how to authenticate (like the argo CLI's flags and env vars)."""

    host: str
    namespace: str
    token: str = ""
    verify_ssl: bool = True

    @classmethod
    def resolve(cls, host: str | None = None, token: str | None = None, namespace: str | None = None,
                insecure: bool | None = None) -> "ArgoTarget":
        """Flags first, then ARGO_SERVER / ARGO_TOKEN / ARGO_NAMESPACE / ARGO_SECURE / ARGO_INSECURE_SKIP_VERIFY."""
        host = (host or os.environ.get("ARGO_SERVER", "")).strip()
        if not host:
            raise ArgoError("no Argo Server: pass --host https://argo-server.argo:2746 or set ARGO_SERVER")
        if "://" not in host:  # the argo CLI's ARGO_SERVER is host:port; ARGO_SECURE=false means plain http
            secure = os.environ.get("ARGO_SECURE", "true").strip().lower() not in ("false", "0", "no")
            host = ("https://" if secure else "http://") + host
        if insecure is None:
            insecure = os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").strip().lower() in ("true", "1", "yes")
        ns = check_namespace((namespace or os.environ.get("ARGO_NAMESPACE", "") or "argo").strip())
        tok = (token if token is not None else os.environ.get("ARGO_TOKEN", "")).strip()
        return cls(host=host.rstrip("/"), namespace=ns, token=tok, verify_ssl=not insecure)

    def service(self) -> WorkflowsService:
        """A Hera WorkflowsService for this target."""
        return WorkflowsService(host=self.host, token=self.token or None, namespace=self.namespace,
                                verify_ssl=self.verify_ssl)


def _call(target: ArgoTarget, what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except hx.Unauthorized:
        raise ArgoError(f"{what}: the Argo Server rejected the token (401); set --token or ARGO_TOKEN") from None
    except hx.Forbidden as exc:
        raise ArgoError(f"{what}: forbidden in namespace {target.namespace} (403): {str(exc)[:200]}") from None
    except hx.NotFound as exc:
        raise ArgoError(f"{what}: not found (404): {str(exc)[:200]}") from None
    except hx.HeraException as exc:
        raise ArgoError(f"{what}: the Argo Server refused: {str(exc)[:300]}") from None
    except requests.RequestException as exc:
        hint = " (is the Argo Server running? kubectl -n argo port-forward svc/argo-server 2746:2746)"
        raise ArgoError(f"{what}: {connection.describe(exc, target.host, hint)}") from None


def template_of(from_ref: str) -> str:
    """The pipeline template whose parameters ``--from KIND/NAME`` takes: NAME when it is one of ours, else the
    minimal one (a renamed copy of it)."""
    try:
        name = parse_from(from_ref)[1]
    except ArgoError:
        return MINIMAL
    return name if name in TEMPLATES else MINIMAL


def parameter_errors(overrides: Mapping[str, Any], template: str = MINIMAL) -> tuple[dict[str, str], list[str]]:
    """Every problem of ``-p`` overrides for ``template`` at once (the CLI's rules; the dataset is required), and
    the overrides as Argo text (normalised: ``False`` -> ``false``, ``a, b`` -> ``["a", "b"]``) when there is none."""
    given = dict(overrides)
    values, errors = problems(given, template)
    if errors:
        return {}, [str(e) for e in errors]
    return {k: to_text(values[k]) for k in given}, []


def checked_overrides(overrides: Mapping[str, Any], template: str = MINIMAL) -> dict[str, str]:
    """Validate ``-p`` overrides with the CLI's rules (the dataset is required); return them as Argo text."""
    params, errors = parameter_errors(overrides, template)
    if errors:
        raise ParamError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return params


def submit_request(namespace: str, params: Mapping[str, str], from_ref: str = DEFAULT_FROM,
                   service_account: str = "") -> m.WorkflowSubmitRequest:
    """The body of ``POST /api/v1/workflows/{namespace}/submit`` that ``argo submit --from`` sends."""
    kind, name = parse_from(from_ref)
    return m.WorkflowSubmitRequest(
        namespace=namespace, resource_kind=kind, resource_name=name,
        submit_options=m.SubmitOpts(generate_name=f"{name}-", parameters=[f"{k}={v}" for k, v in params.items()],
                                    service_account=service_account or None),
    )


def request_body(req: Any) -> dict[str, Any]:
    """A Hera request model as the JSON its WorkflowsService sends (the same exclusions)."""
    import json

    return json.loads(req.json(exclude_none=True, by_alias=True, exclude_unset=True, exclude_defaults=True))


def install_objects(namespace: str, image: str = pipeline.IMAGE, artifacts: bool = False,
                    template: str = MINIMAL) -> dict[str, Any]:
    """What ``osft-pipeline compile --namespace NS --image I [--artifacts]`` writes and ``--install`` installs:
    the WorkflowTemplate ``template`` (Hera object) and the RBAC manifests."""
    return {"template": pipeline.build_template(image=image, artifacts=artifacts, template=template),
            "rbac": pipeline.rbac_manifests(namespace)}


def install_template(target: ArgoTarget, image: str = pipeline.IMAGE, artifacts: bool = False,
                     kube: Any = None, template: str = MINIMAL) -> list[str]:
    """Create or update the WorkflowTemplate ``template`` (through the Argo Server) and, when ``kube`` (a Kubernetes
    ``ApiClient``) is given, its ServiceAccount, Role and RoleBinding; returns what was installed (``kind/name``)."""
    objs = install_objects(target.namespace, image=image, artifacts=artifacts, template=template)
    done: list[str] = []
    if kube is not None:
        from workflows.kube import apply_objects

        done += apply_objects(objs["rbac"], target.namespace, kube)
    wt = objs["template"]
    wt.namespace = target.namespace
    wt.workflows_service = target.service()
    _call(target, f"install workflowtemplate/{template}", wt.update)
    return done + [f"workflowtemplate/{template}"]


def submit_from_template(target: ArgoTarget, overrides: Mapping[str, Any], install: bool = False,
                         wait: bool = False, poll_seconds: float = 10.0, timeout_seconds: float = 0,
                         image: str = pipeline.IMAGE, on_poll: Callable[[str], None] | None = None,
                         from_ref: str = DEFAULT_FROM, service_account: str = "", artifacts: bool = False,
                         kube: Any = None, on_nodes: Callable[[dict[str, dict[str, str]]], None] | None = None
                         ) -> dict[str, str]:
    """``argo submit --from workflowtemplate/osft-minimal-pipeline -p …`` [--wait] (or ``…/osft-pipeline``);
    returns name and phase. ``install`` first installs that template (and, with ``kube``, its RBAC) as ``compile``
    writes them."""
    template = template_of(from_ref)
    params = checked_overrides(overrides, template)
    req = submit_request(target.namespace, params, from_ref, service_account)
    if install:
        if req.resource_kind != "WorkflowTemplate" or req.resource_name not in TEMPLATES:
            raise ArgoError(f"--install installs workflowtemplate/{' or workflowtemplate/'.join(TEMPLATES)}; "
                            f"submit --from one of them")
        install_template(target, image=image, artifacts=artifacts, kube=kube, template=req.resource_name)
    svc = target.service()
    what = f"submit from {from_ref}"
    try:
        wf = _call(target, what, lambda: svc.submit_workflow(req, namespace=target.namespace))
    except ArgoError as exc:
        if "(404)" in str(exc) and "not found" in str(exc):
            raise ArgoError(f"{what}: {from_ref} is not installed in namespace {target.namespace}: install it "
                            "(osft-pipeline submit --install, or osft-pipeline compile + kubectl apply -k: "
                            "docs/cluster.md#install)") from None
        raise
    name = wf.metadata.name or ""
    phase = (wf.status.phase if wf.status else None) or "Pending"
    out = {"name": name, "namespace": target.namespace, "phase": phase,
           "url": f"{target.host}/workflows/{target.namespace}/{name}"}
    if wait:
        out["phase"], failed = wait_for(target, name, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds,
                                        on_poll=on_poll, on_nodes=on_nodes)
        if failed:
            out["failed"] = failed
    return out


def node_states(wf: Any) -> dict[str, dict[str, str]]:
    """task name -> {phase, message} of a workflow's tasks (a retried task once, with its final phase and its last
    attempt's message; skipped/omitted tasks too): :func:`workflows.argo.nodes.task_nodes`."""
    nodes = (request_body(wf).get("status") or {}).get("nodes") or {}
    return {t["name"]: {"phase": t["phase"], "message": t["message"]} for t in task_nodes(nodes)}


def wait_for(target: ArgoTarget, name: str, poll_seconds: float = 10.0, timeout_seconds: float = 0,
             on_poll: Callable[[str], None] | None = None,
             on_nodes: Callable[[dict[str, dict[str, str]]], None] | None = None) -> tuple[str, str]:
    """Poll a workflow until it finishes (timeout_seconds 0 = no limit); returns its final phase and, when it did
    not succeed, its failed steps' messages (``step: message; …``)."""
    svc = target.service()
    started = time.monotonic()
    last = ""
    while True:
        wf = _call(target, f"get workflow {name}", lambda: svc.get_workflow(name, namespace=target.namespace))
        phase = (wf.status.phase if wf.status else None) or "Pending"
        if phase != last and on_poll:
            on_poll(phase)
        if on_nodes:
            on_nodes(node_states(wf))
        last = phase
        if phase in FINAL_PHASES:
            failed = "; ".join(f"{n}: {s['message'] or s['phase']}" for n, s in node_states(wf).items()
                               if s["phase"] in ("Failed", "Error"))
            if phase != "Succeeded" and not failed:
                failed = (wf.status.message if wf.status else "") or ""
            return phase, failed
        if timeout_seconds and time.monotonic() - started > timeout_seconds:
            raise ArgoError(f"workflow {name} still {phase} after {timeout_seconds:g}s (it keeps running)")
        time.sleep(poll_seconds)


def get_workflow(target: ArgoTarget, name: str) -> dict[str, Any]:
    """A workflow as JSON (``argo get NAME -o json``)."""
    svc = target.service()
    wf = _call(target, f"get workflow {name}", lambda: svc.get_workflow(name, namespace=target.namespace))
    return request_body(wf)


def install_cron(target: ArgoTarget, overrides: Mapping[str, Any], schedule: str = pipeline.CRON_SCHEDULE,
                 timezone: str = "UTC", suspend: bool = False, template: str = MINIMAL) -> str:
    """Create or update ``template``'s retraining CronWorkflow with these parameters (the dataset is required);
    the schedule and timezone are checked as Argo checks them first."""
    from workflows.argo.cron import check_schedule, check_timezone

    params = checked_overrides(pipeline.CRON_LINEAGE | dict(overrides), template)  # the cron continues the lineage
    check_schedule(schedule)
    check_timezone(timezone)
    cron = pipeline.build_cron(schedule=schedule, timezone=timezone, overrides=params, suspend=suspend,
                               template=template)
    cron.namespace = target.namespace
    cron.workflows_service = target.service()
    name = pipeline.cron_name(template)
    _call(target, f"install cronworkflow/{name}", cron.update)
    return name


def set_cron_suspended(target: ArgoTarget, suspended: bool, template: str = MINIMAL) -> bool:
    """Suspend or resume ``template``'s retraining CronWorkflow; returns the new ``spec.suspend``."""
    svc = target.service()
    name, ns = pipeline.cron_name(template), target.namespace
    if suspended:
        cw = _call(target, f"suspend cronworkflow/{name}", lambda: svc.suspend_cron_workflow(
            name, m.CronWorkflowSuspendRequest(name=name, namespace=ns), namespace=ns))
    else:
        cw = _call(target, f"resume cronworkflow/{name}", lambda: svc.resume_cron_workflow(
            name, m.CronWorkflowResumeRequest(name=name, namespace=ns), namespace=ns))
    return bool(cw.spec.suspend)
