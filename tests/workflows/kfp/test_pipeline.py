"""The KFP twin: golden IR, root inputs equal to the Argo template's, platform settings, kfp.local run."""

import inspect
import json
from pathlib import Path

import pytest
import yaml

from workflows.argo.pipeline import build_template
from workflows.kfp import pipeline as kfp_pipeline
from workflows.params import FULL, MINIMAL, PARAMS, names_for, params_for

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "templates" / "osft-minimal-pipeline.kfp.yaml"
GOLDEN_FULL = ROOT / "templates" / "osft-pipeline.kfp.yaml"
UPSTREAM = ROOT / "tests" / "data" / "spec" / "upstream-osft-minimal-inputs.json"  # upstream's 20 inputs
FULL_UPSTREAM = ROOT / "tests" / "data" / "spec" / "upstream-osft-inputs.json"  # upstream osft's 44 inputs
KFP_TYPES = {"str": "STRING", "int": "NUMBER_INTEGER", "float": "NUMBER_DOUBLE", "bool": "BOOLEAN", "list": "LIST",
             "dict": "STRUCT"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kfp_pipeline.compile_kfp(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


@pytest.fixture(scope="module")
def compiled_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kfp_pipeline.compile_kfp(tmp_path_factory.mktemp("kfp") / "full.yaml", FULL)


@pytest.fixture(scope="module")
def docs(compiled: Path) -> list[dict]:
    return list(yaml.safe_load_all(compiled.read_text()))


def test_committed_ir_equals_a_fresh_compile(compiled: Path) -> None:
    assert GOLDEN.read_text() == compiled.read_text(), "stale KFP IR: run `make compile`"


def _assert_upstream_inputs(inputs: dict, upstream: list[dict]) -> None:
    """Each upstream input is a root input with upstream's type, and its default (none when required)."""
    for u in upstream:
        got = inputs[u["name"]]
        assert got["parameterType"] == KFP_TYPES[u["type"]], u["name"]
        if u.get("required"):
            assert "defaultValue" not in got and not got.get("isOptional"), u["name"]
        else:
            assert got["defaultValue"] == u["default"], u["name"]


def test_a_run_with_upstreams_20_inputs_is_accepted(compiled: Path) -> None:
    """Every input of upstream osft_minimal is a root input of the IR with the same type and default, and the
    pipeline function binds a call passing exactly those 20 (what a KFP run with them amounts to)."""
    upstream = json.loads(UPSTREAM.read_text(encoding="utf-8"))["inputs"]
    inputs = kfp_pipeline.root_inputs(compiled)
    _assert_upstream_inputs(inputs, upstream)
    func = kfp_pipeline.build_pipeline().pipeline_func
    inspect.signature(func).bind(**{u["name"]: u.get("default", "hf://org/data") for u in upstream})


def test_root_inputs_are_the_argo_templates_arguments(compiled: Path, compiled_full: Path) -> None:
    """Each KFP twin takes every argument of its Argo template except the three workspace-volume settings, fixed at
    compile time (pod CPU/memory are run-time inputs), and the continual-learning ones (Argo only), with that
    template's defaults."""
    for template, ir in ((MINIMAL, compiled), (FULL, compiled_full)):
        argo = {p["name"] for p in build_template(template=template).to_dict()["spec"]["arguments"]["parameters"]}
        inputs = kfp_pipeline.root_inputs(ir)
        assert set(inputs) == argo - set(kfp_pipeline.COMPILE_TIME) - set(kfp_pipeline.ARGO_ONLY)
        assert set(kfp_pipeline.ARGO_ONLY) < argo
        assert set(kfp_pipeline.COMPILE_TIME) < argo and set(kfp_pipeline.RESOURCES) < set(inputs)
        assert names_for(template) == argo
        for p in params_for(template):
            if p.name in inputs and not p.required:
                assert inputs[p.name]["defaultValue"] == p.default_for(template), p.name
    assert names_for(FULL) == {p.name for p in PARAMS}


def test_the_full_twin_takes_upstream_osfts_44_inputs(compiled_full: Path) -> None:
    """Every input of upstream's osft pipeline is a root input of the full twin's IR with upstream's type and
    default, and its pipeline function binds a call passing exactly those 44."""
    upstream = json.loads(FULL_UPSTREAM.read_text(encoding="utf-8"))["inputs"]
    assert len(upstream) == 44
    inputs = kfp_pipeline.root_inputs(compiled_full)
    _assert_upstream_inputs(inputs, upstream)
    func = kfp_pipeline.build_pipeline(template=FULL).pipeline_func
    inspect.signature(func).bind(**{u["name"]: u.get("default", "hf://org/data") for u in upstream})
    assert GOLDEN_FULL.read_text() == compiled_full.read_text(), "stale KFP IR: run `make compile`"


def test_full_twin_inputs_reach_the_components(compiled_full: Path) -> None:
    ir = list(yaml.safe_load_all(compiled_full.read_text()))[0]
    tasks = ir["root"]["dag"]["tasks"]

    def src(task: dict, arg: str) -> str:
        return task["inputs"]["parameters"][arg]["componentInputParameter"].removeprefix("pipelinechannel--")

    train = ir["components"]["comp-condition-3"]["dag"]["tasks"]["train-op-2"]
    for arg, param in (("lr_scheduler", "phase_02_train_opt_lr_scheduler"),
                       ("warmup_steps", "phase_02_train_opt_lr_warmup"),
                       ("lr_scheduler_kwargs", "phase_02_train_opt_lr_scheduler_kwargs"),
                       ("checkpoint_at_epoch", "phase_02_train_opt_save_epoch"),
                       ("save_final_checkpoint", "phase_02_train_opt_save_final"),
                       ("unmask_messages", "phase_02_train_opt_unmask"),
                       ("use_processed_dataset", "phase_02_train_opt_processed_data"),
                       ("target_patterns", "phase_02_train_opt_target_patterns"),
                       ("nproc_per_node", "phase_02_train_opt_num_procs"), ("env_vars", "phase_02_train_opt_env_vars"),
                       ("labels", "phase_02_train_opt_labels"), ("pod_cpu", "phase_02_train_opt_cpu")):
        assert src(train, arg) == param, arg
    for arg, param in (("model_args", "phase_03_eval_opt_model_args"), ("gen_kwargs", "phase_03_eval_opt_gen_kwargs"),
                       ("log_samples", "phase_03_eval_opt_log_samples"), ("verbosity", "phase_03_eval_opt_verbosity")):
        assert src(tasks["evaluate-op"], arg) == param, arg
    assert src(tasks["dataset-op"], "processed_data") == "phase_02_train_opt_processed_data"
    register = ir["components"]["comp-condition-4"]["dag"]["tasks"]["register-op"]
    for arg in ("author", "description", "format_name"):
        assert "phase_04_registry_" in src(register, arg), arg
    assert register["inputs"]["parameters"]["pipeline_name"]["runtimeValue"]["constant"] == "osft-pipeline"
    # pod CPU/memory follow the run-time inputs (KFP resource placeholders), not compile-time constants
    container = ir["deploymentSpec"]["executors"]["exec-train-op"]["container"]["resources"]
    assert "pipelinechannel--phase_02_train_opt_cpu" in container["resourceCpuRequest"]
    assert "pipelinechannel--phase_02_train_opt_memory" in container["resourceMemoryLimit"]


def test_inputs_reach_the_same_step_arguments_as_on_argo(docs: list[dict]) -> None:
    ir = docs[0]
    tasks = ir["root"]["dag"]["tasks"]

    def src(task: dict, arg: str) -> str:
        return task["inputs"]["parameters"][arg]["componentInputParameter"].removeprefix("pipelinechannel--")

    assert src(tasks["dataset-op"], "seed") == "phase_01_dataset_opt_seed"
    for comp, task in (("comp-condition-2", "train-op"), ("comp-condition-3", "train-op-2")):  # GPU / CPU branch
        assert src(ir["components"][comp]["dag"]["tasks"][task], "seed") == "phase_02_train_opt_seed"
    assert src(tasks["evaluate-op"], "batch_size") == "phase_03_eval_opt_batch"
    assert src(tasks["evaluate-op"], "limit") == "phase_03_eval_opt_limit"
    assert src(tasks["evaluate-op"], "compare_base") == "phase_03_eval_opt_compare_base"
    register = ir["components"]["comp-condition-4"]["dag"]["tasks"]["register-op"]
    assert src(register, "format_version") == "phase_04_registry_opt_format_version"
    assert src(register, "force") == "phase_04_registry_opt_force"
    assert src(register, "storage_uri") == src(tasks["publish-op"], "storage_uri") == \
        "phase_04_registry_opt_storage_uri"
    assert register["inputs"]["parameters"]["published"]["componentInputParameter"] == \
        "pipelinechannel--publish-op-Output"  # the publish task's result, passed into the condition
    channel = tasks["condition-4"]["inputs"]["parameters"]["pipelinechannel--publish-op-Output"]
    assert channel["taskOutputParameter"]["producerTask"] == "publish-op"


def test_secrets_match_the_readme(docs: list[dict]) -> None:
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def secrets(executor: str) -> dict[str, tuple[set[str], bool]]:
        return {s["secretName"]: ({k["secretKey"] for k in s["keyToEnv"]}, s["optional"])
                for s in executors[executor].get("secretAsEnv", [])}

    s3 = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    assert secrets("exec-dataset-op") == {"s3-secret": (s3, True),
                                          "hf-token": ({"HF_TOKEN"}, True)}
    assert secrets("exec-train-op") == {
        "hf-token": ({"HF_TOKEN"}, True),
        "oci-pull-secret-model-download": ({"OCI_PULL_SECRET_MODEL_DOWNLOAD"}, True),
        "kubernetes-credentials": ({"KUBERNETES_SERVER_URL", "KUBERNETES_AUTH_TOKEN"}, True),
    }
    assert secrets("exec-evaluate-op") == {"hf-token": ({"HF_TOKEN"}, True)}
    assert secrets("exec-register-op") == {}
    for ex in executors.values():
        assert ex["imagePullPolicy"] == "IfNotPresent" and int(ex["activeDeadlineSeconds"]) > 0


def test_gpus_scheduling_workspace_and_registry_condition(docs: list[dict]) -> None:
    ir, platform = docs[0], docs[1]["platforms"]["kubernetes"]
    executors = ir["deploymentSpec"]["executors"]
    train_acc = executors["exec-train-op"]["container"]["resources"]["accelerator"]
    assert train_acc["resourceType"] == "nvidia.com/gpu"
    assert "phase_02_train_man_train_gpu" in json.dumps(train_acc)  # the count follows the pipeline input
    eval_acc = executors["exec-evaluate-op"]["container"]["resources"]["accelerator"]
    assert "phase_03_eval_opt_gpu" in json.dumps(eval_acc)  # as in the Argo template
    for name in ("exec-train-op", "exec-evaluate-op"):
        ex = platform["deploymentSpec"]["executors"][name]
        assert ex["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert ex["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    ws = platform["pipelineConfig"]["workspace"]
    assert ws["size"] == "50Gi" and ws["kubernetes"]["pvcSpecPatch"]["accessModes"] == ["ReadWriteMany"]
    tasks = ir["root"]["dag"]["tasks"]
    cond = tasks["condition-4"]["triggerPolicy"]["condition"]
    assert cond == "inputs.parameter_values['pipelinechannel--phase_04_registry_man_address'] != ''"
    assert tasks["evaluate-op"]["dependentTasks"] == ["condition-branches-1"]  # after whichever train ran
    assert tasks["dataset-op"]["retryPolicy"]["maxRetryCount"] == 2
    for name in ("dataset-op", "evaluate-op"):
        assert tasks[name]["cachingOptions"] == {}, name  # caching off: every run trains afresh


def test_train_without_gpus_runs_without_the_gpu_node_selector(docs: list[dict]) -> None:
    """Defect 9: with phase_02_train_man_train_gpu = 0 the train task must not be pinned to GPU nodes."""
    ir, platform = docs[0], docs[1]["platforms"]["kubernetes"]
    branches = ir["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    gpu, cpu = branches["condition-2"], branches["condition-3"]
    assert gpu["triggerPolicy"]["condition"] == \
        "int(inputs.parameter_values['pipelinechannel--phase_02_train_man_train_gpu']) > 0"
    assert cpu["triggerPolicy"]["condition"].startswith("!(") and gpu["taskInfo"]["name"] == "train-on-gpus"
    cpu_exec = platform["deploymentSpec"]["executors"]["exec-train-op-2"]
    assert "nodeSelector" not in cpu_exec and "tolerations" not in cpu_exec
    assert "accelerator" not in (ir["deploymentSpec"]["executors"]["exec-train-op-2"]["container"].get("resources")
                                 or {})
    for comp, task in (("comp-condition-2", "train-op"), ("comp-condition-3", "train-op-2")):
        spec = ir["components"][comp]["dag"]["tasks"][task]
        assert spec["taskInfo"]["name"] == "train" and spec["cachingOptions"] == {}


def test_register_names_the_run_workspace_pvc_by_the_unique_resource_name(docs: list[dict]) -> None:
    """Defect 9: KFP names the workspace PVC after the run's resource name, not its display name."""
    reg = docs[0]["components"]["comp-condition-4"]["dag"]["tasks"]["register-op"]["inputs"]["parameters"]
    assert reg["run_resource_name"]["runtimeValue"]["constant"] == "{{$.pipeline_job_resource_name}}"
    assert "{{$.pipeline_job_name}}" not in GOLDEN.read_text()


def test_kfp_retry_window_holds_every_attempt(docs: list[dict]) -> None:
    """KFP turns backoffMaxDuration into Argo's maxDuration (counted from the first attempt): it must hold every
    attempt of the task, or a long step is never retried (defect 3 on the KFP side)."""
    ir, platform = docs[0], docs[1]["platforms"]["kubernetes"]
    timeouts = {k: int(v["activeDeadlineSeconds"]) for k, v in platform["deploymentSpec"]["executors"].items()}
    found = 0
    for comp in [ir["root"], *ir["components"].values()]:
        for task in ((comp.get("dag") or {}).get("tasks") or {}).values():
            policy = task.get("retryPolicy")
            if not policy:
                continue
            executor = ir["components"][task["componentRef"]["name"]]["executorLabel"]
            window = int(policy["backoffMaxDuration"].rstrip("s"))
            assert window >= (policy["maxRetryCount"] + 1) * timeouts[executor], task["taskInfo"]["name"]
            found += 1
    assert found == 6  # dataset, train (both branches), evaluate, publish, register


def test_components_run_the_step_functions_without_installs(docs: list[dict]) -> None:
    for name, ex in docs[0]["deploymentSpec"]["executors"].items():
        script = " ".join(ex["container"]["command"])
        assert "pip install" not in script, name
        step = name.removeprefix("exec-").removesuffix("-2").removesuffix("-op")
        assert f"from steps.{step} import" in script, name


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_dataset_component_runs_under_kfp_local(tmp_path: Path, chat_jsonl: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp import local

    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               workspace_root=str(ws))
    task = kfp_pipeline.dataset_op(data_uri=str(chat_jsonl), workspace=str(ws), split=0.75, subset=40, seed=42,
                                   hf_token="")
    result = json.loads(task.output)
    assert (result["train_rows"], result["eval_rows"]) == (30, 10)
    assert (ws / "dataset" / "summary.json").is_file()


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_kfp_publish_and_register_components_under_kfp_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The KFP twin's publish is a no-op without a storage URI and refuses pvc:// (Argo only); its register never
    records the run's workspace volume, which KFP deletes when the run succeeds."""
    from kfp import local

    from tests.steps.publish.conftest import make_checkpoint

    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               workspace_root=str(ws))
    common = {"workspace": str(ws), "name": "m", "version": "1.0.0", "force": False, "run_id": "run-1"}
    assert json.loads(kfp_pipeline.publish_op(storage_uri="", evaluated="{}", **common).output)["status"] == "skipped"
    with pytest.raises(RuntimeError):
        kfp_pipeline.publish_op(storage_uri="pvc://models/x", evaluated="{}", **common)
    with pytest.raises(RuntimeError):
        kfp_pipeline.register_op(workspace=str(ws), address="registry.ml.svc", port=8080, name="m",
                                 version="1.0.0", format_version="2.9", force=False, run_resource_name="run-1",
                                 run_id="uid", storage_uri="", published="{}")
    assert not (ws / "registry" / "registration.json").exists()
