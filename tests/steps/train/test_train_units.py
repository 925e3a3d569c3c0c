"""Fast tests of the train step: parameter checks, inputs, checkpoint discovery, metrics, model resolution."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.train import config_key, cpu_launcher, train_model
from steps.train.model_source import resolve_model
from steps.train.outputs import (
    ensure_tokenizer,
    find_final_checkpoint,
    read_metrics_lines,
    summarise_metrics,
)
from tests.tiny_assets import chat_rows, write_jsonl

REAL_METRICS = Path(__file__).parent / "data" / "training_metrics_0.jsonl"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def ws_with_data(workspace: Path) -> Path:
    write_jsonl(workspace / "dataset" / "train.jsonl", chat_rows(8))
    return workspace


# ------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(("override", "name"), [
    ({"learning_rate": 1e-1}, "learning_rate"),
    ({"learning_rate": 1e-9}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"unfreeze_rank_ratio": 0.0}, "unfreeze_rank_ratio"),
    ({"unfreeze_rank_ratio": 1.5}, "unfreeze_rank_ratio"),
    ({"effective_batch_size": 0}, "effective_batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"max_tokens_per_gpu": 0}, "max_tokens_per_gpu"),
    ({"max_seq_len": 8}, "max_seq_len"),
    ({"max_tokens_per_gpu": 100, "max_seq_len": 200}, "max_tokens_per_gpu"),
    ({"seed": -1}, "seed"),
    ({"warmup_steps": -2}, "warmup_steps"),
    ({"lr_scheduler": "cosine_annealing"}, "lr_scheduler"),
    ({"nproc_per_node": "two"}, "nproc_per_node"),
    ({"nproc_per_node": "0"}, "nproc_per_node"),
    ({"nnodes": 0}, "nnodes"),
    ({"device": "tpu"}, "device"),
    ({"use_liger": "yes"}, "use_liger"),
    ({"model": " "}, "model"),
    ({"checkpoint_at_epoch": False, "save_final_checkpoint": False}, "checkpoint_at_epoch"),
])
def test_bad_parameters_are_rejected_before_launch(ws_with_data: Path, override: dict, name: str) -> None:
    with pytest.raises(StepError, match=rf"^{name}\b"):
        train_model(str(ws_with_data), **{"model": "/nonexistent", **override})
    assert not (ws_with_data / "train").exists()


def test_unfreeze_ratio_one_is_rejected_with_the_library_pitfall(ws_with_data: Path) -> None:
    with pytest.raises(StepError, match=r"unfreeze_rank_ratio=1.0.*silently replaces .* 0.5"):
        train_model(str(ws_with_data), model="/nonexistent", unfreeze_rank_ratio=1.0)


def test_missing_workspace_and_dataset(tmp_path: Path, workspace: Path) -> None:
    with pytest.raises(StepError, match="does not exist"):
        train_model(str(tmp_path / "nope"), model="/x")
    with pytest.raises(StepError, match=r"dataset/train.jsonl is missing: run the dataset step"):
        train_model(str(workspace), model="/x")
    (workspace / "dataset").mkdir()
    (workspace / "dataset" / "train.jsonl").write_text("\n")
    with pytest.raises(StepError, match="is empty"):
        train_model(str(workspace), model="/x")


def test_cuda_requested_without_gpu(ws_with_data: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(StepError, match="device=cuda: no CUDA GPU"):
        train_model(str(ws_with_data), model="/x", device="cuda")


def test_multinode_outside_trainjob(ws_with_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PET_MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(StepError, match="nnodes=2: multi-node training needs"):
        train_model(str(ws_with_data), model="/x", nnodes=2)


def test_cli_reports_bad_parameter_in_one_line(ws_with_data: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "step", "train", "--workspace", str(ws_with_data),
         "--model", "/x", "--learning-rate", "0.5"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: learning_rate=0.5: must be in [1e-07, 0.01]")
    assert proc.stdout == ""


def test_config_key_is_stable_and_sensitive() -> None:
    a = {"lr": 1e-5, "model": "m", "epochs": 1}
    assert config_key(a) == config_key(dict(reversed(list(a.items()))))
    assert config_key(a) != config_key({**a, "lr": 2e-5})


# ------------------------------------------------------------------------------------- model resolution


def test_local_model_and_missing_paths(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_model), tmp_path) == tiny_model.resolve()
    with pytest.raises(StepError, match="no such local directory"):
        resolve_model(str(tmp_path / "missing-model"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StepError, match="not a Hugging Face checkpoint"):
        resolve_model(str(tmp_path / "empty"), tmp_path)


def test_hub_model_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(StepError, match=r"model org-x/model-y: the Hugging Face Hub is offline"):
        resolve_model("hf://org-x/model-y", tmp_path)
    with pytest.raises(StepError, match="offline"):
        resolve_model("org-x/model-y", tmp_path)
    with pytest.raises(StepError, match="unsupported scheme"):
        resolve_model("s3://bucket/model", tmp_path)


def test_oci_without_skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no skopeo here
    with pytest.raises(StepError, match="skopeo is not installed"):
        resolve_model("oci://quay.io/org/model:1.0", tmp_path / "oci")


def test_oci_bad_auth_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", "not-json-s3cr3t")
    with pytest.raises(StepError, match="not valid JSON") as err:
        resolve_model("oci://quay.io/org/model:1.0", tmp_path)
    assert "s3cr3t" not in str(err.value)


def _fake_skopeo(bin_dir: Path, layer: Path, record: Path) -> None:
    """A stand-in skopeo: records its authfile's mode/content presence, writes one tar layer into dir:."""
    script = bin_dir / "skopeo"
    script.write_text(f"""#!{sys.executable}
import os, shutil, stat, sys
args = sys.argv[1:]
auth = args[args.index("--authfile") + 1] if "--authfile" in args else ""
mode = oct(stat.S_IMODE(os.stat(auth).st_mode)) if auth else ""
dest = args[-1].removeprefix("dir:")
shutil.copy({str(layer)!r}, os.path.join(dest, "abc123"))
open(os.path.join(dest, "manifest.json"), "w").write("{{}}")
open({str(record)!r}, "w").write(auth + "\\n" + mode + "\\n" + args[-2])
""")
    script.chmod(0o755)


def test_oci_pull_with_private_auth_file(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w:gz") as tf:
        tf.add(tiny_model, arcname="models/tiny")
        tf.add(tiny_model / "config.json", arcname="etc/not-extracted.json")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.txt"
    _fake_skopeo(bin_dir, layer, record)
    secret = json.dumps({"auths": {"quay.io": {"auth": "dXNlcjpzM2NyM3RwYXNz"}}})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", secret)
    got = resolve_model("oci://quay.io/org/model:1.0", tmp_path / "oci")
    assert (got / "config.json").is_file() and (got / "model.safetensors").is_file()
    assert got.name == "tiny" and not list((tmp_path / "oci").rglob("not-extracted.json"))
    auth, mode, src = record.read_text().splitlines()
    assert mode == "0o600" and src == "docker://quay.io/org/model:1.0"
    assert not Path(auth).exists()  # deleted afterwards
    record.unlink()
    assert resolve_model("oci://quay.io/org/model:1.0", tmp_path / "oci") == got  # reused, not pulled again
    assert not record.exists()


def test_oci_pull_failure_hides_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    token = "dXNlcjpzM2NyM3RwYXNz"
    (bin_dir / "skopeo").write_text(f"#!/bin/sh\necho 'unauthorized for {token}' >&2\nexit 1\n")
    (bin_dir / "skopeo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", json.dumps({"auths": {"quay.io": {"auth": token}}}))
    with pytest.raises(StepError, match="skopeo copy failed") as err:
        resolve_model("oci://quay.io/org/model:1.0", tmp_path / "oci")
    assert token not in str(err.value)


# ------------------------------------------------------------------------------------ checkpoint discovery


def _ckpt(run: Path, name: str, tiny_model: Path, weights: bool = True, tokenizer: bool = True) -> Path:
    d = run / "hf_format" / name
    d.mkdir(parents=True)
    shutil.copy(tiny_model / "config.json", d)
    if weights:
        shutil.copy(tiny_model / "model.safetensors", d)
    if tokenizer:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tiny_model / f, d)
    return d


def test_last_complete_checkpoint_wins(tiny_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _ckpt(run, "samples_48.0", tiny_model)
    good = _ckpt(run, "samples_96.0", tiny_model)
    _ckpt(run, "samples_144.0", tiny_model, weights=False)  # incomplete newest (killed mid-save)
    _ckpt(run, "samples_9.0", tiny_model)  # numeric, not lexical, order
    assert find_final_checkpoint(run) == good


def test_data_folder_and_suffixed_folders_are_never_chosen(tiny_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    good = _ckpt(run, "samples_10.0", tiny_model)
    data = run / "_internal_data_processing"
    data.mkdir()
    shutil.copy(tiny_model / "config.json", data)
    shutil.copy(tiny_model / "model.safetensors", data)
    _ckpt(run, "samples_500.0_best_val_loss", tiny_model)
    os.utime(data)  # newest on disk
    assert find_final_checkpoint(run) == good


def test_no_checkpoint_at_all(tmp_path: Path) -> None:
    assert find_final_checkpoint(tmp_path) is None
    (tmp_path / "hf_format").mkdir()
    assert find_final_checkpoint(tmp_path) is None


def test_missing_tokenizer_is_saved_without_weights(tiny_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = _ckpt(run, "samples_8.0", tiny_model, tokenizer=False)
    assert find_final_checkpoint(run) is None
    assert find_final_checkpoint(run, need_tokenizer=False) == ckpt
    before = {p.name: p.stat().st_size for p in ckpt.iterdir()}
    assert ensure_tokenizer(ckpt, tiny_model) is True
    added = {p.name for p in ckpt.iterdir()} - set(before)
    assert "tokenizer.json" in added and not any(n.endswith((".safetensors", ".bin")) for n in added)
    assert find_final_checkpoint(run) == ckpt
    assert ensure_tokenizer(ckpt, tiny_model) is False


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_from_a_real_metrics_file(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in REAL_METRICS.read_text().splitlines()]
    shutil.copy(REAL_METRICS, tmp_path / "training_metrics_0.jsonl")
    summary = summarise_metrics(read_metrics_lines(tmp_path), 12.5, {"learning_rate": 1e-3})
    assert summary["steps"] == len(lines) == 24
    assert summary["final_loss"] == lines[-1]["loss"] and summary["first_loss"] == lines[0]["loss"]
    assert summary["min_loss"] == min(r["loss"] for r in lines)
    assert summary["samples"] == lines[-1]["total_samples_accumulated"]
    assert summary["loss_tokens"] == lines[-1]["total_tokens_accumulated"]
    epochs = {r["epoch"] for r in lines}
    assert [e["epoch"] for e in summary["loss_per_epoch"]] == sorted(epochs)
    for e in summary["loss_per_epoch"]:
        losses = [r["loss"] for r in lines if r["epoch"] == e["epoch"]]
        assert e["steps"] == len(losses) and e["mean_loss"] == pytest.approx(sum(losses) / len(losses))
    loop = sum(r["time_per_batch"] for r in lines)
    assert summary["samples_per_second"] == pytest.approx(lines[-1]["total_samples_accumulated"] / loop, rel=1e-3)
    assert summary["wall_time_s"] == 12.5 and summary["hyper_parameters"] == {"learning_rate": 1e-3}


def test_metrics_replayed_steps_are_counted_once(tmp_path: Path) -> None:
    rows = [json.loads(x) for x in REAL_METRICS.read_text().splitlines()]
    replay = rows[:5] + [{**rows[4], "loss": 9.0}] + rows[5:]  # a resume replays step 5
    (tmp_path / "training_metrics_0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replay))
    got = read_metrics_lines(tmp_path)
    assert [r["step"] for r in got] == list(range(1, 25))
    assert got[4]["loss"] == 9.0


def test_corrupt_or_empty_metrics(tmp_path: Path) -> None:
    (tmp_path / "training_metrics_0.jsonl").write_text('{"step": 1, "loss": 2.0}\n{oops\n')
    with pytest.raises(StepError, match="line 2 is not JSON"):
        read_metrics_lines(tmp_path)
    with pytest.raises(StepError, match="no loss values"):
        summarise_metrics([], 1.0, {})


# ------------------------------------------------------------------------------------------- CPU launcher


def test_pinned_versions_and_patched_private_names_exist() -> None:
    """Fails loudly when an upgrade of training-hub / mini-trainer breaks the CPU shim's assumptions."""
    import importlib
    from importlib.metadata import version

    for dist, pinned in cpu_launcher.TESTED_VERSIONS.items():
        assert version(dist) == pinned, f"{dist} {version(dist)} != {pinned}: re-verify steps/cpu_launcher.py"
    for module, attr in cpu_launcher.PATCHED_NAMES:
        assert hasattr(importlib.import_module(module), attr), f"{module}.{attr} is gone: the CPU shim is broken"
    import mini_trainer.setup_model_for_training as smt

    src = Path(smt.__file__).read_text()
    assert 'init_device_mesh("cuda"' in src and "param_dtype=torch.bfloat16" in src
    train_src = Path(importlib.import_module("mini_trainer.train").__file__).read_text()
    assert "torch.cuda.reset_peak_memory_stats()" in train_src


def test_launch_command_uses_this_interpreter_and_the_shim() -> None:
    cmd = ["torchrun", "--nnodes=1", "--nproc-per-node=1", "/venv/site-packages/mini_trainer/train.py", "--x=1"]
    got = cpu_launcher.cpu_command(cmd)
    assert got[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert got[-2] == cpu_launcher.SHIM_FILE and got[-1] == "--x=1"
    assert cpu_launcher.venv_torchrun_command(cmd)[-2] == cmd[-2]
    assert stat.S_ISREG(os.stat(cpu_launcher.SHIM_FILE).st_mode)
