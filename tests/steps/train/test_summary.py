"""Defect 7: the train step's Argo output parameter is a small summary, however long the run."""

import json
from pathlib import Path

from steps.common.summary import BOUNDED_OUTPUTS, bounded, write_summary
from steps.common.workspace import Workspace
from steps.train import SUMMARY, _publish


def _metrics_file(run_dir: Path, steps: int) -> None:
    run_dir.mkdir(parents=True)
    with open(run_dir / "training_metrics_0.jsonl", "w", encoding="utf-8") as fh:
        for i in range(1, steps + 1):
            fh.write(json.dumps({"step": i, "epoch": i * 3 // steps, "loss": 4.0 - i / steps, "lr": 5e-6,
                                 "grad_norm": 1.0, "num_samples": 8, "num_loss_counted_tokens": 900,
                                 "time_per_batch": 0.5, "samples_per_second": 16.0,
                                 "tokens_per_second": 1800.0}) + "\n")


def test_a_100000_step_run_exports_a_small_summary_and_keeps_everything_on_the_workspace(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    run_dir = ws.train_dir / "run-abc"
    _metrics_file(run_dir, 100_000)
    ckpt = run_dir / "hf_format" / "samples_800000.0"
    ckpt.mkdir(parents=True)
    hyper = {"model": "org/" + "m" * 500, "learning_rate": 5e-6, "epochs": 3, "effective_batch_size": 8}
    _publish(ws, run_dir, ckpt, 1234.5, hyper, rows=800_000, world=8, key="abc", resumed=True, attempts=2,
             base=tmp_path / "base", data_sha256="ab" * 32)
    metrics = ws.train_dir / "metrics.json"
    summary = ws.root / SUMMARY
    assert metrics.stat().st_size > 5_000_000  # the full curve stays on the workspace
    assert summary.stat().st_size <= BOUNDED_OUTPUTS[SUMMARY] == 4096
    small = json.loads(summary.read_text())
    assert small["steps"] == 100_000 and small["final_loss"] == 3.0 and small["resumed"] is True
    assert "loss_curve" not in small and len(small["loss_per_epoch"]) <= 10
    assert small["hyper_parameters"]["model"].endswith("…")  # a long value is cut, not dropped
    assert ws.model_pointer.resolve() == ckpt.resolve()


def test_bounded_shrinks_strings_lists_then_drops_trailing_keys() -> None:
    big = {"gate": "pass", "rows": [{"task": f"mmlu_{i}", "delta": i / 100} for i in range(500)], "note": "x" * 5000}
    out = bounded(big, 2048)
    assert len(json.dumps(out, indent=2)) + 1 <= 2048
    assert out["gate"] == "pass" and out["rows"][-1].startswith("…") and out["note"].endswith("…")
    tiny = bounded({"a": "1", "b": ["y" * 50] * 50, "c": "z" * 400}, 70)
    assert len(json.dumps(tiny, indent=2)) + 1 <= 70 and tiny["a"] == "1" and tiny["truncated"] == ["b", "c"]


def test_write_summary_refuses_an_undeclared_output(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(KeyError, match="not a bounded output"):
        write_summary(tmp_path, "train/metrics.json", {})
    path = write_summary(tmp_path, "eval/summary.json", {"rows": list(range(100_000))})
    assert path.stat().st_size <= BOUNDED_OUTPUTS["eval/summary.json"]
