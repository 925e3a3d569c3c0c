"""The full template (templates/osft-pipeline.yaml) run locally with the real steps on a tiny model, end to end.

One run with a non-default LR schedule (cosine with restarts, typed kwargs), warmup, unmasking, the save policy
(epoch checkpoints, no final one), labels, env vars, two benchmark tasks with generation kwargs and samples
logged; then its register step against the in-process Model Registry with an author, description and format.
A second test trains on pre-tokenised rows. What each setting did is read back from what the run left.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry_server import RegistryServer
from tests.tiny_assets import chat_rows, write_jsonl
from workflows.paramfile import LAPTOP

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "osft-pipeline.yaml"


def _params(data: Path, model: Path) -> dict[str, str]:
    return {
        "phase_01_dataset_man_data_uri": str(data),
        "phase_01_dataset_man_data_split": "0.8",
        "phase_02_train_man_train_model": str(model),
        "phase_02_train_man_train_gpu": "0",
        "phase_02_train_man_train_batch": "8",
        "phase_02_train_man_train_tokens": "512",
        "phase_02_train_opt_max_seq_len": "128",
        "phase_02_train_opt_learning_rate": "0.001",
        "phase_02_train_opt_use_liger": "false",
        "phase_03_eval_opt_limit": "4",
        "phase_03_eval_opt_batch": "4",
        # the full template's knobs, all away from their defaults
        "phase_02_train_opt_lr_scheduler": "cosine_with_restarts",
        "phase_02_train_opt_lr_scheduler_kwargs": "num_cycles=2",
        "phase_02_train_opt_lr_warmup": "2",
        "phase_02_train_opt_unmask": "true",
        "phase_02_train_opt_save_epoch": "true",
        "phase_02_train_opt_save_final": "false",
        "phase_02_train_opt_labels": "team=ml, cost-center=c42",
        "phase_02_train_opt_annotations": "example.com/owner=ml-platform",
        "phase_02_train_opt_env_vars": "OSFT_E2E_MARK=1",
        "phase_03_eval_man_eval_tasks": '["arc_easy", "gsm8k"]',
        "phase_03_eval_opt_gen_kwargs": '{"max_gen_toks": 3}',
        "phase_03_eval_opt_verbosity": "WARNING",
    }


def _run(ws: Path, params: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "workflows.cli", "run", "--template", str(TEMPLATE), "--workspace", str(ws), *extra]
    for k, v in params.items():
        args += ["-p", f"{k}={v}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("full-e2e")
    data = write_jsonl(root / "chat.jsonl", chat_rows(60))
    params = _params(data, tiny_model)
    ws = root / "ws"
    proc = _run(ws, params, "-f", str(LAPTOP))  # the laptop cluster's pods, with the tiny model and data
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, params


def test_the_full_template_ran_every_step(full_run: tuple[Path, dict[str, str]]) -> None:
    ws, _ = full_run
    run = json.loads((ws / "run.json").read_text())
    phases = {name: t["phase"] for name, t in run["tasks"].items()}
    assert run["workflow"]["template"].endswith("templates/osft-pipeline.yaml")
    assert run["workflow"]["name"].startswith("osft-pipeline-") and run["workflow"]["phase"] == "Succeeded"
    for step in ("preflight", "dataset", "train", "evaluate"):
        assert phases[step] == "Succeeded", step
    assert run["tasks"]["train"]["resources"]["requests"]["cpu"] == "2"  # the laptop set's, through podSpecPatch


def test_schedule_warmup_unmask_and_save_policy_are_recorded_and_took_effect(
        full_run: tuple[Path, dict[str, str]]) -> None:
    ws, _ = full_run
    metrics = json.loads((ws / "train" / "metrics.json").read_text())
    hyper = metrics["hyper_parameters"]
    assert (hyper["lr_scheduler"], hyper["warmup_steps"], hyper["lr_scheduler_kwargs"], hyper["unmask_messages"],
            hyper["checkpoint_at_epoch"], hyper["save_final_checkpoint"], hyper["env_vars"]) == (
        "cosine_with_restarts", 2, {"num_cycles": 2}, True, True, False, ["OSFT_E2E_MARK"])
    lr = [c["lr"] for c in metrics["loss_curve"]]
    peak = 0.001
    assert lr[0] < lr[1] < peak * 1.0001 and max(lr) == pytest.approx(peak)  # two warmup steps to the peak
    after = lr[2:]
    assert any(b > a for a, b in zip(after, after[1:], strict=False)), lr  # a restart: the LR rises again
    assert (ws / metrics["checkpoint"] / "config.json").is_file()  # the epoch checkpoint (no final one asked)
    # unmask: the library's processed data labels the user turns too (more labelled tokens than its own
    # processing of the same rows without unmask)
    run_dir = ws / metrics["run_dir"]
    processed = [json.loads(x) for x in (run_dir / "_internal_data_processing" / "data.jsonl").read_text().splitlines()]
    labelled = sum(sum(1 for t in r["labels"] if t != -100) for r in processed)
    masked = _labelled_without_unmask(ws, Path(metrics["base_model_dir"]), run_dir.parent / "masked")
    assert labelled > masked > 0


def _labelled_without_unmask(ws: Path, model: Path, out: Path) -> int:
    from instructlab.training.data_process import process_messages_into_input_ids
    from training_hub.utils import ensure_messages_jsonl

    out.mkdir(parents=True, exist_ok=True)
    src = ensure_messages_jsonl(str(ws / "dataset" / "train.jsonl"), str(out), unmask_messages=False)
    process_messages_into_input_ids(data_path=src, data_output_path=str(out), model_path=str(model), max_seq_len=128,
                                    num_cpu_procs=1)
    rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    return sum(sum(1 for t in r["labels"] if t != -100) for r in rows)


def test_generation_kwargs_are_honoured_and_samples_are_on_the_workspace(full_run: tuple[Path, dict[str, str]]) -> None:
    ws, _ = full_run
    samples = [json.loads(x) for x in (ws / "eval" / "samples.jsonl").read_text().splitlines()]
    generated = [s for s in samples if s["task"].startswith("gsm8k")]
    assert generated and {s["role"] for s in generated} == {"tuned", "base"}
    for s in generated:  # every generation request carried our max_gen_toks (upstream's pipeline drops gen_kwargs)
        assert all(arg[1]["max_gen_toks"] == 3 for arg in s["arguments"]), s["arguments"]
    assert any(s["task"].startswith("arc_easy") for s in samples)


def test_author_description_and_format_are_registered(full_run: tuple[Path, dict[str, str]]) -> None:
    ws, params = full_run
    with RegistryServer() as registry:
        proc = _run(ws, {**params, "phase_04_registry_man_address": registry.url, "phase_04_registry_opt_force": "true",
                         "phase_04_registry_man_reg_author": "team-ml",
                         "phase_04_registry_opt_description": "tiny full-template run",
                         "phase_04_registry_opt_format_name": "safetensors"}, "--from-step", "register")
        assert proc.returncode == 0, proc.stderr[-3000:]
        version = next(iter(registry.registry.s.versions.values()))
        artifact = next(iter(registry.registry.s.artifacts.values()))
    assert (version["author"], version["description"]) == ("team-ml", "tiny full-template run")
    assert (artifact["modelFormatName"], artifact["modelFormatVersion"]) == ("safetensors", "1.0")
    record = json.loads((ws / "registry" / "registration.json").read_text())
    assert record["custom_properties"]["pipeline.name"] == "osft-pipeline"


def test_training_on_pre_tokenised_rows(tmp_path: Path, tiny_model: Path) -> None:
    """Rows of input_ids/labels (the library's own processing of chat rows) pass the dataset step and train."""
    from instructlab.training.data_process import process_messages_into_input_ids

    from steps.dataset import prepare_dataset
    from steps.train import train_model

    chat = write_jsonl(tmp_path / "chat.jsonl", chat_rows(24))
    process_messages_into_input_ids(data_path=str(chat), data_output_path=str(tmp_path / "tok"),
                                    model_path=str(tiny_model), max_seq_len=128, num_cpu_procs=1)
    ws = tmp_path / "ws"
    out = prepare_dataset(str(tmp_path / "tok" / "data.jsonl"), str(ws), split=1.0, processed_data=True)
    assert out["train_rows"] == 24
    result = train_model(str(ws), model=str(tiny_model), effective_batch_size=8, epochs=1, max_tokens_per_gpu=512,
                         max_seq_len=128, learning_rate=1e-3, use_liger=False, use_processed_dataset=True)
    metrics = json.loads(Path(result["metrics_path"]).read_text())
    assert metrics["hyper_parameters"]["use_processed_dataset"] is True and metrics["steps"] == 3
    run_dir = ws / metrics["run_dir"]
    assert not (run_dir / "_internal_data_processing" / "data.jsonl").exists()  # taken as it is, not re-processed


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_full_kfp_twin_trains_with_the_same_settings(full_run: tuple[Path, dict[str, str]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The full twin under kfp.local, with the Argo run's values (less the pod labels, compile-time on KFP): the
    same split, the same training settings in metrics.json, samples written."""
    from tests.kfp_local import kfp_local_workspace
    from workflows.kfp import pipeline as kfp_pipeline

    argo_ws, params = full_run
    ws = kfp_local_workspace(tmp_path, monkeypatch)
    skip = {"phase_02_train_opt_labels", "phase_02_train_opt_annotations"}
    typed = {p.name: p.coerce(params[p.name]) for p in kfp_pipeline.inputs_for("osft-pipeline")
             if p.name in params and p.name not in skip}
    kfp_pipeline.build_pipeline(template="osft-pipeline")(**typed)
    assert (ws / "dataset" / "train.jsonl").read_bytes() == (argo_ws / "dataset" / "train.jsonl").read_bytes()
    hyper = json.loads((ws / "train" / "metrics.json").read_text())["hyper_parameters"]
    argo_hyper = json.loads((argo_ws / "train" / "metrics.json").read_text())["hyper_parameters"]
    for key in ("lr_scheduler", "lr_scheduler_kwargs", "warmup_steps", "unmask_messages", "checkpoint_at_epoch",
                "save_final_checkpoint", "env_vars"):
        assert hyper[key] == argo_hyper[key], key
    assert any(json.loads(x)["task"].startswith("gsm8k") for x in (ws / "eval" / "samples.jsonl").read_text()
               .splitlines())
