"""Base vs tuned loads the very base-model copy the train step used, for every model source.

The slow test runs the real train and evaluate steps (as the pods do, through the CLI) on ``hf://org/name``
served only by a pre-populated Hugging Face cache with the Hub offline; the fast ones give evaluate a
``train/metrics.json`` record for a Hub id, ``oci://`` and a folder.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.common.workspace import Workspace
from steps.evaluate import resolve_base
from tests.tiny_assets import build_tiny_model, chat_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).parent / "data" / "eval_tasks"
REPO = "org-x/tiny-chat"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(home: Path, model: Path) -> Path:
    """``HF_HOME`` holding REPO at COMMIT in the hub cache layout (what a prior download leaves); its snapshot."""
    repo_dir = home / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    shutil.copytree(model, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snapshot


def _step(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", "step", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_hf_model_from_the_offline_cache_through_train_and_evaluate(tiny_model: Path, tmp_path: Path) -> None:
    snapshot = hf_cache(tmp_path / "hf-home", tiny_model)
    ws = tmp_path / "ws"
    write_jsonl(ws / "dataset" / "train.jsonl", chat_rows(16))
    write_jsonl(ws / "dataset" / "eval.jsonl", chat_rows(4))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    trained = _step(["train", "--workspace", str(ws), "--model", f"hf://{REPO}", "--effective-batch-size", "4",
                     "--epochs", "1", "--max-tokens-per-gpu", "512", "--max-seq-len", "256", "--learning-rate",
                     "0.001", "--no-use-liger", "--device", "cpu"], env)
    metrics = json.loads((ws / "train" / "metrics.json").read_text())
    assert metrics["base_model"] == f"hf://{REPO}" and Path(metrics["base_model_dir"]) == snapshot
    assert trained["base_model_dir"] == str(snapshot)
    assert not (ws / ".cache").exists()  # found in the cache: nothing downloaded to the workspace

    out = _step(["evaluate", "--workspace", str(ws), "--base-model", f"hf://{REPO}", "--tasks", "arc_easy",
                 "--limit", "2", "--batch-size", "4", "--data-dir", str(DATA)], env)
    assert out["base_model"] == str(snapshot) and out["gate"] in ("pass", "fail")
    comparison = json.loads((ws / "eval" / "comparison.json").read_text())
    assert comparison["base_model"] == str(snapshot) and comparison["base_model_ref"] == f"hf://{REPO}"
    assert {r["task"] for r in comparison["rows"]} == {"arc_easy@validation", "held_out"}
    log = (ws / "pipeline_log.txt").read_text()
    assert f"base model hf://{REPO}: {snapshot} (the copy the train step used (train/metrics.json))" in log


def _record(ws: Path, ref: str, base_dir: Path) -> None:
    (ws / "train").mkdir(parents=True, exist_ok=True)
    (ws / "train" / "metrics.json").write_text(json.dumps({"base_model": ref, "base_model_dir": str(base_dir)}))


@pytest.mark.parametrize("ref", [REPO, f"hf://{REPO}", "oci://quay.io/org/tiny:1.0"])
def test_remote_references_load_the_recorded_copy(ref: str, tiny_model: Path, workspace: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no skopeo, no network: only the record can answer
    _record(workspace, ref, tiny_model)
    path, how = resolve_base(ref, Workspace.at(str(workspace)), offline=True)
    assert (path, how) == (str(tiny_model), "the copy the train step used (train/metrics.json)")


def test_a_record_for_another_model_is_not_used(tiny_model: Path, workspace: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(workspace / "empty-home"))
    _record(workspace, "hf://org-x/other", tiny_model)
    with pytest.raises(StepError, match=f"model {REPO}: the Hugging Face Hub is offline here"):
        resolve_base(f"hf://{REPO}", Workspace.at(str(workspace)), offline=True)


def test_oci_without_a_record_reuses_the_pulled_copy(tiny_model: Path, workspace: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The train step pulled the image into <workspace>/base-model/: evaluate finds it without skopeo."""
    import hashlib

    ref = "oci://quay.io/org/tiny:1.0"
    target = workspace / "base-model" / hashlib.sha256(ref.removeprefix("oci://").encode()).hexdigest()[:16]
    shutil.copytree(tiny_model, target / "model" / "models" / "tiny")
    (target / ".complete").write_text("quay.io/org/tiny:1.0\n")
    monkeypatch.setenv("PATH", "")
    path, how = resolve_base(ref, Workspace.at(str(workspace)), offline=True)
    assert path == str(target / "model" / "models" / "tiny") and how == "resolved as the train step does"


def test_a_local_base_is_used_in_place(tmp_path: Path, workspace: Path) -> None:
    base = build_tiny_model(tmp_path / "base", seed=3)
    assert resolve_base(str(base), Workspace.at(str(workspace)), offline=True) == (str(base.resolve()), "local folder")
