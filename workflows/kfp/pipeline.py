"""The KFP 2.x twins of the two pipelines, for teams on a KFP / OpenShift AI pipeline server.

One pipeline body builds both, parametrised by the template's parameters (``workflows/params.py``): the
``osft-minimal-pipeline`` twin and the ``osft-pipeline`` twin (upstream osft's 44 inputs plus ours). Their root
inputs are the Argo templates' (names, types, defaults), so a run passing upstream's inputs, or this port's, is
accepted; the three ``phase_00_workspace_*`` settings (size, class, access mode) are compile-time on KFP (fixed in
the IR: ``build_pipeline(workspace_size=…, storage_class=…)``). Pod CPU/memory are run-time inputs (KFP's
resource placeholders). Each component is a thin lightweight-component wrapper that imports the same step function
the Argo pods run, inside the project image (no pip installs at run time).
"""

import inspect
import json
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl, kubernetes

from steps.common.secrets import K8S_SECRETS
from workflows.image import image
from workflows.params import FULL, MINIMAL, REQUIRED, STEP_INPUTS, Param, params_for

PIPELINE_NAME = "osft-minimal-pipeline"
PIPELINE_NAMES = {MINIMAL: "osft-minimal-pipeline", FULL: "osft-pipeline"}
FUNCTION_NAMES = {MINIMAL: "osft_minimal_pipeline", FULL: "osft_pipeline"}
# Argo arguments that size the per-run volume; KFP fixes its workspace PVC at compile time instead.
COMPILE_TIME = ("phase_00_workspace_opt_size", "phase_00_workspace_opt_storage_class",
                "phase_00_workspace_opt_access_mode")
# Continual learning (a lineage task before the dataset, the conditional pointer write) is Argo-only for now:
# the KFP twin takes none of its parameters (docs/continual-learning.md).
ARGO_ONLY = ("phase_02_train_opt_continue_from", "phase_01_dataset_opt_since", "phase_03_eval_opt_max_forgetting")
RESOURCES = ("phase_02_train_opt_cpu", "phase_02_train_opt_memory", "phase_03_eval_opt_cpu", "phase_03_eval_opt_memory")


def inputs_for(template: str = MINIMAL) -> tuple[Param, ...]:
    """The root inputs of ``template``'s twin: its parameters less the compile-time workspace settings."""
    return tuple(p for p in params_for(template) if p.name not in COMPILE_TIME + ARGO_ONLY)


INPUTS: tuple[Param, ...] = inputs_for(MINIMAL)
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
def dataset_op(data_uri: str, workspace: str, split: float, subset: int, seed: int, hf_token: str,
               processed_data: bool = False) -> str:
    """Step 1: fetch, validate and split the dataset (chat rows, or pre-tokenised ones) into the workspace."""
    import json

    from steps.dataset import prepare_dataset

    return json.dumps(prepare_dataset(data_uri=data_uri, workspace=workspace, split=split, subset=subset, seed=seed,
                                      hf_token=hf_token, processed_data=processed_data))


@dsl.component(base_image=image(), install_kfp_package=False)
def train_op(workspace: str, model: str, batch: int, epochs: int, gpus: int, tokens: int, unfreeze: float,
             workers: int, learning_rate: float, max_seq_len: int, use_liger: bool, seed: int,
             lr_scheduler: str = "cosine", warmup_steps: int = 0, checkpoint_at_epoch: bool = True,
             save_final_checkpoint: bool = True, lr_scheduler_kwargs: str = "", target_patterns: str = "",
             unmask_messages: bool = False, use_processed_dataset: bool = False, nproc_per_node: str = "auto",
             env_vars: str = "", labels: str = "", annotations: str = "", pod_cpu: str = "",
             pod_memory: str = "") -> str:
    """Step 2: OSFT with training_hub on the pod's own GPUs; the model stays on the workspace. ``pod_cpu`` and
    ``pod_memory`` are this pod's resource settings: passed in too, so that KFP's compiler carries those run-time
    inputs into the GPU/CPU condition the task sits in (it does not for resource settings alone)."""
    import json

    from steps.common.errors import StepError
    from steps.train import train_model

    if workers > 1:
        raise StepError(f"phase_02_train_man_train_workers={workers}: multi-node training runs as a Kubeflow Trainer "
                        "TrainJob from the Argo template (osft-pipeline submit); on KFP use 1 worker")
    for name, value in (("phase_02_train_opt_labels", labels), ("phase_02_train_opt_annotations", annotations)):
        if value.strip():
            raise StepError(f"{name}={value!r}: on KFP a pod's labels and annotations are fixed when the pipeline "
                            "is compiled (workflows.kfp.pipeline.build_pipeline(pod_labels=..., pod_annotations=...))"
                            "; run-time values are taken by the Argo template osft-pipeline (docs/templates.md)")
    nproc = nproc_per_node if nproc_per_node.strip().lower() != "auto" else (str(gpus) if gpus > 0 else "auto")
    return json.dumps(train_model(workspace=workspace, model=model, effective_batch_size=batch, epochs=epochs,
                                  max_tokens_per_gpu=tokens, max_seq_len=max_seq_len, learning_rate=learning_rate,
                                  unfreeze_rank_ratio=unfreeze, use_liger=use_liger, seed=seed,
                                  lr_scheduler=lr_scheduler, warmup_steps=warmup_steps,
                                  checkpoint_at_epoch=checkpoint_at_epoch, save_final_checkpoint=save_final_checkpoint,
                                  lr_scheduler_kwargs=lr_scheduler_kwargs, target_patterns=target_patterns,
                                  unmask_messages=unmask_messages, use_processed_dataset=use_processed_dataset,
                                  env_vars=env_vars, nproc_per_node=nproc, nnodes=workers))


@dsl.component(base_image=image(), install_kfp_package=False)
def evaluate_op(workspace: str, base_model: str, compare_base: bool, tasks: list, limit: int, batch_size: str,
                max_regression: float, trained: str, model_args: dict = {}, gen_kwargs: dict = {},  # noqa: B006
                log_samples: bool = False, verbosity: str = "INFO") -> str:
    """Step 3: lm-eval on the benchmark tasks and the held-out split, base vs tuned (``trained``: the train
    task's result, whichever branch ran; it orders evaluate after train)."""
    import json

    from steps.evaluate import evaluate_model

    return json.dumps(evaluate_model(workspace=workspace, base_model=base_model if compare_base else "",
                                     tasks=[str(t) for t in tasks], limit=limit, batch_size=batch_size,
                                     max_regression=max_regression, model_args=json.dumps(model_args),
                                     gen_kwargs=json.dumps(gen_kwargs), log_samples=log_samples,
                                     verbosity=verbosity))


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
                run_resource_name: str, run_id: str, storage_uri: str, published: str, format_name: str = "pytorch",
                author: str = "pipeline", description: str = "",
                pipeline_name: str = "osft-minimal-pipeline") -> str:
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
                                     pipeline_name=pipeline_name, storage_uri=storage_uri, format_name=format_name,
                                     author=author, description=description))


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


def _body(p: dict[str, Any], template: str, pod_labels: dict[str, str], pod_annotations: dict[str, str]) -> None:
    """The pipeline's tasks; ``p`` holds ``template``'s root inputs (a step argument whose parameter the template
    lacks keeps the component's default, as on Argo)."""
    ws = dsl.WORKSPACE_PATH_PLACEHOLDER

    def opt(step: str, *args: str) -> dict[str, Any]:
        return {a: p[STEP_INPUTS[step][a]] for a in args if STEP_INPUTS[step][a] in p}

    data = dataset_op(data_uri=p["phase_01_dataset_man_data_uri"], workspace=ws,
                      split=p["phase_01_dataset_man_data_split"], subset=p["phase_01_dataset_opt_subset"],
                      seed=p["phase_01_dataset_opt_seed"], hf_token=p["phase_01_dataset_opt_hf_token"],
                      **opt("dataset", "processed_data")).set_display_name("dataset")
    _common(data, "dataset", retries=2, timeout_s=2 * 3600).set_cpu_request("2").set_memory_request("4Gi")
    cpu, memory = p["phase_02_train_opt_cpu"], p["phase_02_train_opt_memory"]

    def train_task() -> dsl.PipelineTask:
        task = train_op(workspace=ws, model=p["phase_02_train_man_train_model"],
                        batch=p["phase_02_train_man_train_batch"], epochs=p["phase_02_train_man_train_epochs"],
                        gpus=p["phase_02_train_man_train_gpu"], tokens=p["phase_02_train_man_train_tokens"],
                        unfreeze=p["phase_02_train_man_train_unfreeze"], workers=p["phase_02_train_man_train_workers"],
                        learning_rate=p["phase_02_train_opt_learning_rate"],
                        max_seq_len=p["phase_02_train_opt_max_seq_len"],
                        use_liger=p["phase_02_train_opt_use_liger"],
                        seed=p["phase_02_train_opt_seed"],
                        **opt("train", "lr_scheduler", "warmup_steps", "checkpoint_at_epoch", "save_final_checkpoint",
                              "lr_scheduler_kwargs", "target_patterns", "unmask_messages", "use_processed_dataset",
                              "nproc_per_node", "env_vars"),
                        **opt("train-trainjob", "labels", "annotations"),
                        pod_cpu=cpu, pod_memory=memory).after(data).set_display_name("train")
        _common(task, "train", retries=1, timeout_s=48 * 3600).set_cpu_request(cpu)
        task.set_memory_request(memory).set_memory_limit(memory)
        for key, value in pod_labels.items():
            kubernetes.add_pod_label(task, key, value)
        for key, value in pod_annotations.items():
            kubernetes.add_pod_annotation(task, key, value)
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
                           max_regression=p["phase_03_eval_opt_max_regression"], trained=trained,
                           **opt("evaluate", "model_args", "gen_kwargs", "log_samples", "verbosity"),
                           ).set_display_name("evaluate")
    eval_cpu, eval_memory = p["phase_03_eval_opt_cpu"], p["phase_03_eval_opt_memory"]
    _common(evaluate, "evaluate", retries=2, timeout_s=12 * 3600).set_cpu_request(eval_cpu)
    evaluate.set_memory_request(eval_memory).set_memory_limit(eval_memory)
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
                               published=publish.output, pipeline_name=PIPELINE_NAMES[template],
                               **opt("register", "format_name", "author", "description")).set_display_name("register")
        _common(register, "register", retries=3, timeout_s=1800)


def build_pipeline(workspace_size: str = WORKSPACE_SIZE, storage_class: str = STORAGE_CLASS,
                   template: str = MINIMAL, pod_labels: dict[str, str] | None = None,
                   pod_annotations: dict[str, str] | None = None) -> Any:
    """``template``'s twin with the Argo template's inputs (less the compile-time workspace settings, given here).

    ``pod_labels``/``pod_annotations``: the train pod's labels and annotations, fixed in the IR (KFP sets pod
    metadata only at compile time; the run-time inputs of the full twin must stay empty, train_op says so).
    """
    from steps.train.pod_settings import parse_annotations, parse_labels

    def text(d: dict[str, str] | None) -> str:
        return ",".join(f"{k}={v}" for k, v in (d or {}).items())

    labels = parse_labels(text(pod_labels), "pod_labels")  # the same rules as the Argo template's
    annotations = parse_annotations(text(pod_annotations), "pod_annotations")
    inputs = inputs_for(template)
    params = [
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type,
                          default=inspect.Parameter.empty if p.default is REQUIRED else p.default_for(template))
        for p in inputs
    ]
    params.sort(key=lambda prm: prm.default is not inspect.Parameter.empty)  # required first

    names = [prm.name for prm in params]

    def pipeline(*args: Any, **kwargs: Any) -> None:  # KFP passes the pipeline channels positionally
        _body({**dict(zip(names, args, strict=False)), **kwargs}, template, labels, annotations)

    pipeline.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.type for p in inputs}
    pipeline.__name__ = FUNCTION_NAMES[template]
    pipeline.__doc__ = ("OSFT minimal pipeline - continual learning without catastrophic forgetting (Argo port's twin)."
                        if template == MINIMAL else
                        "OSFT pipeline - continual learning without catastrophic forgetting, every input of upstream's "
                        "osft pipeline (Argo port's twin).")
    config = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(
        size=workspace_size,
        kubernetes=dsl.KubernetesWorkspaceConfig(
            pvcSpecPatch={"storageClassName": storage_class, "accessModes": ["ReadWriteMany"]}),
    ))
    return dsl.pipeline(name=PIPELINE_NAMES[template], description=pipeline.__doc__, pipeline_config=config)(pipeline)


class _Dumper(yaml.SafeDumper):
    """A YAML dumper of our own, so the IR's bytes do not depend on representers other libraries register."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str_presenter)


def compile_kfp(out: str | Path, template: str = MINIMAL) -> Path:
    """Write ``template``'s pipeline IR (plus its Kubernetes platform spec) to ``out``, byte-for-byte reproducibly."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(template=template), str(out))
    docs = list(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    out.write_text(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, width=120), encoding="utf-8")
    return out


def root_inputs(ir_path: str | Path) -> dict[str, Any]:
    """The IR's root input definitions (name -> {parameterType, defaultValue, isOptional})."""
    docs = list(yaml.safe_load_all(Path(ir_path).read_text(encoding="utf-8")))
    return json.loads(json.dumps(docs[0]["root"]["inputDefinitions"]["parameters"]))
