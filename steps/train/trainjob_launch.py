"""Multi-node training: create a Kubeflow Trainer TrainJob, wait for it, and check the model it left.

Used by the Argo template when ``workers > 1``. The manifest comes from ``steps.train.trainjob`` (the same
train arguments as the single-node step); this module only talks to the Kubernetes API: create, and on a
retry of the step (the name ``<workflow>-train`` is taken) *adopt* a job that is still running or suspended
(resume waiting) or *replace* one that already finished or failed (its train step resumes from the
workspace's checkpoint, or reuses a finished run); poll by condition *type* (never by index: Kueue or
``suspend`` put ``Suspended`` first); delete the job when the step is terminated. Credentials: the secret
``kubernetes-credentials`` (KUBERNETES_SERVER_URL + KUBERNETES_AUTH_TOKEN) when set, else the pod's service
account.
"""

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import SA_TOKEN_PATH
from steps.common.workspace import Workspace

STEP = "train"
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def job_name(name: str) -> str:
    """A valid TrainJob name (RFC 1035 label, <= 63 chars) derived from ``name``."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "osft-" + out
    out = out[:63].rstrip("-")
    if not _RFC1035.match(out):
        raise StepError(f"cannot derive a TrainJob name from {name!r}: use lowercase letters, digits and '-'")
    return out


def trainjob_state(obj: dict[str, Any]) -> tuple[str, str]:
    """(state, message) from a TrainJob's conditions: Failed, Complete, Suspended or Running."""
    conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    for state in ("Failed", "Complete", "Suspended"):
        if state in conds:
            c = conds[state]
            return state, " ".join(str(c.get(k, "")) for k in ("reason", "message") if c.get(k)).strip()
    return "Running", ""


def _api(token_path: str) -> Any:
    from kubernetes import client, config

    url = os.environ.get("KUBERNETES_SERVER_URL", "").strip()
    token = os.environ.get("KUBERNETES_AUTH_TOKEN", "").strip()
    if url and token:
        cfg = client.Configuration()
        cfg.host = url.rstrip("/")
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.verify_ssl = os.environ.get("KUBERNETES_INSECURE_SKIP_TLS_VERIFY", "").lower() not in ("1", "true")
        return client.CustomObjectsApi(client.ApiClient(cfg))
    if url or token:
        raise StepError("secret kubernetes-credentials must set both KUBERNETES_SERVER_URL and KUBERNETES_AUTH_TOKEN")
    if not Path(token_path).is_file():
        raise StepError("no Kubernetes API access: set the secret kubernetes-credentials or run in a pod whose "
                        "service account may create trainjobs (templates/rbac.yaml)")
    config.load_incluster_config()
    return client.CustomObjectsApi()


def _api_error(exc: Any, what: str) -> StepError:
    hint = {403: " (the service account lacks RBAC on trainjobs.trainer.kubeflow.org: apply templates/rbac.yaml)",
            401: " (the token was rejected: check kubernetes-credentials)",
            404: " (is Kubeflow Trainer installed? the TrainJob CRD or the job is missing)"}.get(exc.status, "")
    return StepError(f"{what}: Kubernetes API answered {exc.status} {exc.reason}{hint}")


def _as_bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes")


def job_manifest(workers: int | str, gpus_per_worker: int | str, image: str, namespace: str, pvc_claim: str,
                 name: str, runtime: str = "training-hub", owner_name: str = "", owner_uid: str = "",
                 model: str = "Qwen/Qwen2.5-1.5B-Instruct", effective_batch_size: int | str = 128,
                 epochs: int | str = 1, max_tokens_per_gpu: int | str = 64000, max_seq_len: int | str = 8192,
                 learning_rate: float | str = 5e-06, unfreeze_rank_ratio: float | str = 0.25,
                 use_liger: bool | str = True, seed: int | str = 42, lr_scheduler: str = "cosine",
                 warmup_steps: int | str = 0, checkpoint_at_epoch: bool | str = True,
                 save_final_checkpoint: bool | str = True, lr_scheduler_kwargs: str = "", target_patterns: str = "",
                 unmask_messages: bool | str = False, use_processed_dataset: bool | str = False,
                 nproc_per_node: str = "auto", cpu_per_worker: str = "", memory_per_worker: str = "",
                 env_vars: str = "", labels: str = "", annotations: str = "") -> dict[str, Any]:
    """The TrainJob ``launch_trainjob`` creates (values may be the step's raw text inputs), owned by the workflow.

    Every training argument reaches each node's train step; ``env_vars`` become the nodes' container env,
    ``labels``/``annotations`` their pods' metadata (key=value,... text, checked as the preflight checks it).
    """
    from steps.train import check_nproc
    from steps.train.pod_settings import parse_annotations, parse_env, parse_labels
    from steps.train.trainjob import trainjob_manifest

    train_args = {
        "model": model, "effective_batch_size": int(effective_batch_size), "epochs": int(epochs),
        "max_tokens_per_gpu": int(max_tokens_per_gpu), "max_seq_len": int(max_seq_len),
        "learning_rate": float(learning_rate), "unfreeze_rank_ratio": float(unfreeze_rank_ratio),
        "use_liger": _as_bool(use_liger), "seed": int(seed), "lr_scheduler": lr_scheduler,
        "warmup_steps": int(warmup_steps), "checkpoint_at_epoch": _as_bool(checkpoint_at_epoch),
        "save_final_checkpoint": _as_bool(save_final_checkpoint), "lr_scheduler_kwargs": lr_scheduler_kwargs,
        "target_patterns": target_patterns, "unmask_messages": _as_bool(unmask_messages),
        "use_processed_dataset": _as_bool(use_processed_dataset),
    }
    check_nproc(nproc_per_node, int(gpus_per_worker))
    manifest = trainjob_manifest(job_name(name), namespace, image, pvc_claim, int(workers), int(gpus_per_worker),
                                 train_args, runtime, cpu_per_worker=cpu_per_worker,
                                 memory_per_worker=memory_per_worker, extra_env=parse_env(env_vars),
                                 labels=parse_labels(labels), annotations=parse_annotations(annotations),
                                 nproc_per_node=nproc_per_node)
    if owner_uid and owner_name:
        manifest.setdefault("metadata", {})["ownerReferences"] = [{
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": owner_name, "uid": owner_uid,
        }]
    return manifest


def _wait_gone(api: Any, namespace: str, jname: str, timeout_s: float, poll_s: float) -> None:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, jname)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _api_error(exc, f"cannot read TrainJob {jname}") from None
        if time.monotonic() > deadline:
            raise StepError(f"TrainJob {jname} from an earlier attempt was deleted but is still there after "
                            f"{timeout_s:.0f}s; delete it (kubectl delete trainjob {jname}) and retry")
        time.sleep(poll_s)


def _create_or_adopt(api: Any, manifest: dict[str, Any], namespace: str, jname: str, ws: Workspace,
                     poll_seconds: float, replace_timeout_s: float) -> str:
    """Create the TrainJob; on a retry adopt a running one or replace a finished/failed one. Returns the action."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise _api_error(exc, f"cannot create TrainJob {jname}") from None
    try:
        existing = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, jname)
    except ApiException as exc:
        raise _api_error(exc, f"cannot read the existing TrainJob {jname}") from None
    state, message = trainjob_state(existing)
    if state in ("Running", "Suspended"):
        ws.log(STEP, f"TrainJob {jname} already exists (step retried) and is {state}: adopting it")
        return "adopted"
    ws.log(STEP, f"TrainJob {jname} from an earlier attempt is {state}" + (f" ({message})" if message else "")
           + ": replacing it (its train step resumes from the workspace's checkpoint)")
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, jname,
                                            body={"propagationPolicy": "Foreground"})
    except ApiException as exc:
        if exc.status != 404:
            raise _api_error(exc, f"cannot delete the earlier TrainJob {jname}") from None
    _wait_gone(api, namespace, jname, replace_timeout_s, poll_seconds)
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    except ApiException as exc:
        raise _api_error(exc, f"cannot create TrainJob {jname} again") from None
    return "replaced"


def launch_trainjob(
    workspace: str,
    workers: int,
    gpus_per_worker: int,
    image: str,
    namespace: str,
    pvc_claim: str,
    name: str,
    runtime: str = "training-hub",
    owner_name: str = "",
    owner_uid: str = "",
    model: str = "Qwen/Qwen2.5-1.5B-Instruct",
    effective_batch_size: int = 128,
    epochs: int = 1,
    max_tokens_per_gpu: int = 64000,
    max_seq_len: int = 8192,
    learning_rate: float = 5e-06,
    unfreeze_rank_ratio: float = 0.25,
    use_liger: bool = True,
    seed: int = 42,
    lr_scheduler: str = "cosine",
    warmup_steps: int = 0,
    checkpoint_at_epoch: bool = True,
    save_final_checkpoint: bool = True,
    lr_scheduler_kwargs: str = "",
    target_patterns: str = "",
    unmask_messages: bool = False,
    use_processed_dataset: bool = False,
    nproc_per_node: str = "auto",
    cpu_per_worker: str = "",
    memory_per_worker: str = "",
    env_vars: str = "",
    labels: str = "",
    annotations: str = "",
    poll_seconds: float = 15.0,
    timeout_seconds: int = 0,
    token_path: str = SA_TOKEN_PATH,
    replace_timeout_seconds: int = 600,
    continue_from: str = "",
) -> dict[str, Any]:
    """Run OSFT training as a multi-node Kubeflow Trainer TrainJob and wait for it to finish.

    Args:
        workspace: workspace directory (the per-run RWX volume, also mounted by every TrainJob node).
        workers: number of training nodes (>= 2).
        gpus_per_worker: GPUs per node.
        image: the step image the TrainJob nodes run.
        namespace: namespace of the TrainJob (the workflow's).
        pvc_claim: name of the workspace PVC the nodes mount.
        name: TrainJob name (made a valid RFC 1035 label).
        runtime: ClusterTrainingRuntime to use.
        owner_name: owning Workflow's name (the TrainJob is deleted with it).
        owner_uid: owning Workflow's uid.
        model: base model.
        effective_batch_size: samples per optimizer step.
        epochs: training epochs.
        max_tokens_per_gpu: token cap per GPU.
        max_seq_len: max sequence length.
        learning_rate: peak learning rate.
        unfreeze_rank_ratio: OSFT unfreeze ratio.
        use_liger: Liger kernels.
        seed: training seed.
        lr_scheduler: learning-rate schedule.
        warmup_steps: linear warm-up steps.
        checkpoint_at_epoch: save a checkpoint at the end of every epoch.
        save_final_checkpoint: save a checkpoint when training ends.
        lr_scheduler_kwargs: extra scheduler arguments, key=value,... or JSON (typed).
        target_patterns: OSFT target module patterns, comma-separated.
        unmask_messages: train on every token, not only the assistant's.
        use_processed_dataset: the training split holds pre-tokenised rows.
        nproc_per_node: processes per node ('auto' = one per GPU).
        cpu_per_worker: CPU request of each node's pod ('' = the runtime's).
        memory_per_worker: memory request and limit of each node's pod ('' = the runtime's).
        env_vars: env vars of every node, KEY=VAL,... (names that look like secrets are refused).
        labels: labels of every node's pod, key=value,...
        annotations: annotations of every node's pod, key=value,...
        poll_seconds: seconds between status checks.
        timeout_seconds: give up (and delete the job) after this long; 0 = wait as long as the step may run.
        token_path: service-account token file used when kubernetes-credentials is not set.
        replace_timeout_seconds: how long to wait for a finished/failed TrainJob of an earlier attempt to go.
        continue_from: '' = train ``model``; 'latest' or a version = the parent version the lineage step fetched
            onto the workspace (every node mounts it), or ``model`` when the lineage has no version yet.

    Returns:
        trainjob name, final state, model_path (the workspace's train/model target), workers.
    """
    from kubernetes.client.exceptions import ApiException

    if workers < 2:
        raise StepError(f"workers={workers}: a TrainJob is for 2 or more workers; the single-node train step "
                        "handles 1")
    ws = Workspace.at(workspace)
    if continue_from.strip():
        from steps.lineage import parent_model_dir

        parent = parent_model_dir(ws, continue_from)
        if parent is not None:
            model = str(parent)  # on the workspace volume every node mounts at the same path
            ws.log(STEP, f"continuing from the parent version at {parent}")
    jname = job_name(name)
    manifest = job_manifest(workers, gpus_per_worker, image, namespace, pvc_claim, jname, runtime, owner_name,
                            owner_uid, model, effective_batch_size, epochs, max_tokens_per_gpu, max_seq_len,
                            learning_rate, unfreeze_rank_ratio, use_liger, seed, lr_scheduler, warmup_steps,
                            checkpoint_at_epoch, save_final_checkpoint, lr_scheduler_kwargs, target_patterns,
                            unmask_messages, use_processed_dataset, nproc_per_node, cpu_per_worker,
                            memory_per_worker, env_vars, labels, annotations)
    api = _api(token_path)
    try:
        action = _create_or_adopt(api, manifest, namespace, jname, ws, poll_seconds, replace_timeout_seconds)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    if action != "adopted":
        ws.log(STEP, f"{action} TrainJob {jname}: {workers} workers x {gpus_per_worker} GPU, runtime {runtime}")

    def _delete(*_: Any) -> None:
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, jname)
            ws.log(STEP, f"deleted TrainJob {jname}")
        except ApiException:
            pass

    def _on_term(signum: int, _frame: Any) -> None:
        _delete()
        raise StepError(f"terminated (signal {signum}) while TrainJob {jname} ran; the job was deleted")

    previous = signal.signal(signal.SIGTERM, _on_term)
    started = time.monotonic()
    last = ""
    try:
        while True:
            try:
                obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, jname)
            except ApiException as exc:
                raise _api_error(exc, f"cannot read TrainJob {jname}") from None
            state, message = trainjob_state(obj)
            if state != last:
                ws.log(STEP, f"TrainJob {jname}: {state}" + (f" ({message})" if message else ""))
                last = state
            if state == "Complete":
                break
            if state == "Failed":
                raise StepError(f"TrainJob {jname} failed: {message or 'see its pods logs'}")
            if timeout_seconds and time.monotonic() - started > timeout_seconds:
                _delete()
                raise StepError(f"TrainJob {jname} did not finish within {timeout_seconds}s; deleted it")
            time.sleep(poll_seconds)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    model_path = ws.trained_model()
    ws.log(STEP, f"done: TrainJob {jname} complete, model at {model_path}")
    return {"trainjob": jname, "state": "Complete", "model_path": str(model_path), "workers": workers}
