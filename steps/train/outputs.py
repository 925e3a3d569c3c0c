"""Read what mini-trainer wrote: pick the final checkpoint, summarise the metrics, draw the loss curve."""

import json
import math
import re
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.train.model_source import TOKENIZER_FILES, is_complete_model_dir

_SAMPLES = re.compile(r"^samples_(\d+(?:\.\d+)?)$")


def checkpoint_candidates(run_dir: Path) -> list[tuple[float, Path]]:
    """``hf_format/samples_N`` folders (N ascending); suffixed ones (``_best_val_loss``) and data folders excluded."""
    hf = run_dir / "hf_format"
    if not hf.is_dir():
        return []
    found = []
    for d in hf.iterdir():
        m = _SAMPLES.match(d.name)
        if m and d.is_dir() and not d.is_symlink():
            found.append((float(m.group(1)), d))
    return sorted(found)


def find_final_checkpoint(run_dir: Path, need_tokenizer: bool = True) -> Path | None:
    """The complete checkpoint (config + weights [+ tokenizer]) with the largest sample count, or None."""
    for _, d in reversed(checkpoint_candidates(run_dir)):
        if is_complete_model_dir(d, need_tokenizer=need_tokenizer):
            return d
    return None


def has_tokenizer(path: Path) -> bool:
    return any((path / t).is_file() for t in TOKENIZER_FILES)


def ensure_tokenizer(checkpoint: Path, base_model: Path) -> bool:
    """Save the base model's tokenizer files into ``checkpoint`` when missing (weights are never copied).

    Returns True when files were written.
    """
    if has_tokenizer(checkpoint):
        return False
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(base_model))
    except Exception as exc:
        raise StepError(f"checkpoint {checkpoint} has no tokenizer and the base model's cannot be loaded: "
                        f"{str(exc).splitlines()[0][:200]}") from None
    tok.save_pretrained(str(checkpoint))
    return True


def read_metrics_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every JSON line of every ``training_metrics_*.jsonl`` (node files merged, ordered by step)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob("training_metrics_*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise StepError(f"{path.name} line {n} is not JSON; the training metrics file is corrupt") from None
            if isinstance(row, dict):
                rows.append(row)
    steps = [r for r in rows if isinstance(r.get("step"), int | float)]
    others = [r for r in rows if not isinstance(r.get("step"), int | float)]
    # a resumed run may replay a step: keep the last value logged for each step
    by_step: dict[float, dict[str, Any]] = {}
    for r in steps:
        by_step[float(r["step"])] = r
    return [by_step[k] for k in sorted(by_step)] + others


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(float(v)) else None


def summarise_metrics(rows: list[dict[str, Any]], wall_time_s: float | None,
                      hyper_parameters: dict[str, Any]) -> dict[str, Any]:
    """final/min/per-epoch loss, steps, tokens, samples/s and timing, computed from all step rows."""
    steps = [r for r in rows if _num(r.get("loss")) is not None]
    if not steps:
        raise StepError("training wrote no loss values to training_metrics_*.jsonl; see training_log_node0.log")
    losses = [float(r["loss"]) for r in steps]
    per_epoch: dict[int, list[float]] = {}
    for r, loss in zip(steps, losses, strict=True):
        per_epoch.setdefault(int(r.get("epoch", 0) or 0), []).append(loss)
    last = steps[-1]
    tokens = _num(last.get("total_tokens_accumulated"))
    if tokens is None:
        tokens = sum(_num(r.get("num_loss_counted_tokens")) or 0.0 for r in steps)
    samples = _num(last.get("total_samples_accumulated"))
    if samples is None:
        samples = sum(_num(r.get("num_samples")) or 0.0 for r in steps)
    train_time = sum(_num(r.get("time_per_batch")) or 0.0 for r in steps)
    sps = [v for r in steps if (v := _num(r.get("samples_per_second"))) is not None]
    tps = [v for r in steps if (v := _num(r.get("tokens_per_second"))) is not None]
    return {
        "final_loss": losses[-1],
        "min_loss": min(losses),
        "first_loss": losses[0],
        "loss_per_epoch": [{"epoch": e, "mean_loss": sum(v) / len(v), "final_loss": v[-1], "steps": len(v)}
                           for e, v in sorted(per_epoch.items())],
        "steps": len(steps),
        "last_step": int(_num(last.get("step")) or len(steps)),
        "epochs_seen": len(per_epoch),
        "samples": int(samples),
        "loss_tokens": int(tokens),
        "train_loop_time_s": round(train_time, 3),
        "samples_per_second": round(samples / train_time, 4) if train_time > 0 else None,
        "mean_step_samples_per_second": round(sum(sps) / len(sps), 4) if sps else None,
        "mean_tokens_per_second": round(sum(tps) / len(tps), 2) if tps else None,
        "wall_time_s": round(wall_time_s, 2) if wall_time_s is not None else None,
        "loss_curve": [{"step": int(_num(r.get("step")) or i + 1), "epoch": r.get("epoch"), "loss": float(r["loss"]),
                        "lr": _num(r.get("lr")), "grad_norm": _num(r.get("grad_norm"))}
                       for i, r in enumerate(steps)],
        "hyper_parameters": hyper_parameters,
    }


SUMMARY_HYPER = ("model", "learning_rate", "epochs", "effective_batch_size", "max_tokens_per_gpu", "max_seq_len",
                 "unfreeze_rank_ratio", "seed", "world_size", "device")


def train_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The small summary exported as the train step's Argo output parameter: headline numbers only (no loss
    curve; at most the last 10 epochs). ``train/metrics.json`` keeps everything."""
    hyper = metrics.get("hyper_parameters") or {}
    keys = ("final_loss", "min_loss", "first_loss", "steps", "last_step", "epochs_seen", "samples", "loss_tokens",
            "samples_per_second", "train_loop_time_s", "wall_time_s", "checkpoint", "resumed", "attempts")
    return {
        **{k: metrics.get(k) for k in keys if k in metrics},
        "loss_per_epoch": (metrics.get("loss_per_epoch") or [])[-10:],
        "hyper_parameters": {k: hyper[k] for k in SUMMARY_HYPER if k in hyper},
        "metrics": "train/metrics.json",
    }


def plot_loss(summary: dict[str, Any], out: Path, title: str) -> None:
    """Loss per optimizer step (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = summary["loss_curve"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        ax.plot([c["step"] for c in curve], [c["loss"] for c in curve], marker="o", markersize=3, linewidth=1.5)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
