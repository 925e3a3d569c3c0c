"""Talk to the Argo Server with Hera's WorkflowsService: install the template, submit runs, manage the cron.

The Python API mirrors the CLI (``osft-pipeline submit`` / ``cron``)::

    from workflows.argo.submit import ArgoTarget, submit_from_template
    run = submit_from_template(ArgoTarget.resolve(namespace="ml"),
                               {"phase_01_dataset_man_data_uri": "s3://bucket/chat.jsonl"}, install=True, wait=True)

``submit_from_template`` sends exactly what ``argo submit --from workflowtemplate/osft-minimal-pipeline
-p k=v`` sends (``POST /api/v1/workflows/{ns}/submit``). Parameters are checked with the CLI's rules
first, so a typo fails here and not minutes later in the cluster.
"""

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from hera import exceptions as hx
from hera.workflows import WorkflowsService
from hera.workflows import models as m

from steps.common.errors import StepError
from workflows.argo import pipeline
from workflows.params import to_text, validate

T = TypeVar("T")
FINAL_PHASES = ("Succeeded", "Failed", "Error")


class ArgoError(StepError):
    """The Argo Server refused a request or cannot be reached."""


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
        ns = (namespace or os.environ.get("ARGO_NAMESPACE", "") or "argo").strip()
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
        raise ArgoError(f"{what}: cannot reach the Argo Server at {target.host}: {type(exc).__name__}") from None


def checked_overrides(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Validate ``-p`` overrides with the CLI's rules (the dataset is required); return them as Argo text."""
    given = dict(overrides)
    values = validate(given)
    return {k: to_text(values[k]) for k in given}


def install_template(target: ArgoTarget, image: str = pipeline.IMAGE) -> str:
    """Create the WorkflowTemplate, or update it in place when it exists; returns its name."""
    wt = pipeline.build_template(image=image)
    wt.namespace = target.namespace
    wt.workflows_service = target.service()
    _call(target, f"install workflowtemplate/{pipeline.NAME}", wt.update)
    return pipeline.NAME


def submit_from_template(target: ArgoTarget, overrides: Mapping[str, Any], install: bool = False,
                         wait: bool = False, poll_seconds: float = 10.0, timeout_seconds: float = 0,
                         image: str = pipeline.IMAGE, on_poll: Callable[[str], None] | None = None) -> dict[str, str]:
    """``argo submit --from workflowtemplate/osft-minimal-pipeline -p …`` [--wait]; returns name and phase."""
    params = checked_overrides(overrides)
    if install:
        install_template(target, image=image)
    svc = target.service()
    req = m.WorkflowSubmitRequest(
        namespace=target.namespace, resource_kind="WorkflowTemplate", resource_name=pipeline.NAME,
        submit_options=m.SubmitOpts(generate_name=f"{pipeline.NAME}-",
                                    parameters=[f"{k}={v}" for k, v in params.items()]),
    )
    wf = _call(target, f"submit from workflowtemplate/{pipeline.NAME}",
               lambda: svc.submit_workflow(req, namespace=target.namespace))
    name = wf.metadata.name or ""
    phase = (wf.status.phase if wf.status else None) or "Pending"
    if wait:
        phase = wait_for(target, name, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, on_poll=on_poll)
    return {"name": name, "namespace": target.namespace, "phase": phase,
            "url": f"{target.host}/workflows/{target.namespace}/{name}"}


def wait_for(target: ArgoTarget, name: str, poll_seconds: float = 10.0, timeout_seconds: float = 0,
             on_poll: Callable[[str], None] | None = None) -> str:
    """Poll a workflow until it finishes; returns its final phase (timeout_seconds 0 = no limit)."""
    svc = target.service()
    started = time.monotonic()
    last = ""
    while True:
        wf = _call(target, f"get workflow {name}", lambda: svc.get_workflow(name, namespace=target.namespace))
        phase = (wf.status.phase if wf.status else None) or "Pending"
        if phase != last and on_poll:
            on_poll(phase)
        last = phase
        if phase in FINAL_PHASES:
            return phase
        if timeout_seconds and time.monotonic() - started > timeout_seconds:
            raise ArgoError(f"workflow {name} still {phase} after {timeout_seconds:g}s (it keeps running)")
        time.sleep(poll_seconds)


def install_cron(target: ArgoTarget, overrides: Mapping[str, Any], schedule: str = pipeline.CRON_SCHEDULE,
                 timezone: str = "UTC", suspend: bool = False) -> str:
    """Create or update the retraining CronWorkflow with these parameters (the dataset is required)."""
    params = checked_overrides(overrides)
    cron = pipeline.build_cron(schedule=schedule, timezone=timezone, overrides=params, suspend=suspend)
    cron.namespace = target.namespace
    cron.workflows_service = target.service()
    _call(target, f"install cronworkflow/{pipeline.CRON_NAME}", cron.update)
    return pipeline.CRON_NAME


def set_cron_suspended(target: ArgoTarget, suspended: bool) -> bool:
    """Suspend or resume the retraining CronWorkflow; returns the new ``spec.suspend``."""
    svc = target.service()
    name, ns = pipeline.CRON_NAME, target.namespace
    if suspended:
        cw = _call(target, f"suspend cronworkflow/{name}", lambda: svc.suspend_cron_workflow(
            name, m.CronWorkflowSuspendRequest(name=name, namespace=ns), namespace=ns))
    else:
        cw = _call(target, f"resume cronworkflow/{name}", lambda: svc.resume_cron_workflow(
            name, m.CronWorkflowResumeRequest(name=name, namespace=ns), namespace=ns))
    return bool(cw.spec.suspend)
