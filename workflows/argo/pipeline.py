"""The Argo Workflows binding, built with Hera: WorkflowTemplate, CronWorkflow and install manifests.

Every step runs as a Hera *runner* script template calling the plain function in ``steps/``
(``python -m hera.workflows.runner -e steps.dataset:prepare_dataset``), so Argo, the CLI and the
local runner execute the same code. Parameters travel as Argo parameters; data and models travel
by path on one per-run RWX workspace volume mounted at ``/workspace`` in every pod.

What a real cluster accepts (checked offline by ``workflows/argo/lint.py`` against the full CRDs):
- no ``{{…}}`` in a quantity field: GPU counts go through ``podSpecPatch`` (a string), built with
  ``toJson`` so no ``}}`` ends the tag early; the workspace PVC (size and class are parameters) is
  created by a ``resource`` template owned by the workflow and mounted by claim name;
- retries never use ``backoff.maxDuration`` (it counts from the first attempt and would forbid retrying a
  long step; their waits are bounded by the small limits); every pod deadline leaves room for a cold pull
  of the image and the workflow's deadline leaves room for every retry;
- pods run as the image's non-root user with ``fsGroup`` so an NFS-backed RWX volume is writable;
- output parameters are small summaries (the full metrics stay on the workspace).
"""

import json
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    CronWorkflow,
    Env,
    NoneArchiveStrategy,
    Parameter,
    Resource,
    RetryStrategy,
    Script,
    SecretEnv,
    WorkflowTemplate,
)
from hera.workflows import models as m

from steps.common.secrets import K8S_SECRETS
from steps.common.summary import BOUNDED_OUTPUTS
from steps.dataset import prepare_dataset
from steps.evaluate import evaluate_model
from steps.finish import record_status
from steps.lineage import fetch_lineage
from steps.publish import DEFAULT_MOUNT, publish_model
from steps.register import register_model
from steps.train import train_model
from steps.train.pod_settings import MAX_POD_METADATA
from steps.train.trainjob_launch import launch_trainjob
from steps.volume import wait_for_workspace
from workflows.argo import goyaml
from workflows.argo.preflight import PREFLIGHT
from workflows.image import image
from workflows.local.pod import LOCAL_RUN_ANNOTATION
from workflows.params import BY_NAME, FULL, MINIMAL, TEMPLATES, names_for, params_for, step_inputs, to_text

NAME = MINIMAL  # osft-minimal-pipeline: the original osft_minimal contract
FULL_NAME = FULL  # osft-pipeline: every input of upstream's full osft pipeline
CRON_NAME = "osft-minimal-pipeline-retrain"
DESCRIPTIONS = {
    MINIMAL: "OSFT fine-tuning: preflight, dataset, train, evaluate, register.",
    FULL: "OSFT fine-tuning with every knob of upstream's osft pipeline (LR schedule, checkpoint policy, target "
          "modules, unmasking, pre-tokenised data, pod labels/annotations/env, eval and registry settings).",
}
POD_STEP_KEY = "osft-pipeline.io/step"  # on the train pod; unused label/annotation slots fall back to it


def cron_name(template: str = MINIMAL) -> str:
    """The CronWorkflow of ``template`` (``osft-minimal-pipeline-retrain``, ``osft-pipeline-retrain``)."""
    return f"{template}-retrain"
IMAGE = image()  # the one image setting (OSFT_PIPELINE_IMAGE, or compile --image)
SERVICE_ACCOUNT = "osft-pipeline"
NAMESPACE = "argo"  # install namespace of the manifests (compile --namespace); RoleBinding subjects need one
WORKSPACE = "/workspace"
OUTPUTS_DIR = "/tmp/outputs"  # the exit handler's key numbers (pod-local files -> output parameters)
GPU = "nvidia.com/gpu"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = m.Toleration(key=GPU, operator="Exists", effect="NoSchedule")
SECRET_KEYS = K8S_SECRETS  # secret name -> keys (= env var names), shared with the KFP twin
EXIT_OUTPUTS = ("final_loss", "train_steps", "eval_gate", "registration_status", "registered_version", "data_status",
                "accepted_version")
CRON_SCHEDULE = "0 3 * * 0"  # Sundays 03:00
# The scheduled run continues the lineage: from the last accepted version, on the data new since then
CRON_LINEAGE = {"phase_02_train_opt_continue_from": "latest", "phase_01_dataset_opt_since": "last"}
IMAGE_UID = 1001  # the image's user (Containerfile); fsGroup makes the RWX workspace writable for it
WORKSPACE_CLAIM = "{{workflow.name}}-workspace"  # the PVC the workspace-pvc task creates, owned by the workflow
DATA_STATUS = "dataset/status.txt"  # the dataset task's data_status output (steps.dataset.STATUS_TXT)
# Every pod's activeDeadlineSeconds counts from the pod's start, *before* its image is pulled: no pod gets
# less than this, so a cold pull of the multi-GB image cannot fail a step that never ran.
PULL_ALLOWANCE_S = 1800
# On SIGTERM (deadline, preemption, argo stop) mini-trainer writes a full-state checkpoint that a retry
# resumes from; the default 30 s grace period is too short to save optimizer state.
TRAIN_GRACE_S = 300
# How long the workspace-bound task waits for the workspace PVC to bind before it fails the run with the claim's
# last event and the fix (instead of pods that mount it staying Pending for days).
BIND_TIMEOUT_S = 600
# Pods that are first to mount the workspace (preflight; record-status when the run failed before it) may stay
# Pending when a WaitForFirstConsumer class cannot provision it; Argo's template ``timeout`` counts Pending time
# too (the pod deadline does not): the pull allowance plus 15 minutes.
MOUNT_TIMEOUT = f"{(PULL_ALLOWANCE_S + 900) // 60}m"


def wf(name: str) -> str:
    """``{{workflow.parameters.<name>}}`` for a declared pipeline parameter."""
    if name not in BY_NAME:
        raise KeyError(f"unknown pipeline parameter {name}")
    return "{{workflow.parameters." + name + "}}"


def secret_env(*secrets: str) -> list[SecretEnv]:
    """Optional ``secretKeyRef`` env vars for the named secrets (env var name = secret key)."""
    return [SecretEnv(name=key, secret_name=s, secret_key=key, optional=True)
            for s in secrets for key in SECRET_KEYS[s]]


class Expr(str):
    """A piece of expr-lang source inserted as is by :func:`expr_literal`."""


def expr_literal(value: Any) -> str:
    """expr-lang source for a map/list/str/int literal; every ``}`` is preceded by a space, so no ``}}`` can end
    the ``{{=…}}`` tag early (Argo's template engine ends a tag at the first ``}}``)."""
    if isinstance(value, Expr):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {expr_literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(expr_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    raise TypeError(f"no expr-lang literal for {value!r}")


def pod_patch(gpu: str, cpu: str, memory: str, node_selector: bool, always: dict[str, Any] | None = None) -> str:
    """A ``podSpecPatch`` for container ``main``: CPU request ``cpu``, memory request = limit ``memory``, and
    ``gpu`` GPUs (requests = limits) with the GPU node selector when asked, only when that count is > 0
    (``gpu``, ``cpu``, ``memory`` name workflow parameters); ``always`` is merged in either way.

    None of these can sit in ``resources`` as a ``{{…}}`` tag (quantity fields: the API server refuses the
    template as written); ``podSpecPatch`` is a string, substituted before the Pod is created. No CPU limit:
    a limit throttles the data loader and tokenizer threads; the request is what the scheduler reserves.
    """
    count = f"asInt(workflow.parameters.{gpu})"
    gpus = Expr(f"string({count})")
    cpu_q, mem_q = Expr(f"workflow.parameters.{cpu}"), Expr(f"workflow.parameters.{memory}")

    def patch(with_gpu: bool) -> dict[str, Any]:
        out: dict[str, Any] = dict(always or {})
        requests: dict[str, Any] = {"cpu": cpu_q, "memory": mem_q}
        limits: dict[str, Any] = {"memory": mem_q}
        if with_gpu:
            if node_selector:
                out["nodeSelector"] = dict(GPU_NODE_SELECTOR)
            requests[GPU] = limits[GPU] = gpus
        out["containers"] = [{"name": "main", "resources": {"limits": limits, "requests": requests}}]
        return out

    return f"{{{{={count} > 0 ? toJson({expr_literal(patch(True))}) : toJson({expr_literal(patch(False))})}}}}"


def _resources(cpu: str, memory: str, memory_limit: str) -> m.ResourceRequirements:
    return m.ResourceRequirements(requests={"cpu": m.Quantity(cpu), "memory": m.Quantity(memory)},
                                  limits={"memory": m.Quantity(memory_limit)})


def _retry(limit: int, duration: str, policy: str = "Always") -> RetryStrategy:
    """``policy`` "Always": the runner exits 1 for every failure, so network errors look like any other failure
    (the preflight has already rejected bad parameters). Never ``backoff.maxDuration``: it counts from the
    *first* attempt's start, so it would forbid retrying (or kill the retry of) a long step. The waits are
    bounded by the small limit (``duration`` x 2^n; the lint checks the total); ``backoff.cap`` would bound them
    too but does not exist before Argo 3.7 (3.6's full CRD refuses it)."""
    return RetryStrategy(limit=limit, retry_policy=policy, backoff=m.Backoff(duration=duration, factor=2))


def _json_output(name: str, path: str, description: str) -> Parameter:
    rel = path.removeprefix(WORKSPACE + "/")
    if rel not in BOUNDED_OUTPUTS:
        raise ValueError(f"output parameter {name} reads {rel}, which is not a bounded summary (BOUNDED_OUTPUTS)")
    return Parameter(name=name, value_from=m.ValueFrom(path=path, default="{}"), description=description)


def _artifact(name: str, path: str) -> Artifact:
    return Artifact(name=name, path=path, optional=True, archive=NoneArchiveStrategy())


def workspace_pvc_manifest() -> str:
    """The per-run RWX workspace PVC; size and class are parameters, so it is created by a resource template
    (its manifest is a string: tags are allowed there, unlike in volumeClaimTemplates' quantity fields)."""
    return goyaml.dump({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": WORKSPACE_CLAIM, "labels": {
            "app.kubernetes.io/name": "osft-pipeline", "app.kubernetes.io/component": "workspace",
            "workflows.argoproj.io/workflow": "{{workflow.name}}"}},
        "spec": {
            "accessModes": [wf("phase_00_workspace_opt_access_mode")],
            # '' = no dynamic provisioning (pre-provisioned PVs), as the parameter documents
            "storageClassName": wf("phase_00_workspace_opt_storage_class"),
            "resources": {"requests": {"storage": wf("phase_00_workspace_opt_size")}},
        },
    })


# "Keep mode": a registry address and no storage URI. The model is then registered as pvc://<workspace claim>/…,
# so the workspace must outlive the run (no dangling URI, ever): keep-workspace removes the claim's ownerReference
# (a JSON merge patch: null deletes the field) before register runs, and the exit handler does not delete it.
# A run that fails before anything was registered gives the claim back to the workflow (reown-workspace), so
# it goes with the workflow as before. docs/publishing.md explains where the model lives and how to clean up.
KEEP_MODE = ("'{{workflow.parameters.phase_04_registry_man_address}}' != '' && "
             "'{{workflow.parameters.phase_04_registry_opt_storage_uri}}' == ''")
RETAINED_LABEL = "osft-pipeline.io/retained"  # on a kept workspace claim: the model registered from it


def workspace_patch(owner: bool) -> str:
    """A JSON merge patch of the workspace claim: drop its ownerReferences (kept after the workflow), or give it
    back to the workflow (no blockOwnerDeletion: setting that needs rights on workflows/finalizers)."""
    owners = [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "{{workflow.name}}",
               "uid": "{{workflow.uid}}"}] if owner else None
    return goyaml.dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": WORKSPACE_CLAIM, "ownerReferences": owners,
                     "labels": {RETAINED_LABEL: "false" if owner else "true"}},
    })


def metadata_slots(param: str, fallback_key: str, fallback_value: str, slots: int = MAX_POD_METADATA
                   ) -> dict[str, str]:
    """A template ``metadata.labels``/``annotations`` map that sets the pairs of a ``key=val,...`` workflow
    parameter when Argo creates the pod (podSpecPatch cannot: it patches the Pod spec, not its metadata).

    Argo substitutes tags in the template's JSON text, keys included, before it creates the pod: slot ``i``'s key
    and value are expressions taking the i-th pair of the parameter (trimmed, split at the first ``=``); a slot past
    the last pair renders to ``fallback_key: fallback_value``, a pair the template always sets, so every unused
    slot collapses onto it (the JSON object's duplicate keys, all with the same value). The preflight refuses what
    these expressions cannot take (an empty item, an item without ``=``, more than ``slots`` pairs, invalid keys
    or values: steps/train/pod_settings.py); tests compare the rendered slots with that parser.
    """
    p = f"workflow.parameters.{param}"
    items = f"split({p}, ',')"
    out: dict[str, str] = {}
    for i in range(slots):
        cond = f"trim({p}) != '' && len({items}) > {i}"

        def part(k: int, fallback: str, i: int = i, cond: str = cond) -> str:
            return "{{=" + f"{cond} ? trim(split({items}[{i}], '=', 2)[{k}]) : '{fallback}'" + "}}"

        out[part(0, fallback_key)] = part(1, fallback_value)
    return out


def pod_security() -> m.PodSecurityContext:
    """Non-root as the image's user; fsGroup (changed only when the volume root does not match) so an NFS-backed
    RWX volume, created root-owned 0755, is writable."""
    return m.PodSecurityContext(run_as_user=IMAGE_UID, run_as_group=IMAGE_UID, run_as_non_root=True,
                                fs_group=IMAGE_UID, fs_group_change_policy="OnRootMismatch",
                                seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


def container_security() -> m.SecurityContext:
    return m.SecurityContext(allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]))


# Per-step limits: (activeDeadlineSeconds per attempt, retry limit). The workflow's deadline is computed so
# that every attempt of every step on the longest path fits (a retried train always has room to resume).
DEADLINES = {
    "workspace-pvc": (PULL_ALLOWANCE_S, 2), "workspace-bound": (PULL_ALLOWANCE_S + BIND_TIMEOUT_S, 2),
    "preflight": (PULL_ALLOWANCE_S, 3), "dataset": (4 * 3600, 2),
    "train": (2 * 24 * 3600, 2), "train-trainjob": (2 * 24 * 3600, 2), "evaluate": (12 * 3600, 2),
    "publish": (3 * 3600, 3), "publish-pvc": (3 * 3600, 3), "keep-workspace": (PULL_ALLOWANCE_S, 2),
    "register": (PULL_ALLOWANCE_S, 3), "record-status": (PULL_ALLOWANCE_S, 2),
    "lineage": (3 * 3600, 3), "lineage-pvc": (3 * 3600, 3),
    "delete-workspace": (PULL_ALLOWANCE_S, 2), "reown-workspace": (PULL_ALLOWANCE_S, 2),
}
WORKFLOW_DEADLINE_S = 10 * 24 * 3600


def build_template(image: str = IMAGE, artifacts: bool = False, template: str = MINIMAL) -> WorkflowTemplate:
    """The ``osft-minimal-pipeline`` WorkflowTemplate, or with ``template=FULL_NAME`` the ``osft-pipeline`` one.

    One builder for both: the template's parameters (``workflows/params.py``) decide its arguments and which
    step arguments its tasks pass (``step_inputs``); a step argument whose parameter the template lacks keeps
    the step's default. ``artifacts=True`` also exports metrics, comparison and plots as (optional) output
    artifacts; that needs an artifact repository configured in the cluster.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: {' or '.join(TEMPLATES)}")
    members = names_for(template)

    def inputs(step: str) -> dict[str, str]:
        return {arg: wf(param) for arg, param in step_inputs(step, template).items()}

    ws_mount = m.VolumeMount(name="workspace", mount_path=WORKSPACE)
    shm_mount = m.VolumeMount(name="dshm", mount_path="/dev/shm")
    common: dict[str, Any] = {
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "constructor": "runner",
        "volume_mounts": [ws_mount],
        "pod_security_context": pod_security(),
        "security_context": container_security(),
    }

    def limits(name: str) -> dict[str, Any]:
        return {"active_deadline_seconds": DEADLINES[name][0]}

    base_env = [Env(name="PYTHONUNBUFFERED", value="1")]
    arguments = [
        Parameter(name=p.name, value="" if p.required else to_text(p.default_for(template)),
                  description=p.description,
                  enum=["true", "false"] if p.type is bool else (list(p.enum) if p.enum else None))
        for p in params_for(template)
    ]
    with WorkflowTemplate(
        name=template,
        labels={"app.kubernetes.io/name": "osft-pipeline", "app.kubernetes.io/component": "pipeline"},
        annotations={
            "workflows.argoproj.io/description": DESCRIPTIONS[template],
            "workflows.argoproj.io/version": ">= 3.6",
        },
        entrypoint="pipeline",
        on_exit="exit-handler",
        service_account_name=SERVICE_ACCOUNT,
        arguments=arguments,
        volumes=[
            m.Volume(name="workspace", persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
                claim_name=WORKSPACE_CLAIM)),
            m.Volume(name="dshm", empty_dir=m.EmptyDirVolumeSource(medium="Memory")),
        ],
        active_deadline_seconds=WORKFLOW_DEADLINE_S,
        pod_gc=m.PodGC(strategy="OnPodSuccess", delete_delay_duration="1h"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=3 * 24 * 3600, seconds_after_failure=7 * 24 * 3600),
    ) as wt:
        t_pvc = Resource(
            name="workspace-pvc", action="apply", set_owner_reference=True, manifest=workspace_pvc_manifest(),
            retry_strategy=_retry(DEADLINES["workspace-pvc"][1], "10s", policy="OnError"),
            **limits("workspace-pvc"),
        )
        t_delete_pvc = Resource(
            name="delete-workspace", action="delete", flags=["--ignore-not-found"],
            manifest=goyaml.dump({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "metadata": {"name": WORKSPACE_CLAIM}}),
            retry_strategy=_retry(DEADLINES["delete-workspace"][1], "10s", policy="OnError"),
            **limits("delete-workspace"),
        )
        t_preflight = Script(
            name="preflight", source=PREFLIGHT[template], **common,
            env=base_env + secret_env("s3-secret", "hf-token", "oci-pull-secret-model-download",
                                      "kubernetes-credentials"),
            resources=_resources("100m", "256Mi", "512Mi"),
            # OnError: an infrastructure error (evicted, node lost) is retried; a bad parameter fails at once
            retry_strategy=_retry(DEADLINES["preflight"][1], "10s", policy="OnError"),
            timeout=MOUNT_TIMEOUT,  # the first pod to mount the workspace: Pending time counts
            **limits("preflight"),
        )
        t_dataset = Script(
            name="dataset", source=prepare_dataset, **common,
            env=base_env + secret_env("s3-secret", "hf-token"),
            resources=_resources("1", "4Gi", "16Gi"),
            retry_strategy=_retry(DEADLINES["dataset"][1], "30s"),
            # "new", or "nothing-new" (since=last found no new file): the later tasks' `when` reads it
            outputs=[Parameter(name="data_status", value_from=m.ValueFrom(path=f"{WORKSPACE}/{DATA_STATUS}",
                                                                          default="new"),
                               description="new, or nothing-new: since=last found no file newer than the watermark")],
            **limits("dataset"),
        )
        train_outputs = [_json_output("summary", f"{WORKSPACE}/train/summary.json",
                                      "train/summary.json: final/min loss, steps, samples, wall time")]
        if artifacts:
            train_outputs += [_artifact("train-metrics", f"{WORKSPACE}/train/metrics.json"),
                              _artifact("loss-plot", f"{WORKSPACE}/train/loss.png")]
        # Labels and annotations of the training pod, set when Argo creates it (template metadata; the fixed
        # osft-pipeline.io/step pair is where the unused slots fall back to)
        pod_meta: dict[str, Any] = {}
        if "phase_02_train_opt_labels" in members:
            pod_meta["labels"] = {POD_STEP_KEY: "train",
                                  **metadata_slots("phase_02_train_opt_labels", POD_STEP_KEY, "train")}
        if "phase_02_train_opt_annotations" in members:
            pod_meta["annotations"] = {POD_STEP_KEY: "train",
                                       **metadata_slots("phase_02_train_opt_annotations", POD_STEP_KEY, "train")}
        t_train = Script(
            name="train", source=train_model, **{**common, "volume_mounts": [ws_mount, shm_mount]}, **pod_meta,
            env=base_env + secret_env("hf-token", "oci-pull-secret-model-download"),
            # the template's values; podSpecPatch sets them from the parameters (quantity fields take no tags)
            resources=_resources("4", "32Gi", "32Gi"),
            pod_spec_patch=pod_patch("phase_02_train_man_train_gpu", "phase_02_train_opt_cpu",
                                     "phase_02_train_opt_memory", node_selector=False,
                                     always={"terminationGracePeriodSeconds": TRAIN_GRACE_S}),
            tolerations=[GPU_TOLERATION],
            retry_strategy=_retry(DEADLINES["train"][1], "1m"),  # train resumes from its last checkpoint
            outputs=train_outputs,
            **limits("train"),
        )
        t_trainjob = Script(
            name="train-trainjob", source=launch_trainjob, **common,
            env=base_env + secret_env("kubernetes-credentials"),
            resources=_resources("100m", "256Mi", "512Mi"),
            retry_strategy=_retry(DEADLINES["train-trainjob"][1], "1m"),  # adopts or replaces the TrainJob
            outputs=[_json_output("summary", f"{WORKSPACE}/train/summary.json",
                                  "train/summary.json: final/min loss, steps, samples, wall time")],
            **limits("train-trainjob"),
        )
        eval_outputs = [_json_output("summary", f"{WORKSPACE}/eval/summary.json",
                                     "eval/summary.json: the gate and base vs tuned per benchmark")]
        if artifacts:
            eval_outputs += [_artifact("eval-results", f"{WORKSPACE}/eval/results.json"),
                             _artifact("eval-comparison", f"{WORKSPACE}/eval/comparison.json"),
                             _artifact("eval-plot", f"{WORKSPACE}/eval/eval.png")]
        t_evaluate = Script(
            name="evaluate", source=evaluate_model, **{**common, "volume_mounts": [ws_mount, shm_mount]},
            env=base_env + secret_env("hf-token"),
            resources=_resources("4", "32Gi", "32Gi"),
            pod_spec_patch=pod_patch("phase_03_eval_opt_gpu", "phase_03_eval_opt_cpu", "phase_03_eval_opt_memory",
                                     node_selector=True),
            tolerations=[GPU_TOLERATION],
            retry_strategy=_retry(DEADLINES["evaluate"][1], "1m"),
            outputs=eval_outputs,
            **limits("evaluate"),
        )
        publish_common = {
            **common, "env": base_env + secret_env("s3-secret"), "resources": _resources("1", "1Gi", "4Gi"),
            "retry_strategy": _retry(DEADLINES["publish"][1], "30s"),  # a retry sends only what is missing
            "outputs": [_json_output("summary", f"{WORKSPACE}/publish/summary.json",
                                     "publish/summary.json: status, uri, manifest, bytes")],
        }
        t_publish = Script(name="publish", source=publish_model, **publish_common, **limits("publish"))
        # pvc://: the models claim is mounted by name (a pod mounting a claim that does not exist stays Pending,
        # so this template runs only when the storage URI is pvc://, the claim name from the preflight)
        t_publish_pvc = Script(
            name="publish-pvc", source=publish_model,
            **{**publish_common, "env": base_env,
               "volume_mounts": [ws_mount, m.VolumeMount(name="models", mount_path=DEFAULT_MOUNT)]},
            volumes=[m.Volume(name="models", persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
                claim_name="{{inputs.parameters.models_claim}}"))],
            **limits("publish-pvc"),
        )
        # The lineage (continue_from): read next to the published models, so s3:// or the pvc:// models claim,
        # mounted only by lineage-pvc (as publish-pvc), which runs only when the storage URI is pvc://; both list
        # s3:// data for since=last (the s3-secret's keys, optional)
        lineage_common = {**common, "env": base_env + secret_env("s3-secret"),
                          "resources": _resources("1", "1Gi", "4Gi"),
                          "retry_strategy": _retry(DEADLINES["lineage"][1], "30s")}  # files already fetched are kept
        t_lineage = Script(name="lineage", source=fetch_lineage, **lineage_common, **limits("lineage"))
        t_lineage_pvc = Script(
            name="lineage-pvc", source=fetch_lineage,
            **{**lineage_common,
               "volume_mounts": [ws_mount, m.VolumeMount(name="models", mount_path=DEFAULT_MOUNT, read_only=True)]},
            volumes=[m.Volume(name="models", persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
                claim_name="{{inputs.parameters.models_claim}}", read_only=True))],
            **limits("lineage-pvc"),
        )
        t_keep = Resource(
            name="keep-workspace", action="patch", merge_strategy="merge", manifest=workspace_patch(owner=False),
            retry_strategy=_retry(DEADLINES["keep-workspace"][1], "10s", policy="OnError"),
            **limits("keep-workspace"),
        )
        t_reown = Resource(
            name="reown-workspace", action="patch", merge_strategy="merge", manifest=workspace_patch(owner=True),
            retry_strategy=_retry(DEADLINES["reown-workspace"][1], "10s", policy="OnError"),
            **limits("reown-workspace"),
        )
        t_register = Script(
            name="register", source=register_model, **common,
            env=base_env + secret_env("model-registry-token"),
            resources=_resources("250m", "512Mi", "1Gi"),
            retry_strategy=_retry(DEADLINES["register"][1], "10s"),
            outputs=[_json_output("registration", f"{WORKSPACE}/registry/summary.json",
                                  "registry/summary.json: status, registered name, version and ids")],
            **limits("register"),
        )
        t_status = Script(
            name="record-status", source=record_status, **common,
            env=base_env,
            resources=_resources("100m", "128Mi", "256Mi"),
            retry_strategy=_retry(DEADLINES["record-status"][1], "10s", policy="OnError"),
            timeout=MOUNT_TIMEOUT,  # mounts the workspace, which may never have bound
            outputs=[Parameter(name=n, value_from=m.ValueFrom(path=f"{OUTPUTS_DIR}/{n}", default=""),
                               description=f"{n} (empty when that step did not run)") for n in EXIT_OUTPUTS],
            **limits("record-status"),
        )
        # defined last: the templates before it keep their places
        t_bound = Script(
            name="workspace-bound", source=wait_for_workspace, **{**common, "volume_mounts": []},
            env=base_env,
            resources=_resources("50m", "128Mi", "256Mi"),
            retry_strategy=_retry(DEADLINES["workspace-bound"][1], "10s", policy="OnError"),
            # the local runner does not run it (the value is the task's message there)
            annotations={LOCAL_RUN_ANNOTATION: "skipped: locally the workspace is the --workspace folder, "
                                               "there is no volume to bind"},
            **limits("workspace-bound"),
        )
        with DAG(name="exit-handler"):
            s = t_status(name="record-status", arguments={
                "workspace": WORKSPACE, "status": "{{workflow.status}}", "workflow": "{{workflow.name}}",
                "duration": "{{workflow.duration}}", "outputs_dir": OUTPUTS_DIR})
            # A successful run's workspace goes now (as volumeClaimGC: OnWorkflowSuccess did) unless the model was
            # registered from it (keep mode); a failed run's stays, owned by the workflow, for `argo retry` until
            # the workflow is deleted (ttlStrategy): reown-workspace hands back a claim keep-workspace released
            # when nothing was registered (register records "registering" before its first write to the registry).
            x = t_delete_pvc(name="delete-workspace",
                             when=f"'{{{{workflow.status}}}}' == 'Succeeded' && !({KEEP_MODE})")
            t_reown(name="reown-workspace", when=(
                f"'{{{{workflow.status}}}}' != 'Succeeded' && {KEEP_MODE} && "
                "'{{tasks.record-status.outputs.parameters.registration_status}}' == ''"),
                # a claim that was never created (workspace-pvc failed) cannot be patched: that must not fail
                # the handler; a real failure leaves the claim released (kept), never a dangling URI
                # (continueOn needs `dependencies`: Argo 4 refuses it next to `depends`)
                continue_on=m.ContinueOn(failed=True), dependencies=["record-status"])
            s >> x

        pre = "{{tasks.preflight.outputs.parameters.%s}}"  # noqa: UP031
        train_args = {"workspace": WORKSPACE, **inputs("train")}
        with DAG(name="pipeline"):
            v = t_pvc(name="workspace-pvc")
            b = t_bound(name="workspace-bound", arguments={
                "claim": WORKSPACE_CLAIM, "namespace": "{{workflow.namespace}}", "timeout_seconds": BIND_TIMEOUT_S})
            a = t_preflight(name="preflight", arguments={p.name: wf(p.name) for p in params_for(template)} | {
                "workspace": WORKSPACE, "workflow_name": "{{workflow.name}}"})
            continuing = f"'{wf('phase_02_train_opt_continue_from')}' != ''"
            lineage_args = {"workspace": WORKSPACE, **inputs("lineage")}
            g1 = t_lineage(name="lineage", when=f"{continuing} && '{pre % 'publish_mode'}' == 's3'",
                           arguments=lineage_args)
            g2 = t_lineage_pvc(name="lineage-pvc", when=f"{continuing} && '{pre % 'publish_mode'}' == 'pvc'",
                               arguments={**lineage_args, "models_mount": DEFAULT_MOUNT,
                                          "models_claim": pre % "models_claim"})
            d = t_dataset(name="dataset", arguments={"workspace": WORKSPACE, **inputs("dataset")})
            # since=last with nothing new: the dataset task says so and every later task is skipped (the run
            # Succeeds; the exit handler records "nothing new to learn")
            learn = "'{{tasks.dataset.outputs.parameters.data_status}}' != 'nothing-new'"
            t1 = t_train(name="train", when=f"{learn} && '{pre % 'train_mode'}' == 'single'", arguments=train_args)
            t2 = t_trainjob(name="train-trainjob", when=f"{learn} && '{pre % 'train_mode'}' == 'trainjob'", arguments={
                **train_args,
                **inputs("train-trainjob"),
                "image": image,
                "namespace": "{{workflow.namespace}}",
                "pvc_claim": WORKSPACE_CLAIM,
                "name": "{{workflow.name}}-train",
                "owner_name": "{{workflow.name}}",
                "owner_uid": "{{workflow.uid}}",
            })
            e = t_evaluate(name="evaluate", when=learn, arguments={
                "workspace": WORKSPACE,
                "base_model": pre % "base_model",
                "tasks": pre % "eval_tasks",
                **inputs("evaluate"),
            })
            publish_args = {"workspace": WORKSPACE, **inputs("publish"), "workflow_name": "{{workflow.name}}"}
            p1 = t_publish(name="publish", when=f"{learn} && '{pre % 'publish_mode'}' == 's3'", arguments=publish_args)
            p2 = t_publish_pvc(name="publish-pvc", when=f"{learn} && '{pre % 'publish_mode'}' == 'pvc'", arguments={
                **publish_args, "models_mount": DEFAULT_MOUNT, "models_claim": pre % "models_claim"})
            k = t_keep(name="keep-workspace", when=f"{learn} && {KEEP_MODE}")
            registering = f"'{wf('phase_04_registry_man_address')}' != ''"
            r = t_register(name="register", when=f"{learn} && {registering}", arguments={
                "workspace": WORKSPACE,
                **inputs("register"),  # storage_uri: the published URI; without one the workspace copy:
                "pvc_claim": WORKSPACE_CLAIM,  # pvc://<claim>/<path of the model>
                "pipeline_name": template,
                "workflow_name": "{{workflow.name}}",
                "workflow_uid": "{{workflow.uid}}",
                "namespace": "{{workflow.namespace}}",
                "dataset_uri": wf("phase_01_dataset_man_data_uri"),
                "base_model": wf("phase_02_train_man_train_model"),
            })
            v >> b >> a >> [g1, g2] >> d >> [t1, t2]
            [t1, t2] >> e >> [p1, p2, k]
            [p1, p2, k] >> r
    return wt


def build_cron(schedule: str = CRON_SCHEDULE, timezone: str = "UTC", overrides: dict[str, str] | None = None,
               suspend: bool = True, template: str = MINIMAL) -> CronWorkflow:
    """The ``<template>-retrain`` CronWorkflow (suspended until a dataset is set).

    It references the WorkflowTemplate ``template``; ``overrides`` become its arguments (validated by the caller).
    The registry version defaults to ``auto`` so every run registers a new version, and each run continues from
    the last accepted version on only the data new since then (:data:`CRON_LINEAGE`; needs a storage URI:
    docs/continual-learning.md). ``concurrencyPolicy: Forbid`` keeps the lineage strictly sequential.
    """
    args = {"phase_01_dataset_man_data_uri": "", "phase_04_registry_man_reg_version": "auto"} | CRON_LINEAGE | (
        overrides or {})
    return CronWorkflow(
        name=cron_name(template),
        labels={"app.kubernetes.io/name": "osft-pipeline", "app.kubernetes.io/component": "retrain"},
        annotations={"workflows.argoproj.io/description":
                     f"Scheduled OSFT retraining from workflowtemplate/{template}."},
        schedules=[schedule],
        timezone=timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        cron_suspend=suspend,
        workflow_template_ref=m.WorkflowTemplateRef(name=template),
        arguments=[Parameter(name=k, value=v) for k, v in args.items()],
    )


def _meta(kind: str, name: str, api: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "osft-pipeline"}}}


def rbac_manifests(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding the workflow's pods run with."""
    rules = [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "watch"]},
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
         "verbs": ["create", "get", "list", "watch", "delete", "patch"]},
        # the workspace-pvc / delete-workspace resource templates (kubectl apply, delete)
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "get", "patch", "delete"]},
        # workspace-bound: the claim's events say why it does not bind
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_ACCOUNT}
    return [
        _meta("ServiceAccount", SERVICE_ACCOUNT),
        {**_meta("Role", SERVICE_ACCOUNT, "rbac.authorization.k8s.io/v1"), "rules": rules},
        {**_meta("RoleBinding", SERVICE_ACCOUNT, "rbac.authorization.k8s.io/v1"), "roleRef": role_ref,
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]},
    ]


def example_secrets() -> list[dict[str, Any]]:
    """The original pipeline's four secrets plus the registry token, with placeholder values (never applied)."""
    placeholders = {
        "AWS_ACCESS_KEY_ID": "<access-key-id>",
        "AWS_SECRET_ACCESS_KEY": "<secret-access-key>",
        "AWS_ENDPOINT_URL": "<https://s3-endpoint: MinIO, Ceph, ODF; optional, leave it out for AWS S3>",
        "HF_TOKEN": "<hf_token>",
        "OCI_PULL_SECRET_MODEL_DOWNLOAD": '{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}',
        "KUBERNETES_SERVER_URL": "https://api.<cluster-domain>:6443",
        "KUBERNETES_AUTH_TOKEN": "<bearer-token>",
        "MODEL_REGISTRY_TOKEN": "<registry-bearer-token>",
    }
    return [{**_meta("Secret", name), "type": "Opaque", "stringData": {k: placeholders[k] for k in keys}}
            for name, keys in SECRET_KEYS.items()]


def _image_name_tag(ref: str) -> tuple[str, str]:
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    return (name, tag) if name else (ref, "")


def kustomization(namespace: str = NAMESPACE, image: str = IMAGE) -> dict[str, Any]:
    """``kubectl apply -k templates/`` installs RBAC, both templates and their (suspended) crons into ``namespace``.

    ``images:`` is the one place to point every step at another image: set ``newName``/``newTag`` (or
    ``kustomize edit set image``); ``kustomizeconfig.yaml`` teaches kustomize where our images are
    (``script.image`` of every template and the TrainJob's ``image`` argument).
    """
    name, tag = _image_name_tag(image)
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": namespace,
            "resources": ["rbac.yaml", *(f for t in TEMPLATES for f in (f"{t}.yaml", f"{cron_name(t)}.yaml"))],
            "configurations": ["kustomizeconfig.yaml"],
            "images": [{"name": name, "newName": name, **({"newTag": tag} if tag else {})}]}


def kustomize_config() -> dict[str, Any]:
    """Where the image references sit in our objects, for kustomize's ``images:`` transformer."""
    kinds = ("WorkflowTemplate", "ClusterWorkflowTemplate", "Workflow")
    paths = ("spec/templates/script/image", "spec/templates/container/image",
             "spec/templates/dag/tasks/arguments/parameters/value")  # the TrainJob's image argument
    return {"images": [{"path": p, "kind": k} for k in kinds for p in paths]}
