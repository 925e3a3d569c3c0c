"""Benchmark the train step on CPU: wall time, samples/s, peak RSS, weight bytes written outside the checkpoints.

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/train_bench.py [tiny] [smollm2]

Each model trains in its own process on 64 demo rows (chatterbot-corpus), 1 epoch, batch 8, max_seq_len 256.
"Weights outside" sums model weight files (*.safetensors, *.bin, *.pt, *.pth) in the workspace that are not
inside the library's checkpoint folders (hf_format/, full_state_checkpoints/): the step must never copy
weights, so the target is 0.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = 64
SETTINGS = {"effective_batch_size": 8, "epochs": 1, "max_tokens_per_gpu": 1024, "max_seq_len": 256,
            "unfreeze_rank_ratio": 0.25, "lr_scheduler": "constant_with_warmup", "warmup_steps": 0}
LR = {"tiny": 1e-3, "smollm2": 1e-4}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_outside(ws: Path, run_dir: Path) -> int:
    allowed = (run_dir / "hf_format", run_dir / "full_state_checkpoints")
    total = 0
    for p in ws.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.suffix in WEIGHT_SUFFIXES \
                and not any(a in p.parents for a in allowed):
            total += p.stat().st_size
    return total


def run_one(name: str, work: Path) -> dict:
    """Train one model in this process; return the figures."""
    sys.path.insert(0, str(ROOT))
    from steps.dataset.demo_data import build_demo_rows
    from steps.train import train_model
    from tests.tiny_assets import build_tiny_model, write_jsonl

    if name == "tiny":
        model = build_tiny_model(work / "tiny-model")
    else:
        from steps.train.demo_model import ensure_demo_model

        cache = Path(os.environ.get("OSFT_DEMO_MODEL_DIR", str(ROOT / ".work" / "models" / "smollm2-135m-instruct")))
        model = Path(ensure_demo_model(str(cache))["path"])
    ws = work / f"ws-{name}"
    rows = [{"messages": r["messages"]} for r in build_demo_rows()[:ROWS]]
    write_jsonl(ws / "dataset" / "train.jsonl", rows)
    t0 = time.monotonic()
    result = train_model(str(ws), model=str(model), learning_rate=LR[name], **SETTINGS)
    wall = time.monotonic() - t0
    metrics = json.loads(Path(result["metrics_path"]).read_text())
    return {
        "model": name, "rows": ROWS, "steps": result["steps"], "wall_s": round(wall, 1),
        "train_loop_s": metrics["train_loop_time_s"], "samples_per_s_loop": metrics["samples_per_second"],
        "samples_per_s_wall": round(metrics["samples"] / wall, 3),
        "loss_first_final": [round(metrics["first_loss"], 4), round(metrics["final_loss"], 4)],
        "peak_rss_caller_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "peak_rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
        "weights_outside_checkpoints_bytes": weights_outside(ws, Path(result["run_dir"])),
        "train_model_is_link": (ws / "train" / "model").is_symlink(),
    }


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "--one":
        print(json.dumps(run_one(argv[1], Path(argv[2]))))
        return
    names = argv or ["tiny", "smollm2"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    print(f"{'model':8} {'steps':>5} {'wall s':>7} {'loop s':>7} {'smp/s loop':>10} {'smp/s wall':>10} "
          f"{'RSS caller MB':>13} {'RSS worker MB':>13} {'weights outside B':>17}  loss first->final")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        for name in names:
            proc = subprocess.run([sys.executable, __file__, "--one", name, tmp], env=env, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                sys.exit(1)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{r['model']:8} {r['steps']:>5} {r['wall_s']:>7} {r['train_loop_s']:>7} "
                  f"{r['samples_per_s_loop']:>10} {r['samples_per_s_wall']:>10} {r['peak_rss_caller_mb']:>13} "
                  f"{r['peak_rss_worker_mb']:>13} {r['weights_outside_checkpoints_bytes']:>17}  "
                  f"{r['loss_first_final'][0]} -> {r['loss_first_final'][1]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
