"""The full template (osft-pipeline): every input beyond the minimal set changes what reaches the library or the pod.

Each case renders a task's inputs from the committed ``templates/osft-pipeline.yaml`` with one parameter changed
(as Argo would, ``workflows.argo.podspec``), runs the step through Hera's own runner in-process (the very type
conversion the pod does), and captures what reaches the library: the keyword arguments ``training_hub.osft``
receives (and the environment it runs in), the ``lm_eval.simple_evaluate`` call, what the Model Registry stores.
Pod-level inputs are checked on the Pod and the TrainJob the template renders. Baselines with the template's
defaults prove each change is what made the difference.
"""

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hera.workflows._runner.util import _runner

from steps.common.errors import StepError
from steps.train.pod_settings import parse_annotations, parse_labels
from tests.tiny_assets import chat_rows, write_jsonl
from workflows.argo import lint, podspec
from workflows.argo.pipeline import POD_STEP_KEY
from workflows.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
FULL_YAML = ROOT / "templates" / "osft-pipeline.yaml"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_template(FULL_YAML)


def task_inputs(doc: dict[str, Any], task: str, values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(runner entry, the task's inputs as text) for a run of the template with ``values``."""
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    spec = next(t for t in templates["pipeline"]["dag"]["tasks"] if t["name"] == task)
    tmpl = templates[spec["template"]]
    args = {p["name"]: str(p.get("value", "")) for p in (spec.get("arguments") or {}).get("parameters") or []}
    gv = podspec.workflow_values(doc, values)
    return lint._runner_entry(tmpl) or "", podspec.template_inputs(tmpl, args, gv, f"task {task}")


def run_step(doc: dict[str, Any], task: str, values: dict[str, str], **local: str) -> Any:
    """Run ``task``'s step function with the inputs the template gives it (``local`` replaces some: the workspace
    folder, a preflight output), through Hera's runner as the pod does."""
    entry, inputs = task_inputs(doc, task, values)
    inputs |= local
    return _runner(entry, [{"name": k, "value": v} for k, v in inputs.items()])


def pod(doc: dict[str, Any], values: dict[str, str], name: str = "train") -> dict[str, Any]:
    objs, errors = lint.rendered_objects(doc, values)
    assert errors == []
    return next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"].endswith(f"-{name}"))


# ----------------------------------------------------------------------------------------- train: the library


class Captured(RuntimeError):
    """Raised by the stand-in for training_hub.osft once it has recorded its call."""


@pytest.fixture()
def osft_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """training_hub.osft replaced by a recorder of (kwargs, environment) that stops the step there."""
    import training_hub

    calls: list[tuple[dict[str, Any], dict[str, str]]] = []

    def record(**kwargs: Any) -> None:
        calls.append((kwargs, dict(os.environ)))
        raise Captured("captured")

    monkeypatch.setattr(training_hub, "osft", record)
    return calls


@pytest.fixture()
def train_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    write_jsonl(ws / "dataset" / "train.jsonl", chat_rows(8))
    return ws


def _train(doc: dict[str, Any], values: dict[str, str], ws: Path, model: Path,
           calls: list[tuple[dict[str, Any], dict[str, str]]]) -> tuple[dict[str, Any], dict[str, str]]:
    before = len(calls)
    with pytest.raises(StepError, match="training failed: captured"):
        run_step(doc, "train", {"phase_02_train_man_train_model": str(model), **values}, workspace=str(ws))
    assert len(calls) == before + 1
    return calls[-1]


TRAIN_CASES: list[tuple[dict[str, str], Callable[[dict[str, Any], dict[str, str]], bool]]] = [
    ({"phase_02_train_opt_lr_scheduler": "linear"}, lambda kw, env: kw["lr_scheduler"] == "linear"),
    ({"phase_02_train_opt_lr_warmup": "5"}, lambda kw, env: kw["warmup_steps"] == 5),
    ({"phase_02_train_opt_lr_scheduler_kwargs": "num_cycles=2, power=1.5, use_min=true, name=x"},
     lambda kw, env: kw.get("lr_scheduler_kwargs") == {"num_cycles": 2, "power": 1.5, "use_min": True, "name": "x"}
     and [type(v) for v in kw["lr_scheduler_kwargs"].values()] == [int, float, bool, str]),
    ({"phase_02_train_opt_lr_scheduler_kwargs": '{"num_cycles": 3}'},
     lambda kw, env: kw.get("lr_scheduler_kwargs") == {"num_cycles": 3}),
    ({"phase_02_train_opt_save_epoch": "true"}, lambda kw, env: kw["checkpoint_at_epoch"] is True),
    ({"phase_02_train_opt_save_final": "false", "phase_02_train_opt_save_epoch": "true"},
     lambda kw, env: kw["save_final_checkpoint"] is False),
    ({"phase_02_train_opt_target_patterns": "q_proj, v_proj"},
     lambda kw, env: kw.get("target_patterns") == ["q_proj", "v_proj"]),
    ({"phase_02_train_opt_unmask": "true"}, lambda kw, env: kw["unmask_messages"] is True),
    ({"phase_02_train_opt_processed_data": "true"}, lambda kw, env: kw["use_processed_dataset"] is True),
    ({"phase_02_train_opt_num_procs": "2"}, lambda kw, env: kw["nproc_per_node"] == 2),
    ({"phase_02_train_opt_env_vars": "OSFT_TEST_MARK=on, NCCL_DEBUG=WARN"},
     lambda kw, env: env.get("OSFT_TEST_MARK") == "on" and env.get("NCCL_DEBUG") == "WARN"),
    ({"phase_02_train_opt_seed": "7"}, lambda kw, env: kw["seed"] == 7),
]


@pytest.fixture()
def baseline(doc: dict[str, Any], train_ws: Path, tiny_model: Path,
             osft_calls: list[tuple[dict[str, Any], dict[str, str]]]) -> tuple[dict[str, Any], dict[str, str]]:
    return _train(doc, {}, train_ws, tiny_model, osft_calls)


@pytest.mark.parametrize(("values", "reached"), TRAIN_CASES, ids=[",".join(c[0]) for c in TRAIN_CASES])
def test_each_training_input_reaches_training_hub(doc: dict[str, Any], train_ws: Path, tiny_model: Path,
                                                  osft_calls: list, baseline: tuple, values: dict[str, str],
                                                  reached: Callable[[dict[str, Any], dict[str, str]], bool]) -> None:
    assert not reached(*baseline), "the template's default already gives this value: the case proves nothing"
    kwargs, env = _train(doc, values, train_ws, tiny_model, osft_calls)
    assert reached(kwargs, env), kwargs
    assert "OSFT_TEST_MARK" not in os.environ  # set for the training call only


def test_training_defaults_are_upstreams(baseline: tuple[dict[str, Any], dict[str, str]]) -> None:
    kwargs, _ = baseline
    assert (kwargs["lr_scheduler"], kwargs["warmup_steps"], kwargs["checkpoint_at_epoch"],
            kwargs["save_final_checkpoint"], kwargs["unmask_messages"], kwargs["use_processed_dataset"],
            kwargs["seed"]) == ("cosine", 0, False, True, False, False, 42)
    assert "lr_scheduler_kwargs" not in kwargs and "target_patterns" not in kwargs  # the library's own defaults


# ----------------------------------------------------------------------------------------- train: the pods


@pytest.mark.parametrize("labels", ["", "team=ml", " team = ml ,cost-center=c42,example.com/tier=gold",
                                    ",".join(f"example.com/l{i}=v{i}" for i in range(8)), "a=x=y"])
def test_labels_and_annotations_are_on_the_train_pod_when_it_is_created(doc: dict[str, Any], labels: str) -> None:
    """The template's metadata slots render exactly what the preflight's parser reads from the parameter."""
    if "=y" in labels:
        with pytest.raises(StepError, match="not a valid label value"):  # 'x=y' is no label value
            parse_labels(labels)
        return
    annotations = ",".join(f"{k}=note {v}" for k, v in parse_labels(labels).items())
    meta = pod(doc, {"phase_02_train_opt_labels": labels, "phase_02_train_opt_annotations": annotations})["metadata"]
    assert meta["labels"] == {POD_STEP_KEY: "train", **parse_labels(labels)}
    assert meta["annotations"] == {POD_STEP_KEY: "train", **parse_annotations(annotations)}
    assert "labels" not in pod(doc, {"phase_02_train_opt_labels": labels}, "evaluate")["metadata"]


def test_cpu_and_memory_reach_the_train_pod(doc: dict[str, Any]) -> None:
    default = pod(doc, {})["spec"]["containers"][0]["resources"]
    assert default == {"requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                       "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}  # upstream osft's defaults
    small = pod(doc, {"phase_02_train_opt_cpu": "500m", "phase_02_train_opt_memory": "3Gi",
                      "phase_02_train_man_train_gpu": "0"})["spec"]["containers"][0]["resources"]
    assert small == {"requests": {"cpu": "500m", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}


def test_the_trainjob_carries_every_training_input_and_no_secret(doc: dict[str, Any]) -> None:
    from steps.train.trainjob_launch import job_manifest

    token = "hf_plantedFullTemplateToken01"  # noqa: S105 - a planted value the TrainJob must not carry
    values = {"phase_02_train_man_train_workers": "2", "phase_02_train_man_train_gpu": "2",
              "phase_01_dataset_opt_hf_token": token, "phase_02_train_opt_lr_scheduler": "linear",
              "phase_02_train_opt_lr_warmup": "3", "phase_02_train_opt_lr_scheduler_kwargs": "power=2",
              "phase_02_train_opt_save_epoch": "true", "phase_02_train_opt_unmask": "true",
              "phase_02_train_opt_target_patterns": "q_proj", "phase_02_train_opt_num_procs": "1",
              "phase_02_train_opt_cpu": "500m", "phase_02_train_opt_memory": "24Gi",
              "phase_02_train_opt_env_vars": "NCCL_DEBUG=INFO", "phase_02_train_opt_labels": "team=ml",
              "phase_02_train_opt_annotations": "sidecar.istio.io/inject=false"}
    _, inputs = task_inputs(doc, "train-trainjob", values)
    manifest = job_manifest(**{k: v for k, v in inputs.items() if k in lint._JOB_ARGS})
    text = json.dumps(manifest)
    assert token not in text  # the HF token reaches the nodes by secretKeyRef only
    trainer = manifest["spec"]["trainer"]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hf-token", "key": "HF_TOKEN", "optional": True}}}
    assert env["NCCL_DEBUG"]["value"] == "INFO"
    assert trainer["resourcesPerNode"] == {"requests": {"nvidia.com/gpu": 2, "cpu": "500m", "memory": "24Gi"},
                                           "limits": {"nvidia.com/gpu": 2, "memory": "24Gi"}}
    assert trainer["numProcPerNode"] == 1
    cmd = " ".join(trainer["command"])
    for part in ("--lr-scheduler linear", "--warmup-steps 3", "--lr-scheduler-kwargs power=2", "--checkpoint-at-epoch",
                 "--unmask-messages", "--target-patterns q_proj", "--nproc-per-node 1", "--nnodes 2"):
        assert part in cmd, part
    node = manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    meta = node["template"]["spec"]["template"]["metadata"]
    assert meta == {"labels": {"team": "ml"}, "annotations": {"sidecar.istio.io/inject": "false"}}
    from workflows.argo import crd

    assert crd.trainjob_errors(manifest) == []


def test_the_trainjobs_train_command_runs_the_train_step_with_those_values(doc: dict[str, Any]) -> None:
    """Each node's command parses with the train step's own CLI into the values the single pod would get."""
    from typer.testing import CliRunner

    from steps.train.trainjob_launch import job_manifest
    from workflows import cli

    values = {"phase_02_train_man_train_workers": "2", "phase_02_train_opt_lr_scheduler_kwargs": "num_cycles=2",
              "phase_02_train_opt_save_final": "false", "phase_02_train_opt_save_epoch": "true",
              "phase_02_train_opt_processed_data": "true"}
    _, inputs = task_inputs(doc, "train-trainjob", values)
    cmd = job_manifest(**{k: v for k, v in inputs.items() if k in lint._JOB_ARGS})["spec"]["trainer"]["command"]
    seen: dict[str, Any] = {}
    original = cli.run_and_print
    cli.run_and_print = lambda func, kwargs: seen.update(kwargs)
    try:
        result = CliRunner().invoke(cli.app, cmd[1:])
    finally:
        cli.run_and_print = original
    assert result.exit_code == 0, result.output
    assert (seen["lr_scheduler_kwargs"], seen["save_final_checkpoint"], seen["checkpoint_at_epoch"],
            seen["use_processed_dataset"], seen["nnodes"]) == ("num_cycles=2", False, True, True, 2)


# ----------------------------------------------------------------------------------------- evaluate


@pytest.fixture()
def eval_ws(tmp_path: Path, tiny_model: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "train").mkdir(parents=True)
    (ws / "train" / "model").symlink_to(tiny_model)
    (ws / "dataset").mkdir()
    (ws / "dataset" / "eval.jsonl").write_text("")
    return ws


@pytest.fixture()
def eval_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    import lm_eval

    calls: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> None:
        calls.append({**kwargs, "_lm_eval_level": logging.getLogger("lm_eval").level})
        raise ValueError("captured")

    monkeypatch.setattr(lm_eval, "simple_evaluate", record)
    level = logging.getLogger("lm_eval").level
    yield calls
    logging.getLogger("lm_eval").setLevel(level)


def _evaluate(doc: dict[str, Any], values: dict[str, str], ws: Path, calls: list[dict[str, Any]]) -> dict[str, Any]:
    with pytest.raises(StepError, match="captured"):
        run_step(doc, "evaluate", values, workspace=str(ws), base_model="", tasks='["arc_easy"]')
    return calls[-1]


EVAL_CASES: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = [
    ({"phase_03_eval_opt_model_args": '{"max_length": 64, "dtype": "float32"}'},
     lambda kw: kw["model_args"].get("max_length") == 64 and kw["model_args"]["dtype"] == "float32"),
    ({"phase_03_eval_opt_model_args": "max_length=96"}, lambda kw: kw["model_args"].get("max_length") == 96),
    ({"phase_03_eval_opt_gen_kwargs": '{"max_gen_toks": 5, "temperature": 0.0}'},
     lambda kw: kw["gen_kwargs"] == {"max_gen_toks": 5, "temperature": 0.0}),
    ({"phase_03_eval_opt_log_samples": "false"}, lambda kw: kw["log_samples"] is False),
    ({"phase_03_eval_opt_verbosity": "WARNING"}, lambda kw: kw["_lm_eval_level"] == logging.WARNING),
]


@pytest.mark.parametrize(("values", "reached"), EVAL_CASES, ids=[",".join(c[0]) for c in EVAL_CASES])
def test_each_evaluation_input_reaches_lm_eval(doc: dict[str, Any], eval_ws: Path, eval_calls: list,
                                               values: dict[str, str],
                                               reached: Callable[[dict[str, Any]], bool]) -> None:
    base = _evaluate(doc, {}, eval_ws, eval_calls)
    assert base["log_samples"] is True and base["gen_kwargs"] is None  # upstream's defaults: samples logged
    assert not reached(base)
    assert reached(_evaluate(doc, values, eval_ws, eval_calls))


# ----------------------------------------------------------------------------------------- register


def test_author_description_and_format_reach_the_registry(doc: dict[str, Any], tmp_path: Path,
                                                          tiny_model: Path) -> None:
    import shutil

    from tests.registry_server import RegistryServer

    ws = tmp_path / "ws"
    shutil.copytree(tiny_model, ws / "train" / "hf_format" / "samples_8.0")
    (ws / "train" / "model").symlink_to("hf_format/samples_8.0")
    stored = []
    with RegistryServer() as registry:
        for version, values in (("1.0.0", {}), ("2.0.0", {
                "phase_04_registry_man_reg_author": "team-ml", "phase_04_registry_opt_description": "tuned on faq",
                "phase_04_registry_opt_format_name": "safetensors"})):
            run_step(doc, "register", {"phase_04_registry_man_address": registry.url,
                                       "phase_04_registry_man_reg_version": version, **values}, workspace=str(ws))
            mv = next(v for v in registry.registry.s.versions.values() if v["name"] == version)
            art = next(a for i, a in registry.registry.s.artifacts.items()
                       if registry.registry.s.artifact_parent.get(i) == mv["id"])
            stored.append((mv["author"], mv["description"], art["modelFormatName"], art["modelFormatVersion"]))
    default, changed = stored
    assert default[0] == "pipeline" and default[2:] == ("pytorch", "1.0")  # upstream osft's defaults
    assert default[1].startswith("OSFT fine-tune 1.0.0")
    assert changed == ("team-ml", "tuned on faq", "safetensors", "1.0")
    record = json.loads((ws / "registry" / "registration.json").read_text())
    assert (record["author"], record["description"], record["format_name"]) == ("team-ml", "tuned on faq",
                                                                                "safetensors")


# ----------------------------------------------------------------------------------------- dataset


def test_processed_data_reaches_the_dataset_step(doc: dict[str, Any], tmp_path: Path) -> None:
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]} for _ in range(10)]
    data = write_jsonl(tmp_path / "tokens.jsonl", rows)
    ws = tmp_path / "ws"
    with pytest.raises(StepError, match="no chat column"):  # the default: chat rows
        run_step(doc, "dataset", {"phase_01_dataset_man_data_uri": str(data)}, workspace=str(ws))
    out = run_step(doc, "dataset", {"phase_01_dataset_man_data_uri": str(data),
                                    "phase_02_train_opt_processed_data": "true"}, workspace=str(ws))
    assert out["train_rows"] + out["eval_rows"] == 10
    summary = json.loads((ws / "dataset" / "summary.json").read_text())
    assert summary["processed_data"] is True and summary["schema"] == {"input_ids": 10}


# ----------------------------------------------------------------------------------------- the KFP twin


def test_the_kfp_twin_refuses_run_time_pod_labels_it_cannot_set(tmp_path: Path) -> None:
    from workflows.kfp import pipeline as kfp_pipeline

    args = {"workspace": str(tmp_path), "model": "/m", "batch": 8, "epochs": 1, "gpus": 0, "tokens": 512,
            "unfreeze": 0.25, "workers": 1, "learning_rate": 1e-5, "max_seq_len": 128, "use_liger": False, "seed": 1}
    for key in ("labels", "annotations"):
        with pytest.raises(StepError, match=f"phase_02_train_opt_{key}=.*fixed when the pipeline is compiled"):
            kfp_pipeline.train_op.python_func(**args, **{key: "team=ml"})
    ir = kfp_pipeline.build_pipeline(template="osft-pipeline", pod_labels={"team": "ml"},
                                     pod_annotations={"sidecar.istio.io/inject": "false"})
    from kfp import compiler

    compiler.Compiler().compile(ir, str(tmp_path / "ir.yaml"))
    import yaml

    platform = list(yaml.safe_load_all((tmp_path / "ir.yaml").read_text()))[1]["platforms"]["kubernetes"]
    ex = platform["deploymentSpec"]["executors"]["exec-train-op"]
    assert ex["podMetadata"] == {"labels": {"team": "ml"}, "annotations": {"sidecar.istio.io/inject": "false"}}
    with pytest.raises(StepError, match="pod_labels: key 'bad key'"):
        kfp_pipeline.build_pipeline(template="osft-pipeline", pod_labels={"bad key": "x"})


# ----------------------------------------------------------------------------------------- the lint's rules


def _train_tmpl(doc: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == "train")


def _mutated(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    change(out)
    return out


def test_the_full_template_is_lint_clean(doc: dict[str, Any]) -> None:
    from workflows.argo.compile import load_docs

    cron = next(d for d in load_docs(ROOT / "templates" / "osft-pipeline-retrain.yaml") if d["kind"] == "CronWorkflow")
    report = lint.lint_template(doc, cron)
    assert {k: v for k, v in report.items() if v} == {}
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"] == {"name": "osft-pipeline"}


def test_mapping_keys_are_scanned_as_argos_template_engine_scans_them(doc: dict[str, Any]) -> None:
    """Argo substitutes the template's JSON text, keys included: a tag in a metadata key is checked like a value."""
    def rename(key: str) -> Callable[[dict[str, Any]], None]:
        def change(d: dict[str, Any]) -> None:
            labels = _train_tmpl(d)["metadata"]["labels"]
            first = next(k for k in labels if k.startswith("{{"))
            labels[key] = labels.pop(first)
        return change

    assert lint.template_engine_errors(doc) == []
    unknown = lint.template_engine_errors(_mutated(doc, rename("{{=workflow.parameters.nope}}")))
    assert any("metadata.labels" in e and "(key)" in e and "no workflow parameter 'nope'" in e for e in unknown)
    cut = lint.template_engine_errors(_mutated(doc, rename("{{=trim(workflow.parameters.phase_02_train_opt_labels}}")))
    assert any("(key)" in e for e in cut), cut


def test_the_lint_sees_each_label_slot(doc: dict[str, Any]) -> None:
    """A template that drops a slot, or falls back to a different value, sets other labels than asked: caught."""
    def drop_slot(d: dict[str, Any]) -> None:
        labels = _train_tmpl(d)["metadata"]["labels"]
        del labels[[k for k in labels if k.startswith("{{")][-1]]

    def other_fallback(d: dict[str, Any]) -> None:
        labels = _train_tmpl(d)["metadata"]["labels"]
        key = sorted(k for k in labels if k.startswith("{{"))[-1]  # the last one written: its fallback wins
        labels[key] = labels[key].replace("'train'", "'trainer'")

    assert lint.pod_metadata_errors(doc) == []
    dropped = lint.pod_metadata_errors(_mutated(doc, drop_slot))
    assert any("example.com/l7" in e and "metadata.labels" in e for e in dropped), dropped
    assert lint.pod_metadata_errors(_mutated(doc, other_fallback))


def test_the_pod_rule_validates_labels_as_the_api_server(doc: dict[str, Any]) -> None:
    pytest.importorskip("kubernetes_validate")
    bad = _mutated(doc, lambda d: _train_tmpl(d)["metadata"]["labels"].update({"example.com/tier": "not valid!"}))
    errors = lint.pod_errors(bad, [{}])
    assert any("metadata.labels" in e and "not valid!" in e for e in errors), errors
    bad = _mutated(doc, lambda d: _train_tmpl(d)["metadata"]["annotations"].update({"Not A/Key//": "x"}))
    assert any("metadata.annotations" in e for e in lint.pod_errors(bad, [{}]))


@pytest.mark.parametrize(("args", "expected"), [
    (["a,b,,c", ","], ["a", "b", "", "c"]), (["", ","], [""]), (["k=v=w", "=", 2], ["k", "v=w"]),
    (["abc", "=", 2], ["abc"]), (["a,b", ",", 0], []), (["a,b,c", ",", -1], ["a", "b", "c"]),
])
def test_split_follows_gos_strings_split(args: list[Any], expected: list[str]) -> None:
    from workflows.argo.expr import eval_expression

    text = "split(" + ", ".join(json.dumps(a) if isinstance(a, str) else str(a) for a in args) + ")"
    assert eval_expression(text, lambda path: None) == expected


# ----------------------------------------------------------------------------------------- the CLI


def test_run_checks_the_full_templates_parameters_before_anything_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workflows.cli import app

    ws = tmp_path / "ws"
    base = ["run", "--workspace", str(ws), "-p", "phase_01_dataset_man_data_uri=/d.jsonl"]
    res = CliRunner().invoke(app, [*base, "--template", str(FULL_YAML), "-p", "phase_02_train_opt_lr_scheduler=steps",
                                   "-p", "phase_02_train_opt_labels=team name=ml",
                                   "-p", "phase_02_train_opt_cpu=8 cores"])
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert res.exit_code == 2 and len(errors) == 3, res.output
    assert sorted(e.split(":")[1].strip() for e in errors) == [
        "phase_02_train_opt_cpu='8 cores'", "phase_02_train_opt_labels", "phase_02_train_opt_lr_scheduler"]
    res = CliRunner().invoke(app, [*base, "-p", "phase_02_train_opt_unmask=true"])  # the minimal template
    assert res.exit_code == 2 and "is a parameter of the osft-pipeline template" in res.output
    assert not ws.exists()
