"""End to end through the real ``training_hub.osft`` CPU path on the tiny model.

One module-scoped run serves every test: it is stopped after a few steps the way a preempted pod is
(mini-trainer's on-demand trigger, which its SIGTERM handler writes), then re-run, so it also proves the
resume path. ``torchrun`` is removed from PATH for the run: the launcher must use this interpreter.
"""

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steps.common.errors import StepError
from steps.train import checkpoint_trigger_path, train_model
from tests.tiny_assets import chat_rows, write_jsonl

pytestmark = pytest.mark.slow

FAKE_TOKEN = "hf_FAKEtok3nNeverPrinted0123456789"
SETTINGS = {"effective_batch_size": 4, "epochs": 2, "max_tokens_per_gpu": 512, "max_seq_len": 256,
            "learning_rate": 1e-3, "unfreeze_rank_ratio": 0.25, "lr_scheduler": "constant", "seed": 7}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _interrupt_after(ws: Path, steps: int, done: threading.Event) -> None:
    """Write the on-demand checkpoint trigger once ``steps`` metric lines exist (what SIGTERM does)."""
    while not done.is_set():
        for f in ws.glob("train/run-*/training_metrics_0.jsonl"):
            if f.read_text().count("\n") >= steps:
                checkpoint_trigger_path().touch()
                return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    ws = tmp_path_factory.mktemp("train-ws")
    write_jsonl(ws / "dataset" / "train.jsonl", chat_rows(48))
    saved = {k: os.environ.get(k) for k in ("PATH", "HF_TOKEN", "CHECKPOINT_TRIGGER_FILENAME")}
    os.environ["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                         if p and not (Path(p) / "torchrun").exists())
    os.environ["HF_TOKEN"] = FAKE_TOKEN
    os.environ["CHECKPOINT_TRIGGER_FILENAME"] = f"osft-test-{os.getpid()}"
    done = threading.Event()
    watcher = threading.Thread(target=_interrupt_after, args=(ws, 3, done), daemon=True)
    try:
        watcher.start()
        with pytest.raises(StepError) as first:
            train_model(str(ws), model=str(tiny_model), **SETTINGS)
        done.set()
        interrupted_state = sorted(p.name for p in ws.glob("train/run-*/full_state_checkpoints/step_*"))
        result = train_model(str(ws), model=str(tiny_model), **SETTINGS)
        t0 = time.monotonic()
        again = train_model(str(ws), model=str(tiny_model), **SETTINGS)
        again_s = time.monotonic() - t0
    finally:
        done.set()
        checkpoint_trigger_path().unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"ws": ws, "base": tiny_model, "first_error": str(first.value), "interrupted_state": interrupted_state,
            "result": result, "again": again, "again_s": again_s}


def test_interrupted_run_resumes_from_its_full_state_checkpoint(trained: dict) -> None:
    assert "interrupted by a stop signal" in trained["first_error"] and "re-run the step to resume" \
        in trained["first_error"]
    assert trained["interrupted_state"] and trained["interrupted_state"][0].startswith("step_")
    result = trained["result"]
    assert result["resumed"] is True and result["reused"] is False and result["device"] == "cpu"
    run = Path(result["run_dir"])
    log = (run / "training_log_node0.log").read_text()
    assert "Resuming from full-state checkpoint" in log and "Skipped" in log
    assert not (run / "full_state_checkpoints").exists()  # removed once the final model is saved
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    log_lines = (trained["ws"] / "pipeline_log.txt").read_text()
    assert "resuming run-" in log_lines and "use_liger forced off on CPU" in log_lines


def test_outputs_exist_and_point_at_the_checkpoint_without_copies(trained: dict) -> None:
    ws, result = trained["ws"], trained["result"]
    model = Path(result["model_path"])
    assert model.parent.name == "hf_format" and model.name == "samples_96.0"  # 2 epochs x 48 rows
    pointer = ws / "train" / "model"
    assert pointer.is_symlink() and not os.path.isabs(os.readlink(pointer)) and pointer.resolve() == model
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (model / f).is_file()
    assert (ws / "train" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = [p for p in ws.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()]
    assert weights and all((Path(result["run_dir"]) / "hf_format") in p.parents for p in weights)
    metrics = json.loads((ws / "train" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(model.relative_to(ws))
    # the one hash of the training data (the dataset step does not hash the splits)
    assert metrics["data_sha256"] == hashlib.sha256((ws / "dataset" / "train.jsonl").read_bytes()).hexdigest()


def test_loss_falls_and_metrics_match_all_lines_of_the_metrics_file(trained: dict) -> None:
    result = trained["result"]
    lines = [json.loads(x) for x in (Path(result["run_dir"]) / "training_metrics_0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 25))  # interrupted attempt + resumed attempt, no gaps
    metrics = json.loads(Path(result["metrics_path"]).read_text())
    losses = [r["loss"] for r in lines]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert metrics["steps"] == result["steps"] == 24
    assert metrics["final_loss"] == result["final_loss"] == losses[-1]
    assert metrics["min_loss"] == min(losses) and metrics["samples"] == 96
    assert [e["steps"] for e in metrics["loss_per_epoch"]] == [12, 12]
    assert metrics["loss_per_epoch"][1]["mean_loss"] < metrics["loss_per_epoch"][0]["mean_loss"]
    assert metrics["wall_time_s"] > 0 and metrics["samples_per_second"] > 0
    hp = metrics["hyper_parameters"]
    assert hp["learning_rate"] == 1e-3 and hp["unfreeze_rank_ratio"] == 0.25 and hp["use_liger"] is False
    assert hp["versions"]["rhai-innovation-mini-trainer"] == "0.9.0"
    params = json.loads((Path(result["run_dir"]) / "training_params.json").read_text())
    assert params["osft_unfreeze_rank_ratio"] == 0.25 and params["learning_rate"] == 1e-3


def test_osft_update_stays_out_of_the_frozen_subspace(trained: dict) -> None:
    before = load_file(str(trained["base"] / "model.safetensors"))
    after = load_file(str(Path(trained["result"]["model_path"]) / "model.safetensors"))
    checked = 0
    for name, w0 in before.items():
        if not (name.endswith(".weight") and any(t in name for t in TARGETS)):
            continue
        w0d, dw = w0.double(), after[name].double() - w0.double()
        k = int(min(w0.shape) * (1 - SETTINGS["unfreeze_rank_ratio"]))
        u, _, vt = torch.linalg.svd(w0d, full_matrices=False)
        norm = dw.norm()
        assert norm / w0d.norm() > 1e-3, f"{name} did not train"
        assert (u[:, :k].T @ dw).norm() / norm < 1e-3, f"{name}: update leaks into the frozen left subspace"
        assert (dw @ vt[:k].T).norm() / norm < 1e-3, f"{name}: update leaks into the frozen right subspace"
        checked += 1
    assert checked == 14  # 7 targets x 2 layers


def test_checkpoint_loads_as_a_plain_causal_lm(trained: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = trained["result"]["model_path"]
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_rerun_with_same_configuration_reuses_the_finished_run(trained: dict) -> None:
    again, result = trained["again"], trained["result"]
    assert again["reused"] is True and again["resumed"] is False
    assert again["model_path"] == result["model_path"] and again["final_loss"] == result["final_loss"]
    assert trained["again_s"] < 20  # no training launched
    assert (trained["ws"] / "train" / "metrics.json").is_file()


def test_no_secret_value_in_any_output(trained: dict) -> None:
    for p in trained["ws"].rglob("*"):
        if p.is_file() and p.suffix in (".txt", ".log", ".json", ".jsonl", ".jinja"):
            assert FAKE_TOKEN not in p.read_text(errors="replace"), p
