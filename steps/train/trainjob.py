"""Build the Kubeflow Trainer v2 ``TrainJob`` manifest for multi-node training (workers > 1).

Pure Python, no Kubernetes client: the Argo workflow submits the returned dict with a resource template
(``action: create``, ``setOwnerReference: true``), so no kubeconfig secret is needed. Each node runs the very
same train step (``osft-pipeline step train ...``) on the workflow's RWX workspace volume, mounted through
``runtimePatches`` together with the GPU toleration, an in-memory ``/dev/shm`` and the non-root security
context with ``fsGroup``; Kubeflow Trainer sets ``PET_NNODES``/``PET_NODE_RANK``/``PET_MASTER_ADDR`` and
``training_hub`` reads them for torchrun. Secrets reach the pods only as ``secretKeyRef`` env entries,
never as values.
"""

import inspect
import re
from typing import Any

from steps.common.errors import StepError
from steps.train.pod_settings import check_env_name

API_VERSION = "trainer.kubeflow.org/v1alpha1"
MANAGER = "argoproj.io/workflow"
REPLICATED_JOB = "node"  # replicatedJob and container name of the torch runtimes
WORKSPACE_VOLUME = "workspace"
SHM_VOLUME = "dshm"  # /dev/shm in memory: NCCL and the data loaders need more than the runtime's 64 MiB default
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
IMAGE_UID = 1001  # the image's non-root user; fsGroup makes the RWX workspace writable (as in the Argo pods)
# env var -> (secret name, key); optional, so a missing secret simply leaves the variable unset
SECRET_ENV = {
    "HF_TOKEN": ("hf-token", "HF_TOKEN"),
    "OCI_PULL_SECRET_MODEL_DOWNLOAD": ("oci-pull-secret-model-download", "OCI_PULL_SECRET_MODEL_DOWNLOAD"),
}
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MANAGED = {"workspace", "nnodes", "nproc_per_node", "device"}


def _templated(value: str) -> bool:
    return "{{" in value  # an Argo expression, substituted at run time


def _check_name(what: str, value: str, pattern: re.Pattern[str], limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise StepError(f"{what} is empty")
    if not _templated(value) and (len(value) > limit or not pattern.match(value)):
        raise StepError(f"{what}={value!r}: must be a lowercase DNS name ([a-z0-9-], at most {limit} characters)")


def validate_trainjob(workers: int, gpus_per_worker: int, runtime: str) -> None:
    """The TrainJob's own checks of the pipeline's settings (the preflight applies them when workers > 1)."""
    _check_name("runtime", runtime, _RFC1123, 253)
    for what, value in (("workers", workers), ("gpus_per_worker", gpus_per_worker)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StepError(f"{what}={value!r}: must be an integer >= 1")


def nproc_for(nproc_per_node: str, gpus_per_worker: int) -> int:
    """Processes per node: 'auto' = one per GPU, else the given count."""
    text = str(nproc_per_node).strip().lower()
    return gpus_per_worker if text in ("", "auto") else int(text)


def train_command(train_args: dict[str, Any], workspace_path: str, workers: int, gpus_per_worker: int,
                  nproc_per_node: int | None = None) -> list[str]:
    """``osft-pipeline step train`` argv for every node, from train_model keyword arguments."""
    from steps.train import train_model

    params = inspect.signature(train_model).parameters
    unknown = sorted(set(train_args) - set(params))
    if unknown:
        raise StepError(f"train_args has unknown parameter(s) {unknown}: use train_model's parameter names")
    managed = sorted(set(train_args) & _MANAGED)
    if managed:
        raise StepError(f"train_args must not set {managed}: the TrainJob sets them from its own arguments")
    cmd = ["osft-pipeline", "step", "train", "--workspace", workspace_path]
    for key, value in train_args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + key.replace("_", "-"))  # the CLI's on/off flag pair
        elif isinstance(value, int | float | str):
            cmd += [flag, str(value)]
        else:
            raise StepError(f"train_args[{key!r}]={value!r}: must be a string, number or boolean")
    nproc = gpus_per_worker if nproc_per_node is None else nproc_per_node
    cmd += ["--nnodes", str(workers), "--nproc-per-node", str(nproc), "--device", "cuda"]
    return cmd


def trainjob_manifest(name: str, namespace: str, image: str, pvc_claim: str, workers: int, gpus_per_worker: int,
                      train_args: dict[str, Any], runtime: str = "training-hub", workspace_path: str = "/workspace",
                      cpu_per_worker: str = "", memory_per_worker: str = "",
                      extra_env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                      annotations: dict[str, str] | None = None, nproc_per_node: str = "auto") -> dict[str, Any]:
    """A ``TrainJob`` running the train step on ``workers`` nodes with ``gpus_per_worker`` GPUs each.

    ``name``, ``namespace`` and ``pvc_claim`` may hold Argo expressions (``{{workflow.name}}-train``).
    ``extra_env`` is for plain settings only; secrets are attached by reference (see ``SECRET_ENV``).
    Each node's pod gets ``cpu_per_worker`` as its CPU request (no limit, as the single train pod) and
    ``memory_per_worker`` as its memory request and limit; ``labels`` and ``annotations`` go on the nodes' pods
    when they are created (the runtime's pod template metadata); ``nproc_per_node`` is 'auto' (one process per
    GPU) or a count.
    """
    _check_name("name", name, _RFC1035, 63)
    _check_name("namespace", namespace, _RFC1123, 63)
    _check_name("pvc_claim", pvc_claim, _RFC1123, 253)
    validate_trainjob(workers, gpus_per_worker, runtime)
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise StepError(f"image={image!r}: must be a container image reference")
    if not workspace_path.startswith("/"):
        raise StepError(f"workspace_path={workspace_path!r}: must be an absolute path")
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{workspace_path}/.cache/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    for key, value in (extra_env or {}).items():
        if key in SECRET_ENV:
            raise StepError(f"extra_env[{key!r}] is a secret: secrets are attached by secretKeyRef only")
        check_env_name(key, "extra_env")
        env.append({"name": key, "value": str(value)})
    nproc = nproc_for(nproc_per_node, gpus_per_worker)
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
            for var, (secret, key) in SECRET_ENV.items()]
    resources: dict[str, Any] = {"limits": {"nvidia.com/gpu": gpus_per_worker},
                                 "requests": {"nvidia.com/gpu": gpus_per_worker}}
    if cpu_per_worker:  # a request only: a CPU limit throttles the data loader and tokenizer threads
        resources["requests"]["cpu"] = cpu_per_worker
    if memory_per_worker:
        resources["requests"]["memory"] = resources["limits"]["memory"] = memory_per_worker
    pod_patch = {
        "tolerations": [dict(GPU_TOLERATION)],
        "securityContext": {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "runAsNonRoot": True,
                            "fsGroup": IMAGE_UID, "fsGroupChangePolicy": "OnRootMismatch"},
        "volumes": [{"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": pvc_claim}},
                    {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}],
        "containers": [{"name": REPLICATED_JOB,
                        "volumeMounts": [{"name": WORKSPACE_VOLUME, "mountPath": workspace_path},
                                         {"name": SHM_VOLUME, "mountPath": "/dev/shm"}]}],
    }
    pod_template: dict[str, Any] = {"spec": pod_patch}
    if labels or annotations:
        pod_template = {"metadata": {k: dict(v) for k, v in (("labels", labels), ("annotations", annotations)) if v},
                        **pod_template}
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "osft-pipeline", "osft-pipeline/step": "train"}},
        "spec": {
            "runtimeRef": {"name": runtime, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
            "trainer": {
                "image": image,
                "command": train_command(train_args, workspace_path, workers, gpus_per_worker, nproc),
                "env": env,
                "numNodes": workers,
                "numProcPerNode": nproc,
                "resourcesPerNode": resources,
            },
            "runtimePatches": [{
                "manager": MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
                    {"name": REPLICATED_JOB, "template": {"spec": {"template": pod_template}}},
                ]}}},
            }],
        },
    }
