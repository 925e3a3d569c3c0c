"""The Argo Workflows binding, built with Hera: WorkflowTemplate, CronWorkflow and install manifests.

Every step runs as a Hera *runner* script template calling the plain function in ``steps/``
(``python -m hera.workflows.runner -e steps.dataset:prepare_dataset``), so Argo, the CLI and the
local runner execute the same code. Parameters travel as Argo parameters; data and models travel
by path on one per-run RWX workspace volume mounted at ``/workspace`` in every pod.
"""

from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    CronWorkflow,
    Env,
    NoneArchiveStrategy,
    Parameter,
    RetryStrategy,
    Script,
    SecretEnv,
    WorkflowTemplate,
)
from hera.workflows import models as m

from steps.common.secrets import K8S_SECRETS
from steps.dataset import prepare_dataset
from steps.evaluate import evaluate_model
from steps.finish import record_status
from steps.register import register_model
from steps.train import train_model
from steps.train.trainjob_launch import launch_trainjob
from workflows.argo.preflight import preflight
from workflows.image import image
from workflows.params import PARAMS, to_text

NAME = "osft-minimal-pipeline"
CRON_NAME = "osft-minimal-pipeline-retrain"
IMAGE = image()  # the one image setting (OSFT_PIPELINE_IMAGE, or compile --image)
SERVICE_ACCOUNT = "osft-pipeline"
NAMESPACE = "argo"  # install namespace of the manifests (compile --namespace); RoleBinding subjects need one
WORKSPACE = "/workspace"
OUTPUTS_DIR = "/tmp/outputs"  # the exit handler's key numbers (pod-local files -> output parameters)
GPU = "nvidia.com/gpu"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
# The evaluate pod goes to a GPU node only when it asks for GPUs (phase_03_eval_opt_gpu > 0), so the same
# template also runs on a CPU-only cluster.
EVAL_GPU_NODE_PATCH = ("{{=asInt(workflow.parameters.phase_03_eval_opt_gpu) > 0 ? "
                       "'{\"nodeSelector\": {\"nvidia.com/gpu.present\": \"true\"}}' : '{}'}}")
GPU_TOLERATION = m.Toleration(key=GPU, operator="Exists", effect="NoSchedule")
SECRET_KEYS = K8S_SECRETS  # secret name -> keys (= env var names), shared with the KFP twin
EXIT_OUTPUTS = ("final_loss", "train_steps", "eval_gate", "registration_status", "registered_version")
CRON_SCHEDULE = "0 3 * * 0"  # Sundays 03:00


def wf(name: str) -> str:
    """``{{workflow.parameters.<name>}}`` for a declared pipeline parameter."""
    if not any(p.name == name for p in PARAMS):
        raise KeyError(f"unknown pipeline parameter {name}")
    return "{{workflow.parameters." + name + "}}"


def secret_env(*secrets: str) -> list[SecretEnv]:
    """Optional ``secretKeyRef`` env vars for the named secrets (env var name = secret key)."""
    return [SecretEnv(name=key, secret_name=s, secret_key=key, optional=True)
            for s in secrets for key in SECRET_KEYS[s]]


def _resources(cpu: str, memory: str, memory_limit: str, gpus: str | None = None) -> m.ResourceRequirements:
    requests: dict[str, m.Quantity] = {"cpu": m.Quantity(cpu), "memory": m.Quantity(memory)}
    limits: dict[str, m.Quantity] = {"memory": m.Quantity(memory_limit)}
    if gpus is not None:
        requests[GPU] = limits[GPU] = m.Quantity(gpus)
    return m.ResourceRequirements(requests=requests, limits=limits)


def _retry(limit: int, duration: str, max_duration: str) -> RetryStrategy:
    # "Always": the runner exits 1 for every failure, so network errors look like any other failure; the
    # preflight has already rejected bad parameters, so what is left is mostly transient.
    return RetryStrategy(limit=limit, retry_policy="Always",
                         backoff=m.Backoff(duration=duration, factor=2, max_duration=max_duration))


def _json_output(name: str, path: str, description: str) -> Parameter:
    return Parameter(name=name, value_from=m.ValueFrom(path=path, default="{}"), description=description)


def _artifact(name: str, path: str) -> Artifact:
    return Artifact(name=name, path=path, optional=True, archive=NoneArchiveStrategy())


def build_template(image: str = IMAGE, artifacts: bool = False) -> WorkflowTemplate:
    """The ``osft-minimal-pipeline`` WorkflowTemplate.

    ``artifacts=True`` also exports metrics, comparison and plots as (optional) output artifacts;
    that needs an artifact repository configured in the cluster.
    """
    ws_mount = m.VolumeMount(name="workspace", mount_path=WORKSPACE)
    shm_mount = m.VolumeMount(name="dshm", mount_path="/dev/shm")
    common: dict[str, Any] = {
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "constructor": "runner",
        "volume_mounts": [ws_mount],
    }
    base_env = [Env(name="PYTHONUNBUFFERED", value="1")]
    arguments = [
        Parameter(name=p.name, value="" if p.required else to_text(p.default), description=p.description,
                  enum=["true", "false"] if p.type is bool else (list(p.enum) if p.enum else None))
        for p in PARAMS
    ]
    workspace_pvc = m.PersistentVolumeClaim(
        metadata=m.ObjectMeta(name="workspace"),
        spec=m.PersistentVolumeClaimSpec(
            access_modes=["ReadWriteMany"],
            storage_class_name=wf("phase_00_workspace_opt_storage_class"),
            resources=m.VolumeResourceRequirements(requests={"storage": m.Quantity(wf("phase_00_workspace_opt_size"))}),
        ),
    )
    with WorkflowTemplate(
        name=NAME,
        labels={"app.kubernetes.io/name": "osft-pipeline", "app.kubernetes.io/component": "pipeline"},
        annotations={
            "workflows.argoproj.io/description": "OSFT fine-tuning: preflight, dataset, train, evaluate, register.",
            "workflows.argoproj.io/version": ">= 3.6",
        },
        entrypoint="pipeline",
        on_exit="exit-handler",
        service_account_name=SERVICE_ACCOUNT,
        arguments=arguments,
        volume_claim_templates=[workspace_pvc],
        volumes=[m.Volume(name="dshm", empty_dir=m.EmptyDirVolumeSource(medium="Memory"))],
        volume_claim_gc=m.VolumeClaimGC(strategy="OnWorkflowSuccess"),
        active_deadline_seconds=3 * 24 * 3600,
        pod_gc=m.PodGC(strategy="OnPodSuccess", delete_delay_duration="1h"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=3 * 24 * 3600, seconds_after_failure=7 * 24 * 3600),
    ) as wt:
        t_preflight = Script(
            name="preflight", source=preflight, **common,
            env=base_env + secret_env("s3-secret", "hf-token", "oci-pull-secret-model-download",
                                      "kubernetes-credentials"),
            resources=_resources("100m", "256Mi", "512Mi"),
            active_deadline_seconds=300,
        )
        t_dataset = Script(
            name="dataset", source=prepare_dataset, **common,
            env=base_env + secret_env("s3-secret", "hf-token"),
            resources=_resources("1", "4Gi", "16Gi"),
            retry_strategy=_retry(2, "30s", "5m"),
            active_deadline_seconds=4 * 3600,
        )
        train_outputs = [_json_output("metrics", f"{WORKSPACE}/train/metrics.json", "train/metrics.json")]
        if artifacts:
            train_outputs += [_artifact("train-metrics", f"{WORKSPACE}/train/metrics.json"),
                              _artifact("loss-plot", f"{WORKSPACE}/train/loss.png")]
        t_train = Script(
            name="train", source=train_model, **{**common, "volume_mounts": [ws_mount, shm_mount]},
            env=base_env + secret_env("hf-token", "oci-pull-secret-model-download"),
            resources=_resources("4", "32Gi", "128Gi", gpus=wf("phase_02_train_man_train_gpu")),
            tolerations=[GPU_TOLERATION],
            retry_strategy=_retry(2, "1m", "10m"),  # train resumes from its last checkpoint
            active_deadline_seconds=2 * 24 * 3600,
            outputs=train_outputs,
        )
        t_trainjob = Script(
            name="train-trainjob", source=launch_trainjob, **common,
            env=base_env + secret_env("kubernetes-credentials"),
            resources=_resources("100m", "256Mi", "512Mi"),
            retry_strategy=_retry(2, "1m", "10m"),  # a retry adopts the running TrainJob
            active_deadline_seconds=2 * 24 * 3600,
            outputs=[_json_output("metrics", f"{WORKSPACE}/train/metrics.json", "train/metrics.json")],
        )
        eval_outputs = [_json_output("comparison", f"{WORKSPACE}/eval/comparison.json",
                                     "eval/comparison.json: base vs tuned and the gate")]
        if artifacts:
            eval_outputs += [_artifact("eval-results", f"{WORKSPACE}/eval/results.json"),
                             _artifact("eval-comparison", f"{WORKSPACE}/eval/comparison.json"),
                             _artifact("eval-plot", f"{WORKSPACE}/eval/eval.png")]
        t_evaluate = Script(
            name="evaluate", source=evaluate_model, **{**common, "volume_mounts": [ws_mount, shm_mount]},
            env=base_env + secret_env("hf-token"),
            resources=_resources("4", "32Gi", "64Gi", gpus=wf("phase_03_eval_opt_gpu")),
            pod_spec_patch=EVAL_GPU_NODE_PATCH,
            tolerations=[GPU_TOLERATION],
            retry_strategy=_retry(2, "1m", "10m"),
            active_deadline_seconds=12 * 3600,
            outputs=eval_outputs,
        )
        t_register = Script(
            name="register", source=register_model, **common,
            env=base_env + secret_env("model-registry-token"),
            resources=_resources("250m", "512Mi", "1Gi"),
            retry_strategy=_retry(3, "10s", "2m"),
            active_deadline_seconds=1800,
            outputs=[_json_output("registration", f"{WORKSPACE}/registry/registration.json",
                                  "registry/registration.json")],
        )
        t_status = Script(
            name="record-status", source=record_status, **common,
            env=base_env,
            resources=_resources("100m", "128Mi", "256Mi"),
            active_deadline_seconds=300,
            outputs=[Parameter(name=n, value_from=m.ValueFrom(path=f"{OUTPUTS_DIR}/{n}", default=""),
                               description=f"{n} (empty when that step did not run)") for n in EXIT_OUTPUTS],
        )
        with DAG(name="exit-handler"):
            t_status(name="record-status", arguments={
                "workspace": WORKSPACE, "status": "{{workflow.status}}", "workflow": "{{workflow.name}}",
                "duration": "{{workflow.duration}}", "outputs_dir": OUTPUTS_DIR})

        pre = "{{tasks.preflight.outputs.parameters.%s}}"  # noqa: UP031
        train_args = {
            "workspace": WORKSPACE,
            "model": wf("phase_02_train_man_train_model"),
            "effective_batch_size": wf("phase_02_train_man_train_batch"),
            "epochs": wf("phase_02_train_man_train_epochs"),
            "max_tokens_per_gpu": wf("phase_02_train_man_train_tokens"),
            "max_seq_len": wf("phase_02_train_opt_max_seq_len"),
            "learning_rate": wf("phase_02_train_opt_learning_rate"),
            "unfreeze_rank_ratio": wf("phase_02_train_man_train_unfreeze"),
            "use_liger": wf("phase_02_train_opt_use_liger"),
            "seed": wf("phase_02_train_opt_seed"),
        }
        with DAG(name="pipeline"):
            a = t_preflight(name="preflight",
                            arguments={p.name: wf(p.name) for p in PARAMS} | {"workspace": WORKSPACE})
            d = t_dataset(name="dataset", arguments={
                "data_uri": wf("phase_01_dataset_man_data_uri"),
                "workspace": WORKSPACE,
                "split": wf("phase_01_dataset_man_data_split"),
                "subset": wf("phase_01_dataset_opt_subset"),
                "seed": wf("phase_01_dataset_opt_seed"),
                "hf_token": wf("phase_01_dataset_opt_hf_token"),
            })
            t1 = t_train(name="train", when=f"'{pre % 'train_mode'}' == 'single'", arguments=train_args)
            t2 = t_trainjob(name="train-trainjob", when=f"'{pre % 'train_mode'}' == 'trainjob'", arguments={
                **train_args,
                "workers": wf("phase_02_train_man_train_workers"),
                "gpus_per_worker": wf("phase_02_train_man_train_gpu"),
                "image": image,
                "namespace": "{{workflow.namespace}}",
                "pvc_claim": "{{workflow.name}}-workspace",
                "name": "{{workflow.name}}-train",
                "runtime": wf("phase_02_train_opt_runtime"),
                "owner_name": "{{workflow.name}}",
                "owner_uid": "{{workflow.uid}}",
            })
            e = t_evaluate(name="evaluate", arguments={
                "workspace": WORKSPACE,
                "base_model": pre % "base_model",
                "tasks": pre % "eval_tasks",
                "limit": wf("phase_03_eval_opt_limit"),
                "batch_size": wf("phase_03_eval_opt_batch"),
                "max_regression": wf("phase_03_eval_opt_max_regression"),
            })
            r = t_register(name="register", when=f"'{wf('phase_04_registry_man_address')}' != ''", arguments={
                "workspace": WORKSPACE,
                "address": wf("phase_04_registry_man_address"),
                "port": wf("phase_04_registry_opt_port"),
                "name": wf("phase_04_registry_man_reg_name"),
                "version": wf("phase_04_registry_man_reg_version"),
                "format_version": wf("phase_04_registry_opt_format_version"),
                "force": wf("phase_04_registry_opt_force"),
                "pvc_claim": "{{workflow.name}}-workspace",  # the artifact URI: pvc://<claim>/<path of the model>
                "workflow_name": "{{workflow.name}}",
                "workflow_uid": "{{workflow.uid}}",
                "namespace": "{{workflow.namespace}}",
                "dataset_uri": wf("phase_01_dataset_man_data_uri"),
                "base_model": wf("phase_02_train_man_train_model"),
            })
            a >> d >> [t1, t2]
            [t1, t2] >> e >> r
    return wt


def build_cron(schedule: str = CRON_SCHEDULE, timezone: str = "UTC", overrides: dict[str, str] | None = None,
               suspend: bool = True) -> CronWorkflow:
    """The ``osft-minimal-pipeline-retrain`` CronWorkflow (suspended until a dataset is set).

    It references the WorkflowTemplate; ``overrides`` become its arguments (validated by the caller).
    The registry version defaults to ``auto`` so every run registers a new version.
    """
    args = {"phase_01_dataset_man_data_uri": "", "phase_04_registry_man_reg_version": "auto"} | (overrides or {})
    return CronWorkflow(
        name=CRON_NAME,
        labels={"app.kubernetes.io/name": "osft-pipeline", "app.kubernetes.io/component": "retrain"},
        annotations={"workflows.argoproj.io/description":
                     "Scheduled OSFT retraining from workflowtemplate/osft-minimal-pipeline."},
        schedules=[schedule],
        timezone=timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        cron_suspend=suspend,
        workflow_template_ref=m.WorkflowTemplateRef(name=NAME),
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
        "HF_TOKEN": "<hf_token>",
        "OCI_PULL_SECRET_MODEL_DOWNLOAD": '{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}',
        "KUBERNETES_SERVER_URL": "https://api.<cluster-domain>:6443",
        "KUBERNETES_AUTH_TOKEN": "<bearer-token>",
        "MODEL_REGISTRY_TOKEN": "<registry-bearer-token>",
    }
    return [{**_meta("Secret", name), "type": "Opaque", "stringData": {k: placeholders[k] for k in keys}}
            for name, keys in SECRET_KEYS.items()]


def kustomization(namespace: str = NAMESPACE) -> dict[str, Any]:
    """``kubectl apply -k templates/`` installs RBAC, the template and the (suspended) cron into ``namespace``."""
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": namespace,
            "resources": ["rbac.yaml", "osft-minimal-pipeline.yaml", "osft-minimal-pipeline-retrain.yaml"]}
