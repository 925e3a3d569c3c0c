"""Preflight refuses what a later step would refuse, with that step's own message, before any work.

Each case gives a bad pipeline value and the call the step would receive. The step itself is run (its entry
function, exactly as the pod calls it) to get its error; the preflight task's check of the same pipeline
values must fail naming the parameter and carrying that message unchanged. A last test proves the cases
cover every parameter a step rule reads, so a new rule without a case fails here.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steps.common.errors import StepError
from steps.dataset import prepare_dataset
from steps.evaluate import evaluate_model
from steps.lineage import fetch_lineage
from steps.publish import publish_model
from steps.register import register_model
from steps.train import train_model
from steps.train.trainjob_launch import launch_trainjob
from tests.tiny_assets import chat_rows, write_jsonl
from workflows import params
from workflows.argo.preflight import resolve
from workflows.params import ParamError

DATA = "/data/chat.jsonl"
Call = Callable[[Path, Path], Any]  # (workspace, tiny model) -> the step call


def dataset(**kw: Any) -> Call:
    args = {"data_uri": DATA, "split": 0.9, "subset": 0, "seed": 42, **kw}
    return lambda ws, model: prepare_dataset(workspace=str(ws), **args)


def train(**kw: Any) -> Call:
    def call(ws: Path, model: Path) -> Any:
        args = {"model": str(model), "effective_batch_size": 128, "epochs": 1, "max_tokens_per_gpu": 64000,
                "max_seq_len": 8192, "learning_rate": 5e-6, "unfreeze_rank_ratio": 0.25, "use_liger": True, "seed": 42}
        return train_model(str(ws), **{**args, **kw})
    return call


def trainjob(**kw: Any) -> Call:
    def call(ws: Path, model: Path) -> Any:
        args = {"workers": 2, "gpus_per_worker": 1, "runtime": "training-hub", **kw}
        return launch_trainjob(str(ws), image="quay.io/org/osft:1", namespace="ml", pvc_claim="wf-workspace",
                               name="wf-train", model=str(model), **args)
    return call


def evaluate(**kw: Any) -> Call:
    def call(ws: Path, model: Path) -> Any:
        args = {"base_model": str(model), "tasks": ["arc_easy"], "limit": -1, "batch_size": "auto",
                "max_regression": 0.02}
        return evaluate_model(str(ws), model=str(model), **{**args, **kw})
    return call


def register(**kw: Any) -> Call:
    args = {"address": "model-registry.ml.svc", "port": 8080, "name": "osft-model", "version": "1.0.0",
            "format_version": "2.9", **kw}
    return lambda ws, model: register_model(str(ws), **args)


def publish(**kw: Any) -> Call:
    args = {"storage_uri": "s3://models/osft", "name": "osft-model", "version": "1.0.0", **kw}
    return lambda ws, model: publish_model(str(ws), workflow_name="wf-1", **args)


def lineage(**kw: Any) -> Call:
    args = {"storage_uri": "s3://models/osft", "name": "osft-model", "continue_from": "latest", **kw}
    return lambda ws, model: fetch_lineage(str(ws), **args)


REG = {"phase_04_registry_man_address": "model-registry.ml.svc"}
PUB = {"phase_04_registry_opt_storage_uri": "s3://models/osft"}
CASES: list[tuple[str, dict[str, str], Call]] = [
    ("data_uri scheme", {"phase_01_dataset_man_data_uri": "ftp://host/x.jsonl"},
     dataset(data_uri="ftp://host/x.jsonl")),
    ("data_uri with credentials and no host", {"phase_01_dataset_man_data_uri": "https://bob:pw123@/x.jsonl"},
     dataset(data_uri="https://bob:pw123@/x.jsonl")),
    ("split 0", {"phase_01_dataset_man_data_split": "0"}, dataset(split=0.0)),
    ("split 1.5", {"phase_01_dataset_man_data_split": "1.5"}, dataset(split=1.5)),
    ("subset", {"phase_01_dataset_opt_subset": "-1"}, dataset(subset=-1)),
    ("dataset seed", {"phase_01_dataset_opt_seed": "-1"}, dataset(seed=-1)),
    ("model scheme", {"phase_02_train_man_train_model": "s3://bucket/model"}, train(model="s3://bucket/model")),
    ("model oci", {"phase_02_train_man_train_model": "oci://nothing"}, train(model="oci://nothing")),
    ("model hf id", {"phase_02_train_man_train_model": "hf://not an id"}, train(model="hf://not an id")),
    ("model folder missing", {"phase_02_train_man_train_model": "/no/such/model"}, train(model="/no/such/model")),
    ("hub model offline, not cached", {"phase_02_train_man_train_model": "hf://org-x/not-cached"},
     train(model="hf://org-x/not-cached")),
    ("batch", {"phase_02_train_man_train_batch": "0"}, train(effective_batch_size=0)),
    ("epochs", {"phase_02_train_man_train_epochs": "0"}, train(epochs=0)),
    ("tokens below seq len", {"phase_02_train_man_train_tokens": "4096"}, train(max_tokens_per_gpu=4096)),
    ("tokens", {"phase_02_train_man_train_tokens": "0"}, train(max_tokens_per_gpu=0)),
    ("max seq len", {"phase_02_train_opt_max_seq_len": "8"}, train(max_seq_len=8)),
    ("learning rate", {"phase_02_train_opt_learning_rate": "0.5"}, train(learning_rate=0.5)),
    ("unfreeze 0", {"phase_02_train_man_train_unfreeze": "0"}, train(unfreeze_rank_ratio=0.0)),
    ("unfreeze 1", {"phase_02_train_man_train_unfreeze": "1.0"}, train(unfreeze_rank_ratio=1.0)),
    ("train seed", {"phase_02_train_opt_seed": "-3"}, train(seed=-3)),
    ("trainjob without gpus", {"phase_02_train_man_train_workers": "2", "phase_02_train_man_train_gpu": "0"},
     trainjob(gpus_per_worker=0)),
    ("trainjob runtime", {"phase_02_train_man_train_workers": "2", "phase_02_train_opt_runtime": "Training_Hub"},
     trainjob(runtime="Training_Hub")),
    ("unknown task", {"phase_03_eval_man_eval_tasks": '["arc_eazy"]'}, evaluate(tasks=["arc_eazy"])),
    ("task twice", {"phase_03_eval_man_eval_tasks": "arc_easy,arc_easy"}, evaluate(tasks=["arc_easy", "arc_easy"])),
    ("held_out named", {"phase_03_eval_man_eval_tasks": '["held_out"]'}, evaluate(tasks=["held_out"])),
    ("task name form", {"phase_03_eval_man_eval_tasks": '["arc easy"]'}, evaluate(tasks=["arc easy"])),
    ("limit", {"phase_03_eval_opt_limit": "-2"}, evaluate(limit=-2)),
    ("eval batch", {"phase_03_eval_opt_batch": "lots"}, evaluate(batch_size="lots")),
    ("eval batch 0", {"phase_03_eval_opt_batch": "0"}, evaluate(batch_size="0")),
    ("max regression", {"phase_03_eval_opt_max_regression": "1.5"}, evaluate(max_regression=1.5)),
    ("registry host", {"phase_04_registry_man_address": "not a host!"}, register(address="not a host!")),
    ("registry scheme", {"phase_04_registry_man_address": "ftp://registry"}, register(address="ftp://registry")),
    ("registry credentials", {"phase_04_registry_man_address": "https://bob:pw123@registry"},
     register(address="https://bob:pw123@registry")),
    ("registry name", {**REG, "phase_04_registry_man_reg_name": " "}, register(name=" ")),
    ("format version", {**REG, "phase_04_registry_opt_format_version": " "}, register(format_version=" ")),
    ("storage scheme", {"phase_04_registry_opt_storage_uri": "gs://b/p"}, publish(storage_uri="gs://b/p")),
    ("storage oci", {"phase_04_registry_opt_storage_uri": "oci://quay.io/o/m:1"},
     publish(storage_uri="oci://quay.io/o/m:1")),
    ("storage credentials", {"phase_04_registry_opt_storage_uri": "s3://key:pw123@bucket/p"},
     publish(storage_uri="s3://key:pw123@bucket/p")),
    ("storage bucket", {"phase_04_registry_opt_storage_uri": "s3://Bad_Bucket/p"},
     publish(storage_uri="s3://Bad_Bucket/p")),
    ("storage claim", {"phase_04_registry_opt_storage_uri": "pvc://Models/p"}, publish(storage_uri="pvc://Models/p")),
    ("publish name", {**PUB, "phase_04_registry_man_reg_name": "***"}, publish(name="***")),
    # the full template's (osft-pipeline) inputs
    ("lr scheduler", {"phase_02_train_opt_lr_scheduler": "cosine_annealing"}, train(lr_scheduler="cosine_annealing")),
    ("warmup", {"phase_02_train_opt_lr_warmup": "-1"}, train(warmup_steps=-1)),
    ("scheduler kwargs not key=value", {"phase_02_train_opt_lr_scheduler_kwargs": "num_cycles"},
     train(lr_scheduler_kwargs="num_cycles")),
    ("scheduler kwargs nested", {"phase_02_train_opt_lr_scheduler_kwargs": '{"milestones": [1, 2]}'},
     train(lr_scheduler_kwargs='{"milestones": [1, 2]}')),
    ("no checkpoint at all", {"phase_02_train_opt_save_epoch": "false", "phase_02_train_opt_save_final": "false"},
     train(checkpoint_at_epoch=False, save_final_checkpoint=False)),
    ("target patterns", {"phase_02_train_opt_target_patterns": "q_proj,,v_proj"},
     train(target_patterns="q_proj,,v_proj")),
    ("unmask with pre-tokenised data",
     {"phase_02_train_opt_unmask": "true", "phase_02_train_opt_processed_data": "true"},
     train(unmask_messages=True, use_processed_dataset=True)),
    ("num procs", {"phase_02_train_opt_num_procs": "many"}, train(nproc_per_node="many")),
    ("num procs above the gpus", {"phase_02_train_man_train_workers": "2", "phase_02_train_man_train_gpu": "2",
                                  "phase_02_train_opt_num_procs": "4"},
     trainjob(gpus_per_worker=2, nproc_per_node="4")),
    ("env var secret", {"phase_02_train_opt_env_vars": "WANDB_API_KEY=abc"}, train(env_vars="WANDB_API_KEY=abc")),
    ("env var name", {"phase_02_train_opt_env_vars": "1BAD=x"}, train(env_vars="1BAD=x")),
    ("label key", {"phase_02_train_man_train_workers": "2", "phase_02_train_opt_labels": "team name=ml"},
     trainjob(labels="team name=ml")),
    ("label value", {"phase_02_train_man_train_workers": "2", "phase_02_train_opt_labels": "team=machine learning"},
     trainjob(labels="team=machine learning")),
    ("reserved label", {"phase_02_train_man_train_workers": "2",
                        "phase_02_train_opt_labels": "workflows.argoproj.io/completed=true"},
     trainjob(labels="workflows.argoproj.io/completed=true")),
    ("nine annotations", {"phase_02_train_man_train_workers": "2",
                          "phase_02_train_opt_annotations": ",".join(f"a{i}=x" for i in range(9))},
     trainjob(annotations=",".join(f"a{i}=x" for i in range(9)))),
    ("model args pretrained", {"phase_03_eval_opt_model_args": '{"pretrained": "/elsewhere"}'},
     evaluate(model_args='{"pretrained": "/elsewhere"}')),
    ("verbosity", {"phase_03_eval_opt_verbosity": "LOUD"}, evaluate(verbosity="LOUD")),
    ("format name", {**REG, "phase_04_registry_opt_format_name": " "}, register(format_name=" ")),
    ("author", {**REG, "phase_04_registry_man_reg_author": ""}, register(author="")),
    ("description", {**REG, "phase_04_registry_opt_description": "x" * 5000}, register(description="x" * 5000)),
    ("continue_from without a storage URI", {"phase_02_train_opt_continue_from": "latest"},
     lineage(continue_from="latest", storage_uri="")),
    ("continue_from not a version", {**PUB, "phase_02_train_opt_continue_from": "a/b"},
     lineage(continue_from="a/b")),
    ("max_forgetting negative", {"phase_03_eval_opt_max_forgetting": "-1"}, evaluate(max_forgetting=-1.0)),
]


# Parameters whose own rule (type coercion, or a pipeline rule stricter than the step's) refuses the value first:
# preflight still refuses every value the step refuses, in the pipeline's words.
STRICTER: list[tuple[str, dict[str, str], Call]] = [
    ("use_liger not a bool", {"phase_02_train_opt_use_liger": "maybe"}, train(use_liger="maybe")),
    ("version with a space", {**REG, "phase_04_registry_man_reg_version": "1 0"}, register(version="1 0")),
    ("port out of range", {**REG, "phase_04_registry_opt_port": "70000"}, register(port=70000)),
    ("gen kwargs not a mapping", {"phase_03_eval_opt_gen_kwargs": "max_gen_toks"}, evaluate(gen_kwargs="max_gen_toks")),
    ("log samples not a bool", {"phase_03_eval_opt_log_samples": "maybe"}, evaluate(log_samples="maybe")),
    ("since=last without continue_from", {**PUB, "phase_01_dataset_opt_since": "last"}, dataset(since="last")),
    ("since not a choice", {**PUB, "phase_02_train_opt_continue_from": "latest",
                            "phase_01_dataset_opt_since": "later"}, dataset(since="later")),
]


def templates_of(overrides: dict[str, str]) -> list[str]:
    """The templates that take every parameter a case sets (the minimal's cases hold in the full one too)."""
    return [t for t in params.TEMPLATES if set(overrides) <= params.names_for(t)]


@pytest.fixture()
def raw(tiny_model: Path, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Every parameter of a template as the preflight task gets it (text), with ``overrides``."""
    def build(overrides: dict[str, str], template: str = params.MINIMAL) -> dict[str, str]:
        base = {p.name: params.to_text(p.default_for(template)) for p in params.params_for(template)
                if not p.required}
        base |= {"phase_01_dataset_man_data_uri": DATA, "phase_02_train_man_train_model": str(tiny_model),
                 "workspace": str(tmp_path / "preflight-ws")}
        return {**base, **overrides}
    return build


@pytest.mark.parametrize(("what", "overrides", "step"), CASES, ids=[c[0] for c in CASES])
def test_preflight_rejects_what_the_step_rejects(what: str, overrides: dict[str, str], step: Call, tiny_model: Path,
                                                 tmp_path: Path, raw: Callable[..., dict[str, str]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # nothing external could run: every refusal comes before any work
    ws = tmp_path / "ws"
    write_jsonl(ws / "dataset" / "train.jsonl", chat_rows(4))  # what the dataset step left
    with pytest.raises(StepError) as by_step:
        step(ws, tiny_model)
    assert templates_of(overrides)
    for template in templates_of(overrides):
        with pytest.raises(ParamError) as by_preflight:
            resolve(raw(overrides, template), template)
        message = str(by_preflight.value)
        assert message.startswith(tuple(f"{name}: " for name in overrides)), message
        assert message.endswith(f": {by_step.value} ({_step_of(message)} step)"), (message, str(by_step.value))
        assert "pw123" not in message  # echoed values are scrubbed


@pytest.mark.parametrize(("what", "overrides", "step"), STRICTER, ids=[c[0] for c in STRICTER])
def test_stricter_pipeline_rules_still_refuse_what_the_step_refuses(
        what: str, overrides: dict[str, str], step: Call, tiny_model: Path, tmp_path: Path,
        raw: Callable[..., dict[str, str]]) -> None:
    ws = tmp_path / "ws"
    write_jsonl(ws / "dataset" / "train.jsonl", chat_rows(4))
    with pytest.raises(StepError):
        step(ws, tiny_model)
    assert templates_of(overrides)
    for template in templates_of(overrides):
        with pytest.raises(ParamError) as by_preflight:
            resolve(raw(overrides, template), template)
        assert str(by_preflight.value).startswith(tuple(overrides)), str(by_preflight.value)


def _step_of(message: str) -> str:
    return message.rsplit("(", 1)[1].removesuffix(" step)")


@pytest.mark.parametrize("template", params.TEMPLATES)
def test_the_default_values_pass_every_rule(raw: Callable[..., dict[str, str]], template: str) -> None:
    out, values = resolve(raw({}, template), template)
    assert out["train_mode"] == "single" and values["phase_03_eval_opt_limit"] == -1
    assert set(values) == params.names_for(template)


def test_every_parameter_a_step_rule_reads_has_a_case() -> None:
    read = {p for rule in (*params.step_rules(), *params.environment_rules("/workspace")) for p in rule.params()}
    covered = {name for _, overrides, _ in CASES + STRICTER for name in overrides}
    assert read - covered == set()
    steps = {rule.step for rule in (*params.step_rules(), *params.environment_rules("/workspace"))}
    assert steps == {"dataset", "train", "train-trainjob", "evaluate", "publish", "register", "lineage"}
