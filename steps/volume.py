"""Pipeline-level task (not a step): wait, for a bounded time, until the run's workspace volume is bound.

Without it a workspace PVC that never binds (a storage class that does not exist, one that cannot provide
ReadWriteMany, no matching PersistentVolume) leaves the first pod that mounts it Pending for as long as the
workflow may run. This task mounts nothing: it reads the claim and its events through the Kubernetes API with
the pod's service account (RBAC: ``get`` persistentvolumeclaims, ``list`` events) and fails with the
claim's own last event and the fix once ``timeout_seconds`` have passed, or at once when the class does not
exist.

A class with ``volumeBindingMode: WaitForFirstConsumer`` binds only when the first pod that mounts the claim
is scheduled: the task says so and returns; that first pod's ``timeout`` bounds the wait then.
"""

import time
from collections.abc import Callable
from typing import Any

from steps.common.errors import StepError

STEP = "workspace"
FIX = ("pick a storage class that supports ReadWriteMany (kubectl get storageclass) and pass "
       "-p phase_00_workspace_opt_storage_class=<class>, or on a single-node cluster "
       "-p phase_00_workspace_opt_access_mode=ReadWriteOnce; `osft-pipeline doctor` checks this before a run")


class VolumeError(StepError):
    """The workspace volume did not bind."""


def _events(api: Any, claim: str, namespace: str) -> list[Any]:
    """The claim's events, oldest first."""
    from kubernetes.client.exceptions import ApiException

    try:
        found = api.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={claim}")
    except ApiException:
        return []  # events are a diagnosis, not a requirement (RBAC may not allow them)

    def when(e: Any) -> float:
        t = e.last_timestamp or e.event_time or e.first_timestamp
        return t.timestamp() if t is not None else 0.0

    return sorted(found.items or [], key=when)


def wait_for_claim(api: Any, claim: str, namespace: str, timeout_seconds: float = 600, poll_seconds: float = 5.0,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                   ) -> dict[str, Any]:
    """Poll the claim through ``api`` (a ``kubernetes.client.CoreV1Api``) until it is Bound, its class binds on
    first consumer, or ``timeout_seconds`` pass; returns a small summary or raises VolumeError."""
    from kubernetes.client.exceptions import ApiException

    deadline = clock() + timeout_seconds
    phase, last = "not found", ""
    while True:
        try:
            pvc = api.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as exc:
            if exc.status == 403:
                raise VolumeError(f"workspace volume {claim}: the service account may not read it (403); install "
                                  "the RBAC of `osft-pipeline compile` (rbac.yaml) in namespace " + namespace) from None
            if exc.status != 404:
                raise VolumeError(f"workspace volume {claim}: the Kubernetes API answered {exc.status} "
                                  f"{exc.reason}") from None
            pvc = None
        if pvc is not None:
            phase = (pvc.status.phase if pvc.status else None) or "Pending"
            summary = {"claim": claim, "phase": phase, "storage_class": pvc.spec.storage_class_name,
                       "access_modes": list(pvc.spec.access_modes or [])}
            if phase == "Bound":
                capacity = (pvc.status.capacity or {}).get("storage")
                return {**summary, "volume": pvc.spec.volume_name, "capacity": str(capacity) if capacity else ""}
            if phase == "Lost":
                raise VolumeError(f"workspace volume {claim} is Lost: its PersistentVolume was deleted; "
                                  "submit the run again")
            events = _events(api, claim, namespace)
            if events:
                e = events[-1]
                last = f"{e.reason}: {e.message}".strip()
                if e.reason == "WaitForFirstConsumer":
                    return {**summary, "phase": "WaitForFirstConsumer",
                            "note": "the class binds when the first pod that mounts the volume is scheduled"}
                if e.reason == "ProvisioningFailed" and "storageclass" in (e.message or "") \
                        and "not found" in (e.message or ""):
                    raise VolumeError(f"workspace volume {claim} cannot be created: {e.message}; {FIX}")
        if clock() >= deadline:
            still = f"still {phase}" + (f" ({last})" if last else "")
            raise VolumeError(f"workspace volume {claim} did not bind within {timeout_seconds:g}s, {still}; {FIX}")
        sleep(poll_seconds)


def wait_for_workspace(claim: str, namespace: str, timeout_seconds: int = 600, poll_seconds: float = 5.0
                       ) -> dict[str, Any]:
    """Wait until the workspace PVC ``claim`` in ``namespace`` is bound (in the run's pod, with its service
    account); fail after ``timeout_seconds`` with the claim's last event and the fix."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise VolumeError(f"no in-cluster Kubernetes API ({exc}): this task runs in the workflow's pod") from None
    return wait_for_claim(client.CoreV1Api(), claim, namespace, timeout_seconds, poll_seconds)
