"""The KFP 2.x twin of the pipeline, for teams on a KFP / OpenShift AI pipeline server.

Its root inputs are the Argo template's (names, types, defaults, generated from ``workflows/params.py``),
so a run passing upstream osft_minimal's 20 inputs, or this port's, is accepted; the three
``phase_00_workspace_*`` settings (size, class, access mode) and the four pod resources are compile-time on KFP
(fixed in the IR: ``build_pipeline(workspace_size=…, storage_class=…, resources=…)``). Each component is a thin
lightweight-component wrapper that imports the same step function the Argo pods run, inside the project image
(no pip installs at run time).
"""

import inspect
import json
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl, kubernetes

from steps.common.secrets import K8S_SECRETS
from workflows.image import image
from workflows.params import PARAMS, REQUIRED, Param

PIPELINE_NAME = "osft-minimal-pipeline"
# Argo arguments that size the per-run volume; KFP fixes its workspace PVC at compile time instead.
# Pod resources are compile-time too: KFP 2.17's compiler does not add a resource setting's pipeline channel to the
# inputs of the dsl.If group the train task sits in (kfp.local: "Parent pipeline input argument
# 'pipelinechannel--phase_02_train_opt_cpu' not found"), so the IR fixes them (build_pipeline's arguments).
RESOURCES = ("phase_02_train_opt_cpu", "phase_02_train_opt_memory", "phase_03_eval_opt_cpu", "phase_03_eval_opt_memory")
COMPILE_TIME = ("phase_00_workspace_opt_size", "phase_00_workspace_opt_storage_class",
                "phase_00_workspace_opt_access_mode", *RESOURCES)
INPUTS: tuple[Param, ...] = tuple(p for p in PARAMS if p.name not in COMPILE_TIME)
WORKSPACE_SIZE = "50Gi"
STORAGE_CLASS = "nfs-csi"
GPU_RESOURCE = "nvidia.com/gpu"
# The (all optional) secrets each task mounts; their keys come from steps.common.secrets.K8S_SECRETS.
SECRETS: dict[str, tuple[str, ...]] = {
    "dataset": ("s3-secret", "hf-token"),
    # kubernetes-credentials is optional here: the train pod asks for its GPUs natively (the original
    # required it for submitting a TrainJob; on KFP multi-node is refused, see train_op).
    "train": ("hf-token", "oci-pull-secret-model-download", "kubernetes-credentials"),
    "evaluate": ("hf-token",),
    "publish": ("s3-secret",),
    "register": (),
}


# --- components: thin wrappers, bodies run inside the image -------------------------------------------------
# Lightweight components ship their own source, so each body imports what it needs.


@dsl.component(base_image=image(), install_kfp_package=False)
def dataset_op(data_uri: str, workspace: str, split: float, subset: int, seed: int, hf_token: str) -> str:
    """Step 1: fetch, validate and split the chat dataset into the workspace."""
    import json

    from steps.dataset import prepare_dataset

    return json.dumps(prepare_dataset(data_uri=data_uri, workspace=workspace, split=split, subset=subset, seed=seed,
                                      hf_token=hf_token))


@dsl.component(base_image=image(), install_kfp_package=False)
def train_op(workspace: str, model: str, batch: int, epochs: int, gpus: int, tokens: int, unfreeze: float,
             workers: int, learning_rate: float, max_seq_len: int, use_liger: bool, seed: int) -> str:
    """Step 2: OSFT with training_hub on the pod's own GPUs; the model stays on the workspace."""
    import json

    from steps.common.errors import StepError
    from steps.train import train_model

    if workers > 1:
        raise StepError(f"phase_02_train_man_train_workers={workers}: multi-node training runs as a Kubeflow Trainer "
                        "TrainJob from the Argo template (osft-pipeline submit); on KFP use 1 worker")
    return json.dumps(train_model(workspace=workspace, model=model, effective_batch_size=batch, epochs=epochs,
                                  max_tokens_per_gpu=tokens, max_seq_len=max_seq_len, learning_rate=learning_rate,
                                  unfreeze_rank_ratio=unfreeze, use_liger=use_liger, seed=seed,
                                  nproc_per_node=str(gpus) if gpus > 0 else "auto", nnodes=workers))


@dsl.component(base_image=image(), install_kfp_package=False)
def evaluate_op(workspace: str, base_model: str, compare_base: bool, tasks: list, limit: int, batch_size: str,
                max_regression: float, trained: str) -> str:
    """Step 3: lm-eval on the benchmark tasks and the held-out split, base vs tuned (``trained``: the train
    task's result, whichever branch ran; it orders evaluate after train)."""
    import json

    from steps.evaluate import evaluate_model

    return json.dumps(evaluate_model(workspace=workspace, base_model=base_model if compare_base else "",
                                     tasks=[str(t) for t in tasks], limit=limit, batch_size=batch_size,
                                     max_regression=max_regression))


@dsl.component(base_image=image(), install_kfp_package=False)
def publish_op(workspace: str, storage_uri: str, name: str, version: str, force: bool, run_id: str,
               evaluated: str) -> str:
    """Step 3b: publish the final checkpoint to s3:// (a no-op without a storage URI). ``evaluated`` orders it
    after evaluate. pvc:// is the Argo template's (a claim named by a run parameter cannot be mounted here only
    when it is set). With version 'auto' the folder is named by the run's id."""
    import json

    from steps.common.errors import StepError
    from steps.publish import publish_model

    if not storage_uri.strip():
        return json.dumps({"status": "skipped", "reason": "no storage URI"})
    if not storage_uri.strip().startswith("s3://"):
        raise StepError(f"phase_04_registry_opt_storage_uri={storage_uri!r}: on KFP the model is published to "
                        "s3://bucket/prefix; pvc:// needs the Argo template (docs/publishing.md)")
    return json.dumps(publish_model(workspace=workspace, storage_uri=storage_uri, name=name, version=version,
                                    workflow_name=run_id, force=force))


@dsl.component(base_image=image(), install_kfp_package=False)
def register_op(workspace: str, address: str, port: int, name: str, version: str, format_version: str, force: bool,
                run_resource_name: str, run_id: str, storage_uri: str, published: str) -> str:
    """Step 4: register the model, its metrics and provenance in the Kubeflow Model Registry (the published URI;
    ``published``: the publish task's result, which orders register after it)."""
    import json

    from steps.common.errors import StepError
    from steps.register import register_model

    if not storage_uri.strip():  # no dangling URI: KFP deletes the run's workspace volume when the run succeeds
        raise StepError("phase_04_registry_opt_storage_uri is empty: on KFP the run's workspace volume is deleted "
                        "when the run succeeds, so a pvc:// URI of it would dangle; set it to s3://bucket/prefix "
                        "to publish the model and register that URI (docs/publishing.md)")

    # KFP names the run's workspace PVC "<run's resource name>-kfp-workspace" (the unique name, not the display
    # name): the model's URI is pvc://<that>/<path>
    return json.dumps(register_model(workspace=workspace, address=address, port=port, name=name, version=version,
                                     format_version=format_version, force=force, workflow_name=run_resource_name,
                                     workflow_uid=run_id, pvc_claim=f"{run_resource_name}-kfp-workspace",
                                     pipeline_name="osft-minimal-pipeline", storage_uri=storage_uri))


def _use_secrets(task: dsl.PipelineTask, kind: str) -> None:
    for secret in SECRETS[kind]:
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={k: k for k in K8S_SECRETS[secret]},
                                     optional=True)


def retry_window_s(retries: int, timeout_s: int) -> int:
    """KFP turns ``backoff_max_duration`` into Argo's ``backoff.maxDuration``, which counts from the *first*
    attempt's start (and the SDK always sets one, default 3600 s): it must hold every attempt, or a step that
    fails after a long run is never retried. Waits: 30 s, then doubled."""
    return (retries + 1) * timeout_s + sum(30 * 2 ** i for i in range(retries))


def _common(task: dsl.PipelineTask, kind: str, retries: int, timeout_s: int) -> dsl.PipelineTask:
    task.set_caching_options(False)
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    kubernetes.set_timeout(task, timeout_s)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2.0,
                       backoff_max_duration=f"{retry_window_s(retries, timeout_s)}s")
    _use_secrets(task, kind)
    return task


def _gpu_scheduling(task: dsl.PipelineTask) -> None:
    kubernetes.add_node_selector(task, label_key="nvidia.com/gpu.present", label_value="true")
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")


def _body(p: dict[str, Any], res: dict[str, str]) -> None:
    ws = dsl.WORKSPACE_PATH_PLACEHOLDER
    data = dataset_op(data_uri=p["phase_01_dataset_man_data_uri"], workspace=ws,
                      split=p["phase_01_dataset_man_data_split"], subset=p["phase_01_dataset_opt_subset"],
                      seed=p["phase_01_dataset_opt_seed"],
                      hf_token=p["phase_01_dataset_opt_hf_token"]).set_display_name("dataset")
    _common(data, "dataset", retries=2, timeout_s=2 * 3600).set_cpu_request("2").set_memory_request("4Gi")

    def train_task() -> dsl.PipelineTask:
        task = train_op(workspace=ws, model=p["phase_02_train_man_train_model"],
                        batch=p["phase_02_train_man_train_batch"], epochs=p["phase_02_train_man_train_epochs"],
                        gpus=p["phase_02_train_man_train_gpu"], tokens=p["phase_02_train_man_train_tokens"],
                        unfreeze=p["phase_02_train_man_train_unfreeze"], workers=p["phase_02_train_man_train_workers"],
                        learning_rate=p["phase_02_train_opt_learning_rate"],
                        max_seq_len=p["phase_02_train_opt_max_seq_len"],
                        use_liger=p["phase_02_train_opt_use_liger"],
                        seed=p["phase_02_train_opt_seed"]).after(data).set_display_name("train")
        _common(task, "train", retries=1, timeout_s=48 * 3600).set_cpu_request(res["phase_02_train_opt_cpu"])
        task.set_memory_request(res["phase_02_train_opt_memory"]).set_memory_limit(res["phase_02_train_opt_memory"])
        return task

    # The GPU count is a run parameter: the GPU request, node selector and toleration apply only when it is > 0
    # (gpu = 0 runs on any node, as the Argo template's evaluate does).
    with dsl.If(p["phase_02_train_man_train_gpu"] > 0, name="train-on-gpus"):
        train_gpu = train_task()
        train_gpu.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(p["phase_02_train_man_train_gpu"])
        _gpu_scheduling(train_gpu)
    with dsl.Else(name="train-on-cpu"):
        train_cpu = train_task()
    trained = dsl.OneOf(train_gpu.output, train_cpu.output)

    evaluate = evaluate_op(workspace=ws, base_model=p["phase_02_train_man_train_model"],
                           compare_base=p["phase_03_eval_opt_compare_base"], tasks=p["phase_03_eval_man_eval_tasks"],
                           limit=p["phase_03_eval_opt_limit"], batch_size=p["phase_03_eval_opt_batch"],
                           max_regression=p["phase_03_eval_opt_max_regression"], trained=trained).set_display_name(
        "evaluate")
    _common(evaluate, "evaluate", retries=2, timeout_s=12 * 3600).set_cpu_request(res["phase_03_eval_opt_cpu"])
    evaluate.set_memory_request(res["phase_03_eval_opt_memory"]).set_memory_limit(res["phase_03_eval_opt_memory"])
    evaluate.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(p["phase_03_eval_opt_gpu"])
    _gpu_scheduling(evaluate)

    publish = publish_op(workspace=ws, storage_uri=p["phase_04_registry_opt_storage_uri"],
                         name=p["phase_04_registry_man_reg_name"], version=p["phase_04_registry_man_reg_version"],
                         force=p["phase_04_registry_opt_force"],
                         # the run's id (unique; kfp.local cannot resolve the resource name outside a skipped branch)
                         run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                         evaluated=evaluate.output).set_display_name("publish")
    _common(publish, "publish", retries=3, timeout_s=3 * 3600).set_cpu_request("1").set_memory_request("1Gi")

    with dsl.If(p["phase_04_registry_man_address"] != "", name="registry-configured"):
        register = register_op(workspace=ws, address=p["phase_04_registry_man_address"],
                               port=p["phase_04_registry_opt_port"], name=p["phase_04_registry_man_reg_name"],
                               version=p["phase_04_registry_man_reg_version"],
                               format_version=p["phase_04_registry_opt_format_version"],
                               force=p["phase_04_registry_opt_force"],
                               run_resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
                               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                               storage_uri=p["phase_04_registry_opt_storage_uri"],
                               published=publish.output).set_display_name("register")
        _common(register, "register", retries=3, timeout_s=1800)


def build_pipeline(workspace_size: str = WORKSPACE_SIZE, storage_class: str = STORAGE_CLASS,
                   resources: dict[str, str] | None = None) -> Any:
    """The pipeline with the Argo template's inputs (less the compile-time workspace settings, given here, and the
    pod resources: ``resources`` maps their parameter names to values, default the parameters' defaults)."""
    from workflows.params import BY_NAME

    res = {n: str(BY_NAME[n].default) for n in RESOURCES} | {
        n: BY_NAME[n].coerce(v) for n, v in (resources or {}).items()}
    params = [
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type,
                          default=inspect.Parameter.empty if p.default is REQUIRED else p.default)
        for p in INPUTS
    ]
    params.sort(key=lambda prm: prm.default is not inspect.Parameter.empty)  # required first

    names = [prm.name for prm in params]

    def pipeline(*args: Any, **kwargs: Any) -> None:  # KFP passes the pipeline channels positionally
        _body({**dict(zip(names, args, strict=False)), **kwargs}, res)

    pipeline.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.type for p in INPUTS}
    pipeline.__name__ = "osft_minimal_pipeline"
    pipeline.__doc__ = "OSFT minimal pipeline - continual learning without catastrophic forgetting (Argo port's twin)."
    config = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(
        size=workspace_size,
        kubernetes=dsl.KubernetesWorkspaceConfig(
            pvcSpecPatch={"storageClassName": storage_class, "accessModes": ["ReadWriteMany"]}),
    ))
    return dsl.pipeline(name=PIPELINE_NAME, description=pipeline.__doc__, pipeline_config=config)(pipeline)


class _Dumper(yaml.SafeDumper):
    """A YAML dumper of our own, so the IR's bytes do not depend on representers other libraries register."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str_presenter)


def compile_kfp(out: str | Path) -> Path:
    """Write the pipeline IR (plus its Kubernetes platform spec) to ``out``, byte-for-byte reproducibly."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(), str(out))
    docs = list(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    out.write_text(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, width=120), encoding="utf-8")
    return out


def root_inputs(ir_path: str | Path) -> dict[str, Any]:
    """The IR's root input definitions (name -> {parameterType, defaultValue, isOptional})."""
    docs = list(yaml.safe_load_all(Path(ir_path).read_text(encoding="utf-8")))
    return json.loads(json.dumps(docs[0]["root"]["inputDefinitions"]["parameters"]))
